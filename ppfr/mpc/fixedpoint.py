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
