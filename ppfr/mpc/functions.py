"""Non-linear functions on shared tensors: comparison, max/argmax, exp, reciprocal, softmax.

Each function documents its input range and its error there; tests/test_mpc_functions.py checks both
against numpy float64. Internally the approximations run at more fractional bits than the session's
(their intermediate values are at most a few units, so there is room under the 2^48 truncation bound),
which is why they are exact to about 1e-5 rather than to the 1e-3 that a 16-bit schedule would give.
"""
from __future__ import annotations

import math

import numpy as np

from . import protocols
from .tensor import SharedTensor, multiply_many, square_many

U64 = np.uint64


# -- comparison ----------------------------------------------------------------------------------------
def less_than_zero(x: SharedTensor) -> SharedTensor:
    """Shares of the bit [x < 0] (an integer tensor, frac 0). Exact for any x in the ring. 5 rounds."""
    return x._new(protocols.msb(x.server, x.share), 0)


def less_than(x: SharedTensor, y) -> SharedTensor:
    """[x < y] elementwise, y shared or public. Exact while |x - y| < 2^63 / 2^frac."""
    return less_than_zero(x - y)


def greater_than(x: SharedTensor, y) -> SharedTensor:
    return less_than_zero(-(x - y))


def greater_equal(x: SharedTensor, y) -> SharedTensor:
    return 1 - less_than(x, y)


def where(bit: SharedTensor, a: SharedTensor, b: SharedTensor) -> SharedTensor:
    """bit ? a : b with a shared 0/1 bit: b + bit * (a - b). One round, no truncation."""
    return b + bit * (a - b)


def _pairwise_tree(x: SharedTensor, axis: int, want_min: bool, with_index: bool):
    """Tournament along `axis`: each level compares neighbours in one batch and keeps the winners
    (4 rounds of comparison + 1 round of selection a level)."""
    with x.server.plan("tournament", x.shape, axis, want_min, with_index):
        return _tournament(x, axis, want_min, with_index)


def _tournament(x: SharedTensor, axis: int, want_min: bool, with_index: bool):
    x = x.transpose(*[d for d in range(x.ndim) if d != axis % x.ndim], axis % x.ndim)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("max/min of an empty axis")
    index = None
    if with_index:  # public positions to start with; shared once the first selections are made
        index = x._new(np.zeros(x.shape, dtype=U64), 0) + np.broadcast_to(np.arange(n), x.shape)
    server = x.server
    while x.shape[-1] > 1:
        m = x.shape[-1] // 2 * 2
        a, b = x[..., 0:m:2], x[..., 1:m:2]
        gain = b - a
        # take b where it wins (b > a for max, b < a for min): winner = a + bit * (b - a); the bit stays
        # XOR-shared and is applied to the values (and indices) in one round
        moves = [gain] + ([index[..., 1:m:2] - index[..., 0:m:2]] if with_index else [])
        comparison = server.ask("msb", n=gain.size)
        selection = server.ask("selection", n=gain.size, count=len(moves))
        take_b = protocols.msb_bits(server, (gain if want_min else -gain).share, comparison)
        chosen = protocols.select(server, take_b, [mv.share for mv in moves], selection)
        winners = a + x._new(chosen[0].reshape(gain.shape))
        if with_index:
            win_index = index[..., 0:m:2] + index._new(chosen[1].reshape(gain.shape))
        if m < x.shape[-1]:  # an odd one out goes through to the next level
            winners = _concat_last(winners, x[..., m:])
            if with_index:
                win_index = _concat_last(win_index, index[..., m:])
        x = winners
        if with_index:
            index = win_index
    return x[..., 0], (index[..., 0] if with_index else None)


def _concat_last(a: SharedTensor, b: SharedTensor) -> SharedTensor:
    return a._new(np.concatenate([a.share, b.share], axis=-1))


def max_along(x: SharedTensor, axis: int = -1) -> SharedTensor:
    """Maximum along an axis: ceil(log2 n) levels of 9 rounds. Exact."""
    return _pairwise_tree(x, axis, want_min=False, with_index=False)[0]


def argmax(x: SharedTensor, axis: int = -1):
    """(maximum, index of a maximum) along an axis, both shared. Exact."""
    return _pairwise_tree(x, axis, want_min=False, with_index=True)


