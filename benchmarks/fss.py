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

    python benchmarks/fss.py --tournaments [argmax:1x158,argmax:64x158,argmin:1x13233,argmin:1x100000] [--reps 5]

Tournaments instead (max/argmax/argmin; op:ROWSxN, @BOUND for values known within +-BOUND, which
lets the comparisons run on 32 bits), three ways in one run: "bitwise" (today's default: groups of 4
or 2, bitwise comparisons), "fss_groups_of_4" (the same tournament with FSS comparisons, what
`mpc.comparisons: fss` did before) and "fss_by_rank" (functions._tournament_by_rank: pairs in one
round, groups in two, levels by rank_levels). Argmax of logits uniform in [-30, 30], argmin of distances
uniform in [0, 4), one tie a row, the index checked against numpy. Per way: rounds, bytes each server
sends the other (online) and receives from the dealer (offline); "total_ms", the slower server's time
with the material asked on entry and drawn by the dealer meanwhile (one process: the dealer's CPU
competes); "online_ms", the same with the material asked ahead (provider.prepare) and awaited before
the clock starts (a dealer working offline, on a machine of its own); "dealer_ms", the dealer's time to
draw one run's material alone; the process's peak memory so far. Medians over --reps (2 above 20,000
values, 1 above 200,000). Published to benchmarks/results/fss_tournaments.json.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from publish import publish

from ppfr.mpc import LocalSession, fss, material, protocols
from ppfr.mpc import functions as F
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
    requests = [material.TableComparisonRequest(n, width) if protocols.by_tables(n, width)
                else material.ComparisonRequest(n, protocols.RADICES[width], width)]
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


# -- tournaments: max/argmax/argmin, today's against the tournament by rank ---------------------------------
# name: (comparison method, tournament); "circuit" is functions._tournament_by_circuit (groups of 4 or 2,
# the default with bitwise comparisons, and what FSS comparisons used before the tournament by rank)
TOURNAMENTS = {"bitwise": ("bitwise", "circuit"), "fss_groups_of_4": ("fss", "circuit"), "fss_by_rank": ("fss", "rank")}
TOURNAMENT_CASES = "argmax:1x158,argmax:64x158,argmin:1x13233,argmin:1x100000"


def _tournament(x, method: str, want_min: bool, bound):
    if TOURNAMENTS[method][1] == "rank" or method == "bitwise":
        return F._tournament(x, -1, want_min, True, bound)  # by rank with FSS comparisons, else the circuit
    return F._tournament_by_circuit(x, want_min, True, F.comparison_width(x.frac, None if bound is None else 2 * bound))


def _tournament_program(srv, method: str, want_min: bool, bound, reps: int, online: bool):
    """On both servers: receive x, then reps + 1 tournaments from a common start (the first records the
    plan and is dropped). online: each run's material asked ahead (provider.prepare) and awaited before
    the clock starts; else asked on entry, drawn by the dealer while the servers compute. Returns the
    times, the counts of the last run, its requests and its revealed index."""
    protocols.use_comparisons(srv, TOURNAMENTS[method][0])
    x = srv.receive()
    step = ("benchmark tournament", method, x.shape, want_min, bound)
    times, spent, index = [], None, None
    for rep in range(reps + 1):
        if online and rep:
            srv.provider.prepare(*step)
        with srv.provider.plan(*step):
            if online:
                srv.provider.await_material()
            srv.exchange((), [], tag="sync")
            before = srv.channel.stats.copy()
            start = time.perf_counter()
            _, index = _tournament(x, method, want_min, bound)
            times.append(time.perf_counter() - start)
            spent = srv.channel.stats - before
    srv.reveal_to(index)
    return times[1:], spent, srv.provider.requests_of(*step)


