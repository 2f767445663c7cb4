"""exp by tables (ppfr/mpc/lut.py) side by side with today's protocols, in one run: rounds, bytes per server
online, dealer bytes per server offline, in-process time.

    python benchmarks/exp_tables.py [--reps 15] [--blocks 3]

Three variants of each operation, each in a session of its own, measured in turn case by case:
  bitwise      today's default (comparisons by the bitwise circuit, exp by the polynomial);
  fss          today's few-rounds profile (comparisons by FSS, exp by the polynomial: lut.use_exp_tables off);
  fss+tables   the few-rounds profile now (exp by tables where it fits, lut.TABLE_MAX_VALUES values a call).
Times as in benchmarks/mpc_ops.py (median of the slower server; "online": each repetition's material
drawn before its clock starts), the variants taking turns in blocks of repetitions (measure_side_by_side). The tournament (max, argmax) is measured on its own too, so that the rounds
of softmax and confident_argmax besides it can be read off ("rounds_besides_tournament"): the tournament
is being rebuilt elsewhere. As benchmarks/fss.py, the time across a network is modelled as online time
+ rounds x RTT (1 ms, 40 ms). The last line is one JSON object, kept in benchmarks/results/exp_tables.json.
"""
from __future__ import annotations

import argparse
import os
from functools import partial

import numpy as np

from mpc_ops import softmax_np, time_mpc, time_numpy
from publish import publish

from ppfr.models.reference import confidence_thresholds, label_and_band, softmax_rows
from ppfr.mpc import functions as F, lut, protocols
from ppfr.mpc.session import open_session

THRESHOLDS = confidence_thresholds(0.5)
RTTS_MS = (1.0, 40.0)  # as benchmarks/fss.py: online time + rounds x RTT, across a network
VARIANTS = {"bitwise": ("bitwise", True), "fss": ("fss", False), "fss+tables": ("fss", True)}


def exp_nonpositive(x):
    return F.exp(x, upper=0.0, frac=23)


def max_value(x):
    return F.max_along(x, axis=-1, bound=F.SOFTMAX_BOUND)  # the tournament softmax runs


def argmax_index(x):
    return F.argmax(x, axis=-1, bound=F.SOFTMAX_BOUND)[1]  # the tournament confident_argmax runs


def label(x):
    return F.confident_argmax(x, THRESHOLDS)[0]


def label_np(x):
    return label_and_band(softmax_rows(x), THRESHOLDS)[0]


def cases(rng):
    d1, d12, d64 = (-rng.uniform(0, 64, (rows, 158)) for rows in (1, 12, 64))
    z1, z64 = rng.uniform(-30, 30, (1, 158)), rng.uniform(-30, 30, (64, 158))
    return [
        ("exp 1x158", exp_nonpositive, np.exp, (d1,), None),
        ("exp 12x158", exp_nonpositive, np.exp, (d12,), None),
        ("exp 64x158", exp_nonpositive, np.exp, (d64,), None),
        ("max 1x158", max_value, lambda x: x.max(axis=-1), (z1,), None),
        ("argmax 1x158", argmax_index, lambda x: x.argmax(axis=-1), (z1,), None),
        ("softmax 1x158", F.softmax, softmax_np, (z1,), "max 1x158"),
        ("softmax 64x158", F.softmax, softmax_np, (z64,), None),
        ("confident_argmax 1x158", label, label_np, (z1 * 0.3,), "argmax 1x158"),
    ]


def measure_side_by_side(sessions, case, program, inputs, reps, blocks) -> dict:
    """Each variant timed in `blocks` blocks of reps // blocks repetitions, the variants taking turns block
    by block (so that the machine's load falls on all alike): medians over the blocks' medians. Rounds and
    bytes: of the blocks' last (not online) repetition with the fewest rounds (a rare redone truncation adds rounds:
    these are the planned ones)."""
    times = {name: ([], []) for name in sessions}
    stats: dict = {}
    names = list(sessions)
    for block in range(blocks):
        for name in names[block % len(names):] + names[:block % len(names)]:
            mpc_s, spent = time_mpc(sessions[name], case, program, inputs, max(1, reps // blocks))
            online_s, _ = time_mpc(sessions[name], case, program, inputs, max(1, reps // blocks), online=True)
            times[name][0].append(mpc_s)
            times[name][1].append(online_s)
            # (the online runs' counts miss the material, which arrived before their clock started)
            stats[name] = min([spent] + ([stats[name]] if name in stats else []), key=lambda s: s.rounds)
    return {name: {"mpc_ms": round(float(np.median(times[name][0])) * 1e3, 3),
                   "online_ms": round(float(np.median(times[name][1])) * 1e3, 3),
                   "rounds": stats[name].rounds, "bytes_per_server": stats[name].bytes_sent,
                   "offline_bytes_per_server": stats[name].offline_bytes} for name in names}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--blocks", type=int, default=3, help="turns the variants take, each of reps // blocks")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sessions = {}
    for name, (method, tables) in VARIANTS.items():
        sessions[name] = open_session("threads", comparisons=method)
        sessions[name].run(lut.use_exp_tables, tables).result()
    results: dict = {}
    try:
        for case, program, reference, inputs, tournament in cases(rng):
            results[case] = measure_side_by_side(sessions, case, program, inputs, args.reps, args.blocks)
            numpy_ms = time_numpy(reference, inputs, 50) * 1e3
            for name, r in results[case].items():
                r["numpy_ms"] = round(numpy_ms, 4)
                r.update({f"modelled_ms_at_rtt_{rtt:g}ms": round(r["online_ms"] + r["rounds"] * rtt, 3) for rtt in RTTS_MS})
                if tournament:
                    r["rounds_besides_tournament"] = r["rounds"] - results[tournament][name]["rounds"]
                print(f"{case:24s} {name:10s} {r['rounds']:3d} rounds {r['bytes_per_server'] / 1e3:8.1f} kB online "
                      f"{r['offline_bytes_per_server'] / 1e3:9.1f} kB offline  mpc {r['mpc_ms']:7.2f} ms  "
                      f"online {r['online_ms']:7.2f} ms", flush=True)
    finally:
        for session in sessions.values():
            session.close()
    publish({"benchmark": "exp_tables", "reps": args.reps, "blocks": args.blocks, "parties": "threads",
             "table_max_values": lut.TABLE_MAX_VALUES, "thresholds": list(THRESHOLDS), "ops": results,
             "load_before_end": [round(v, 2) for v in os.getloadavg()]})


if __name__ == "__main__":
    main()
