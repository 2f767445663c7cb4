"""Where the benchmarks' figures live: each run's final JSON object, printed as the last line of stdout and
kept in benchmarks/results/<benchmark>.json (committed; README's figures table is generated from these
files by benchmarks/report.py).

Every record says where it comes from: `"source": "measured"` with the command line, the date, the
machine's cores and its load average (os.getloadavg() at the end of the run: other work on the machine
moves the times), or, for a figure carried over from an earlier write-up, that write-up.
"""
from __future__ import annotations

import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

from ppfr.atomic import atomic_path

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(f, repeats: int) -> float:
    """The median wall time of `repeats` calls of f(), back to back."""
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def provenance() -> dict:
    return {"source": "measured",
            "command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(),
            "load": [round(v, 2) for v in os.getloadavg()]}


def publish(result: dict, name: str | None = None, results_dir: Path = RESULTS) -> Path:
    """Write `result` (with its provenance) to results_dir/NAME.json (NAME: result["benchmark"] unless
    given, e.g. for a variant run with other parties), atomically, and print it as one JSON line: the
    benchmark's last line of output. Returns the file written."""
    record = {**result, **provenance()}
    path = Path(results_dir) / f"{name or record['benchmark']}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return path


def commit_of(tree) -> str:
    """The short commit a checkout is at ("" if it is not a git checkout)."""
    import subprocess

    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def alternately(trees: dict, command: list, repeats: int, label: str = "", timeout: float = 3600) -> dict:
    """Run `command` in fresh processes with each tree's code first on the path (PYTHONPATH), the trees
    taking turns and who goes first alternating, `repeats` times each: {name: [the JSON of each run's
    last line of output]}, each run also printed to stderr. The A/B of code old and new in one run, on a
    machine whose speed drifts."""
    import subprocess

    runs = {name: [] for name in trees}
    for r in range(repeats):
        for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            done = subprocess.run(command, env=dict(os.environ, PYTHONPATH=str(trees[name])), capture_output=True,
                                  text=True, check=True, timeout=timeout)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{label}{name} run {r + 1}: {runs[name][-1]}", file=sys.stderr)
    return runs
