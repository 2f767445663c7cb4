"""Cryptographically secure randomness for shares and masks: AES-128 in counter mode."""
from __future__ import annotations

import math
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class SecureRandom:
    """A stream of uniform ring elements. AES-CTR is a standard PRG (and runs at GB/s with AES-NI);
    numpy's generators are fast but predictable from their output, so they never make shares here."""

    # The keystream is AES-CTR over zeros: one buffer of zeros for every generator (only read, and only
    # grown), so that a generator made for one draw (material.expand_share) does not zero a buffer anew.
    _zeros = bytearray()

    def __init__(self, key: bytes | None = None):
        key = key if key is not None else os.urandom(16)
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def uint64(self, shape) -> np.ndarray:
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        n = math.prod(shape)
        out = np.empty(n + 2, dtype=np.uint64)  # update_into wants room for a block more than it writes
        zeros = SecureRandom._zeros
        if len(zeros) < 8 * n:  # a bigger buffer replaces the shared one; a reader keeps its own reference
            zeros = SecureRandom._zeros = bytearray(max(8 * n, 2 * len(zeros)))
        written = self._stream.update_into(memoryview(zeros)[: 8 * n], memoryview(out).cast("B"))
        assert written == 8 * n
        return out[:n].reshape(shape)

    def bits(self, shape) -> np.ndarray:
        """Uniform 0/1 values as uint64."""
        return self.uint64(shape) & np.uint64(1)
