"""SharedTensor: one server's additive share of a fixed-point tensor, with numpy-style operations.

A SharedTensor lives on one server (its `server`), holds that server's uint64 share and the number of
fractional bits of the value (`frac`; 0 for integers and bits). Both servers run the same operations on
their own SharedTensors; the operations that need the other server (products, truncation, comparison)
call the protocols in protocols.py. Public operands are numbers or numpy arrays: a float is encoded with
the session's fractional bits, an integer (or bool) multiplies exactly with no rescaling.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import protocols
from .errors import SessionMismatch
from .fixedpoint import ring, ring_matmul

U64 = np.uint64


def _is_integer_public(value) -> bool:
    if isinstance(value, (bool, numbers.Integral)):
        return True
    return isinstance(value, np.ndarray) and value.dtype.kind in "iub"


class SharedTensor:
    __array_priority__ = 1000  # numpy arrays on the left defer to our reflected operators
    __slots__ = ("server", "share", "frac")

    def __init__(self, server, share: np.ndarray, frac: int):
        self.server = server
        self.share = share
        self.frac = int(frac)

    # -- bookkeeping --------------------------------------------------------------------------------
    shape = property(lambda self: self.share.shape)
    ndim = property(lambda self: self.share.ndim)
    size = property(lambda self: self.share.size)

    def __len__(self):
        return len(self.share)

    def __repr__(self):
        return f"SharedTensor({self.server.name}, shape={self.shape}, frac={self.frac})"

    def _check_owner(self, server) -> None:
        if self.server is not server:
            raise SessionMismatch(f"a tensor of {self.server.name} (session {self.server.session_id}) was "
                                  f"used by {server.name} (session {server.session_id})")

    def _new(self, share, frac=None) -> "SharedTensor":
        return SharedTensor(self.server, share, self.frac if frac is None else frac)

    def _public(self, value, frac: int) -> np.ndarray:
        if _is_integer_public(value):
            return ring(np.asarray(value) << frac) if frac else ring(value)
        return self.server.fixed.encode(value, frac)

    def _aligned(self, other: "SharedTensor"):
        """Both operands at the larger fractional precision (a left shift is exact and local)."""
        other._check_owner(self.server)
        if self.frac == other.frac:  # the usual case: nothing to shift
            return self.share, other.share, self.frac
        frac = max(self.frac, other.frac)
        return self.share << U64(frac - self.frac), other.share << U64(frac - other.frac), frac

    # -- local linear operations ------------------------------------------------------------------------
    def __add__(self, other):
        if isinstance(other, SharedTensor):
            a, b, frac = self._aligned(other)
            return self._new(_broadcast_checked(np.add, a, b), frac)
        public = self._public(other, self.frac)
        if self.server.index == 0:
            return self._new(_broadcast_checked(np.add, self.share, public))
        try:  # server 1 adds nothing, but takes the shape of the sum
            shape = np.broadcast_shapes(self.shape, np.shape(public))
        except ValueError as e:
            raise ValueError(f"shapes {self.shape} and {np.shape(public)} do not broadcast") from e
        return self._new(self.share.copy() if shape == self.shape else np.broadcast_to(self.share, shape).copy())

    __radd__ = __add__

    def __neg__(self):
        return self._new(-self.share)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    # -- products -------------------------------------------------------------------------------------
    def __mul__(self, other):
        if isinstance(other, SharedTensor):
            return multiply_many([(self, other)])[0]
        if _is_integer_public(other):
            return self._new(_broadcast_checked(np.multiply, self.share, ring(other)))
        f = self.server.fixed.frac_bits
        product = _broadcast_checked(np.multiply, self.share, self.server.fixed.encode(other, f))
        return _rescaled(self, product, self.frac + f, self.frac)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, SharedTensor):
            raise TypeError("divide by a shared tensor with ppfr.mpc.functions.reciprocal")
        return self * (1.0 / np.asarray(other, dtype=np.float64))

    def __matmul__(self, other):
        if isinstance(other, SharedTensor):
            return multiply_many([(self, other)], op="matmul")[0]
        return _public_matmul(self, other, left=False)

    def __rmatmul__(self, other):
        return _public_matmul(self, other, left=True)

    def square(self, frac: int | None = None) -> "SharedTensor":
        return square_many([self], frac)[0]

    # -- rescaling ------------------------------------------------------------------------------------
    def with_frac(self, frac: int) -> "SharedTensor":
        """The same value with `frac` fractional bits: a left shift (local) or a truncation (one round)."""
        if frac >= self.frac:
            return self._new(self.share << U64(frac - self.frac), frac)
        return _rescaled(self, self.share, self.frac, frac)

    def reinterpret(self, frac: int) -> "SharedTensor":
        """The same ring elements read with other fractional bits: x.reinterpret(f + k) is x / 2^k, free."""
        return self._new(self.share, frac)

    # -- shape ------------------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return self._new(np.sum(self.share, axis=axis, keepdims=keepdims, dtype=U64))

    def reshape(self, *shape):
        return self._new(self.share.reshape(*shape))

    def transpose(self, *axes):
        return self._new(self.share.transpose(*axes))

    T = property(lambda self: self._new(self.share.T))

    def __getitem__(self, index):
        return self._new(self.share[index])

    def __setitem__(self, index, value: "SharedTensor"):
        a, b, frac = self._aligned(value)
        if frac != self.frac:
            raise ValueError(f"cannot store a value with {value.frac} fractional bits into one with {self.frac}")
        self.share[index] = b

    def broadcast_to(self, shape):
        return self._new(np.broadcast_to(self.share, shape).copy())

    def copy(self):
        return self._new(self.share.copy())


def _broadcast_checked(op, a, b):
    try:
        return op(a, b)
    except ValueError as e:
        raise ValueError(f"shapes {np.shape(a)} and {np.shape(b)} do not broadcast") from e


def _rescaled(like: SharedTensor, z: np.ndarray, frac_in: int, frac_out: int) -> SharedTensor:
    if frac_out > frac_in:
        raise ValueError(f"truncation cannot take a value with {frac_in} fractional bits to {frac_out}")
    if frac_out < frac_in:
        (z,) = protocols.truncate(like.server, [z], [frac_in - frac_out])
    return like._new(z, frac_out)


def _public_matmul(x: SharedTensor, public, left: bool) -> SharedTensor:
    if _is_integer_public(public):
        raw, frac = ring(public), 0
    else:
        frac = x.server.fixed.frac_bits
        raw = x.server.fixed.encode(public, frac)
    try:
        z = ring_matmul(raw, x.share) if left else ring_matmul(x.share, raw)
    except ValueError as e:
        raise ValueError(f"matmul shapes {np.shape(public) if left else x.shape} and "
                         f"{x.shape if left else np.shape(public)} do not match") from e
    return _rescaled(x, z, x.frac + frac, x.frac)


def multiply_many(pairs, op: str = "mul", frac: int | None = None, bound_bits: int | None = None):
    """Several shared products in one round of Beaver openings and one round of truncation.

    The result keeps the larger precision of the two operands (`frac` overrides it); a product with a
    0-fractional-bit operand (an integer or a bit) needs no truncation at all. The dealer is asked for
    the triples and the truncation pairs at once, so it draws the second while the servers exchange.
    bound_bits: a bound 2^L on every product before truncation, tighter than the session's, if the caller
    knows one (protocols.truncate: fewer retries)."""
    if not pairs:
        return []
    server = pairs[0][0].server
    for x, y in pairs:
        x._check_owner(server)
        y._check_owner(server)
        if op == "mul":
            try:
                np.broadcast_shapes(x.shape, y.shape)
            except ValueError:
                raise ValueError(f"shapes {x.shape} and {y.shape} do not broadcast") from None
        elif x.ndim < 1 or y.ndim < 1 or x.shape[-1] != y.shape[-2 if y.ndim > 1 else 0]:
            raise ValueError(f"matmul shapes {x.shape} and {y.shape} do not match")
    frac_in = [x.frac + y.frac for x, y in pairs]
    frac_out = [max(x.frac, y.frac) if frac is None else frac for x, y in pairs]
    if any(o > i for o, i in zip(frac_out, frac_in)):
        raise ValueError(f"a product with {min(frac_in)} fractional bits cannot be given {frac}")
    items = [(op, x.share, y.share) for x, y in pairs]
    sizes = [_product_size(op, x.shape, y.shape) for x, y in pairs]
    shifts = [i - o for i, o in zip(frac_in, frac_out)]
    triples = server.provider.triples([(op, x.shape, y.shape) for x, y in pairs])
    truncation = protocols.ask_truncation(server, sizes, shifts)
    raw = protocols.products(server, items, triples)
    raw = protocols.truncate(server, raw, shifts, truncation, bound_bits)
    return [SharedTensor(server, z, f) for z, f in zip(raw, frac_out)]


def _product_size(op: str, sx: tuple, sy: tuple) -> int:
    if op == "mul":
        shape = np.broadcast_shapes(sx, sy)
    else:  # numpy matmul rules: 1-D operands lose their dimension
        batch = np.broadcast_shapes(sx[:-2], sy[:-2])
        shape = batch + sx[-2:-1] + sy[-1:] if len(sy) > 1 else batch + sx[-2:-1]
    return int(np.prod(shape, dtype=np.int64))


def square_many(tensors, frac: int | None = None):
    """Several squares in one round of openings and one of truncation."""
    if not tensors:
        return []
    server = tensors[0].server
    outs = [t.frac if frac is None else frac for t in tensors]
    shifts = [2 * t.frac - f for t, f in zip(tensors, outs)]
    truncation = protocols.ask_truncation(server, [t.size for t in tensors], shifts)
    raw = protocols.squares(server, [t.share for t in tensors])
    cut = protocols.truncate(server, raw, shifts, truncation)
    return [SharedTensor(server, z, f) for z, f in zip(cut, outs)]


def concatenate(tensors, axis: int = 0) -> SharedTensor:
    first = tensors[0]
    for t in tensors[1:]:
        t._check_owner(first.server)
    frac = max(t.frac for t in tensors)
    return first._new(np.concatenate([t.with_frac(frac).share for t in tensors], axis=axis), frac)


def stack(tensors, axis: int = 0) -> SharedTensor:
    return concatenate([t.reshape(*t.shape[:axis % (t.ndim + 1)], 1, *t.shape[axis % (t.ndim + 1):])
                        for t in tensors], axis=axis)
