"""The sign test [x < 0] with function secret sharing (ppfr.mpc.fss) against today's (protocols.msb),
side by side in one run: time, rounds and bytes per server.

    python benchmarks/fss.py [--sizes 1,158,10000,100000] [--reps 5] [--widths 64,32]

Four ways to the sign of n ring integers (half of them negative), two outputs each:
- additive 0/1 shares: "fss_add" (fss keys of group "add", one round) and "msb" (protocols.msb: the
  Kogge-Stone comparison, then a round to convert its XOR bit);
- XOR-shared bits, what selections and ANDs consume: "fss_xor" (group "xor", one round) and "msb_bits".
For each: the dealer's time to draw both servers' material (keygen, per value); the online time, the
slower server's from a common start (an empty exchange, not counted) until both hold their shares, all
material already delivered; for FSS also the local DCF evaluation alone, per value; rounds and bytes
each server sends the other (online) and the bytes of material each receives (offline); and a model of
the online time across a network, online time + rounds x RTT, for RTT 1 ms and 40 ms (no network
here; a round in-process costs tens of microseconds, already in the online time).
Medians over --reps (at most 3 above 10^4 values, whose keygen dominates the run). Parties in threads
of one process (LocalSession): the servers share the interpreter lock. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ppfr.mpc import LocalSession, fss, protocols
from ppfr.mpc.channel import payload_bytes
from ppfr.mpc.dealer import msb_material, selection_material
from ppfr.mpc.prg import SecureRandom

RTTS_MS = (1.0, 40.0)
METHODS = ("fss_add", "msb", "fss_xor", "msb_bits")


def _sign(srv, method: str, x, width: int, key):
    if method.startswith("fss"):
        return fss.less_than_zero(srv, x, key, width)
    if method == "msb":
        return protocols.msb(srv, x, width=width)
    return protocols.msb_bits(srv, x, width=width)


def _online_program(srv, method: str, width: int, reps: int, keys=()):
    """On both servers: receive x, then `reps` times the sign test from a common start. FSS takes one
    SignKey per repetition from `keys`; msb asks the dealer, planned, with the material awaited before
    the clock starts (the first run records the plan and is dropped by the caller). Returns the times,
    the counts of the last run and its output shares."""
    x = srv.receive()
    times, spent, bit = [], None, None
    for rep in range(reps):
        with srv.plan("benchmark fss", method, x.shape, width):
            srv.await_material()
            srv.exchange(None)
            before = srv.channel.stats.copy()
            start = time.perf_counter()
            bit = _sign(srv, method, x.share, width, keys[rep] if keys else None)
            times.append(time.perf_counter() - start)
            spent = srv.channel.stats - before
    return times, spent, bit


def _run(session, x, method, width, reps, keys=((), ())):
    job = session.run(_online_program, method, width, reps, per_server=((keys[0],), (keys[1],)))
    session.client.share(x, frac=0)
    (t0, spent, b0), (t1, _, b1) = job.result()
    got = b0 + b1 if method in ("fss_add", "msb") else b0 ^ b1
    if not np.array_equal(got, (x < 0).astype(np.uint64)):
        raise SystemExit(f"{method} gave a wrong sign for n = {x.size}, width {width}")
    return np.maximum(t0, t1), spent


def _timed(fn, reps):
    out, times = None, []
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def _fss_case(session, dealer_rng, x, width, reps, group):
    """FSS: fresh keys for every repetition (a key serves one opening), drawn and timed first."""
    keys, keygen_s = [], []
    for _ in range(reps):
        start = time.perf_counter()
        keys.append(fss.sign_keygen(dealer_rng, x.size, width, group))
        keygen_s.append(time.perf_counter() - start)
    c = x.view(np.uint64) + keys[0][0].r + keys[0][1].r
    _, eval_s = _timed(lambda: fss.sign_from_opened(0, keys[0][0], c, width), reps)
    online, spent = _run(session, x, f"fss_{group}", width, reps, ([k[0] for k in keys], [k[1] for k in keys]))
    return {"keygen": keygen_s, "online": online, "spent": spent, "offline": keys[0][0].nbytes(), "eval": eval_s}


def _msb_case(session, dealer_rng, x, width, reps, method):
    """Today's: the dealer's material timed alone, then the protocol in the session (plan recorded first)."""
    n = x.size
    radices = protocols.comparison_radices(n, width)
    draw = (lambda: (msb_material(dealer_rng, n, radices, width), selection_material(dealer_rng, n, 0))) \
        if method == "msb" else (lambda: (msb_material(dealer_rng, n, radices, width),))
    material, keygen_s = _timed(draw, reps)
    online, spent = _run(session, x, method, width, reps + 1)
    return {"keygen": keygen_s, "online": online[1:], "spent": spent,
            "offline": sum(payload_bytes(m[0]) for m in material)}


def measure(session, rng, dealer_rng, n: int, width: int, reps: int) -> dict:
    bound = 2**63 if width == 64 else 2**31
    x = rng.integers(-bound, bound - 1, n, dtype=np.int64, endpoint=True)
    x[: n // 2] >>= rng.integers(0, width - 4, n // 2)  # many magnitudes
    out = {"n": n, "width": width}
    for method in METHODS:
        raw = (_fss_case(session, dealer_rng, x, width, reps, method[4:]) if method.startswith("fss")
               else _msb_case(session, dealer_rng, x, width, reps, method))
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
    load = os.getloadavg()[0]  # other work on the machine skews the timings: reported
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
    print(json.dumps({"benchmark": "fss", "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
                      "cores": os.cpu_count(), "key_bytes_per_value": key_sizes, "cases": cases}))


if __name__ == "__main__":
    main()
