"""GrowingRows: a matrix that grows by rows without copying what it holds at every append.

An append writes into spare capacity at the end (a new buffer, 1.5 times larger, only when full), so n
rows appended in chunks cost O(n) copying in all, not O(n^2), and a million-row gallery does not need
twice its size in memory when a few rows arrive. Views handed out earlier (`rows`) stay valid: an
append never writes inside them, only after them.
"""
from __future__ import annotations

import numpy as np


class GrowingRows:
    def __init__(self, cols: int, dtype, capacity: int = 0):
        self._buffer = np.empty((int(capacity), int(cols)), dtype=dtype)
        self.count = 0

    @classmethod
    def holding(cls, rows: np.ndarray, spare: int = 0) -> "GrowingRows":
        """A buffer holding a copy of `rows`, with room for `spare` more."""
        out = cls(rows.shape[1], rows.dtype, len(rows) + spare)
        out.append(rows)
        return out

    @classmethod
    def adopting(cls, rows: np.ndarray) -> "GrowingRows":
        """A buffer that is `rows` itself (no copy, no spare room: the first append makes room)."""
        out = cls(rows.shape[1], rows.dtype)
        out._buffer, out.count = rows, len(rows)
        return out

    @property
    def rows(self) -> np.ndarray:
        """The rows so far (a view)."""
        return self._buffer[:self.count]

    def __len__(self) -> int:
        return self.count

    def append(self, new: np.ndarray) -> np.ndarray:
        """Add rows at the end; returns the view of all rows."""
        end = self.count + len(new)
        if end > len(self._buffer):
            grown = np.empty((max(end, len(self._buffer) * 3 // 2), self._buffer.shape[1]), self._buffer.dtype)
            grown[:self.count] = self.rows
            self._buffer = grown
        self._buffer[self.count:end] = new
        self.count = end
        return self.rows

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the rows at positions `rows` (in that order): in place, no new buffer."""
        kept = self.rows[np.asarray(rows, dtype=np.int64)]
        self._buffer[:len(kept)] = kept
        self.count = len(kept)