def argmin(x: SharedTensor, axis: int = -1):
    """(minimum, index of a minimum) along an axis, both shared. Exact."""
    return _pairwise_tree(x, axis, want_min=True, with_index=True)


# -- exp --------------------------------------------------------------------------------------------------
EXP_RANGE = (-64.0, 10.0)
_EXP_HALVINGS = 7  # exp(x) = exp(x / 2^7)^(2^7)
_EXP_DEGREE = 7


def exp(x: SharedTensor, upper: float = EXP_RANGE[1], frac: int | None = None) -> SharedTensor:
    """e^x for x in [-64, upper] (upper <= 10), within 1e-4 relative or 3e-5 absolute.

    Range reduction: y = x / 2^7, read for free from the same ring elements with 7 more fractional bits,
    lies in [-0.5, 0.08]; a degree-7 Taylor polynomial gives e^y to 1e-7 relative; seven squarings give
    e^x. The polynomial's powers take 3 levels of products, the squarings 7; each level is a Beaver round
    and a truncation round, 21 rounds in all. The squarings rescale as they go so that each product stays
    under the truncation bound: small values keep up to f + 7 fractional bits, large ones fewer (their
    relative precision is what matters). `upper` is the largest input the caller expects; the default
    schedule is valid for all of [-64, 10]. Below -64 the result is not guaranteed (it is then below
    e^-64 in truth and the polynomial is evaluated outside its interval).
    """
    with x.server.plan("exp", x.shape, x.frac, upper, frac):
        return _exp(x, upper, frac)


