"""The client's side of the softmax classifier: train on shares, predict, and (for tests) reveal the model.

    train_mpc(session, [(x, labels), ...], classes, TrainConfig())   # the model stays with the servers
    predict_mpc(session, x)                                          # labels and confidence bands, at the client only

The client shares its data (each data owner its own rows), the one-hot labels (labels are private too)
and the initial weights, then waits. If asked, the servers reveal each batch's probabilities to the client
only, who computes the loss.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import protocols as P
from .reference import (CONFIDENCE_BANDS, TrainConfig, batch_schedule, check_reveal, confidence_thresholds,
                        cross_entropy, initial_weights, label_and_band, one_hot, softmax_rows)


@dataclass
class MPCTraining:
    seconds: float
    phase_seconds: dict          # server 0's wall time in each phase of a batch, summed over training
                                 # ("forward" includes sending the step's dealer requests ahead)
    stats: dict                  # per server: online bytes, rounds, offline bytes during training
    losses: list = field(default_factory=list)  # per-epoch mean loss, seen by the client only (if asked)
    batches: int = 0
    server_cpu_seconds: tuple = ()  # CPU seconds of each server's thread (or process) in the training


class TrainingOutOfRange(ValueError):
    """Training left the range in which its arithmetic on shares is exact (it diverges)."""


def range_limits(x_norm: float) -> tuple[float, float]:
    """(largest norm of a column of W less the mean column, largest |b_j - mean b|) that keep the logits of
    inputs of norm <= x_norm within 2 SOFTMAX_BOUND of each other, as the softmax and confident_argmax
    need: z_i - z_j = x (W_i - W_j) + b_i - b_j, the mean cancels, so |z_i - z_j| <= x_norm (|W_i - W| +
    |W_j - W|) + 2 max|b_j - b|. An eighth of the bound goes to the bias. (Trained models stay far
    inside: a diverging run leaves it within an epoch.)"""
    from ppfr.mpc.functions import SOFTMAX_BOUND

    max_bias = SOFTMAX_BOUND / 8
    return (SOFTMAX_BOUND - max_bias) / x_norm * 0.999, max_bias


def train_mpc(session, parts, classes: int, config: TrainConfig, progress=None,
              report_loss: bool = False) -> MPCTraining:
    """Train on secret shares. `parts` is a list of (x, labels), one per data owner, already preprocessed;
    each is shared separately and the servers concatenate them in this order. The model stays with the
    servers (srv.state) for predict_mpc and save_model. With report_loss the servers reveal each batch's
    probabilities to the client (never to each other), which computes the loss with its labels. After
    each epoch the client learns one bit, whether the model left range_limits, and stops a run that did
    (TrainingOutOfRange)."""
    parts = [(np.asarray(x, dtype=np.float64), np.asarray(lab, dtype=np.int64)) for x, lab in parts]
    n = sum(len(lab) for _, lab in parts)
    dim = parts[0][0].shape[1]
    x_norm = max(float(np.linalg.norm(x, axis=1).max(initial=0.0)) for x, _ in parts) or 1.0
    limits = range_limits(x_norm)
    before = session.stats()
    start = time.perf_counter()
    job = session.run(P.train_program, len(parts), n, classes, config, report_loss, limits, x_norm,
                      progress=None if report_loss else progress)
    for x, _ in parts:
        session.client.share(x)
    for _, lab in parts:
        session.client.share(one_hot(lab, classes), frac=0)
    w0, b0 = initial_weights(dim, classes, config)
    session.client.share(w0)
    session.client.share(b0)
    losses = []
    schedule = batch_schedule(n, config)
    labels = np.concatenate([lab for _, lab in parts])
    for epoch, batches in enumerate(schedule):
        if report_loss:
            total = 0.0
            for i, rows in enumerate(batches):
                total += cross_entropy(session.client.reconstruct(), labels[rows]) * len(rows)
                if progress:
                    progress(epoch, i, len(batches))
            losses.append(total / n)
        _verdict(session, job, epoch, limits, config)
    timings = job.result()
    seconds = time.perf_counter() - start
    after = session.stats()
    stats = {s: (after[s] - before[s]).as_dict() for s in ("server0", "server1")}
    return MPCTraining(seconds, timings[0]["phases"], stats, losses, sum(len(b) for b in schedule),
                       tuple(t["cpu"] for t in timings))


def _verdict(session, job, epoch: int, limits, config: TrainConfig) -> None:
    """Read the servers' out-of-range bit for this epoch and tell them whether to go on."""
    outside = bool(session.client.reconstruct()[()])
    session.client.tell("go on", not outside)
    if outside:
        try:
            job.result()
        except Exception:  # noqa: BLE001 - the servers stop because we told them to
            pass
        raise TrainingOutOfRange(
            f"training diverged in epoch {epoch + 1}: a class's weights reached norm {limits[0]:.4g} or a bias "
            f"{limits[1]:g}, beyond which the softmax on shares is no longer exact; lower the learning rate "
            f"(now {config.lr:g}) or the input scale")


