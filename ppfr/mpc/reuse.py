"""Products with an operand that stays the same across many queries (a model's weights: MaskedOperand;
a gallery of up to millions of rows: MaskedRows).

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
from .material import RING_DTYPES, ring_words
from .placement import any_core
from .prg import SecureRandom
from .rows import GrowingRows
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


class MaskedRows:
    """One server's side of a shared matrix G (rows x cols, mod 2^bits) kept masked for many products Q G^T
    (a gallery of a million embeddings, one query at a time).

    The dealer draws a uniform mask B of G's shape and keeps it (material.RowMaskRequest; server i gets a
    16-byte AES key and expands its share B_i); the servers open F = G - B once, each row when it is
    appended. A product with queries Q (k x cols) then opens only E = Q - A for a fresh dealer mask A,
    and the dealer sends shares of C = A B^T (material.RowProductsRequest):
        Q G^T = (E + A)(F + B)^T = E (F + B_0)^T + A_0 F^T + C_0     (server 0)
                                 + E B_1^T       + A_1 F^T + C_1     (server 1)
    Server 0 keeps F and F + B_0, server 1 keeps F and B_1: two matrices of G's size, two matrix
    products per query, exact in the ring (nothing is truncated).

    Rounds and bytes per server: appending k rows opens k x cols elements (one round per CHUNK_ROWS rows),
    16 bytes offline per chunk; a product of k queries opens k x cols (one round) and receives
    k x (cols + rows) elements offline. Each row of B masks one row of G, once; each A one batch of
    queries, once: every opened value is uniform and independent of G and Q. Removing rows starts a new
    mask (`reset`): the dealer never learns which rows went.
    """
    CHUNK_ROWS = 1 << 16

    def __init__(self, server, name: str, cols: int, bits: int, capacity: int = 0):
        """capacity: rows to make room for at once (a gallery's size and some), so that appending them
        never holds two copies of a growing matrix."""
        if bits not in RING_DTYPES:
            raise ValueError(f"masked rows live in a ring of 32 or 64 bits, not {bits}")
        self.server, self.name, self.cols, self.bits = server, name, int(cols), int(bits)
        self.dtype = RING_DTYPES[bits]
        self.capacity = int(capacity)
        self.reset()

    def reset(self) -> None:
        """Forget every row: the next append starts a new mask."""
        self.public = GrowingRows(self.cols, self.dtype, self.capacity)   # F = G - B, known to both servers
        self.own = GrowingRows(self.cols, self.dtype, self.capacity)      # F + B_0 on server 0, B_1 on server 1

    def __len__(self) -> int:
        return len(self.public)

    def append(self, rows: np.ndarray) -> None:
        """Add rows of G (this server's shares, reduced mod 2^bits here): open each row masked, once."""
        if rows.ndim != 2 or rows.shape[1] != self.cols:
            raise ValueError(f"rows of shape {rows.shape} do not fit {self.cols} columns")
        for lo in range(0, len(rows), self.CHUNK_ROWS):
            chunk = rows[lo:lo + self.CHUNK_ROWS].astype(self.dtype)
            [seed] = self.server.provider.row_mask(self.name, len(self), len(chunk), self.cols, self.bits,
                                                   self.capacity).get().to_wire()
            mask = ring_words(SecureRandom(seed.tobytes()), chunk.shape, self.bits)
            (f,) = self.server.open(chunk - mask)
            self.public.append(f)
            self.own.append(f + mask if self.server.index == 0 else mask)

    def ask(self, queries: int):
        """Ask the dealer now for the material of a product of `queries` rows with the rows held now."""
        return self.server.provider.row_products(self.name, len(self), queries, self.cols, self.bits)

    def products(self, q: np.ndarray, material=None) -> np.ndarray:
        """Shares of Q G^T (k x rows, mod 2^bits) for this server's shares q (k x cols)."""
        if q.ndim != 2 or q.shape[1] != self.cols:
            raise ValueError(f"queries of shape {q.shape} do not fit {self.cols} columns")
        m = (material or self.ask(len(q))).get()
        if m.c.shape != (len(q), len(self)):
            raise ValueError(f"material for {m.c.shape} products, not {(len(q), len(self))}")
        (e,) = self.server.open(q.astype(self.dtype) - m.a)
        out = m.c.copy()
        public, own = self.public.rows, self.own.rows
        with any_core(2 * out.size * self.cols):   # the other server's products run beside these
            for lo in range(0, len(self), self.CHUNK_ROWS):
                hi = lo + self.CHUNK_ROWS
                out[:, lo:hi] += e @ own[lo:hi].T
                out[:, lo:hi] += m.a @ public[lo:hi].T
        return out
