"""One training run end to end: share, train on shares, classify the train and test rows on shares, save
the halves, and (for comparison) train the plaintext reference the same way. Used by `ppfr train-mpc`."""
from __future__ import annotations

import time

import numpy as np

from ppfr.config import fixed_point, mpc_parties
from ppfr.mpc import FixedPoint
from ppfr.mpc.session import open_session

from .data import Preprocessing, Split
from .reference import TrainConfig, train_plaintext
from .service import predict_mpc, train_mpc
from .store import model_paths, prepare_output, save_model


def _accuracy(p: np.ndarray, labels: np.ndarray):
    return float(np.mean(p.argmax(axis=1) == labels)) if len(labels) else None


class _Progress:
    """A tqdm bar over all batches, labelled with the epoch (batch numbers are public)."""

    def __init__(self, total: int, epochs: int, desc: str, enabled, hook=None):
        self.bar = None
        self.epochs = epochs
        self.desc = desc
        self.hook = hook      # hook(desc, epoch, batch, batches) after each batch, e.g. a web page's progress
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False, file=None)

    def __call__(self, epoch, batch, batches):
        if self.hook is not None:
            self.hook(self.desc, epoch, batch, batches)
        if self.bar is not None:
            if batch == 0:
                self.bar.set_description(f"{self.desc}, epoch {epoch + 1}/{self.epochs}")
            self.bar.set_postfix_str(f"batch {batch + 1}/{batches}", refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_training(split: Split, config: TrainConfig, prep: Preprocessing, output, *, plaintext: bool = True,
                 report_loss: bool = False, progress: bool = True, fixed: FixedPoint | None = None,
                 parties: str | None = None, on_batch=None) -> dict:
    """Train on shares (and the plaintext reference), save the halves to `output`; the summary. `progress`
    shows tqdm bars; `on_batch(desc, epoch, batch, batches)` is called after every batch of either run."""
    classes = len(split.class_names)
    parts = [(prep.apply(c.embeddings), c.labels) for c in split.train if len(c.labels)]
    x_train, y_train = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    x_test, y_test = split.test_arrays(prep)
    batches = -(-len(y_train) // config.batch_size) * config.epochs
    summary = {"classes": classes, "train_samples": int(len(y_train)), "test_samples": int(len(y_test)),
               "clients": len(split.train), "config": config.as_dict(), "preprocessing": prep.as_dict(),
               "embedder": split.embedder}

    parties = parties or mpc_parties()
    summary["parties"] = parties
    with open_session(parties, fixed=fixed or fixed_point()) as session:
        target = prepare_output(session, output)   # refuse a bad output folder before training, not after
        bar = _Progress(batches, config.epochs, "MPC training", progress, on_batch)
        try:
            trained = train_mpc(session, parts, classes, config, progress=bar, report_loss=report_loss)
        finally:
            bar.close()
        t = time.perf_counter()
        # the data owner scores the model on its own rows: the probabilities, not the recognition default
        p_train = predict_mpc(session, x_train, reveal="probabilities").probabilities
        p_test = predict_mpc(session, x_test, reveal="probabilities").probabilities if len(y_test) else np.zeros((0, classes))
        predict_seconds = time.perf_counter() - t
        record = save_model(session, output, split.class_names, prep.as_dict(), config.as_dict(),
                            embedder=split.embedder, target=target)
    summary["mpc"] = {
        "train_accuracy": _accuracy(p_train, y_train), "test_accuracy": _accuracy(p_test, y_test),
        "train_seconds": trained.seconds, "seconds_per_epoch": trained.seconds / config.epochs,
        "predict_seconds": predict_seconds, "phase_seconds": trained.phase_seconds,
        "stats": trained.stats, "batches": trained.batches, "losses": trained.losses,
    }
    summary["model_id"] = record["id"]
    summary["paths"] = {k: str(v) for k, v in model_paths(output).items()}

    if plaintext:
        bar = _Progress(batches, config.epochs, "plaintext training", progress, on_batch)
        t = time.perf_counter()
        try:
            model = train_plaintext(x_train, y_train, classes, config, progress=bar)
        finally:
            bar.close()
        seconds = time.perf_counter() - t
        q_test = model.predict_proba(x_test)
        summary["plaintext"] = {
            "train_accuracy": _accuracy(model.predict_proba(x_train), y_train),
            "test_accuracy": _accuracy(q_test, y_test),
            "train_seconds": seconds, "seconds_per_epoch": seconds / config.epochs, "losses": model.losses,
            "max_logit_span": model.logit_span,
        }
        summary["prediction_agreement"] = (float(np.mean(q_test.argmax(1) == p_test.argmax(1)))
                                           if len(y_test) else None)
    return summary
