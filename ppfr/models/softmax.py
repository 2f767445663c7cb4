"""A one-layer softmax classifier (weights D x C, bias C) trained by mini-batch SGD with momentum on
cross-entropy, over secret shares; and the plaintext reference that runs the same algorithm in float64.

The algorithm, for each mini-batch (x: nb x D, one-hot y: nb x C), with W, b, U_W, U_b starting from
the client's initial weights and zero velocities:

    p   = softmax(x W + b)                       rows of probabilities
    d   = p - y
    U_W = mu U_W + (lr / nb) x^T d + (lr * l2) W   velocity, with the learning rate folded in
    U_b = mu U_b + (lr / nb) sum_rows(d)
    W  -= U_W ;  b -= U_b

Under MPC every one of these values is a pair of additive shares; the servers never open anything but
Beaver- and truncation-masked differences (see ppfr.mpc.protocols). Per batch that is: one Beaver matmul
and one truncation for the logits, the engine's softmax (no maximum, denominator or probability revealed),
one Beaver matmul and one truncation for x^T d, and one truncation for the update. The three public
factors mu, lr/nb and lr*l2 are applied as exact integer multiples at UPDATE_BITS extra fractional bits
and removed together by that last truncation, so the update costs one round, not three, and the small
factor lr/nb (1e-3) keeps six significant digits instead of the two that 16 fractional bits would leave.
Truncation is stochastic rounding (unbiased), which suits SGD.

The client's part is to share its data (each data owner its own rows), the one-hot labels (labels are
private too) and the initial weights, then wait. Batch order comes from a public seed: it depends on no
data. If asked, the servers reveal each batch's probabilities to the client only, who computes the loss.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ppfr.mpc import concatenate, multiply_many
from ppfr.mpc import functions as F
from ppfr.mpc.reuse import MaskedOperand

from .defaults import TRAIN_DEFAULTS

UPDATE_BITS = 24  # extra fractional bits for the public factors of the update (see module doc)
STATE_KEY = "softmax_model"
QUERY_POOL_ROWS = 256  # rows of queries that one opening of W - B serves (see _predict_program)


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


# -- MPC: the servers' programs -----------------------------------------------------------------------------------
PHASES = ("forward", "softmax", "gradient", "update")


def _train_program(srv, parts: int, n: int, classes: int, config: TrainConfig, reveal_probs: bool):
    """Run by both servers. Receives `parts` shares of embeddings (one per data owner), as many of one-hot
    labels, then the initial weight and bias; trains; keeps the model in srv.state. Returns timings."""
    xs = [srv.receive() for _ in range(parts)]
    ys = [srv.receive() for _ in range(parts)]
    x = concatenate(xs) if parts > 1 else xs[0]
    y = concatenate(ys) if parts > 1 else ys[0]   # frac 0: exact integers
    w, b = srv.receive(), srv.receive()
    if x.shape[0] != n or y.shape != (n, classes) or w.shape != (x.shape[1], classes) or b.shape != (classes,):
        raise ValueError(f"{srv.name}: received shapes {x.shape}, {y.shape}, {w.shape}, {b.shape} do not fit "
                         f"{n} samples of {classes} classes")
    f = srv.fixed.frac_bits
    uw = srv.local(np.zeros(w.shape, dtype=np.uint64), f)
    ub = srv.local(np.zeros(b.shape, dtype=np.uint64), f)
    mu = _scaled_int(config.momentum)
    decay = _scaled_int(config.lr * config.l2)
    seconds = dict.fromkeys(PHASES, 0.0)
    clock = time.perf_counter
    for epoch, batches in enumerate(batch_schedule(n, config)):
        for i, rows in enumerate(batches):
            # a step asks the dealer for the same material every time (it depends on shapes only): from the
            # second step on, it is all requested on entry and drawn while the servers compute
            with srv.provider.plan("softmax_sgd_step", len(rows), *w.shape):
                t0 = clock()
                xb, yb = x[rows], y[rows]
                (z,) = multiply_many([(xb, w)], op="matmul")
                z = z + b
                t1 = clock()
                p = F.softmax(z, axis=1, clamp=False)  # the trainer keeps logit spans near 30 (cli warns at 64)
                t2 = clock()
                if reveal_probs:
                    srv.reveal_to(p)
                d = p - yb
                (gw,) = multiply_many([(xb.T, d)], op="matmul")   # sum over the batch, |.| <= nb * max|x|
                gb = d.sum(axis=0)
                t3 = clock()
                step = _scaled_int(config.lr / len(rows))
                # every term is an exact integer multiple at f + UPDATE_BITS fractional bits: one truncation
                new_uw = uw * mu + gw * step + w * decay
                new_ub = ub * mu + gb * step
                flat = concatenate([new_uw.reshape(-1), new_ub]).reinterpret(f + UPDATE_BITS).with_frac(f)
                uw, ub = flat[:w.size].reshape(w.shape), flat[w.size:]
                w, b = w - uw, b - ub
                t4 = clock()
            for name, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                seconds[name] += dt
            if srv.index == 0:
                srv.report_progress(epoch, i, len(batches))
    srv.state[STATE_KEY] = {"weight": w, "bias": b, "classes": classes}
    return seconds


def _scaled_int(value: float) -> int:
    return int(round(value * 2**UPDATE_BITS))


def _predict_program(srv, chunks: list[int], softmax_by: str):
    """Run by both servers: for each chunk of rows the client shares, reveal to the client shares of
    softmax(xW + b) (softmax_by="servers"), or the logits xW + b behind a hidden offset per row, from which
    the client computes the same softmax itself (softmax_by="client"; see functions.hide_offset).
    Returns seconds spent."""
    model = srv.state.get(STATE_KEY)
    if model is None:
        raise RuntimeError(f"{srv.name} holds no classifier: train or load one first")
    t = time.perf_counter()
    # The same weights meet every row: one triple and one opening of W - B serve a pool of rows kept with
    # the model across calls, so a row costs only its own opening; a large call reserves a pool its size.
    weight = model.get("masked")
    if weight is None:
        weight = model["masked"] = MaskedOperand(model["weight"], pool_rows=QUERY_POOL_ROWS)
    weight.reserve(sum(chunks))
    for _ in chunks:
        x = srv.receive()
        if x.ndim != 2 or x.shape[1] != model["weight"].shape[0]:
            raise ValueError(f"{srv.name}: inputs of shape {x.shape} do not fit a model of input dimension "
                             f"{model['weight'].shape[0]}")
        logits = weight.matmul(x) + model["bias"]
        srv.reveal_to(F.softmax(logits, axis=1) if softmax_by == "servers" else F.hide_offset(logits, axis=1))
    return time.perf_counter() - t


# -- MPC: the client's side ---------------------------------------------------------------------------------------
@dataclass
class MPCTraining:
    seconds: float
    phase_seconds: dict          # server 0's wall time in each phase of a batch, summed over training
                                 # ("forward" includes sending the step's dealer requests ahead)
    stats: dict                  # per server: online bytes, rounds, offline bytes during training
    losses: list = field(default_factory=list)  # per-epoch mean loss, seen by the client only (if asked)
    batches: int = 0


def train_mpc(session, parts, classes: int, config: TrainConfig, progress=None,
              report_loss: bool = False) -> MPCTraining:
    """Train on secret shares. `parts` is a list of (x, labels), one per data owner, already preprocessed;
    each is shared separately and the servers concatenate them in this order. The model stays with the
    servers (srv.state) for predict_mpc and save_model. With report_loss the servers reveal each batch's
    probabilities to the client (never to each other), which computes the loss with its labels."""
    parts = [(np.asarray(x, dtype=np.float64), np.asarray(lab, dtype=np.int64)) for x, lab in parts]
    n = sum(len(lab) for _, lab in parts)
    dim = parts[0][0].shape[1]
    before = session.stats()
    start = time.perf_counter()
    job = session.run(_train_program, len(parts), n, classes, config, report_loss,
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
    if report_loss:
        labels = np.concatenate([lab for _, lab in parts])
        for epoch, batches in enumerate(schedule):
            total = 0.0
            for i, rows in enumerate(batches):
                total += cross_entropy(session.client.reconstruct(), labels[rows]) * len(rows)
                if progress:
                    progress(epoch, i, len(batches))
            losses.append(total / n)
    timings, _ = job.result()
    seconds = time.perf_counter() - start
    after = session.stats()
    stats = {s: (after[s] - before[s]).as_dict() for s in ("server0", "server1")}
    return MPCTraining(seconds, timings, stats, losses, sum(len(b) for b in schedule))


SOFTMAX_BY = ("client", "servers")


def check_softmax_by(softmax_by: str) -> str:
    if softmax_by not in SOFTMAX_BY:
        raise ValueError(f"softmax_by is one of {SOFTMAX_BY}, not {softmax_by!r}")
    return softmax_by


def predict_mpc(session, x: np.ndarray, chunk: int = 512, softmax_by: str = "servers") -> np.ndarray:
    """Shares x (already preprocessed) with the servers, who hold a model; only the client reconstructs
    the probabilities. Rows go in chunks to bound the servers' memory.

    softmax_by="servers": the softmax runs on shares (about 56 rounds for a batch) and the client
    reconstructs probabilities accurate to 1e-4. softmax_by="client": the servers stop at the logits and
    reveal them behind a random offset per row, which leaves the client exactly the logit differences,
    i.e. what the probabilities tell; it computes the softmax in float64 (3 rounds in all)."""
    check_softmax_by(softmax_by)
    x = np.asarray(x, dtype=np.float64)
    bounds = list(range(0, len(x), chunk))
    job = session.run(_predict_program, [min(chunk, len(x) - s) for s in bounds], softmax_by)
    out = []
    for s in bounds:
        session.client.share(x[s:s + chunk])
        if softmax_by == "servers":
            out.append(session.client.reconstruct())
        else:
            out.append(softmax_rows(session.client.reconstruct_differences(axis=1)))
    job.result()
    return np.concatenate(out) if out else np.zeros((0, 0))


def _reveal_model_program(srv):
    model = srv.state[STATE_KEY]
    srv.reveal_to(model["weight"])
    srv.reveal_to(model["bias"])


def reveal_model(session):
    """Reconstruct the weights at the client: for tests and benchmarks that compare with plaintext,
    never part of ordinary use (the model is meant to stay shared)."""
    job = session.run(_reveal_model_program)
    w, b = session.client.reconstruct(), session.client.reconstruct()
    job.result()
    return w, b
