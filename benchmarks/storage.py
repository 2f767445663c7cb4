"""What stored data costs: enrolment, removal and identification against a large gallery, and writing
a trained model, each as a command does it (a fresh session that loads the stored halves first).

    python benchmarks/storage.py [--rows 13233] [--repeat 5] [--compare main]

--compare REF measures, in this one run, the ppfr of git revision REF (extracted to a temporary folder,
or a folder holding a ppfr tree) and this checkout, alternately (before, after, before, after), and reports both with the ratio
after / before of each median. Random unit vectors stand in for embeddings (storage does not care what
the shares mean). The last line of output is one JSON object (also kept in benchmarks/results/storage.json).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLASSES, DIM = 158, 128


def _hold_model(srv, classes):
    """Put shares of a model on the servers, as training leaves them."""
    from ppfr.models.protocols import STATE_KEY

    w, b = srv.receive(), srv.receive()
    srv.state[STATE_KEY] = {"weight": w, "bias": b, "classes": classes}


def _median_ms(fn, repeat: int) -> float:
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 2)


def measure(tree: Path, rows: int, repeat: int, work: Path) -> dict:
    """Medians (ms) with the ppfr found in `tree`."""
    sys.path.insert(0, str(tree))
    import numpy as np

    import ppfr
    from ppfr.gallery import Gallery
    from ppfr.models.store import load_model, save_model
    from ppfr.mpc import LocalSession

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(rows, DIM))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    gallery = work / "gallery"
    t = time.perf_counter()
    with Gallery(gallery) as g:
        g.enroll_many([f"p{i // 2}" for i in range(rows)], vecs)
    out = {"ppfr": str(Path(ppfr.__file__).parent), "build_ms": round(1000 * (time.perf_counter() - t), 1)}

    def fresh(action, **options):
        with Gallery(gallery, **options) as g:
            return action(g)

    out["enroll_ms"] = _median_ms(lambda i: fresh(lambda g: g.enroll(f"new{i}", vecs[:2] * 0.9)), repeat)
    out["remove_ms"] = _median_ms(lambda i: fresh(lambda g: g.remove(f"new{i}")), repeat)
    # as `ppfr identify` does it: load, then the first query pays for its pool of masked queries
    out["identify_ms"] = _median_ms(lambda i: fresh(lambda g: g.identify(vecs[i:i + 1], reveal="all")), 3)
    # load and one query with a pool of one (plain Beaver): the part that storage changes weighs more
    out["identify_pool1_ms"] = _median_ms(
        lambda i: fresh(lambda g: g.identify(vecs[i:i + 1], reveal="all")), repeat)
    with Gallery(gallery) as g:          # a long-lived client: the gallery stays loaded between queries
        g.identify(vecs[:1], reveal="all")
        out["identify_loaded_ms"] = _median_ms(lambda i: g.identify(vecs[i:i + 1], reveal="all"), repeat)

    w, b = rng.normal(size=(DIM, CLASSES)) * 0.1, rng.normal(size=CLASSES) * 0.1
    names = [f"class{i}" for i in range(CLASSES)]
    with LocalSession() as session:
        job = session.run(_hold_model, CLASSES)
        session.client.share(w)
        session.client.share(b)
        job.result()
        weights = work / "weights"
        out["train_output_new_ms"] = _median_ms(
            lambda i: save_model(session, work / f"new{i}", names, {"l2_normalize": True, "scale": 4.0}), repeat)
        out["train_output_existing_ms"] = _median_ms(
            lambda i: save_model(session, weights, names, {"l2_normalize": True, "scale": 4.0}), repeat)
    with LocalSession() as session:
        out["model_load_ms"] = _median_ms(lambda i: load_model(session, weights), repeat)
    out["disk_bytes"] = sum(p.stat().st_size for p in gallery.rglob("*") if p.is_file())
    return out


def _run_side(tree: Path, args) -> dict:
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run([sys.executable, __file__, "--measure", str(tree), "--rows", str(args.rows),
                               "--repeat", str(args.repeat), "--work", work], capture_output=True, text=True,
                              timeout=1800)
    if done.returncode:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args) -> dict:
    with tempfile.TemporaryDirectory() as before_tree:
        if Path(args.compare).is_dir():     # a tree prepared by hand (e.g. today's code with older storage)
            before_tree = args.compare
        else:
            archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", args.compare],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", before_tree], input=archive, check=True)
        runs = {"before": [], "after": []}
        for _ in range(2):
            runs["before"].append(_run_side(Path(before_tree), args))
            runs["after"].append(_run_side(HERE.parent, args))
    result = {"benchmark": "storage", "rows": args.rows, "repeat": args.repeat,
              "before_ref": args.before_label or args.compare}
    for side, measured in runs.items():
        result[side] = {k: (statistics.median(m[k] for m in measured) if isinstance(measured[0][k], (int, float))
                            else measured[0][k]) for k in measured[0]}
    result["ratio_after_over_before"] = {k: round(result["after"][k] / result["before"][k], 2)
                                         for k in result["after"] if isinstance(result["after"][k], (int, float))
                                         and result["before"].get(k)}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=13233, help="gallery rows (default: as many as LFW's images)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each measurement (median)")
    parser.add_argument("--compare", metavar="REF", help="also measure git revision REF, alternately")
    parser.add_argument("--before-label", help="what to call the --compare tree in the results")
    parser.add_argument("--measure", metavar="TREE", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.rows, args.repeat, Path(args.work))))
        return
    sys.path.insert(0, str(HERE.parent))
    from publish import publish

    if args.compare:
        publish(compare(args))
    else:
        with tempfile.TemporaryDirectory() as work:
            publish({"benchmark": "storage", "rows": args.rows, "repeat": args.repeat,
                     "after": measure(HERE.parent, args.rows, args.repeat, Path(work))})


if __name__ == "__main__":
    main()
