"""The sign test [x < 0] with function secret sharing (ppfr.mpc.fss) against today's (protocols.msb),
side by side in one run: time, rounds and bytes per server.

    python benchmarks/fss.py [--sizes 1,158,10000,100000] [--reps 5] [--widths 64,32]

Four ways to the sign of n ring integers (half of them negative), two outputs each:
- additive 0/1 shares, protocols.msb: "fss_add" (use_comparisons("fss"): keys of group "add", one
  round) and "msb" (the bitwise Kogge-Stone comparison, then a round to convert its XOR bit);
- XOR-shared bits, protocols.msb_bits, what selections and ANDs consume: "fss_xor" (group "xor", one
  round) and "msb_bits" (bitwise).
For each: the dealer's time to draw both servers' material (keygen, per value); the online time, the
slower server's from a common start (an empty exchange, not counted) until both hold their shares, all
material already delivered; for FSS also the local DCF evaluation alone, per value; rounds and bytes
each server sends the other (online) and the bytes of material each receives (offline); and a model of
the online time across a network, online time + rounds x RTT, for RTT 1 ms and 40 ms (no network
here; a round in-process costs tens of microseconds, already in the online time).
Medians over --reps (at most 3 above 10^4 values, whose keygen dominates the run). Parties in threads
of one process (LocalSession): the servers share the interpreter lock. The last line is one JSON object,
kept in benchmarks/results/fss.json.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from publish import publish

from ppfr.mpc import LocalSession, fss, material, protocols
from ppfr.mpc.channel import payload_bytes
from ppfr.mpc.prg import SecureRandom

RTTS_MS = (1.0, 40.0)
# name: (comparison method, output: "add" for protocols.msb, "xor" for protocols.msb_bits)
METHODS = {"fss_add": ("fss", "add"), "msb": ("bitwise", "add"), "fss_xor": ("fss", "xor"),
           "msb_bits": ("bitwise", "xor")}


def _online_program(srv, method: str, width: int, reps: int):
    """On both servers: receive x, then `reps` times the sign test from a common start, planned, with the
    material awaited before the clock starts (the first run records the plan: the caller drops it).
    Returns the times, the counts of the last run and its output shares."""
    comparisons, output = METHODS[method]
    protocols.use_comparisons(srv, comparisons)
    sign = protocols.msb if output == "add" else protocols.msb_bits
    x = srv.receive()
    times, spent, bit = [], None, None
    for _ in range(reps):
        with srv.provider.plan("benchmark fss", method, x.shape, width):
            srv.provider.await_material()
            srv.exchange((), [])
            before = srv.channel.stats.copy()
            start = time.perf_counter()
            bit = sign(srv, x.share, width=width)
            times.append(time.perf_counter() - start)
            spent = srv.channel.stats - before
    return times, spent, bit


def _timed(fn, reps):
    out, times = None, []
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def _requests(method: str, n: int, width: int):
    """What the method asks the dealer for, for n values."""
    comparisons, output = METHODS[method]
    if comparisons == "fss":
        return [material.FSSComparisonRequest(n, width, output)]
    requests = [material.ComparisonRequest(n, protocols.comparison_radices(n, width), width)]
    return requests + [material.SelectionRequest(n, 0)] if output == "add" else requests


def _case(session, dealer_rng, x, width, reps, method) -> dict:
    """The dealer's draw timed alone (and for FSS the local evaluation), then the protocol in the session."""
    requests = _requests(method, x.size, width)
    drawn, keygen_s = _timed(lambda: [r.draw(dealer_rng) for r in requests], reps)
    job = session.run(_online_program, method, width, reps + 1)
    session.client.share(x, frac=0)
    (t0, spent, b0), (t1, _, b1) = job.result()
    got = b0 + b1 if METHODS[method][1] == "add" else b0 ^ b1
    if not np.array_equal(got, (x < 0).astype(np.uint64)):
        raise SystemExit(f"{method} gave a wrong sign for n = {x.size}, width {width}")
    out = {"keygen": keygen_s, "online": np.maximum(t0, t1)[1:], "spent": spent,
           "offline": sum(payload_bytes(share0) for share0, _ in drawn)}
    if METHODS[method][0] == "fss":
        key = fss.SignKey.from_wire(drawn[0][0])
        c = x.view(np.uint64) + key.r + fss.SignKey.from_wire(drawn[0][1]).r
        out["eval"] = _timed(lambda: fss.sign_from_opened(0, key, c, width), reps)[1]
    return out


