"""Median time, bytes and rounds of the engine's operations under MPC, against numpy float64.

    python benchmarks/mpc_ops.py [--reps 15] [--parties threads|processes] [--comparisons bitwise|fss|both]

Times are measured on the servers, from the moment both start an operation (they hold the input shares
and synchronise with an empty message) to the moment both hold the result shares; the client's encoding
and reconstruction are not included. The repetitions run back to back, so the dealer draws the next
one's material while the servers compute: every party works on this machine's cores at once, no network
latency. "online" times the same with each repetition's material drawn before its clock starts, as a
dealer that works ahead on a machine of its own would have it ready (CrypTen's figures include theirs).
Parties in threads of one process (the default) or processes of their own (--parties). Bytes and rounds
are per server, online (to the other server); offline bytes are what the dealer sent that server.
--comparisons: how the servers compare (protocols.use_comparisons); "both" runs the operations that
compare (argmax, reciprocal, softmax) once more with FSS, as "<name> [fss]", in the same run.
The last line is one JSON object, kept in benchmarks/results/mpc_ops.json (mpc_ops_processes.json;
mpc_ops_fss.json and mpc_ops_comparisons.json with --comparisons fss and both).
"""
from __future__ import annotations

import argparse
import operator
import platform
import time

import numpy as np

from publish import publish

from ppfr.mpc.session import DEFAULT_PARTIES, SESSIONS, open_session
from ppfr.mpc import functions as F

# CrypTen's published 2-party figures on 100x100 tensors (ms), for reference
CRYPTEN_100x100_MS = {"mul": 2.3, "matmul": 3.4, "exp": 11.9, "reciprocal": 76.0}


def softmax_np(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def argmax_index(x):
    return F.argmax(x, axis=-1)[1]


COMPARING = ("argmax", "reciprocal", "softmax")  # the operations whose cost depends on --comparisons


def cases(rng):
    a158, b158 = rng.uniform(-30, 30, (64, 158)), rng.uniform(-1, 1, (64, 158))
    a100, b100 = rng.uniform(-10, 10, (100, 100)), rng.uniform(-1, 1, (100, 100))
    x, w = rng.normal(size=(64, 128)), rng.normal(size=(128, 158)) * 0.1
    e158, e100 = rng.uniform(-64, 10, (64, 158)), rng.uniform(-64, 10, (100, 100))
    r158, r100 = np.exp(rng.uniform(np.log(1 / 32), np.log(32), (64, 158))), np.exp(rng.uniform(np.log(1 / 32), np.log(32), (100, 100)))
    return [
        ("mul 64x158", operator.mul, np.multiply, (a158, b158)),
        ("matmul 64x128 . 128x158", operator.matmul, np.matmul, (x, w)),
        ("exp 64x158", F.exp, np.exp, (e158,)),
        ("reciprocal 64x158", F.reciprocal, np.reciprocal, (r158,)),
        ("softmax 64x158", F.softmax, softmax_np, (a158,)),
        ("softmax 1x158 (one face)", F.softmax, softmax_np, (a158[:1],)),
        ("argmax 64x158", argmax_index, lambda x: np.argmax(x, axis=-1), (a158,)),
        ("mul 100x100", operator.mul, np.multiply, (a100, b100)),
        ("matmul 100x100", operator.matmul, np.matmul, (a100, b100)),
        ("exp 100x100", F.exp, np.exp, (e100,)),
        ("reciprocal 100x100", F.reciprocal, np.reciprocal, (r100,)),
    ]


def _timed_program(srv, name: str, op, inputs: int, reps: int, online: bool):
    """Run by both servers: receive the input shares, then apply `op` `reps` times, each time starting
    together with the other server (an empty exchange, not counted). Each repetition is a planned step:
    from the second on, its dealer requests go out on entry. online: wait for all that material before
    starting the clock, so that only the online phase is timed."""
    shared = [srv.receive() for _ in range(inputs)]
    times = []
    for _ in range(reps):
        with srv.provider.plan("benchmark", name):
            if online:
                srv.provider.await_material()
            srv.exchange((), [], tag="sync")  # a common start: no arrays
            before = srv.channel.stats.copy()
            start = time.perf_counter()
            out = op(*shared)
            times.append(time.perf_counter() - start)
            stats = srv.channel.stats - before
    srv.reveal_to(out)
    return times, stats


def time_mpc(session, name, op, inputs, reps, online=False, warmup=2):
    """Median over reps of the slower server's time; the counts of the last rep."""
    job = session.run(_timed_program, name, op, len(inputs), warmup + reps, online)
    for x in inputs:
        session.client.share(x)
    session.client.reconstruct()
    (t0, stats), (t1, _) = job.result()
    return float(np.median(np.maximum(t0, t1)[warmup:])), stats


def time_numpy(fn, inputs, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(session, name, program, reference, inputs, reps) -> dict:
    mpc_s, stats = time_mpc(session, name, program, inputs, reps)
    online_s, _ = time_mpc(session, name, program, inputs, reps, online=True)
    np_s = time_numpy(reference, inputs, max(reps, 50))
    result = {
        "mpc_ms": round(mpc_s * 1e3, 3), "online_ms": round(online_s * 1e3, 3),
        "numpy_ms": round(np_s * 1e3, 4),
        "ratio": round(mpc_s / np_s, 1), "bytes_per_server": stats.bytes_sent,
        "rounds": stats.rounds, "offline_bytes_per_server": stats.offline_bytes,
    }
    op = name.split()[0]
    if "100x100" in name and op in CRYPTEN_100x100_MS:
        result["crypten_ms"] = CRYPTEN_100x100_MS[op]
        result["speedup_vs_crypten"] = round(CRYPTEN_100x100_MS[op] / (mpc_s * 1e3), 1)
    print(f"{name:32s} mpc {mpc_s * 1e3:8.2f} ms (online {online_s * 1e3:6.2f})   numpy {np_s * 1e3:8.4f} ms"
          f"   x{mpc_s / np_s:8.0f}   {stats.bytes_sent / 1e3:8.1f} kB  {stats.rounds:3d} rounds")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--parties", choices=sorted(SESSIONS), default=DEFAULT_PARTIES,
                        help="servers and dealer in threads of this process, or in processes of their own")
    parser.add_argument("--comparisons", choices=("bitwise", "fss", "both"), default="bitwise",
                        help="how the servers compare; both: the comparing operations once more with FSS")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {}
    methods = ("bitwise", "fss") if args.comparisons == "both" else (args.comparisons,)
    all_cases = cases(rng)
    for method in methods:
        with open_session(args.parties, comparisons=method) as session:
            for name, program, reference, inputs in all_cases:
                if method == "fss" and len(methods) > 1 and name.split()[0] not in COMPARING:
                    continue
                label = f"{name} [fss]" if method == "fss" and len(methods) > 1 else name
                results[label] = measure(session, label, program, reference, inputs, args.reps)
    variant = "".join(f"_{v}" for v in (args.parties, args.comparisons) if v not in (DEFAULT_PARTIES, "bitwise"))
    publish({"benchmark": "mpc_ops", "reps": args.reps, "parties": args.parties, "comparisons": args.comparisons,
             "machine": platform.machine(), "ops": results},
            name="mpc_ops" + variant.replace("_both", "_comparisons"))


if __name__ == "__main__":
    main()
