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

from . import store

U64 = np.uint64
STATE = "gallery"            # srv.state key of the loaded gallery half
EXCLUDED = U64(2**60)        # added to an excluded entry's squared distance (ring units): never nearest
REVEAL_MODES = ("all", "nearest", "match")


# -- loading and changing the gallery ---------------------------------------------------------------------
def open_gallery(srv, root, version: int, object_id: str, dim: int, frac: int) -> str | None:
    """Load this server's half of `version` (once per session) and return its digest for the client to
    compare with its record. Each server checks its half against the id the client sends it, so the two
    hold halves of the same version without a further exchange."""
    state = srv.state.get(STATE)
    if state is None or state["id"] != object_id:
        if version == 0:   # a new gallery has no files yet
            state = {"id": object_id, "emb": np.zeros((0, dim), U64), "norms": np.zeros(0, U64),
                     "frac": frac, "sha256": None}
        else:
            emb, norms, header = store.load_half(root, srv.index, version, object_id)
            state = {"id": object_id, "emb": emb, "norms": norms, "frac": header["meta"]["frac_bits"],
                     "sha256": header["sha256"]}
        if state["frac"] != frac or state["emb"].shape[1] != dim:
            raise store.GalleryError(f"server {srv.index}'s half of {object_id} holds {state['emb'].shape[1]}-d "
                                     f"vectors at {state['frac']} fractional bits; the record says {dim} at {frac}")
        srv.state[STATE] = state
    return state["sha256"]


def append_rows(srv, root, version: int, object_id: str) -> str:
    """Receive new rows (shares of embeddings and of their squared norms) and write version `version`:
    the old rows followed by the new ones. Returns the new half's digest."""
    state = srv.state[STATE]
    rows, norms = srv.receive(), srv.receive()
    if rows.frac != state["frac"] or rows.ndim != 2 or rows.shape[1] != state["emb"].shape[1]:
        raise store.GalleryError(f"new rows {rows.shape} at {rows.frac} bits do not fit the gallery")
    emb = np.concatenate([state["emb"], rows.share])
    nrm = np.concatenate([state["norms"], norms.share])
    return _save_and_keep(srv, root, version, object_id, emb, nrm, state["frac"])


def remove_rows(srv, root, rows, version: int, object_id: str) -> str:
    """Write version `version` without the given rows (public row numbers: a server learns which rows
    go, not whose they are)."""
    state = srv.state[STATE]
    keep = np.setdiff1d(np.arange(state["emb"].shape[0]), np.asarray(rows, dtype=np.int64))
    return _save_and_keep(srv, root, version, object_id, state["emb"][keep], state["norms"][keep], state["frac"])


def _save_and_keep(srv, root, version: int, object_id: str, emb, norms, frac: int) -> str:
    """Write this server's half of a new version and hold it, so the next use need not read it back. (If
    the client does not commit the version, its record names the old version's id, which does not match,
    and the committed half is loaded anew.)"""
    digest = store.save_half(root, srv.index, version, object_id, emb, norms, frac)
    srv.state[STATE] = {"id": object_id, "emb": emb, "norms": norms, "frac": frac, "sha256": digest}
    return digest


def prune_halves(srv, root, keep: int) -> int:
    return len(store.prune(root, srv.index, keep))


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