@dataclass
class Prediction:
    """What the client learns of each row (reference.REVEALS). With reveal="label" it learns `labels`
    and `bands` only; otherwise the probabilities, from which it derives labels and bands the same way."""
    labels: np.ndarray              # top class, or -1 below thresholds[0]
    bands: np.ndarray               # how many thresholds the top probability reaches
    thresholds: tuple
    probabilities: np.ndarray | None = None

    def top_probability(self) -> np.ndarray:
        """The top class's probability, or with reveal="label" the band's lower edge (0 below it)."""
        if self.probabilities is not None:
            return self.probabilities.max(axis=1) if self.probabilities.size else np.zeros(len(self.labels))
        edges = np.concatenate([[0.0], self.thresholds])
        return edges[self.bands]


def predict_mpc(session, x: np.ndarray, chunk: int = 512, reveal: str = "label",
                thresholds: tuple = confidence_thresholds(0.5, CONFIDENCE_BANDS)) -> Prediction:
    """Shares x (already preprocessed) with the servers, who hold a model; only the client learns the
    answer, as `reveal` says (reference.REVEALS). Rows go in chunks to bound the servers' memory.

    label: the top class under MPC with a confidence band (functions.confident_argmax; about 30 rounds
    for a batch, 9 with mpc.comparisons: fss). As it ends, the servers ask for the next call's material of
    the same shape (functions.prepare_confident_argmax), so that a stream of faces meets only the online
    phase: with FSS, one face 65-71 ms -> 23-33 ms with 0.1 s between faces. probabilities: the softmax
    runs on shares (about 38 rounds) and the client reconstructs probabilities accurate to 1e-4. logits: the servers stop at the logits and reveal them behind a random
    offset per row, which leaves the client the logit differences; it computes the softmax in float64
    (3 rounds in all)."""
    check_reveal(reveal)
    thresholds = tuple(sorted(thresholds))
    x = np.asarray(x, dtype=np.float64)
    bounds = list(range(0, len(x), chunk))
    job = session.run(P.predict_program, [min(chunk, len(x) - s) for s in bounds], reveal, thresholds)
    labels, bands, probabilities = [], [], []
    for s in bounds:
        session.client.share(x[s:s + chunk])
        if reveal == "label":
            labels.append(session.client.reconstruct())
            bands.append(session.client.reconstruct())
            continue
        p = (session.client.reconstruct() if reveal == "probabilities"
             else softmax_rows(session.client.reconstruct_differences(axis=1)))
        probabilities.append(p)
        label, band = label_and_band(p, thresholds)
        labels.append(label)
        bands.append(band)
    job.result()
    join = (lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64))
    return Prediction(join(labels), join(bands), thresholds,
                      np.concatenate(probabilities) if probabilities else None)


def reveal_model(session):
    """Reconstruct the weights at the client: for tests and benchmarks that compare with plaintext,
    never part of ordinary use (the model is meant to stay shared)."""
    job = session.run(P.reveal_model_program)
    w, b = session.client.reconstruct(), session.client.reconstruct()
    job.result()
    return w, b
