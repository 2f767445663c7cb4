"""Cryptographically secure randomness for shares and masks: AES-128 in counter mode."""
from __future__ import annotations

import math
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class SecureRandom:
    """A stream of uniform ring elements. AES-CTR is a standard PRG (and runs at GB/s with AES-NI);
    numpy's generators are fast but predictable from their output, so they never make shares here."""

    def __init__(self, key: bytes | None = None):
        key = key if key is not None else os.urandom(16)
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._zeros = bytearray()  # the keystream is AES-CTR over zeros; this buffer only grows

    def uint64(self, shape) -> np.ndarray:
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        n = math.prod(shape)
        out = np.empty(n + 2, dtype=np.uint64)  # update_into wants room for a block more than it writes
        if len(self._zeros) < 8 * n:
            self._zeros = bytearray(max(8 * n, 2 * len(self._zeros)))
        written = self._stream.update_into(memoryview(self._zeros)[: 8 * n], memoryview(out).cast("B"))
        assert written == 8 * n
        return out[:n].reshape(shape)

    def bits(self, shape) -> np.ndarray:
        """Uniform 0/1 values as uint64."""
        return self.uint64(shape) & np.uint64(1)
