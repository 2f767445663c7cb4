"""The servers' side of the gallery: programs that both servers run, each on its own shares.

Numbers. Embeddings are shared at `frac` fractional bits and every distance is an exact ring computation
at 2*frac bits on those fixed-point vectors — nothing is ever truncated, so the only error against
float64 is the rounding of each coordinate to 2^-frac. Squared norms are computed by the client that
owns each vector, exactly, as integers (sum of squares of the encoded coordinates), and shared with it:
a server never needs a product to get them.

    ||q - g||^2 = ||q||^2 - 2 q.g + ||g||^2       (the cross term is the only product between parties)

Rings (store.ring_bits). At frac <= 13 every squared distance, and every difference of two that the
argmin compares, is below 2^31 ring units (store.distance_limit, with the client's norm limit
store.max_norm), so the distances are computed modulo 2^32 (uint32: half the memory and arithmetic)
and compared by 32-bit comparisons, which read shares modulo 2^32 only (functions.comparison_width).
Above 13 bits, modulo 2^64.

Identification computes the cross terms Q G^T through ppfr.mpc.reuse.MaskedRows: the gallery is held
masked, F = G - B opened once per row (when a session first queries this version, and for each row
enrolled after that: only the new rows), and each batch of queries opens only its own Q - A; the dealer's
share of the work for the next batch is asked for ahead, at the end of each query.
"""
from __future__ import annotations

import numpy as np

from ppfr.mpc import functions as F
from ppfr.mpc.reuse import MaskedRows
from ppfr.mpc.rows import GrowingRows
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
        half = Half.empty(store.KIND, object_id, srv.index, store.row_width(dim, frac), store.half_meta(dim, frac))
    elif state is not None and (state["half"].id, state["half"].version) == (object_id, version):
        agree(srv, state["half"])
        return state["half"].report()    # held, masked if it has been queried
    else:
        half = load_half(srv, root, store.KIND, object_id, version)
    if half.header["meta"] != store.half_meta(dim, frac) or half.rows.shape[1] != store.row_width(dim, frac):
        raise store.GalleryError(f"server {srv.index}'s half of gallery {object_id} holds {half.header['meta']}; "
                                 f"the client's record says {store.half_meta(dim, frac)}")
    return _hold(srv, half)


def append_rows(srv, root, version: int, object_id: str, chunks: int = 1, total: int | None = None) -> dict:
    """Receive `total` new rows in `chunks` parts (shares of embeddings, then of their squared norms, per
    part) and write pending version `version`: the held rows followed by the new ones, appended in one
    transaction. A gallery held masked for queries opens the new rows only (MaskedRows.append)."""
    state = srv.state[STATE]
    half, meta = state["half"], state["half"].header["meta"]
    masked = state.get("masked")
    new = GrowingRows(store.row_width(meta["dim"], meta["frac_bits"]), U64, total or 0)
    for _ in range(chunks):
        rows, norms = srv.receive(), srv.receive()
        if rows.frac != meta["frac_bits"] or rows.ndim != 2 or rows.shape[1] != meta["dim"]:
            raise store.GalleryError(f"new rows {rows.shape} at {rows.frac} bits do not fit the gallery")
        new.append(store.pack_rows(rows.share, norms.share, meta["frac_bits"]))
        if masked is not None:
            masked.append(rows.share)
    written = write_half(srv, root, store.KIND, object_id, version, meta, parent=half, add=new.rows)
    if masked is None:
        return _hold(srv, written)
    return _hold(srv, written, masked, np.concatenate([state["norms"], store.unpack_rows(new.rows, meta["dim"],
                                                                                         meta["frac_bits"])[1]]))


def remove_rows(srv, root, rows, version: int, object_id: str) -> dict:
    """Write pending version `version` without the given rows (public row numbers: a server learns which
    rows go, not whose they are). The next query masks the gallery anew (so a half held without its
    rows, masked, is read back)."""
    half = srv.state[STATE]["half"]
    written = write_half(srv, root, store.KIND, object_id, version, half.header["meta"], parent=half, remove=rows)
    return _hold(srv, written if written.rows is not None else load_half(srv, root, store.KIND, object_id, version))


def _hold(srv, half, masked: MaskedRows | None = None, norms=None) -> dict:
    """Keep `half` for the queries of this session, so the next use need not read it back: with its rows,
    or, once masked, without them (the masked form and the norms are all that queries need). (If the
    client does not commit a version just written, its record names another version, and that is read
    anew.)"""
    old = srv.state.get(STATE)
    if old is not None and old["ahead"] is not None:
        old["ahead"].get()       # material asked for ahead of a query that will not come: both take it alike
    meta = half.header["meta"]
    emb = None
    if half.rows is not None:
        emb, norms = store.unpack_rows(half.rows, meta["dim"], meta["frac_bits"])
    srv.state[STATE] = {"half": half, "emb": emb, "norms": norms, "frac": meta["frac_bits"],
                        "bits": store.ring_bits(meta["frac_bits"]), "masked": masked, "ahead": None}
    return half.report()


