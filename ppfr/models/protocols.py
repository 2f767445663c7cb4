"""The servers' side of the softmax classifier: programs that both servers run, each on its own shares.

Training runs the algorithm of reference.py with every value a pair of additive shares; the servers never
open anything but Beaver- and truncation-masked differences (see ppfr.mpc.protocols). Per batch that is:
one Beaver matmul and one truncation for the logits, the engine's softmax (no maximum, denominator or
probability revealed; without its clamp, since the per-epoch range check keeps every row of logits within
TRAIN_LOGIT_SPAN), one Beaver matmul and one truncation for x^T d, and one truncation for the update.
The three public factors mu, lr/nb and lr*l2 are applied as exact integer multiples at UPDATE_BITS extra
fractional bits and removed together by that last truncation, so the update costs one round, not three,
and the small factor lr/nb (1e-3) keeps six significant digits instead of the two that 16 fractional bits
would leave. Truncation is stochastic rounding (unbiased), which suits SGD.

Prediction reveals to the client what reference.REVEALS says: the top class and a confidence band (the
default), the probabilities (softmax on shares), or the logits behind a hidden offset per row.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ppfr.mpc import ProtocolAborted, concatenate, multiply_many
from ppfr.mpc import protocols
from ppfr.mpc import functions as F
from ppfr.mpc.reuse import MaskedOperand

from .reference import TrainConfig, batch_schedule, check_reveal

UPDATE_BITS = 24  # extra fractional bits for the public factors of the update (see module doc)
STATE_KEY = "softmax_model"
TRAIN_LOGIT_SPAN = -F.EXP_RANGE[0]  # rows of logits spanning less: softmax is exact without its clamp
QUERY_POOL_ROWS = 256  # rows of queries that one opening of W - B serves (see predict_program)


PHASES = ("forward", "softmax", "gradient", "update")


def train_program(srv, parts: int, n: int, classes: int, config: TrainConfig, reveal_probs: bool, limits: tuple,
                  x_norm: float):
    """Run by both servers. Receives `parts` shares of embeddings (one per data owner), as many of one-hot
    labels, then the initial weight and bias; trains; keeps the model in srv.state. Returns timings.
    x_norm: the largest norm of an input row (public, like `limits`, which it gave)."""
    xs = [srv.receive() for _ in range(parts)]
    ys = [srv.receive() for _ in range(parts)]
    x = concatenate(xs) if parts > 1 else xs[0]
    y = concatenate(ys) if parts > 1 else ys[0]   # frac 0: exact integers
    w, b = srv.receive(), srv.receive()
    if x.shape[0] != n or y.shape != (n, classes) or w.shape != (x.shape[1], classes) or b.shape != (classes,):
        raise ValueError(f"{srv.name}: received shapes {x.shape}, {y.shape}, {w.shape}, {b.shape} do not fit "
                         f"{n} samples of {classes} classes")
    f = srv.fixed.frac_bits
    model = {"w": w, "b": b, "uw": srv.local(np.zeros(w.shape, dtype=np.uint64), f),
             "ub": srv.local(np.zeros(b.shape, dtype=np.uint64), f)}
    seconds = dict.fromkeys(PHASES, 0.0)
    for epoch, batches in enumerate(batch_schedule(n, config)):
        for i, rows in enumerate(batches):
            # a step asks the dealer for the same material every time (it depends on shapes only): from the
            # second step on, it is all requested on entry and drawn while the servers compute
            with srv.provider.plan("softmax_sgd_step", len(rows), *w.shape):
                bounds = truncation_bounds(srv.fixed, config, x_norm, len(rows), w.shape[0])
                for name, dt in _sgd_step(model, x[rows], y[rows], config, bounds, reveal_probs).items():
                    seconds[name] += dt
            if srv.index == 0:
                srv.report_progress(epoch, i, len(batches))
        _check_range(srv, model["w"], model["b"], limits)
    srv.state[STATE_KEY] = {"weight": model["w"], "bias": model["b"], "classes": classes}
    return seconds


def _sgd_step(model: dict, xb, yb, config: TrainConfig, bounds: tuple, reveal_probs: bool) -> dict:
    """One batch: logits, softmax, gradient, update of model's w, b and velocities uw, ub. Seconds per phase."""
    srv, w, b, uw, ub = xb.server, model["w"], model["b"], model["uw"], model["ub"]
    clock = time.perf_counter
    t0 = clock()
    (z,) = multiply_many([(xb, w)], op="matmul", bound_bits=bounds[0])
    z = z + b
    t1 = clock()
    p = F.softmax(z, axis=1, clamp=False)  # exact for rows spanning < TRAIN_LOGIT_SPAN (_check_range)
    t2 = clock()
    if reveal_probs:
        srv.reveal_to(p)
    d = p - yb
    (gw,) = multiply_many([(xb.T, d)], op="matmul", bound_bits=bounds[1])   # sum over the batch
    gb = d.sum(axis=0)
    t3 = clock()
    step = _scaled_int(config.lr / len(xb))
    # every term is an exact integer multiple at f + UPDATE_BITS fractional bits: one truncation
    new_uw = uw * _scaled_int(config.momentum) + gw * step + w * _scaled_int(config.lr * config.l2)
    new_ub = ub * _scaled_int(config.momentum) + gb * step
    raw = concatenate([new_uw.reshape(-1), new_ub])
    (cut,) = protocols.truncate(srv, [raw.share], [UPDATE_BITS], bound_bits=bounds[2])
    model["uw"], model["ub"] = raw._new(cut[:w.size].reshape(w.shape)), raw._new(cut[w.size:])
    model["w"], model["b"] = w - model["uw"], b - model["ub"]
    t4 = clock()
    return dict(zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)))


