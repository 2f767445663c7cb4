"""Products with an operand that stays the same across many queries (a model's weights, a gallery).

A Beaver matrix product X @ W opens E = X - A and F = W - B. When W is a model of 128 x 158 weights and X a
single face, F is almost all of the traffic, and it is the same matrix query after query. So the servers
take one triple for a pool of K future query rows — A (K x d), B (d x n), C = A B — open F = W - B once,
and let each query consume fresh rows of A and C: query rows X_i open only E_i = X_i - A_i and get
    X_i W = E_i F + E_i B + A_i F + C_i.
This is exactly the Beaver product of the stacked K x d matrix of queries, evaluated a block of rows at a
time: every row of A is used once, B only for this W, so every opened value stays uniform and independent
of the queries and of W. A new pool (after K rows, or for another W) draws a fresh triple.
"""
from __future__ import annotations

import numpy as np

from .fixedpoint import ring_matmul
from .tensor import SharedTensor, _rescaled


class MaskedOperand:
    """One server's side of a right operand W reused by many products x @ W."""

    def __init__(self, w: SharedTensor, pool_rows: int = 256):
        if w.ndim != 2:
            raise ValueError(f"a reused operand is a matrix, got shape {w.shape}")
        self.w = w
        self.pool_rows = pool_rows
        self._pool = None

    def matmul(self, x: SharedTensor, frac: int | None = None) -> SharedTensor:
        """x @ W for x of shape (m, d): one round and m*d ring elements per server, plus d*n once a pool."""
        x._check_owner(self.w.server)
        if x.ndim != 2 or x.shape[1] != self.w.shape[0]:
            raise ValueError(f"matmul shapes {x.shape} and {self.w.shape} do not match")
        m = x.shape[0]
        self.reserve(m)
        pool = self._pool
        rows = slice(pool["used"], pool["used"] + m)
        pool["used"] += m
        (e,) = self.w.server.open(x.share - pool["a"][rows])
        z = ring_matmul(e, pool["bf"]) + pool["afc"][rows]
        out_frac = max(x.frac, self.w.frac) if frac is None else frac
        return _rescaled(x, z, x.frac + self.w.frac, out_frac)

    def reserve(self, rows: int) -> None:
        """Make sure the next `rows` query rows come from one pool (a new one if too few are left), so
        that a large batch opens W - B once rather than once per pool."""
        if self._pool is None or self._pool["used"] + rows > self._pool["rows"]:
            self._pool = self._new_pool(max(rows, self.pool_rows))

    def _new_pool(self, k: int) -> dict:
        srv, w = self.w.server, self.w.share
        d, n = w.shape
        [t] = srv.provider.triples([("matmul", (k, d), (d, n))]).get()
        (f,) = srv.open(w - t.b)
        # what does not depend on the query: E F + E B = E (B + F) on server 0, E B on server 1
        return {"rows": k, "used": 0, "a": t.a, "bf": t.b + f if srv.index == 0 else t.b, "afc": t.c + ring_matmul(t.a, f)}
