"""The softmax classifier's algorithm in the clear: its settings, what the client and the servers agree on
in public, and the float64 reference that train_mpc (service.py) is compared with number for number.

A one-layer softmax classifier (weights D x C, bias C) trained by mini-batch SGD with momentum on
cross-entropy. For each mini-batch (x: nb x D, one-hot y: nb x C), with W, b, U_W, U_b starting from
the client's initial weights and zero velocities:

    p   = softmax(x W + b)                       rows of probabilities
    d   = p - y
    U_W = mu U_W + (lr / nb) x^T d + (lr * l2) W   velocity, with the learning rate folded in
    U_b = mu U_b + (lr / nb) sum_rows(d)
    W  -= U_W ;  b -= U_b

Batch order and the initial weights come from a public seed: they depend on no data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .defaults import TRAIN_DEFAULTS


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = TRAIN_DEFAULTS["epochs"]
    lr: float = TRAIN_DEFAULTS["lr"]
    momentum: float = TRAIN_DEFAULTS["momentum"]
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    l2: float = TRAIN_DEFAULTS["l2"]
    seed: int = TRAIN_DEFAULTS["seed"]
    init_std: float = TRAIN_DEFAULTS["init_std"]

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be at least 1")
        if not (self.lr > 0 and 0 <= self.momentum < 1 and self.l2 >= 0 and self.init_std >= 0):
            raise ValueError("need lr > 0, 0 <= momentum < 1, l2 >= 0, init_std >= 0")

    @classmethod
    def from_config(cls, **overrides) -> "TrainConfig":
        """Defaults from the `train:` section of the config, then `overrides` (None means not given)."""
        from ppfr.config import section

        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in section("train").items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None and k in names})
        return cls(**values)

    def as_dict(self) -> dict:
        return asdict(self)


# -- what the client and the servers agree on in public -----------------------------------------------------
def batch_schedule(n: int, config: TrainConfig) -> list[list[np.ndarray]]:
    """Row indices of every batch of every epoch: a fresh permutation per epoch from the public seed.
    The last batch of an epoch may be smaller; it is not dropped."""
    rng = np.random.default_rng([config.seed, 1])
    out = []
    for _ in range(config.epochs):
        order = rng.permutation(n)
        out.append([order[i:i + config.batch_size] for i in range(0, n, config.batch_size)])
    return out


def initial_weights(dim: int, classes: int, config: TrainConfig):
    """Small Gaussian weights and a zero bias, drawn by the client from the seed."""
    rng = np.random.default_rng([config.seed, 0])
    return rng.normal(0.0, config.init_std, size=(dim, classes)), np.zeros(classes)


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    out = np.zeros((len(labels), classes), dtype=np.int64)
    out[np.arange(len(labels)), labels] = 1
    return out


# -- plaintext reference ----------------------------------------------------------------------------------------
def softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# What recognition reveals to the client (the servers' program: protocols.predict_program):
#   label          the top class, or -1 below the lowest threshold, and a confidence band: how many of the
#                  thresholds the top probability reaches (functions.confident_argmax). The default.
#   probabilities  every class's probability (the softmax on shares).
#   logits         the logits behind one offset per face nobody knows, i.e. their differences; the client
#                  computes the softmax. Fewest rounds, and a chosen-query attacker solves for the model
#                  (W_j - W_0, b_j - b_0) with about one query per class.
REVEALS = ("label", "probabilities", "logits")
CONFIDENCE_BANDS = (0.8, 0.95)  # band edges above the naming threshold


def check_reveal(reveal: str) -> str:
    if reveal not in REVEALS:
        raise ValueError(f"reveal is one of {', '.join(REVEALS)}, not {reveal!r}")
    return reveal


def confidence_thresholds(threshold: float, bands=CONFIDENCE_BANDS) -> tuple:
    """The naming threshold, then every band edge above it."""
    return (float(threshold), *sorted(float(b) for b in bands if b > threshold))


def label_and_band(probabilities: np.ndarray, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """The plaintext of what reveal="label" tells: (top class or -1, band) per row, as confident_argmax
    computes it on shares (ties go to the first class)."""
    p = np.asarray(probabilities, dtype=np.float64)
    bands = (p.max(axis=1, keepdims=True) >= np.asarray(sorted(thresholds))).sum(axis=1)
    return np.where(bands >= 1, p.argmax(axis=1), -1), bands


def revealed(logits: np.ndarray, reveal: str, thresholds, frac_bits: int = 16) -> dict:
    """What the client receives for faces with these logits (n, C), in the clear, by name; the MPC outputs
    are these up to the engine's error (benchmarks/extraction.py attacks exactly these answers):
      label:         {"label", "band"}, label_and_band of the softmax;
      probabilities: {"probabilities"}, the softmax rounded to 2^-frac_bits (below 2^-(frac_bits+1): 0);
      logits:        {"differences"}, z_j - z_0 rounded to 2^-frac_bits (the offset hides z_0 itself)."""
    z = np.asarray(logits, dtype=np.float64)
    grid = float(2 ** frac_bits)
    if check_reveal(reveal) == "label":
        label, band = label_and_band(softmax_rows(z), thresholds)
        return {"label": label, "band": band}
    if reveal == "probabilities":
        return {"probabilities": np.round(softmax_rows(z) * grid) / grid}
    return {"differences": np.round((z - z[:, :1]) * grid) / grid}


def cross_entropy(p: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(labels)), labels], 1e-300))))


@dataclass
class PlainModel:
    weight: np.ndarray
    bias: np.ndarray
    losses: list = field(default_factory=list)       # mean training loss of each epoch
    logit_span: float = 0.0                          # largest (max - min) of a logit row seen in training

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax_rows(x @ self.weight + self.bias)


def train_plaintext(x: np.ndarray, labels: np.ndarray, classes: int, config: TrainConfig,
                    progress=None) -> PlainModel:
    """The same algorithm, initialisation and batch order as train_mpc, in numpy float64."""
    x = np.asarray(x, dtype=np.float64)
    y = one_hot(labels, classes).astype(np.float64)
    w, b = initial_weights(x.shape[1], classes, config)
    uw, ub = np.zeros_like(w), np.zeros_like(b)
    model = PlainModel(w, b)
    for epoch, batches in enumerate(batch_schedule(len(x), config)):
        total = 0.0
        for i, rows in enumerate(batches):
            xb, yb, nb = x[rows], y[rows], len(rows)
            z = xb @ w + b
            model.logit_span = max(model.logit_span, float(np.max(z.max(1) - z.min(1))))
            p = softmax_rows(z)
            total += -np.sum(np.log(np.maximum(np.sum(p * yb, axis=1), 1e-300)))
            d = p - yb
            uw = config.momentum * uw + (config.lr / nb) * (xb.T @ d) + (config.lr * config.l2) * w
            ub = config.momentum * ub + (config.lr / nb) * d.sum(axis=0)
            w = w - uw
            b = b - ub
            if progress:
                progress(epoch, i, len(batches))
        model.losses.append(total / len(x))
    model.weight, model.bias = w, b
    return model
