"""Open-set recognition on LFW: how often a stranger is accepted as someone, how often a known face is not.

    python benchmarks/open_set.py [--epochs N] [--seed 0] [--background N] [--model-out DIR]

Known people: the 158 people of LFW with at least 10 images; the classifier is trained on shares (MPC,
default training configuration) on 80 % of each one's images (stratified, seed 0) and saved as two shares
(to benchmarks/out/lfw158/ by default, which benchmarks/recognize.py reuses). Evaluated on shares:
  - held-out images of known people (the other 20 %): accepted as the right person, rejected (top
    probability below the threshold: the false-reject rate), or accepted as someone else (misnamed);
  - every image of every person outside the 158 (people with fewer than 10 images, never seen): accepted
    as anyone (the false-accept rate).
A face is accepted when its top class's probability is at least the threshold (`recognize.threshold`,
0.5 by default); the figures are given at that threshold and over a sweep, for the probabilities
reconstructed from MPC (the probabilities revealed, which the threshold sweep needs; --reveal logits
for the softmax on shares) and for the plaintext model trained the same way.

--background N also trains a class 'unknown' on one image each of N people outside the 158 (then only
the other outside people count as strangers): the approach `ppfr demo` takes with few people.
Embeddings come from the shared cache (benchmarks/CACHE.md). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from publish import publish

from ppfr.config import section
from ppfr.embed.embedders import embedder_name  # noqa: E402
from ppfr.embed.lfw import LFW_SETTINGS, load_lfw_embeddings
from ppfr.models.data import Preprocessing, stratified_split
from ppfr.models.reference import TrainConfig, train_plaintext
from ppfr.models.service import predict_mpc, train_mpc
from ppfr.models.store import load_model, save_model
from ppfr.recognition.recognizer import DEFAULT_THRESHOLD, UNKNOWN, new_session

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "out" / "lfw158"
SWEEP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def lfw_split(seed: int = 0, background: int = 0):
    """(train x, train labels, held-out x, held-out labels, stranger x, class names): raw embeddings."""
    full = load_lfw_embeddings(compute=False, progress=False)
    known = full.select_min_images(10)
    test = stratified_split(known.labels, 0.2, seed)
    names = np.array(full.class_names)[full.labels]
    outside = np.flatnonzero(~np.isin(names, known.class_names))
    x_train, y_train = known.embeddings[~test], known.labels[~test]
    class_names = list(known.class_names)
    strangers = outside
    if background:
        rng = np.random.default_rng([seed, 3])
        people = rng.permutation(np.unique(names[outside]))
        bg_people = people[:background]
        rows = np.flatnonzero(np.isin(names, bg_people))
        _, first = np.unique(names[rows], return_index=True)        # one image of each
        x_train = np.concatenate([x_train, full.embeddings[rows[first]]])
        y_train = np.concatenate([y_train, np.full(len(first), len(class_names))])
        class_names.append(UNKNOWN)
        strangers = outside[~np.isin(names[outside], bg_people)]
    return (x_train, y_train, known.embeddings[test], known.labels[test], full.embeddings[strangers], class_names)


def train_model(out_dir, seed: int = 0, epochs: int | None = None, background: int = 0, log=print):
    """Train the LFW classifier on shares and save it; returns (split, plaintext model, MPC training, prep,
    config)."""
    split = lfw_split(seed, background)
    x_train, y_train, *_, class_names = split
    prep = Preprocessing()
    config = TrainConfig.from_config(epochs=epochs, seed=seed)
    with new_session() as session:
        log(f"training on shares: {len(y_train)} images, {len(class_names)} classes, {config.epochs} epochs ...")
        trained = train_mpc(session, [(prep.apply(x_train), y_train)], len(class_names), config)
        # the record names the embedder, so that `ppfr recognize` refuses vectors of another one
        save_model(session, out_dir, class_names, prep.as_dict(), {**config.as_dict(), "split_seed": seed},
                   embedder=embedder_name(LFW_SETTINGS.embedder))
    plain = train_plaintext(prep.apply(x_train), y_train, len(class_names), config)
    return split, plain, trained, prep, config


def rates(p_known, y_known, p_strangers, names, threshold):
    def accepted(p):
        top = p.argmax(1)
        ok = p.max(1) >= threshold
        if UNKNOWN in names:
            ok &= top != names.index(UNKNOWN)
        return ok, top

    acc_k, top_k = accepted(p_known)
    acc_s, _ = accepted(p_strangers)
    return {"threshold": threshold,
            "false_accept_rate": float(acc_s.mean()),
            "false_reject_rate": float((~acc_k).mean()),
            "misnamed_rate": float((acc_k & (top_k != y_known)).mean()),
            "correct_rate": float((acc_k & (top_k == y_known)).mean())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="default: train.epochs of the config (10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--background", type=int, default=0)
    ap.add_argument("--model-out", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--reveal", choices=("probabilities", "logits"), default="probabilities",
                    help="what the servers reveal (the sweep over thresholds needs probabilities; `ppfr "
                         "recognize`'s default, label, gives the same decisions at its threshold)")
    args = ap.parse_args(argv)
    threshold = float(section("recognize").get("threshold", DEFAULT_THRESHOLD))

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    split, plain, trained, prep, config = train_model(args.model_out, args.seed, args.epochs, args.background, log)
    x_train, y_train, x_known, y_known, x_strangers, names = split
    log(f"trained in {trained.seconds:.1f} s; classifying {len(y_known)} held-out and {len(x_strangers)} "
        f"stranger images on shares ...")
    with new_session() as session:
        load_model(session, args.model_out)
        t = time.perf_counter()
        p_known = predict_mpc(session, prep.apply(x_known), reveal=args.reveal).probabilities
        p_strangers = predict_mpc(session, prep.apply(x_strangers), reveal=args.reveal).probabilities
        predict_seconds = time.perf_counter() - t
    q_known, q_strangers = plain.predict_proba(prep.apply(x_known)), plain.predict_proba(prep.apply(x_strangers))

    result = {
        "benchmark": "open_set", "classes": len(names), "known_people": len(names) - (UNKNOWN in names),
        "train_images": int(len(y_train)), "heldout_images": int(len(y_known)),
        "stranger_images": int(len(x_strangers)), "background": args.background,
        "epochs": config.epochs, "reveal": args.reveal,
        "default_threshold": threshold,
        "mpc": rates(p_known, y_known, p_strangers, names, threshold),
        "plaintext": rates(q_known, y_known, q_strangers, names, threshold),
        "closed_set_accuracy": {"mpc": float((p_known.argmax(1) == y_known).mean()),
                                "plaintext": float((q_known.argmax(1) == y_known).mean())},
        "sweep_mpc": [rates(p_known, y_known, p_strangers, names, th) for th in SWEEP],
        "sweep_plaintext": [rates(q_known, y_known, q_strangers, names, th) for th in SWEEP],
        "max_probability_difference_mpc_vs_plaintext": float(max(np.abs(p_known - q_known).max(),
                                                                   np.abs(p_strangers - q_strangers).max())),
        "train_seconds_mpc": round(trained.seconds, 1), "predict_seconds_mpc": round(predict_seconds, 2),
        "model": str(args.model_out), "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"{'threshold':>10} {'FAR (MPC)':>10} {'FRR (MPC)':>10} {'misnamed':>9} {'FAR (plain)':>12} {'FRR (plain)':>12}")
    for m, p in zip(result["sweep_mpc"], result["sweep_plaintext"]):
        mark = " <- default" if abs(m["threshold"] - threshold) < 1e-9 else ""
        print(f"{m['threshold']:>10.2f} {100 * m['false_accept_rate']:>9.2f}% {100 * m['false_reject_rate']:>9.2f}% "
              f"{100 * m['misnamed_rate']:>8.2f}% {100 * p['false_accept_rate']:>11.2f}% "
              f"{100 * p['false_reject_rate']:>11.2f}%{mark}")
    publish(result)


if __name__ == "__main__":
    main()