def _exp(x: SharedTensor, upper: float, frac: int | None) -> SharedTensor:
    fixed = x.server.fixed
    out_frac = fixed.frac_bits if frac is None else frac
    if upper > EXP_RANGE[1]:
        raise ValueError(f"exp is documented for inputs up to {EXP_RANGE[1]}, asked for {upper}")
    y_frac = x.frac + _EXP_HALVINGS
    y = x.reinterpret(y_frac)
    # powers y^2 .. y^7 in three levels
    (y2,) = multiply_many([(y, y)])
    y3, y4 = multiply_many([(y2, y), (y2, y2)])
    y5, y6, y7 = multiply_many([(y4, y), (y4, y2), (y4, y3)])
    powers = [y, y2, y3, y4, y5, y6, y7]
    # sum of c_k y^k: public coefficients at y_frac, one truncation for the whole sum
    acc = powers[0].share * fixed.encode(1.0, y_frac)
    for k, p in enumerate(powers[1:], start=2):
        acc = acc + p.share * fixed.encode(1.0 / math.factorial(k), y_frac)
    z = x._new(acc, 2 * y_frac) + 1.0
    (raw,) = protocols.truncate(x.server, [z.share], [y_frac])
    z = x._new(raw, y_frac)
    # squarings with a precision schedule that keeps each product under the bound
    bound = fixed.bound_bits - 1
    for k in range(_EXP_HALVINGS):
        remaining = _EXP_HALVINGS - k - 1  # squarings left after this one
        biggest = max_log2(upper / 2**remaining)  # log2 of the largest value this squaring can produce
        next_frac = out_frac if remaining == 0 else min(y_frac, (bound - max_log2(upper / 2**(remaining - 1))) // 2)
        if z.frac * 2 + biggest >= bound + 1:
            raise ValueError(f"exp cannot reach {upper} with {fixed.frac_bits} fractional bits")
        (z,) = square_many([z], frac=next_frac)
    return z


def max_log2(x: float) -> int:
    """ceil(log2(e^x)), at least 0: bits above the binary point of e^x."""
    return int(max(0, math.ceil(x / math.log(2))))


# -- reciprocal ---------------------------------------------------------------------------------------------
RECIPROCAL_RANGE = (1.0 / 32, 32.0)
_OCTAVES_PER_STEP = 2     # one comparison per two octaves of the input range
_NEWTON_STEPS = 5         # (3/5)^(2^5) < 1e-7


def reciprocal(x: SharedTensor, lower: float = RECIPROCAL_RANGE[0], upper: float = RECIPROCAL_RANGE[1],
               frac: int | None = None) -> SharedTensor:
    """1/x for x in [lower, upper] (default [1/32, 32]), relative error below 1e-3 (about 1e-4).

    Initial guess: the servers compare x with every fourth power of two 2^j inside the range, all in one
    8-round comparison; the sum of the bits [x >= 2^j] locates x in a band [2^k, 2^(k+2)), and
    y0 = 0.4 / 2^k is a public combination of those bits (local, exact). Then x*y0 lies in [0.4, 1.6], the
    Newton error e = 1 - x*y0 is at most 0.6, and five Newton-Raphson steps y <- y(2 - xy) raise it to the
    32nd power: below 1e-7. Each step is two products (4 rounds); 28 rounds in all. The iteration runs at
    as many fractional bits as the truncation bound allows for 1/lower, then is rounded to `frac`.
    """
    with x.server.plan("reciprocal", x.shape, x.frac, lower, upper, frac):
        return _reciprocal(x, lower, upper, frac)


def _reciprocal(x: SharedTensor, lower: float, upper: float, frac: int | None) -> SharedTensor:
    fixed = x.server.fixed
    out_frac = fixed.frac_bits if frac is None else frac
    if not 0 < lower < upper:
        raise ValueError(f"reciprocal needs 0 < lower < upper, got [{lower}, {upper}]")
    lo, hi = math.floor(math.log2(lower)), math.ceil(math.log2(upper))
    # keep x*y (below 1.6) and y*(2 - xy) (at most 1/lower) under 2^(bound - 1) before truncation
    reciprocal_bits = math.ceil(math.log2(1.0 / lower)) + 1 if lower < 1 else 1
    y_frac = min(fixed.bound_bits - 2 - x.frac, (fixed.bound_bits - 1 - reciprocal_bits) // 2)
    step = _OCTAVES_PER_STEP
    bands = list(range(lo, hi, step))  # band k covers [2^k, 2^(k+step))
    guess = lambda k: 2.0 / (1 + 2.0**step) / 2.0**k  # noqa: E731 - centres x*y0 on 1 within a band
    y = x._new(np.zeros(x.shape, dtype=U64), y_frac) + guess(lo)
    if len(bands) > 1:
        thresholds = np.array([2.0**k for k in bands[1:]])
        at_least = 1 - less_than_zero(x.reshape(*x.shape, 1) - thresholds)
        steps = fixed.encode([guess(k) - guess(k - step) for k in bands[1:]], y_frac)
        y = y + x._new((at_least.share * steps).sum(axis=-1, dtype=U64), y_frac)
    for _ in range(_NEWTON_STEPS):
        (xy,) = multiply_many([(x, y)], frac=y_frac)
        (y,) = multiply_many([(y, 2.0 - xy)], frac=y_frac)
    return y.with_frac(out_frac)


# -- softmax ------------------------------------------------------------------------------------------------
def softmax(x: SharedTensor, axis: int = -1) -> SharedTensor:
    """softmax along `axis` for rows whose values span less than 64 (e.g. any logits in [-32, 32]),
    within 1e-4 absolute of float64. Nothing is revealed: not the maximum, not the denominator.

    m = max (exact, comparisons), e = exp(x - m) in [e^-64, 1] at extra precision, s = sum(e) in [1, n],
    p = e * (1/s) with the reciprocal run over [1, n]."""
    with x.server.plan("softmax", x.shape, x.frac, axis):
        return _softmax(x, axis)


def _softmax(x: SharedTensor, axis: int) -> SharedTensor:
    x_last = x.transpose(*[d for d in range(x.ndim) if d != axis % x.ndim], axis % x.ndim)
    n = x_last.shape[-1]
    m = max_along(x_last, axis=-1)
    shifted = x_last - m.reshape(*m.shape, 1)
    inner = x.server.fixed.frac_bits + 7
    e = exp(shifted, upper=0.0, frac=inner)
    s = e.sum(axis=-1, keepdims=True)
    r = reciprocal(s, lower=1.0, upper=max_value_for(n), frac=inner)
    (p,) = multiply_many([(e, r)], frac=x.frac)
    order = list(range(x.ndim - 1))
    order.insert(axis % x.ndim, x.ndim - 1)
    return p.transpose(*order)


def max_value_for(n: int) -> float:
    return float(n) * 1.001 + 1e-3
