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

from ppfr.mpc import ProtocolAborted, concatenate, multiply_many, square_many
from ppfr.mpc import functions as F
from ppfr.mpc.reuse import MaskedOperand

from .reference import TrainConfig, batch_schedule, check_reveal

UPDATE_BITS = 24  # extra fractional bits for the public factors of the update (see module doc)
STATE_KEY = "softmax_model"
TRAIN_LOGIT_SPAN = -F.EXP_RANGE[0]  # rows of logits spanning less: softmax is exact without its clamp
QUERY_POOL_ROWS = 256  # rows of queries that one opening of W - B serves (see predict_program)


PHASES = ("forward", "softmax", "gradient", "update")


def train_program(srv, parts: int, n: int, classes: int, config: TrainConfig, reveal_probs: bool, limits: tuple):
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
                p = F.softmax(z, axis=1, clamp=False)  # exact for rows spanning < TRAIN_LOGIT_SPAN (_check_range)
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
        _check_range(srv, w, b, limits)
    srv.state[STATE_KEY] = {"weight": w, "bias": b, "classes": classes}
    return seconds


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
