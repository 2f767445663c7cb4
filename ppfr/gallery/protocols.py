"""The servers' side of the gallery: programs that both servers run, each on its own shares.

Numbers. Embeddings are shared at `frac` fractional bits (20 by default) and every distance is an exact
ring computation at 2*frac bits on those fixed-point vectors — nothing is ever truncated, so the only
error against float64 is the rounding of each coordinate to 2^-frac (about 1e-6 on a squared distance).
Squared norms are computed by the client that owns each vector, exactly, as integers (sum of squares of
the encoded coordinates), and shared with it: a server never needs a product to get them.

    ||q - g||^2 = ||q||^2 - 2 q.g + ||g||^2       (the cross term is the only product between parties)

Identification computes the cross terms of m queries against all n entries as one Beaver matrix
product Q (m x d) @ G^T (d x n). Its mask for G^T is opened once per pool of queries and each query then
opens only its own d values (ppfr.mpc.reuse.MaskedOperand); a new version of the gallery gets a new pool.
"""
from __future__ import annotations

import numpy as np

from ppfr.mpc import functions as F
from ppfr.mpc.reuse import MaskedOperand
from ppfr.storage import Half, load_half, write_half
from ppfr.storage.server import agree

from . import store

U64 = np.uint64
STATE = "gallery"            # srv.state key of the loaded gallery half
EXCLUDED = U64(2**60)        # added to an excluded entry's squared distance (ring units): never nearest
REVEAL_MODES = ("all", "nearest", "match")


# -- loading and changing the gallery ---------------------------------------------------------------------
def open_gallery(srv, root, object_id: str, version: int, dim: int, frac: int) -> dict:
    """Hold this server's half of `version` (read from its store once per session) and report it
    (header, half digest, binding) for the client to check against its record. Version 0 is a new,
    empty gallery. Every call checks with the other server that both hold the same version (one round),
    so the two stay in step even when only one had it loaded already."""
    state = srv.state.get(STATE)
    if version == 0:
        half = Half.empty(store.KIND, object_id, srv.index, dim + 1, store.half_meta(dim, frac))
    elif state is not None and (state["half"].id, state["half"].version) == (object_id, version):
        agree(srv, state["half"])
        return state["half"].report()    # held with its pool of masked queries
    else:
        half = load_half(srv, root, store.KIND, object_id, version)
    if half.header["meta"] != store.half_meta(dim, frac) or half.rows.shape[1] != dim + 1:
        raise store.GalleryError(f"server {srv.index}'s half of gallery {object_id} holds {half.header['meta']}; "
                                 f"the client's record says {store.half_meta(dim, frac)}")
    return _hold(srv, half)


def append_rows(srv, root, version: int, object_id: str) -> dict:
    """Receive new rows (shares of embeddings and of their squared norms) and write pending version
    `version`: the held rows followed by the new ones, appended in one transaction."""
    half = srv.state[STATE]["half"]
    rows, norms = srv.receive(), srv.receive()
    dim = half.header["meta"]["dim"]
    if rows.frac != half.header["meta"]["frac_bits"] or rows.ndim != 2 or rows.shape[1] != dim:
        raise store.GalleryError(f"new rows {rows.shape} at {rows.frac} bits do not fit the gallery")
    new = np.concatenate([rows.share, norms.share[:, None]], axis=1)
    return _hold(srv, write_half(srv, root, store.KIND, object_id, version, half.header["meta"], parent=half, add=new))


def remove_rows(srv, root, rows, version: int, object_id: str) -> dict:
    """Write pending version `version` without the given rows (public row numbers: a server learns which
    rows go, not whose they are)."""
    half = srv.state[STATE]["half"]
    return _hold(srv, write_half(srv, root, store.KIND, object_id, version, half.header["meta"], parent=half,
                                 remove=rows))


def _hold(srv, half) -> dict:
    """Keep `half` for the queries of this session, so the next use need not read it back. (If the client
    does not commit a version just written, its record names another version, and that is read anew.)"""
    dim = half.header["meta"]["dim"]
    srv.state[STATE] = {"half": half, "emb": half.rows[:, :dim], "norms": half.rows[:, dim],
                        "frac": half.header["meta"]["frac_bits"]}
    return half.report()


# -- distances ----------------------------------------------------------------------------------------------
def cross_products(srv, q: np.ndarray, pool_size: int) -> np.ndarray:
    """Shares of Q @ G^T at 2*frac bits for this server's query shares q (m x d), through the engine's
    MaskedOperand (module docstring): one round, m*d ring elements per server, plus n*d once a pool."""
    state = srv.state[STATE]
    if "masked" not in state:  # kept with this version of the gallery; a new version gets a new pool
        gallery_t = srv.local(np.ascontiguousarray(state["emb"].T), state["frac"])
        state["masked"] = MaskedOperand(gallery_t, pool_rows=pool_size)
    return state["masked"].matmul(srv.local(q, state["frac"]), frac=2 * state["frac"]).share


def query(srv, mode: str, pool_size: int, tolerance_sq: float, exclude=None) -> None:
    """Receive m queries and their squared norms; reveal to the client, by `mode`:
        all:      every squared distance (m x n);
        nearest:  per query, the smallest squared distance and the row where it is (argmin under MPC);
        match:    per query, row + 1 of the nearest entry if its squared distance <= tolerance_sq, else 0.
    exclude (evaluation only): per query a row to leave out, or -1; the servers learn these rows."""
    state = srv.state[STATE]
    frac = state["frac"]
    q, q_norms = srv.receive(), srv.receive()
    if q.frac != frac or q.ndim != 2 or q.shape[1] != state["emb"].shape[1]:
        raise store.GalleryError(f"queries {q.shape} at {q.frac} bits do not fit the gallery")
    cross = cross_products(srv, q.share, pool_size)
    d = q_norms.share[:, None] + state["norms"][None, :] - U64(2) * cross
    if exclude is not None and srv.index == 0:
        rows = np.flatnonzero(np.asarray(exclude) >= 0)
        d[rows, np.asarray(exclude)[rows]] += EXCLUDED
    dist = srv.local(d, 2 * frac)
    if mode == "all":
        srv.reveal_to(dist)
        return
    value, index = F.argmin(dist, axis=1)
    if mode == "nearest":
        srv.reveal_to(value)
        srv.reveal_to(index)
    elif mode == "match":
        within = 1 - F.greater_than(value, tolerance_sq)      # [d <= t]
        srv.reveal_to(within * (index + 1))      # a bit times an integer: exact, no truncation
    else:
        raise ValueError(f"unknown reveal mode {mode!r}; choose one of {', '.join(REVEAL_MODES)}")


# -- 1:1 --------------------------------------------------------------------------------------------------------
def receive_templates(srv, key: str) -> tuple:
    """Keep a batch of shared embeddings (the client's templates) under srv.state[key]."""
    srv.state[key] = srv.receive()
    return srv.state[key].shape


def template_distances(srv, key: str, rows_a, rows_b) -> None:
    """Reveal ||x_a - x_b||^2 for each pair of stored templates, at 2*frac bits: one round of squares."""
    x = srv.state[key]
    diff = x[np.asarray(rows_a)] - x[np.asarray(rows_b)]
    srv.reveal_to(diff.square(frac=2 * x.frac).sum(axis=-1))
