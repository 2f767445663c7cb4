"""Issue #15's tasks across a WAN: rounds, bytes and time per task, for each comparison method side by side,
with the parties in one process and every message delayed by half a round trip (LocalSession(latency=...);
netem is not available here, and the services' TCP DelayProxy is benchmarks/services.py's).

    python benchmarks/wan.py [--rtt 0,0.001,0.04] [--methods bitwise,fss,...] [--repeats 3] [--entries 13233]

Tasks (each as the application runs it):
  one face         predict_mpc with the default reveal (label and confidence band under MPC), 158 classes
  softmax row      functions.softmax of one row of 158 logits on shares (the probabilities reveal)
  softmax 64x158   functions.softmax of a batch of 64 rows
  identify         Gallery.identify nearest (argmin under MPC) over --entries enrolled vectors
  training batch   one SGD step of train_mpc (batch 64, 158 classes, 128-d): an epoch of five batches less
                   an epoch of one, over four (the epoch's range check cancels), time per batch likewise
Methods: bitwise (today's default), "bitwise+link-tables" (bitwise, with comparisons by tables up to the
size the measured round pays for, protocols.table_words_for, as mpc.comparisons: auto sets where it picks
bitwise), fss (the few-rounds profile: FSS comparisons, exp by tables for calls of up to 2,048 values)
and "fss+batch-tables" (mpc.exp_table_values: 16384, so that a training batch's softmax uses the tables
too).
Rounds and bytes are exact and do not depend on the RTT; they are per server, online (to the other server
and the client) and offline (from the dealer). Times are medians over --repeats runs, wall clock at the
client, all parties on this machine's cores. Data are synthetic (rounds and bytes do not depend on them;
accuracy is other benchmarks' business: train_mpc.py, identify_mpc.py, recognize.py). The last line is
one JSON object, kept in benchmarks/results/wan.json.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from publish import publish

from ppfr.gallery.service import Gallery
from ppfr.models import protocols as model_protocols
from ppfr.models.reference import TrainConfig
from ppfr.models.service import predict_mpc, train_mpc
from ppfr.mpc import functions as F
from ppfr.mpc import lut, protocols
from ppfr.mpc.protocols import use_comparisons
from ppfr.mpc.session import LocalSession

CLASSES, DIM, BATCH = 158, 128, 64


def hold_model(srv):
    """Both servers keep the shared weights they receive as the classifier predict_program uses."""
    w, b = srv.receive(), srv.receive()
    srv.state[model_protocols.STATE_KEY] = {"weight": w, "bias": b, "classes": w.shape[1]}


def softmax_program(srv):
    srv.reveal_to(F.softmax(srv.receive(), axis=-1))


def measure(session, task, repeats: int) -> dict:
    """Run task() once to warm up (plans, pools, a gallery loaded), then `repeats` times: median seconds,
    and rounds and bytes per server of the last run (the same every run)."""
    task()
    seconds = []
    for _ in range(repeats):
        before = session.stats()
        start = time.perf_counter()
        task()
        seconds.append(time.perf_counter() - start)
        after = session.stats()
    cost = {s: after[s] - before[s] for s in ("server0", "server1")}
    return {"seconds": statistics.median(seconds),
            "rounds": max(c.rounds for c in cost.values()),
            "online_bytes": max(c.bytes_sent for c in cost.values()),
            "offline_bytes": max(c.offline_bytes for c in cost.values())}


def model_and_face(session, rng) -> np.ndarray:
    """Give the servers a random classifier of DIM x CLASSES shared weights; return a unit face to ask it."""
    w, b = rng.normal(size=(DIM, CLASSES)) * 0.3, rng.normal(size=CLASSES) * 0.1
    job = session.run(hold_model)
    session.client.share(w)
    session.client.share(b)
    job.result()
    face = rng.normal(size=(1, DIM))
    return face / np.linalg.norm(face)


def one_face_and_softmax(session, rng, repeats: int) -> dict:
    face = model_and_face(session, rng)
    out = {"one face": measure(session, lambda: predict_mpc(session, face), repeats)}
    for name, rows in (("softmax row", 1), ("softmax 64x158", BATCH)):
        logits = rng.uniform(-30, 30, (rows, CLASSES))

        def softmax(logits=logits):
            job = session.run(softmax_program)
            session.client.share(logits)
            p = session.client.reconstruct()
            job.result()
            return p
        out[name] = measure(session, softmax, repeats)
    return out


def identify(session, rng, entries: int, repeats: int) -> dict:
    vectors = rng.normal(size=(entries, DIM))
    vectors *= 0.6 / np.linalg.norm(vectors, axis=1, keepdims=True)
    probe = vectors[:1] + rng.normal(size=(1, DIM)) * 0.01
    with tempfile.TemporaryDirectory() as root:
        gallery = Gallery(root, session=session)
        gallery.enroll_many([f"person{i}" for i in range(entries)], vectors)
        result = measure(session, lambda: gallery.identify(probe, reveal="nearest"), repeats)
    return result


def training_batch(session, rng, repeats: int, batches: int = 5) -> dict:
    """An epoch of `batches` batches less an epoch of one, over batches - 1: one SGD step, without the
    per-epoch range check and the shares of the data (rounds and bytes: a mean over the steps, which
    differ only where a truncation was redone)."""
    def epoch(count: int):
        x = rng.normal(size=(count * BATCH, DIM))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        labels = rng.integers(0, CLASSES, count * BATCH)
        config = TrainConfig(epochs=1, batch_size=BATCH)
        return lambda: train_mpc(session, [(x, labels)], CLASSES, config)
    one, many = measure(session, epoch(1), repeats), measure(session, epoch(batches), repeats)
    return {key: (many[key] - one[key]) / (batches - 1) for key in one}


# name -> (comparisons, how many values a call may look up by exp's tables: lut.use_exp_tables, whether
# bitwise comparisons run by tables up to the size the link's round pays for: table_words_for, as "auto" sets)
METHODS = {"bitwise": ("bitwise", lut.TABLE_MAX_VALUES, False),
           "bitwise+link-tables": ("bitwise", lut.TABLE_MAX_VALUES, True),
           "fss": ("fss", lut.TABLE_MAX_VALUES, False), "fss+batch-tables": ("fss", 1 << 14, False)}


def run_method(method: str, rtt: float, args, rng) -> dict:
    comparisons, table_values, link_tables = METHODS[method]
    with LocalSession(timeout=600, latency=rtt) as session:
        session.run(use_comparisons, comparisons).result()
        session.run(lut.use_exp_tables, True, table_values).result()
        if link_tables:
            words = protocols.table_words_for(max(session.run(protocols.round_seconds).result()))
            session.run(protocols.use_comparison_tables, words).result()
        tasks = one_face_and_softmax(session, rng, args.repeats)
        tasks[f"identify nearest {args.entries}"] = identify(session, rng, args.entries, args.repeats)
        tasks["training batch"] = training_batch(session, rng, args.repeats)
    return tasks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtt", default="0,0.001,0.04", help="round-trip times in seconds, comma-separated")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of: {', '.join(METHODS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--entries", type=int, default=13_233)
    args = parser.parse_args()
    rtts = [float(v) for v in args.rtt.split(",")]
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    rng = np.random.default_rng(0)
    runs = []
    for rtt in rtts:
        for method in methods:  # methods side by side at each RTT, in one run
            tasks = run_method(method, rtt, args, rng)
            for task, figures in tasks.items():
                runs.append({"task": task, "comparisons": method, "rtt_ms": rtt * 1e3, **figures})
                print(f"rtt {rtt * 1e3:5.1f} ms  {method:24s} {task:26s} {figures['rounds']:7.1f} rounds  "
                      f"{figures['online_bytes'] / 1e3:9.1f} kB online  {figures['offline_bytes'] / 1e6:8.2f} MB "
                      f"offline  {figures['seconds'] * 1e3:9.1f} ms", flush=True)
    publish({"benchmark": "wan", "repeats": args.repeats, "entries": args.entries, "runs": runs})


if __name__ == "__main__":
    main()
