"""The servers' side of the softmax classifier: programs that both servers run, each on its own shares.

Training runs the algorithm of reference.py with every value a pair of additive shares; the servers never
open anything but Beaver- and truncation-masked differences (see ppfr.mpc.protocols). Per batch that is:
the logits' product, prepared by the previous batch's update (no round of its own; for the first batch an
ordinary Beaver round) and its truncation; the engine's softmax (no maximum, denominator or probability
revealed); x^T d under the mask of x that the logits' product opened (one round, d - b only) and its
truncation; and one truncation for the update, whose round also opens the masks of the next batch's
logits product (protocols.truncate_with_next_product). 4 rounds besides the softmax, and rare repairs.
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

from ppfr.mpc import ProtocolAborted, concatenate, multiply_many, protocols, square_many
from ppfr.mpc import functions as F
from ppfr.mpc.reuse import MaskedOperand

from .reference import TrainConfig, batch_schedule, check_reveal

UPDATE_BITS = 24  # extra fractional bits for the public factors of the update (see module doc)
STATE_KEY = "softmax_model"
QUERY_POOL_ROWS = 256  # rows of queries that one opening of W - B serves (see predict_program)


PHASES = ("forward", "softmax", "gradient", "update")


def train_program(srv, parts: int, n: int, classes: int, config: TrainConfig, reveal_probs: bool, limits: tuple,
                  x_norm: float):
    """Run by both servers. Receives `parts` shares of embeddings (one per data owner), as many of one-hot
    labels, then the initial weight and bias; trains; keeps the model in srv.state. Returns timings: the
    wall seconds of each phase of a step, summed ("phases"), and the CPU seconds of this server's thread
    ("cpu"; in one process the parties share one interpreter lock, so wall time is about the sum of all
    parties' CPU, not this server's alone). x_norm: the largest norm of an input row (public, like
    `limits`, which it gave)."""
    cpu = time.thread_time()
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
             "ub": srv.local(np.zeros(b.shape, dtype=np.uint64), f), "next": None}
    seconds = dict.fromkeys(PHASES, 0.0)
    update_bits = update_bound_bits(srv.fixed, config, x_norm, 2 * limits[0])   # |w| < 2 max_norm: _check_range
    schedule = batch_schedule(n, config)
    upcoming = [rows for batches in schedule for rows in batches][1:] + [None]   # the batch after each
    for epoch, batches in enumerate(schedule):
        for i, rows in enumerate(batches):
            after = upcoming.pop(0)
            x_next = None if after is None else x[after]
            # a step asks the dealer for the same material every time (it depends on shapes only): from the
            # second step on, it is all requested on entry and drawn while the servers compute
            with srv.provider.plan("softmax_sgd_step", len(rows), len(after) if after is not None else 0,
                                   model["next"] is None, *w.shape):
                bounds = gradient_bound_bits(srv.fixed, x_norm, len(rows)), update_bits
                for name, dt in _sgd_step(model, x[rows], y[rows], config, bounds, reveal_probs, x_next).items():
                    seconds[name] += dt
            if srv.index == 0:
                srv.report_progress(epoch, i, len(batches))
        _check_range(srv, model["w"], model["b"], limits)
    srv.state[STATE_KEY] = {"weight": model["w"], "bias": model["b"], "classes": classes}
    return {"phases": seconds, "cpu": time.thread_time() - cpu}


def _sgd_step(model: dict, xb, yb, config: TrainConfig, bounds: tuple, reveal_probs: bool, x_next) -> dict:
    """One batch: logits, softmax, gradient, update of model's w, b and velocities uw, ub; bounds: the
    bound_bits of the gradient's and the update's truncations. The update's truncation also prepares the
    next batch's products (model["next"]; protocols.truncate_with_next_product): its logits cost no round
    and its gradient opens d - b only. Seconds per phase."""
    srv, w, b, uw, ub = xb.server, model["w"], model["b"], model["uw"], model["ub"]
    clock = time.perf_counter
    t0 = clock()
    if model["next"] is None:   # the first batch: an ordinary Beaver product
        (z,) = multiply_many([(xb, w)], op="matmul")
    else:
        z = xb._new(protocols.next_matmul(srv, model["next"], w.share), xb.frac + w.frac).with_frac(w.frac)
    z = z + b
    t1 = clock()
    p = F.softmax(z, axis=1)  # clamped: exact for any logits within the range _check_range keeps
    t2 = clock()
    if reveal_probs:
        srv.reveal_to(p)
    d = p - yb
    if model["next"] is None:
        (gw,) = multiply_many([(xb.T, d)], op="matmul", bound_bits=bounds[0])   # sum over the batch
    else:   # xb^T under the mask its logits' product opened: only d - b is opened
        raw = protocols.next_transposed_matmul(srv, model["next"], d.share)
        (gw,) = protocols.truncate(srv, [raw], [min(xb.frac, d.frac)], bound_bits=bounds[0])
        gw = d._new(gw, max(xb.frac, d.frac))
    gb = d.sum(axis=0)
    t3 = clock()
    step = _scaled_int(config.lr / len(xb))
    # every term is an exact integer multiple at f + UPDATE_BITS fractional bits: one truncation
    new_uw = uw * _scaled_int(config.momentum) + gw * step + w * _scaled_int(config.lr * config.l2)
    new_ub = ub * _scaled_int(config.momentum) + gb * step
    raw = concatenate([new_uw.reshape(-1), new_ub])
    if x_next is None:
        (cut,) = protocols.truncate(srv, [raw.share], [UPDATE_BITS], bound_bits=bounds[1])
        model["next"] = None
    else:
        material = srv.provider.update_then_product(raw.size, UPDATE_BITS, x_next.shape, w.shape)
        cut, model["next"] = protocols.truncate_with_next_product(srv, raw.share, UPDATE_BITS, w.share,
                                                                  x_next.share, material, bounds[1])
    model["uw"], model["ub"] = raw._new(cut[:w.size].reshape(w.shape)), raw._new(cut[w.size:])
    model["w"], model["b"] = w - model["uw"], b - model["ub"]
    t4 = clock()
    return dict(zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)))


def update_bound_bits(fixed, config: TrainConfig, x_norm: float, max_weight: float) -> int:
    """A bound 2^L on the update's terms before their truncation (at frac + UPDATE_BITS), tighter than the
    session's 2^48, while every |w| < max_weight (what _check_range keeps after each epoch): each step
    adds at most g = lr (max(x_norm, 1) (1 + 1e-3) + l2 max_weight) to a velocity (|x^T d| / batch <= x_norm,
    |sum d| / batch <= 1), so |U| <= g / (1 - mu). About 2^46 for LFW's settings: a third as many redone
    truncations."""
    largest_step = config.lr * (max(x_norm, 1.0) * 1.001 + config.l2 * max_weight)
    largest = largest_step / (1 - config.momentum)
    return min(fixed.bound_bits, math.ceil(math.log2(max(largest, 1.0))) + fixed.frac_bits + UPDATE_BITS + 1)


def gradient_bound_bits(fixed, x_norm: float, batch: int) -> int:
    """A bound 2^L on the gradient x^T d before its truncation (at 2 frac bits), tighter than the session's
    2^48: |sum_b x_bi d_bj| <= batch x_norm, as |d| = |p - y| <= 1 (plus softmax's error, 1e-3 at most).
    A truncation is redone with probability 2^(L + 1 - 64) per value (protocols.truncate): for 128 x 158
    gradients of batches of 64 at norm 4, L = 42 instead of 48 saves about half a round a batch."""
    largest = batch * max(x_norm, 1.0) * 1.001
    return min(fixed.bound_bits, math.ceil(math.log2(largest)) + 2 * fixed.frac_bits + 1)


def _check_range(srv, w, b, limits) -> None:
    """Reveal to the client one bit: whether some class's weights, less the mean over classes (which the
    softmax ignores), reached norm limits[0] (or one weight reached it), or some bias less the mean bias
    reached limits[1], or the class mean of a weight did (it never grows, as each gradient sums to zero over
    the classes; bounding it bounds every weight by 2 limits[0], which update_bound_bits uses) — the range in which the softmax on shares is exact (logits within
    functions.SOFTMAX_BOUND of each other, see service.range_limits), which only a diverging run (a huge
    learning rate or scale) leaves. The client answers whether to go on; the servers learn that answer only (a run they are
    told to stop, they stop). Exact comparisons, so values that overflowed are caught too."""
    max_norm, max_bias = limits
    classes = w.shape[1]
    mean = w.sum(axis=1, keepdims=True) * (1.0 / classes)   # per input dimension, over the classes
    w = w - mean
    b = b - b.sum(axis=0, keepdims=True) * (1.0 / classes)
    (squares,) = square_many([w])
    norms2 = squares.sum(axis=0)
    mean = mean.reshape(-1)
    outside = F.any_nonnegative(concatenate([(w - max_norm).reshape(-1), (-w - max_norm).reshape(-1),
                                             mean - max_norm, -mean - max_norm,
                                             b - max_bias, -b - max_bias, norms2 - max_norm ** 2]))
    srv.reveal_to(outside)
    if not srv.receive_public("go on"):
        raise ProtocolAborted(f"{srv.name}: the client stopped the training (it left the model's range)")


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
    if chunks and reveal == "label":   # the next call's material, drawn while the client finds the next face
        F.prepare_confident_argmax(srv, logits.shape, logits.frac, thresholds)
    return time.perf_counter() - t


def reveal_model_program(srv):
    model = srv.state[STATE_KEY]
    srv.reveal_to(model["weight"])
    srv.reveal_to(model["bias"])
