"""Cryptographically secure randomness for shares and masks: AES-128 in counter mode."""
from __future__ import annotations

import math
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def _ctr(key: bytes):
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()


def _fits_exactly() -> bool:
    """Whether this `cryptography` writes CTR output into a buffer of just its size with update_into (its
    Rust ciphers do; older versions want room for a block more)."""
    try:
        return _ctr(bytes(16)).update_into(bytes(16), bytearray(16)) == 16
    except ValueError:
        return False


class SecureRandom:
    """A stream of uniform ring elements. AES-CTR is a standard PRG (and runs at GB/s with AES-NI);
    numpy's generators are fast but predictable from their output, so they never make shares here."""

    # The keystream is AES-CTR over zeros: one buffer of zeros for every generator (only read, and only
    # grown), so that a generator made for one draw (material.expand_share) does not zero a buffer anew.
    _zeros = memoryview(bytearray())
    # Whether update_into writes the keystream into an array of just its size (else all but its last
    # two words, the rest from `update`)
    EXACT_FIT = _fits_exactly()
    # uint64_parts draws runs of parts of up to this many words each with one call (as views of one
    # buffer), a larger part by itself: below it, an AES call costs more than copying a view
    FEW_WORDS = 1024

    def __init__(self, key: bytes | None = None):
        self._stream = _ctr(key if key is not None else os.urandom(16))

    def uint64(self, shape) -> np.ndarray:
        """Uniform words of this shape, in an array of its own (which the dealer hands over without a
        copy: channel.hand_over copies views)."""
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        return self.fill(np.empty(shape, dtype=np.uint64))

    def uint64_parts(self, shapes) -> list:
        """Uniform arrays of the given shapes (tuples), the next words of the stream in order (as uint64 of
        each would draw them), with few AES calls: a run of small parts from one call, as views of one
        buffer, so that a draw of many small arrays pays for one call; a large part as its own array.
        (The dealer may send some of the views and keep others secret: the channel copies a view apart
        before it hands it over, channel.hand_over.)"""
        sizes = [math.prod(s) for s in shapes]
        parts, start = [], 0
        while start < len(sizes):
            if sizes[start] > SecureRandom.FEW_WORDS:
                parts.append(self.uint64(shapes[start]))
                start += 1
                continue
            stop = start + 1
            while stop < len(sizes) and sizes[stop] <= SecureRandom.FEW_WORDS:
                stop += 1
            words = self.fill(np.empty(sum(sizes[start:stop]), dtype=np.uint64))
            if shapes[start] and all(shape == shapes[start] for shape in shapes[start + 1:stop]):  # rows
                parts.extend(words.reshape(stop - start, *shapes[start]))
            else:
                offset = 0
                for shape, size in zip(shapes[start:stop], sizes[start:stop]):
                    parts.append(words[offset:offset + size].reshape(shape))
                    offset += size
            start = stop
        return parts

    def bits(self, shape) -> np.ndarray:
        """Uniform 0/1 values as uint64."""
        return self.uint64(shape) & np.uint64(1)

    def fill(self, out: np.ndarray) -> np.ndarray:
        """Overwrite out (C-contiguous uint64, such as an array's first rows) with the next words of the
        stream; returns out."""
        if not out.flags.c_contiguous or out.dtype != np.uint64:
            raise ValueError("fill writes into C-contiguous uint64 arrays")
        n = out.size
        zeros = SecureRandom._zeros
        if len(zeros) < 8 * n:  # a bigger buffer replaces the shared one; a reader keeps its own reference
            zeros = SecureRandom._zeros = memoryview(bytearray(max(8 * n, 2 * len(zeros))))
        head = n if SecureRandom.EXACT_FIT else max(n - 2, 0)  # else update_into wants a block of room
        if head:
            written = self._stream.update_into(zeros[: 8 * head], memoryview(out).cast("B"))
            assert written == 8 * head
        if head < n:
            out.reshape(-1)[head:] = np.frombuffer(self._stream.update(zeros[: 8 * (n - head)]), np.uint64)
        return out