def _run_tournament(session, x, method, want_min, bound, reps, online):
    job = session.run(_tournament_program, method, want_min, bound, reps, online)
    session.client.share(x)
    index = session.client.reconstruct()
    (t0, spent, requests), (t1, _, _) = job.result()
    return float(np.median(np.maximum(t0, t1))), spent, requests, index


def _dealer_seconds(requests, dealer_rng) -> float:
    """The dealer's time to draw a run's material, alone (one request at a time, nothing kept)."""
    start = time.perf_counter()
    for request in requests:
        request.draw(dealer_rng)
    return time.perf_counter() - start


def measure_tournament(rng, dealer_rng, op: str, rows: int, n: int, bound, reps: int) -> dict:
    want_min = op == "argmin"
    x = rng.uniform(0, 4, (rows, n)) if want_min else rng.uniform(-30, 30, (rows, n))  # distances, logits
    x[:, n // 3] = x[:, n // 2]  # a tie
    expected = np.rint(x * 2**16)
    expected = expected.argmin(axis=-1) if want_min else expected.argmax(axis=-1)
    out = {"op": op, "rows": rows, "n": n, "bound": bound}
    for method in TOURNAMENTS:
        with LocalSession() as session:
            total_s, spent, requests, index = _run_tournament(session, x, method, want_min, bound, reps, False)
            online_s, _, _, index_online = _run_tournament(session, x, method, want_min, bound, reps, True)
        if not (np.array_equal(index, expected) and np.array_equal(index_online, expected)):
            raise SystemExit(f"{method} gave a wrong {op} for {rows}x{n}")
        levels = F.rank_levels(n, rows, F.comparison_width(16, None if bound is None else 2 * bound))
        out[method] = {"rounds": spent.rounds, "online_bytes_per_server": spent.bytes_sent,
                       "offline_bytes_per_server": spent.offline_bytes,
                       "total_ms": round(total_s * 1e3, 2), "online_ms": round(online_s * 1e3, 2),
                       "dealer_ms": round(_dealer_seconds(requests, dealer_rng) * 1e3, 2),
                       "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                       **({"levels": list(levels)} if method == "fss_by_rank" else {})}
        m = out[method]
        print(f"{op} {rows}x{n} bound={bound} {method:16s} {m['rounds']:3d} rounds, "
              f"{m['online_bytes_per_server'] / 1e3:9.1f} kB online, {m['offline_bytes_per_server'] / 1e6:8.2f} MB "
              f"offline; total {m['total_ms']:9.1f} ms, online {m['online_ms']:9.1f} ms, dealer alone "
              f"{m['dealer_ms']:9.1f} ms", flush=True)
    return out


def tournaments(cases: str, reps: int) -> None:
    rng, dealer_rng = np.random.default_rng(0), SecureRandom()
    results = []
    for case in cases.split(","):
        op, _, shape = case.partition(":")
        shape, _, bound = shape.partition("@")
        rows, n = (int(v) for v in shape.split("x"))
        if op not in ("argmax", "argmin"):
            raise SystemExit(f"a tournament case is argmax|argmin:ROWSxN[@BOUND], not {case!r}")
        results.append(measure_tournament(rng, dealer_rng, op, rows, n, float(bound) if bound else None,
                                          reps if rows * n <= 20_000 else min(reps, 2) if rows * n <= 200_000 else 1))
    publish({"benchmark": "fss_tournaments", "round_cost": F.ROUND_COST, "cases": results}, name="fss_tournaments")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,158,10000,100000", help="comma-separated numbers of values")
    parser.add_argument("--widths", default="64,32", help="comparison widths (64: any ring value; 32: |x| < 2^31)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per case (at most 3 above 10^4 values)")
    parser.add_argument("--tournaments", nargs="?", const=TOURNAMENT_CASES, default=None,
                        help="instead: tournaments, op:ROWSxN[@BOUND] comma-separated (default " + TOURNAMENT_CASES + ")")
    args = parser.parse_args()
    if args.tournaments:
        return tournaments(args.tournaments, args.reps)
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
