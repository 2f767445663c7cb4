"""Median time, bytes and rounds of the engine's operations under MPC, against numpy float64.

    python benchmarks/mpc_ops.py [--reps 15]

Times are measured on the servers, from the moment both hold their input shares to the moment both hold
the result shares (the client's encoding and reconstruction are not included), in this process: two
server threads and a dealer thread on this machine's cores, no network latency. Bytes and rounds are per
server, online (to the other server); offline bytes are what the dealer sent that server.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from ppfr.mpc import LocalSession
from ppfr.mpc import functions as F

# CrypTen's published 2-party figures on 100x100 tensors (ms), for reference
CRYPTEN_100x100_MS = {"mul": 2.3, "matmul": 3.4, "exp": 11.9, "reciprocal": 76.0}


def softmax_np(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cases(rng):
    a158, b158 = rng.uniform(-30, 30, (64, 158)), rng.uniform(-1, 1, (64, 158))
    a100, b100 = rng.uniform(-10, 10, (100, 100)), rng.uniform(-1, 1, (100, 100))
    x, w = rng.normal(size=(64, 128)), rng.normal(size=(128, 158)) * 0.1
    e158, e100 = rng.uniform(-64, 10, (64, 158)), rng.uniform(-64, 10, (100, 100))
    r158, r100 = np.exp(rng.uniform(np.log(1 / 32), np.log(32), (64, 158))), np.exp(rng.uniform(np.log(1 / 32), np.log(32), (100, 100)))
    return [
        ("mul 64x158", lambda p, q: p * q, np.multiply, (a158, b158)),
        ("matmul 64x128 . 128x158", lambda p, q: p @ q, np.matmul, (x, w)),
        ("exp 64x158", F.exp, np.exp, (e158,)),
        ("reciprocal 64x158", F.reciprocal, np.reciprocal, (r158,)),
        ("softmax 64x158", F.softmax, softmax_np, (a158,)),
        ("softmax 1x158 (one face)", F.softmax, softmax_np, (a158[:1],)),
        ("mul 100x100", lambda p, q: p * q, np.multiply, (a100, b100)),
        ("matmul 100x100", lambda p, q: p @ q, np.matmul, (a100, b100)),
        ("exp 100x100", F.exp, np.exp, (e100,)),
        ("reciprocal 100x100", F.reciprocal, np.reciprocal, (r100,)),
    ]


def time_mpc(session, program, inputs, reps):
    times, stats = [], []

    def run(srv):
        shared = [srv.receive() for _ in inputs]
        before = srv.channel.stats.copy()
        start = time.perf_counter()
        out = program(*shared)
        elapsed = time.perf_counter() - start
        srv.reveal_to(out)
        return elapsed, srv.channel.stats - before

    for _ in range(reps):
        job = session.run(run)
        for x in inputs:
            session.client.share(x)
        session.client.reconstruct()
        (t0, s0), (t1, s1) = job.result()
        times.append(max(t0, t1))
        stats.append(s0)
    return float(np.median(times)), stats[-1]


def time_numpy(fn, inputs, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {}
    with LocalSession() as session:
        for name, program, reference, inputs in cases(rng):
            time_mpc(session, program, inputs, 2)  # warm-up
            mpc_s, stats = time_mpc(session, program, inputs, args.reps)
            np_s = time_numpy(reference, inputs, max(args.reps, 50))
            results[name] = {
                "mpc_ms": round(mpc_s * 1e3, 3), "numpy_ms": round(np_s * 1e3, 4),
                "ratio": round(mpc_s / np_s, 1), "bytes_per_server": stats.bytes_sent,
                "rounds": stats.rounds, "offline_bytes_per_server": stats.offline_bytes,
            }
            op = name.split()[0]
            if "100x100" in name and op in CRYPTEN_100x100_MS:
                results[name]["crypten_ms"] = CRYPTEN_100x100_MS[op]
                results[name]["speedup_vs_crypten"] = round(CRYPTEN_100x100_MS[op] / (mpc_s * 1e3), 1)
            print(f"{name:26s} mpc {mpc_s * 1e3:8.2f} ms   numpy {np_s * 1e3:8.4f} ms   x{mpc_s / np_s:8.0f}   "
                  f"{stats.bytes_sent / 1e3:8.1f} kB  {stats.rounds:3d} rounds")
    print(json.dumps({"benchmark": "mpc_ops", "reps": args.reps, "machine": platform.machine(),
                      "cores": __import__("os").cpu_count(), "ops": results}))


if __name__ == "__main__":
    main()
