"""Softmax classifier training on shares vs plaintext, on LFW people with >= 10 images.

    python benchmarks/train_mpc.py [--epochs N] [--batch-size 64] [--seed 0] [--parties threads|processes]
    python benchmarks/train_mpc.py --baseline ../train-base [--repeats 3] [--comparisons both]

With --baseline (a checkout of older code, e.g. `git worktree add ../train-base 5cf5613`), the MPC run is
repeated in fresh processes, the baseline's code and this tree's alternately (PYTHONPATH), for each
comparison method: medians of seconds per epoch (wall and CPU of all parties), rounds per batch and
epoch, bytes per server online and from the dealer, test accuracy; side by side with the ratios, in
the JSON's "ab" (the single run above it is this tree's, as without --baseline).

Data: the shared dlib embedding cache (benchmarks/CACHE.md), people with at least 10 images
(158 people, 4,324 images), stratified 80/20 split, client-side preprocessing (unit norm x 4).
Measures, with the default training configuration:
  - MPC: seconds per epoch, bytes and rounds per epoch per server, where a batch's time goes
    (forward matmul, softmax, gradient matmul, update: server 0's wall time) and whose CPU it is
    (each server, the client, the dealer and the rest: with threads, whose sum is about the wall time,
    as the parties share one interpreter lock), train/test accuracy from prediction on shares;
  - plaintext reference (numpy float64, same algorithm, init and batch order): seconds per epoch,
    train/test accuracy; and the same loop in torch for scale;
  - prediction on shares vs the plaintext softmax of the reconstructed weights, every test sample.
Reference point: CrypTen (two parties on this machine) trains this classifier at batch 64 in about
41 s per epoch. The last line of output is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# The matrices are small (64 x 128 x 158): BLAS threads only add overhead there, and under load they
# collapse (15 ms instead of 0.1 ms a product). numpy is imported here before ppfr, which sets the same
# for the engine's float limbs (ppfr/__init__.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from publish import alternately, commit_of, publish  # noqa: E402

from ppfr.embed.lfw import load_lfw_embeddings  # noqa: E402
from ppfr.models.data import ClientData, Preprocessing, Split, stratified_split  # noqa: E402
from ppfr.models.reference import TrainConfig, softmax_rows, train_plaintext  # noqa: E402
from ppfr.models.service import predict_mpc, reveal_model, train_mpc  # noqa: E402
from ppfr.mpc.session import SESSIONS, open_session  # noqa: E402

CRYPTEN_SECONDS_PER_EPOCH = 41.0


def torch_seconds_per_epoch(x, labels, classes, config) -> float | None:
    """The same loop in torch (float32, one thread), timed over the configured epochs."""
    try:
        import torch
    except ImportError:
        return None
    from ppfr.models.reference import batch_schedule, initial_weights

    torch.set_num_threads(1)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(labels)
    w0, b0 = initial_weights(x.shape[1], classes, config)
    w = torch.tensor(w0, dtype=torch.float32, requires_grad=True)
    b = torch.tensor(b0, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=config.lr, momentum=config.momentum)
    t = time.perf_counter()
    for batches in batch_schedule(len(x), config):
        for rows in batches:
            idx = torch.from_numpy(rows)
            loss = torch.nn.functional.cross_entropy(xt[idx] @ w + b, yt[idx]) + 0.5 * config.l2 * (w * w).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (time.perf_counter() - t) / config.epochs


def lfw_split(args):
    """The benchmark's data: (x_train, y_train, x_test, y_test, classes, config)."""
    data = load_lfw_embeddings(min_images=args.min_images, compute=False, progress=False)
    config = TrainConfig.from_config(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    prep = Preprocessing()
    labels = np.asarray(data.labels)
    test = stratified_split(labels, 0.2, args.seed)
    emb = np.asarray(data.embeddings, dtype=np.float64)
    split = Split(list(data.class_names), [ClientData("lfw", emb[~test], labels[~test])],
                  [ClientData("lfw", emb[test], labels[test])])
    x_train, y_train = split.train_arrays(prep)
    x_test, y_test = split.test_arrays(prep)
    return x_train, y_train, x_test, y_test, len(split.class_names), config


def cpu_split(run, cpu: float, client_cpu: float) -> dict:
    """CPU milliseconds a batch by party, with all parties threads of this process: each server's thread,
    the client's (this thread), and the rest of the process's CPU (the dealer's thread, mostly). The
    parties share one interpreter lock, so the wall time of a batch is about their sum."""
    if len(getattr(run, "server_cpu_seconds", ())) != 2:   # an older tree's training, which does not say
        return {}
    split = {f"server{i}": t for i, t in enumerate(run.server_cpu_seconds)}
    split["client"] = client_cpu
    split["dealer_and_rest"] = cpu - sum(split.values())
    return {k: 1e3 * v / run.batches for k, v in split.items()}


def measure_run(args) -> dict:
    """One MPC training run of whatever ppfr is importable (this tree's or, under --baseline, the older
    one's: only APIs that both have), with args.comparisons; its figures per epoch and per batch."""
    import ppfr
    from ppfr.mpc.protocols import use_comparisons

    x_train, y_train, x_test, y_test, classes, config = lfw_split(args)
    load = os.getloadavg()[0]
    with open_session("threads") as session:
        session.run(use_comparisons, args.comparisons).result()
        cpu, client_cpu = time.process_time(), time.thread_time()
        run = train_mpc(session, [(x_train, y_train)], classes, config)
        cpu, client_cpu = time.process_time() - cpu, time.thread_time() - client_cpu
        p_test = predict_mpc(session, x_test, reveal="probabilities").probabilities
    epochs, server = config.epochs, run.stats["server0"]
    return {"code": str(Path(ppfr.__file__).parent.parent), "comparisons": args.comparisons,
            "seconds_per_epoch": run.seconds / epochs, "cpu_seconds_per_epoch": cpu / epochs,
            "cpu_ms_per_batch": cpu_split(run, cpu, client_cpu),
            "rounds_per_epoch": server["rounds"] / epochs, "rounds_per_batch": server["rounds"] / run.batches,
            "bytes_online_per_epoch": server["bytes_sent"] / epochs,
            "bytes_offline_per_epoch": server["offline_bytes"] / epochs,
            "ms_per_batch": {k: 1e3 * v / run.batches for k, v in run.phase_seconds.items()},
            "test_accuracy": float(np.mean(p_test.argmax(1) == y_test)), "load_average": [load, os.getloadavg()[0]]}


AB_FIGURES = ("seconds_per_epoch", "cpu_seconds_per_epoch", "rounds_per_batch", "rounds_per_epoch",
              "bytes_online_per_epoch", "bytes_offline_per_epoch", "test_accuracy")


def compare_with_baseline(args) -> dict:
    """Old (args.baseline) and new (this tree) alternately in fresh processes, `repeats` times for each
    comparison method: medians of AB_FIGURES, and new / old."""
    here = Path(__file__).resolve().parent
    trees = {"old": Path(args.baseline).resolve(), "new": here.parent}
    methods = ("bitwise", "fss") if args.comparisons == "both" else (args.comparisons,)
    out = {"baseline": str(trees["old"]), "baseline_commit": commit_of(trees["old"]), "commit": commit_of(trees["new"]),
           "repeats": args.repeats}
    for method in methods:
        command = [sys.executable, str(Path(__file__).resolve()), "--measure-run", "--comparisons", method,
                   "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                   "--min-images", str(args.min_images)] + (["--epochs", str(args.epochs)] if args.epochs else [])
        runs = alternately(trees, command, args.repeats, label=f"{method} ")
        medians = {name: {k: float(np.median([run[k] for run in rs])) for k in AB_FIGURES} for name, rs in runs.items()}
        out[method] = {**medians, "new_over_old": {k: medians["new"][k] / medians["old"][k] for k in AB_FIGURES},
                       "runs": runs}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="default: the train config's (10)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-images", type=int, default=10)
    ap.add_argument("--parties", choices=sorted(SESSIONS), default="threads",
                    help="servers and dealer in threads of this process, or in processes of their own")
    ap.add_argument("--baseline", help="a checkout of older code to compare with, run alternately (see above)")
    ap.add_argument("--repeats", type=int, default=3, help="with --baseline: runs of each code per method")
    ap.add_argument("--comparisons", choices=("bitwise", "fss", "both"), default="both",
                    help="with --baseline: the comparison methods to compare under")
    ap.add_argument("--measure-run", action="store_true", help=argparse.SUPPRESS)  # one run, for --baseline
    args = ap.parse_args(argv)
    if args.measure_run:
        print(json.dumps(measure_run(args)))
        return {}

    x_train, y_train, x_test, y_test, classes, config = lfw_split(args)
    print(f"LFW >= {args.min_images}: {classes} classes ({len(y_train)} train, {len(y_test)} test); {config}",
          file=sys.stderr)

    load_before = os.getloadavg()[0]
    with open_session(args.parties) as session:
        cpu, client_cpu = time.process_time(), time.thread_time()
        run = train_mpc(session, [(x_train, y_train)], classes, config)
        cpu, client_cpu = time.process_time() - cpu, time.thread_time() - client_cpu
        t = time.perf_counter()
        p_test = predict_mpc(session, x_test, reveal="probabilities").probabilities
        predict_seconds = time.perf_counter() - t
        p_train = predict_mpc(session, x_train, reveal="probabilities").probabilities
        w, b = reveal_model(session)  # for the comparison only
    t = time.perf_counter()
    ref = train_plaintext(x_train, y_train, classes, config)
    plain_seconds = time.perf_counter() - t

    epochs, batches = config.epochs, run.batches
    mpc_epoch = run.seconds / epochs
    plain_epoch = plain_seconds / epochs
    mpc_test = float(np.mean(p_test.argmax(1) == y_test))
    plain_test = float(np.mean(ref.predict_proba(x_test).argmax(1) == y_test))
    per_server = {s: {k: v / epochs for k, v in st.items()} for s, st in run.stats.items()}
    result = {
        "benchmark": "train_mpc", "parties": args.parties,
        "dataset": f"lfw_min{args.min_images}", "classes": classes, "train_samples": int(len(y_train)),
        "test_samples": int(len(y_test)), "config": config.as_dict(),
        "mpc_seconds_per_epoch": mpc_epoch,
        # CPU seconds of all parties' threads (both servers, dealer, client) per epoch: on a busy machine
        # wall time is inflated by other processes, CPU time much less; on 2 idle cores wall >= CPU / 2
        "mpc_cpu_seconds_per_epoch": cpu / epochs,
        "plaintext_seconds_per_epoch": plain_epoch,
        "torch_seconds_per_epoch": torch_seconds_per_epoch(x_train, y_train, classes, config),
        "mpc_over_plaintext": mpc_epoch / plain_epoch,
        "speedup_vs_crypten": CRYPTEN_SECONDS_PER_EPOCH / mpc_epoch,
        "ms_per_batch": {k: 1e3 * v / batches for k, v in run.phase_seconds.items()},
        # threads only: the processes' CPU is not this process's
        "cpu_ms_per_batch": cpu_split(run, cpu, client_cpu) if args.parties == "threads" else {},
        "batches_per_epoch": batches // epochs,
        "per_epoch_per_server": per_server,
        "mpc_train_accuracy": float(np.mean(p_train.argmax(1) == y_train)),
        "mpc_test_accuracy": mpc_test,
        "plaintext_train_accuracy": float(np.mean(ref.predict_proba(x_train).argmax(1) == y_train)),
        "plaintext_test_accuracy": plain_test,
        "test_accuracy_gap_pp": 100 * (plain_test - mpc_test),
        "prediction_max_abs_error": float(np.abs(p_test - softmax_rows(x_test @ w + b)).max()),
        "prediction_seconds_test_set": predict_seconds,
        "weights_max_abs_diff_vs_plaintext": float(np.abs(w - ref.weight).max()),
        "plaintext_max_logit_span": ref.logit_span,
        # how far the model is from what training's softmax could take without its clamp (logit rows
        # spanning < 64): the largest |W_i - W_j|, against the 14 that x_norm 4 |W_i - W_j| + 8 < 64 allows
        "plaintext_max_class_gap": float(np.sqrt(np.max(np.sum((ref.weight[:, :, None] - ref.weight[:, None, :]) ** 2,
                                                               axis=0)))),
        "plaintext_losses": ref.losses,
        # other work on the machine inflates every timing: the 1-minute load before and after
        "load_average": [load_before, os.getloadavg()[0]],
    }
    if args.baseline:
        result["ab"] = compare_with_baseline(args)
    for k, v in result.items():
        if k not in ("config", "plaintext_losses"):
            print(f"{k:36s} {v}", file=sys.stderr)
    publish(result, name="train_mpc" if args.parties == "threads" else f"train_mpc_{args.parties}")
    return result


if __name__ == "__main__":
    main()