def measure(session, rng, dealer_rng, n: int, width: int, reps: int) -> dict:
    bound = 2**63 if width == 64 else 2**31
    x = rng.integers(-bound, bound - 1, n, dtype=np.int64, endpoint=True)
    x[: n // 2] >>= rng.integers(0, width - 4, n // 2)  # many magnitudes
    out = {"n": n, "width": width}
    for method in METHODS:
        raw = _case(session, dealer_rng, x, width, reps, method)
        online_ms = round(float(np.median(raw["online"])) * 1e3, 4)
        spent = raw["spent"]
        out[method] = {
            "keygen_us_per_value": round(float(np.median(raw["keygen"])) / n * 1e6, 3),
            "online_ms": online_ms, "rounds": spent.rounds, "online_bytes_per_server": spent.bytes_sent,
            "offline_bytes_per_server": raw["offline"],
            **{f"modelled_ms_at_rtt_{rtt:g}ms": round(online_ms + spent.rounds * rtt, 3) for rtt in RTTS_MS},
        }
        if "eval" in raw:
            out[method]["eval_us_per_value"] = round(float(np.median(raw["eval"])) / n * 1e6, 3)
    for fast, today in (("fss_add", "msb"), ("fss_xor", "msb_bits")):
        out[f"{fast}_vs_{today}"] = {key.replace("modelled_ms", "speedup"): round(out[today][key] / out[fast][key], 2)
                                     for key in ("online_ms", *(f"modelled_ms_at_rtt_{r:g}ms" for r in RTTS_MS))}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,158,10000,100000", help="comma-separated numbers of values")
    parser.add_argument("--widths", default="64,32", help="comparison widths (64: any ring value; 32: |x| < 2^31)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per case (at most 3 above 10^4 values)")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        widths = [int(w) for w in args.widths.split(",")]
    except ValueError:
        raise SystemExit("--sizes and --widths take comma-separated integers") from None
    if any(w not in fss.WIDTHS for w in widths) or any(n < 1 for n in sizes) or args.reps < 1:
        raise SystemExit(f"widths are {fss.WIDTHS}, sizes and --reps at least 1")
    rng, dealer_rng = np.random.default_rng(0), SecureRandom()
    cases = []
    with LocalSession() as session:
        for width in widths:
            for n in sizes:
                case = measure(session, rng, dealer_rng, n, width, args.reps if n <= 10_000 else min(args.reps, 3))
                cases.append(case)
                for method in METHODS:
                    m = case[method]
                    print(f"w={width:2d} n={n:>6d} {method:8s} keygen {m['keygen_us_per_value']:9.2f} us/value, "
                          f"online {m['online_ms']:8.2f} ms, {m['rounds']} rounds, "
                          f"{m['online_bytes_per_server'] / n:5.0f} B/value online, "
                          f"{m['offline_bytes_per_server'] / n:5.0f} B/value offline, "
                          f"{m['modelled_ms_at_rtt_40ms']:8.1f} ms at 40 ms RTT"
                          + (f", eval {m['eval_us_per_value']:.2f} us/value" if "eval_us_per_value" in m else ""))
    key_sizes = {f"{g} {w}": fss.key_bytes(w, g) for g in fss.GROUPS for w in fss.WIDTHS}
    publish({"benchmark": "fss", "key_bytes_per_value": key_sizes, "cases": cases})

if __name__ == "__main__":
    main()