# -- distances ----------------------------------------------------------------------------------------------
def masked_gallery(srv) -> MaskedRows:
    """The held gallery as MaskedRows, built (every row opened masked, once) on first use."""
    state = srv.state[STATE]
    if state["masked"] is None:
        rows = len(state["emb"])   # room for them and a few enrolments more
        state["masked"] = MaskedRows(srv, STATE, state["emb"].shape[1], state["bits"], rows + rows // 64 + 1024)
        state["masked"].append(state["emb"])
        # the stored rows are no longer needed in memory: a million of them are 520 MB
        state.update(half=state["half"].without_rows(), emb=None, norms=state["norms"].copy())
    return state["masked"]


def cross_products(srv, q: np.ndarray) -> np.ndarray:
    """Shares of Q G^T (m x n, in the gallery's ring) for this server's query shares q (m x d): one round,
    m*d ring elements per server online (MaskedRows). Takes the material asked for ahead when it fits
    (same m, same gallery rows), and asks at once for the next query of this size, so that the dealer
    draws it (a product with its n x d mask) while this query runs."""
    state = srv.state[STATE]
    masked = masked_gallery(srv)
    ahead = state["ahead"]
    fits = ahead is not None and ahead.request.queries == len(q) and ahead.request.rows == len(masked)
    if ahead is not None and not fits:
        ahead.get()       # both servers drop it alike: it was drawn for another size
    material = ahead if fits else masked.ask(len(q))
    state["ahead"] = masked.ask(len(q))
    return masked.products(q, material)


def squared_distances(srv, q, q_norms, exclude=None) -> np.ndarray:
    """Shares of ||q_i - g_j||^2 (m x n) at 2*frac bits, in the gallery's ring (uint64 arrays; with a
    32-bit ring only their values modulo 2^32 are meaningful). exclude: per query a row to push beyond
    every real distance, or -1."""
    state = srv.state[STATE]
    dtype = np.uint32 if state["bits"] == 32 else U64
    d = q_norms.astype(dtype)[:, None] + state["norms"].astype(dtype)[None, :] - dtype(2) * cross_products(srv, q)
    if exclude is not None and srv.index == 0:
        rows = np.flatnonzero(np.asarray(exclude) >= 0)
        d[rows, np.asarray(exclude)[rows]] += dtype(_excluded(state))
    return d.astype(U64)


def _excluded(state) -> int:
    """What an excluded entry's squared distance gets (ring units): more than any real one."""
    if state["bits"] == 64:
        return int(EXCLUDED)
    return int(store.distance_limit(state["frac"]) / 2 * 2.0 ** (2 * state["frac"]))


def query(srv, mode: str, tolerance_sq: float, exclude=None) -> None:
    """Receive m queries and their squared norms; reveal to the client, by `mode`:
        all:      every squared distance (m x n);
        nearest:  per query, the smallest squared distance and the row where it is (argmin under MPC);
        match:    per query, row + 1 of the nearest entry if its squared distance <= tolerance_sq, else 0.
    exclude (evaluation only): per query a row to leave out, or -1; the servers learn these rows.
    With a 32-bit ring, distances are compared by 32-bit comparisons (module docstring) and reach the
    client modulo 2^32 (service.decode_distances)."""
    if mode not in REVEAL_MODES:
        raise ValueError(f"unknown reveal mode {mode!r}; choose one of {', '.join(REVEAL_MODES)}")
    state = srv.state[STATE]
    frac = state["frac"]
    q, q_norms = srv.receive(), srv.receive()
    if q.frac != frac or q.ndim != 2 or q.shape[1] != state["half"].header["meta"]["dim"]:
        raise store.GalleryError(f"queries {q.shape} at {q.frac} bits do not fit the gallery")
    dist = srv.local(squared_distances(srv, q.share, q_norms.share, exclude), 2 * frac)
    if mode == "all":
        srv.reveal_to(_in_ring(dist, state))
        state["ahead"].wait()
        return
    value, index = _nearest(dist, state)
    if mode == "nearest":
        srv.reveal_to(_in_ring(value, state))
        srv.reveal_to(index)
    else:   # [d <= t] times an integer: exact, no truncation
        srv.reveal_to((1 - _above(value, tolerance_sq, state)) * (index + 1))
    state["ahead"].wait()     # drawn while this query ran: the job ends with the dealer's answer here


def _nearest(dist, state):
    """(smallest value, its row) per row of `dist`, by functions.argmin. With a 32-bit ring the values lie
    in [0, limit) and are compared centred, |d - limit/2| < limit/2, so by 32-bit comparisons."""
    if state["bits"] == 64:
        return F.argmin(dist, axis=1)
    half_limit = store.distance_limit(state["frac"]) / 2
    value, index = F.argmin(dist - half_limit, axis=1, bound=half_limit)
    return value + half_limit, index


def _above(value, threshold: float, state):
    """Shares of [value > threshold], for any tolerance the config allows. With a 32-bit ring by a 32-bit
    comparison: a threshold beyond every real squared distance (limit / 2) is the same as limit / 2, so
    |threshold - value| < limit."""
    if state["bits"] == 64:
        # The threshold as a ring integer at the distances' 2f fractional bits, clamped to the largest real
        # squared distance: a public constant that large is beyond the fixed-point encoder's range
        # (|x| < 2^(48 - 2f): 256 at f = 20), but t - value stays far inside the ring (|.| < 2^61).
        srv, top = value.server, (2 * store.max_norm(state["frac"])) ** 2
        t = int(round(min(threshold, top) * 2.0 ** value.frac))
        return F.less_than_zero(srv.local(np.full(value.shape, t if srv.index == 0 else 0, dtype=U64), value.frac)
                                - value)
    limit = store.distance_limit(state["frac"])
    return F.less_than_zero(min(threshold, limit / 2) - value, bound=limit)


def _in_ring(x, state):
    """A result as the client may see it: with a 32-bit ring, each share reduced modulo 2^32, so that the
    two shares reveal the value modulo 2^32 and nothing of the wrap-arounds above it."""
    return x if state["bits"] == 64 else x._new(x.share & U64(0xFFFFFFFF))


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
