"""Fixed-point numbers in the ring Z_2^64.

A real x is stored as the integer round(x * 2^f) modulo 2^64 (two's complement for negatives), held in
numpy uint64 so that +, -, * and @ wrap modulo 2^64 for free.

Why f = 16 by default: a product of two encoded values carries 2f fractional bits and must stay below
2^bound_bits (48) in magnitude for exact truncation (see ppfr.mpc.protocols.truncate), so products may
reach 2^(48 - 32) = 65,536 — room for logits, sums of 158 exponentials and squared distances — while the
resolution 2^-16 = 1.5e-5 is ten times finer than the 1e-4 accuracy the approximations aim for. The
approximations (exp, reciprocal) work internally at more fractional bits where their values are small.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import RangeError

RING_BITS = 64


@dataclass(frozen=True)
class FixedPoint:
    frac_bits: int = 16
    bound_bits: int = 48

    def __post_init__(self):
        if not 0 < self.frac_bits < self.bound_bits <= 60:
            raise ValueError(f"need 0 < frac_bits < bound_bits <= 60, got {self.frac_bits}, {self.bound_bits}")

    def encode(self, x, frac_bits: int | None = None) -> np.ndarray:
        """Float array -> ring elements; raises RangeError for NaN, inf or values out of range."""
        f = self.frac_bits if frac_bits is None else frac_bits
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise RangeError(f"cannot encode NaN or infinity ({int(np.sum(~np.isfinite(x)))} such values)")
        limit = float(2 ** (self.bound_bits - f))
        if x.size and np.max(np.abs(x)) >= limit:
            raise RangeError(
                f"value {float(x.flat[np.argmax(np.abs(x))]):.6g} is outside the fixed-point range "
                f"(|x| < 2^{self.bound_bits - f} = {limit:.6g} with {f} fractional bits)"
            )
        return np.rint(x * 2.0**f).astype(np.int64).view(np.uint64)

    def decode(self, raw: np.ndarray, frac_bits: int | None = None) -> np.ndarray:
        f = self.frac_bits if frac_bits is None else frac_bits
        return np.asarray(raw, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**f


def ring(x) -> np.ndarray:
    """Python/numpy integers (possibly negative) as ring elements."""
    arr = np.asarray(x)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64).view(np.uint64)
    if arr.dtype == object or arr.dtype.kind == "b":
        return np.array(np.vectorize(lambda v: int(v) % 2**RING_BITS, otypes=[object])(arr), dtype=np.uint64)
    raise TypeError(f"ring() takes integers, got {arr.dtype}")


# -- matrix products in the ring -------------------------------------------------------------------------------
# numpy's uint64 matmul is a plain loop (no BLAS), some 15 times slower than float64's. A float64 product is
# exact as long as every partial sum stays below 2^53, so ring_matmul cuts each operand into three limbs of
# at most 22 bits, a = a0 + a1 2^22 + a2 2^44, and multiplies the limbs with BLAS: only the six limb pairs
# with i + j <= 2 contribute modulo 2^64 (the others are multiples of 2^66). Pairs of the same weight are
# summed in one float product: a0 b1 + a1 b0 has 2 d terms below 2^44, a0 b2 + a1 b1 + a2 b0 (a2, b2 of 20
# bits) d terms below 2^44 and 2 d below 2^42, so every sum stays below 2^53, exact, while d < 256:
# INNER_CHUNK; longer inner dimensions are summed chunk by chunk.
LIMB_BITS = 22
INNER_CHUNK = 255
COLUMN_CHUNK = 4096        # output columns per block: the float limbs of the right operand stay small
_LIMB_MASK = np.uint64(2**LIMB_BITS - 1)


def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b modulo 2^64 for uint64 matrices, bit for bit numpy's uint64 matmul, through float64 BLAS where
    that is faster (products large against their operands); other shapes (1-D, stacks) go to numpy."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        return np.matmul(a, b)
    (m, d), n = a.shape, b.shape[1]
    if m * d * n < 16 * (m * d + d * n + m * n):  # too little work per element to pay for the conversions
        return a @ b
    if d <= INNER_CHUNK and n <= COLUMN_CHUNK:
        return _limb_product(_limbs(a, 1, (0, 1, 2)), _limbs(b, 0, (2, 1, 0)))
    out = np.zeros((m, n), dtype=np.uint64)
    for k in range(0, d, INNER_CHUNK):
        left = _limbs(a[:, k:k + INNER_CHUNK], 1, (0, 1, 2))
        for j in range(0, n, COLUMN_CHUNK):
            right = _limbs(b[k:k + INNER_CHUNK, j:j + COLUMN_CHUNK], 0, (2, 1, 0))
            out[:, j:j + COLUMN_CHUNK] += _limb_product(left, right)
    return out


def _limbs(x: np.ndarray, axis: int, order) -> np.ndarray:
    """The limbs of x (22, 22 and 20 bits) in float64, side by side along `axis` in the given order."""
    shape = list(x.shape)
    width = shape[axis]
    shape[axis] *= 3
    out = np.empty(shape, dtype=np.float64)
    part = np.empty(x.shape, dtype=np.uint64)
    for place, limb in enumerate(order):
        np.right_shift(x, np.uint64(limb * LIMB_BITS), out=part)
        np.bitwise_and(part, _LIMB_MASK, out=part)
        block = slice(place * width, (place + 1) * width)
        out[(slice(None), block) if axis == 1 else block] = part.view(np.int64)  # int64 converts faster
    return out


def _limb_product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left = [a0 a1 a2] (m x 3d), right = [b2; b1; b0] (3d x n): the limb products of each weight are one
    float product, a0 b0 over d, a0 b1 + a1 b0 over 2d, a0 b2 + a1 b1 + a2 b0 over 3d."""
    d = left.shape[1] // 3
    out = (left[:, :d] @ right[2 * d:]).astype(np.int64).view(np.uint64)   # integers below 2^53: exact
    out += (left[:, :2 * d] @ right[d:]).astype(np.int64).view(np.uint64) << np.uint64(LIMB_BITS)
    out += (left @ right).astype(np.int64).view(np.uint64) << np.uint64(2 * LIMB_BITS)
    return out
