"""The in-process speed targets of the round-optimal issue (#15): one face and the softmax, old code against new.

    python benchmarks/inprocess.py [--baseline ../base] [--repeats 3] [--faces 40]

All parties in one process (LocalSession: the servers and the dealer are threads sharing one interpreter
lock, on this machine's two cores), default comparisons (bitwise). Measures:
  - one face: predict_mpc with the default reveal (label and band under MPC) on a 128 x 158 model, the
    client's encoding and reconstruction included; back to back, and with 0.1 s between faces (a camera
    stream's pace, where the dealer draws the next face's material between faces): median ms;
  - softmax 64x158 and of one row of 158, on the servers' clock as in mpc_ops.py: with the dealer
    drawing meanwhile ("mpc") and with the material there before the clock starts ("online");
  - rounds and bytes per server of each, and for the faces back to back each party thread's CPU ms a face
    (less noisy than wall time on a shared VM; with one interpreter lock, the wall time is about their sum).
Training's target (s/epoch) is train_mpc.py's (`--baseline` there too).

With --baseline (a checkout of older code, e.g. `git worktree add ../base <commit>`), every measurement
runs in fresh processes, the baseline's code and this tree's alternately (PYTHONPATH), `repeats` times:
medians of the runs' medians, and new / old. The last line is one JSON object, kept in
benchmarks/results/inprocess.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from publish import alternately, commit_of, publish

TARGETS_MS = {"one face": 5.0, "softmax 64x158": 10.0}
BETWEEN_FACES = 0.1


def thread_cpu_seconds() -> dict:
    """CPU seconds so far of each of this process's party threads (ppfr-server0, ppfr-server1, ppfr-dealer),
    from /proc (Linux; {} elsewhere). Less noisy on a shared VM than wall time, and it says whose work a
    face is: in one process the threads share one interpreter lock, so the wall time is about their sum."""
    out = {}
    for thread in threading.enumerate():
        if not thread.name.startswith("ppfr-") or thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[thread.name[len("ppfr-"):]] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def measure_faces(session, faces: int) -> dict:
    """One face at a time through predict_mpc: median ms back to back and with BETWEEN_FACES between them,
    and each party thread's CPU ms a face (back to back)."""
    from wan import model_and_face

    from ppfr.models.service import predict_mpc

    face = model_and_face(session, np.random.default_rng(0))
    for _ in range(3):  # plans recorded, pools drawn, the next face's material asked for
        predict_mpc(session, face)
    out = {}
    for name, pause in (("back to back", 0.0), (f"{BETWEEN_FACES:g} s between faces", BETWEEN_FACES)):
        seconds, cpu_before = [], thread_cpu_seconds()
        for _ in range(faces):
            time.sleep(pause)
            before = session.stats()["server0"]
            start = time.perf_counter()
            predict_mpc(session, face)
            seconds.append(time.perf_counter() - start)
            spent = session.stats()["server0"] - before
        out[name] = {"median_ms": 1e3 * statistics.median(seconds), "rounds": spent.rounds,
                     "online_bytes": spent.bytes_sent, "offline_bytes": spent.offline_bytes}
        if not pause:
            cpu = thread_cpu_seconds()
            out[name].update({f"{party}_cpu_ms": 1e3 * (cpu[party] - cpu_before[party]) / faces
                              for party in cpu if party in cpu_before})
    return out


def measure_softmax(session, reps: int) -> dict:
    from mpc_ops import time_mpc

    from ppfr.mpc import functions as F

    rng = np.random.default_rng(1)
    out = {}
    for rows in (64, 1):
        logits = rng.uniform(-30, 30, (rows, 158))
        name = f"softmax {rows}x158"
        mpc_s, stats = time_mpc(session, name, F.softmax, (logits,), reps)
        online_s, _ = time_mpc(session, name, F.softmax, (logits,), reps, online=True)
        out[name] = {"mpc_ms": 1e3 * mpc_s, "online_ms": 1e3 * online_s, "rounds": stats.rounds,
                     "online_bytes": stats.bytes_sent, "offline_bytes": stats.offline_bytes}
    return out


def measure_run(args) -> dict:
    """Every figure, for whatever ppfr is importable (this tree's, or the baseline's under PYTHONPATH)."""
    import ppfr
    from ppfr.mpc.session import LocalSession

    load = os.getloadavg()[0]
    with LocalSession() as session:
        figures = {"one face": measure_faces(session, args.faces)}
    with LocalSession() as session:
        figures.update(measure_softmax(session, args.reps))
    return {"code": str(Path(ppfr.__file__).parent.parent), "figures": figures,
            "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}


def flatten(figures: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key} / "))
        else:
            out[prefix + key] = value
    return out


def compare_with_baseline(args) -> dict:
    here = Path(__file__).resolve()
    trees = {"old": Path(args.baseline).resolve(), "new": here.parent.parent}
    command = [sys.executable, str(here), "--measure-run", "--faces", str(args.faces), "--reps", str(args.reps)]
    runs = alternately(trees, command, args.repeats, timeout=1800)
    medians = {name: {k: statistics.median(flatten(run["figures"])[k] for run in rs)
                      for k in flatten(rs[0]["figures"])} for name, rs in runs.items()}
    return {"baseline": str(trees["old"]), "baseline_commit": commit_of(trees["old"]), "commit": commit_of(trees["new"]),
            "repeats": args.repeats, **medians,
            "new_over_old": {k: medians["new"][k] / medians["old"][k] for k in medians["new"]
                             if k.endswith("_ms") and medians["old"].get(k)}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=40, help="faces timed per pace")
    parser.add_argument("--reps", type=int, default=15, help="softmax repetitions timed per phase")
    parser.add_argument("--baseline", help="a checkout of older code to compare with, run alternately (see above)")
    parser.add_argument("--repeats", type=int, default=3, help="with --baseline: runs of each tree")
    parser.add_argument("--measure-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_run:
        print(json.dumps(measure_run(args)))
        return
    result = {"benchmark": "inprocess", "targets_ms": TARGETS_MS, "comparisons": "bitwise", **measure_run(args)}
    if args.baseline:
        result["ab"] = compare_with_baseline(args)
    publish(result)


if __name__ == "__main__":
    main()