def truncation_bounds(fixed, config: TrainConfig, x_norm: float, batch: int, dim: int) -> tuple:
    """Bounds 2^L on the values that a step truncates (logits x W, gradient x^T d, update), from the public
    x_norm and config, tighter than the session's 2^48: a truncation is redone with probability
    2^(L + 1 - 64) per value (protocols.truncate), so this saves about one round a batch of 64 x 158. They
    hold while the model is in range (|w| below weight_guard, which _check_range enforces after each
    epoch): |x w_j| <= x_norm |w_j| <= x_norm guard sqrt(dim); |sum_b x_b d_b| <= batch x_norm, as
    |d| = |p - y| <= 1 (plus softmax's error, 1e-3 at most); each velocity |U| <= g / (1 - mu), g the
    largest step, lr (max(x_norm, 1) + l2 guard). A run that leaves the range mid-epoch gets garbage,
    which that check then catches."""
    f, guard = fixed.frac_bits, weight_guard(fixed, dim)
    largest_step = config.lr * (max(x_norm, 1.0) * 1.001 + config.l2 * guard)
    values = ((x_norm * guard * math.sqrt(dim), 2 * f), (batch * max(x_norm, 1.0) * 1.001, 2 * f),
              (largest_step / (1 - config.momentum), f + UPDATE_BITS))
    return tuple(min(fixed.bound_bits, math.ceil(math.log2(max(v, 1.0))) + frac + 1) for v, frac in values)


def _check_range(srv, w, b, limits) -> None:
    """Reveal to the client one bit: whether the model left the range in which training's softmax is exact,
    rows of logits spanning less than TRAIN_LOGIT_SPAN (softmax without its clamp, see weight_guard). With
    limits = (max_gap, max_bias_gap) (service.range_limits): some pair of classes has weights at distance
    |W_i - W_j| >= max_gap, or biases |b_i - b_j| >= max_bias_gap, or a weight reached weight_guard (which
    keeps the Gram matrix below the truncation bound). Only a diverging run (a huge learning rate or scale)
    leaves it. The client answers whether to go on; the servers learn that answer only (a run they are told
    to stop, they stop). Exact comparisons, so values that overflowed are caught too.

    |W_i - W_j|^2 = G_ii + G_jj - 2 G_ij with G = W^T W: one Beaver product (2 rounds), then the comparisons
    of the C (C - 1) / 2 pairs, the pairs of biases and every weight at once (7 + 5 rounds)."""
    max_gap, max_bias_gap = limits
    classes = w.shape[1]
    guard = weight_guard(srv.fixed, w.shape[0])
    upper = np.triu_indices(classes, k=1)
    (gram,) = multiply_many([(w.T, w)], op="matmul")
    norms2 = gram[np.arange(classes), np.arange(classes)]
    gaps2 = norms2[upper[0]] + norms2[upper[1]] - gram[upper] * 2
    bias_gaps = b[upper[0]] - b[upper[1]]
    outside = F.any_nonnegative(concatenate([(w - guard).reshape(-1), (-w - guard).reshape(-1),
                                             gaps2 - max_gap ** 2, bias_gaps - max_bias_gap,
                                             -bias_gaps - max_bias_gap]))
    srv.reveal_to(outside)
    if not srv.receive_public("go on"):
        raise ProtocolAborted(f"{srv.name}: the client stopped the training (it left the model's range)")


def weight_guard(fixed, dim: int) -> float:
    """The largest |weight| _check_range accepts: below it every entry of W^T W (at most dim w^2) stays
    within the truncation bound, 2^(bound - 2 frac - 1); 16 for 128-d inputs at 16 of 48 bits. The class
    mean of W never grows (each gradient x^T (p - y) sums to zero over the classes), so weights reach it
    only when the gaps between classes do."""
    return math.sqrt(2.0 ** (fixed.bound_bits - 2 * fixed.frac_bits - 1) / dim) * 0.999


def _scaled_int(value: float) -> int:
    return int(round(value * 2**UPDATE_BITS))


def predict_program(srv, chunks: list[int], reveal: str, thresholds: tuple = ()):
    """Run by both servers: for each chunk of rows the client shares, compute the logits xW + b and reveal
    to the client (reference.REVEALS) the label and confidence band of each row (functions.confident_argmax
    with `thresholds`), or softmax(xW + b), or the logits behind a hidden offset per row
    (functions.hide_offset). Returns seconds spent."""
    check_reveal(reveal)
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
        if reveal == "label":
            for value in F.confident_argmax(logits, thresholds):
                srv.reveal_to(value)
        else:
            srv.reveal_to(F.softmax(logits, axis=1) if reveal == "probabilities" else F.hide_offset(logits, axis=1))
    return time.perf_counter() - t


def reveal_model_program(srv):
    model = srv.state[STATE_KEY]
    srv.reveal_to(model["weight"])
    srv.reveal_to(model["bias"])
