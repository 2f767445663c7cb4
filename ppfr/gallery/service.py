"""The client's side of the gallery: enrol, remove, identify (1:N) and verify (1:1).

    with Gallery("gallery") as g:
        g.enroll("Ada", vectors)                      # shares go to the servers; names stay here
        [hit] = g.identify(query_vector[None])        # nearest identity under MPC, or unknown
        g.remove("Ada")
    pair_distances(a, b)                              # 1:1, no gallery needed

The parties run where the config's mpc.parties says (ppfr.mpc.open_session), each server reading and writing
only its own directory, GALLERY/serverN/. The client keeps the record (GALLERY/client/gallery.json).

What the client learns, by reveal mode (`identify(..., reveal=)`):
    all      the squared distance from each query to every gallery entry;
    nearest  per query only the nearest entry (so its name) and its squared distance;
    match    per query only the nearest entry if it is within the tolerance, else only "unknown".
The servers learn the number of entries and queries, which rows an enrolment or removal touches, and
nothing about embeddings, names, distances or answers.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from ppfr.config import fixed_point, section
from ppfr.mpc import FixedPoint, ProtocolAborted, Session, open_session
from ppfr.storage import commit_change, finish_open, require_unclaimed

from . import protocols as P
from . import store
from .store import Entry, GalleryError, GalleryRecord

_cfg = section("gallery")
FRAC_BITS = int(_cfg.get("frac_bits", 20))     # exact products at 40 bits; resolution 1e-6
TOLERANCE = float(_cfg.get("tolerance", 0.6))  # dlib's convention, on the Euclidean distance
REVEAL = str(_cfg.get("reveal", "nearest"))
BATCH = int(_cfg.get("batch", 16))             # queries per MPC run
CHUNK_ROWS = 1 << 16                           # rows per message of an enrolment (64 MB of shares a server)
# Norms are limited by store.max_norm: 64 for a 64-bit ring, where every squared distance is at most
# 2^14, i.e. 2^54 ring units at 40 fractional bits, far from the 2^63 where the ring would wrap; an
# excluded entry gets protocols.EXCLUDED = 2^60 added, above every real distance while 2^(14 + 2f) < 2^60,
# so at most 22 fractional bits (at 24, 2^60 units are a squared distance of 4,096 and an excluded entry
# could come out nearest); 1.99 at 13 bits, 3.98 at 12 (a 32-bit ring).
FRAC_RANGE = (8, 22)


def encode_vectors(vectors, dim: int | None = None, frac: int = FRAC_BITS):
    """(float64 vectors, exact squared norms as ring integers at 2*frac bits) after range checks."""
    if not FRAC_RANGE[0] <= frac <= FRAC_RANGE[1]:
        raise ValueError(f"gallery.frac_bits must be in {FRAC_RANGE[0]}..{FRAC_RANGE[1]}, got {frac}")
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"expected vectors of length {dim or 'd'}, got an array of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("an embedding holds NaN or infinity")
    norms, limit = np.linalg.norm(x, axis=1), store.max_norm(frac)
    if norms.size and norms.max() > limit:
        raise ValueError(f"an embedding has norm {norms.max():.3g}; a gallery at {frac} fractional bits takes "
                         f"norms up to {limit:.3g}")
    raw = FixedPoint(frac_bits=frac, bound_bits=max(48, frac + 8)).encode(x, frac)
    # the servers compute with the rounded vector, whose norm may lie up to sqrt(d) 2^-(frac+1) above:
    # the bounds on distances (an excluded entry's offset, the clamped tolerance) hold for that one
    rounded = np.linalg.norm(raw.view(np.int64).astype(np.float64), axis=1) / 2.0**frac
    if rounded.size and rounded.max() > limit:
        raise ValueError(f"an embedding rounds to norm {rounded.max():.6g} at {frac} fractional bits, above the "
                         f"{limit:.6g} a gallery at {frac} fractional bits takes")
    return x, (raw * raw).sum(axis=1, dtype=np.uint64).view(np.int64)   # wraps mod 2^64, exact


@dataclass
class Identification:
    """The client's answer for one query."""
    name: str | None                  # who it is (within tolerance), or None: unknown
    nearest: str | None               # the nearest enrolled person (None when the mode hides it)
    entry: int | None                 # the row of the nearest entry
    squared_distance: float | None    # what the MPC computed (None in match mode)
    distance: float | None            # its square root, on dlib's scale
    candidates: list = field(default_factory=list)   # mode "all": [(name, distance)] best first, per person

    @property
    def known(self) -> bool:
        return self.name is not None

    def as_dict(self) -> dict:
        return {"name": self.name, "known": self.known, "nearest": self.nearest, "entry": self.entry,
                "distance": self.distance, "squared_distance": self.squared_distance,
                **({"candidates": [{"name": n, "distance": d} for n, d in self.candidates]}
                   if self.candidates else {})}


class _Parties:
    """A session (the config's kind, ppfr.mpc.open_session) that is replaced after a failure (a failed run
    closes it)."""

    def __init__(self, session=None):
        self._session, self._own = session, session is None

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = open_session(fixed=fixed_point())  # the config's mpc: settings, as elsewhere
        return self._session

    def run(self, program, *args, client=None):
        """Run `program` on both servers while `client(session.client)` plays the client; returns
        (what the client function returned, [server 0's result, server 1's result]). An error is
        re-raised where it started: a server's as itself, not as the client's 'stopped waiting'."""
        session = self.session
        job = session.run(program, *args)
        try:
            out = client(session.client) if client else None
        except ProtocolAborted:
            try:
                job.result()       # raises the server's error, the root cause
            finally:
                self._drop()
            raise
        except BaseException:
            session.abort("the client failed")   # wake the servers waiting for its input
            with contextlib.suppress(BaseException):
                job.result()
            self._drop()
            raise
        try:
            return out, job.result()
        except BaseException:
            self._drop()
            raise

    def _drop(self):
        if self._session is not None and self._own:
            self._session.close()
            self._session = None

    def close(self):
        self._drop()


class Gallery:
    """A secret-shared gallery at `root` (created by the first enrolment)."""

    def __init__(self, root, *, session: Session | None = None, frac_bits: int = FRAC_BITS,
                 batch: int = BATCH):
        self.root = root
        self.frac_bits = frac_bits
        self.batch = batch
        self.parties = _Parties(session)
        self._cached = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.parties.close()

    # -- state ---------------------------------------------------------------------------------------------
    def require_entries(self) -> GalleryRecord:
        """The committed record, or a clear error when there is nobody to compare with. A missing record
        is "no gallery" only when the servers hold no gallery data either."""
        rec = self.record
        if rec is None:
            require_unclaimed(self._run, self.root, store.KIND, store.record_path(self.root))
            raise GalleryError(f"there is no gallery at {self.root} yet: enrol someone first (ppfr enroll)")
        if not rec.entries:
            raise GalleryError(f"the gallery at {self.root} is empty (everyone was removed): enrol someone first")
        return rec

    @property
    def record(self) -> GalleryRecord | None:
        """The committed record, re-read whenever the file has been replaced (a commit is a rename, so a
        new inode), so that a long-lived client does not parse a large record for every query."""
        try:
            st = store.record_path(self.root).stat()
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return None
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, store.read_record(self.root))
        return self._cached[1]

    def names(self) -> list[str]:
        rec = self.record
        return sorted(set(rec.names())) if rec else []

    def _run(self, program, *args) -> list:
        """What both servers return from `program` (no client part)."""
        return self.parties.run(program, *args)[1]

    def _open(self, rec: GalleryRecord) -> None:
        """Have both servers hold the recorded version, checked against the client's record (and commit
        it where an interrupted change left it pending)."""
        reports = self._run(P.open_gallery, self.root, rec.id, rec.version, rec.dim, rec.frac_bits)
        if rec.version:
            finish_open(self._run, self.root, rec.to_json(), reports, store.record_path(self.root))

    def _start(self, embedder: str, dim: int) -> GalleryRecord:
        """The record a change starts from: the committed one, or a new gallery when there is none and
        the servers hold no gallery data at this root either."""
        rec = self.record
        if rec is None:
            require_unclaimed(self._run, self.root, store.KIND, store.record_path(self.root))
            rec = GalleryRecord.new(self.frac_bits, dim, embedder)
        if rec.embedder != embedder or rec.dim != dim:
            raise GalleryError(f"this gallery holds {rec.dim}-d {rec.embedder} embeddings, not "
                               f"{dim}-d {embedder}: distances between the two mean nothing")
        self._open(rec)
        return rec

    def _commit(self, new: GalleryRecord, reports) -> GalleryRecord:
        data = commit_change(self._run, self.root, store.record_path(self.root), new.to_json(), reports)
        new.halves, new.binding, new.written = data["halves"], data["binding"], data["written"]
        return new

    # -- changes -------------------------------------------------------------------------------------------
    def enroll(self, name: str, vectors, sources=None, embedder: str = "dlib_resnet_v1") -> GalleryRecord:
        """Add one person's embeddings (one row each)."""
        vectors = np.asarray(vectors, dtype=np.float64).reshape(-1, np.shape(vectors)[-1])
        return self.enroll_many([name] * len(vectors), vectors, sources, embedder)

    def enroll_many(self, names, vectors, sources=None, embedder: str = "dlib_resnet_v1", *,
                    chunk_rows: int = CHUNK_ROWS, progress: bool = False) -> GalleryRecord:
        """Add rows (names[i] for vectors[i]) as one atomic change: the client shares them `chunk_rows`
        at a time, and each server appends them to its store in one transaction, without rewriting the
        rows it holds."""
        names = [str(n) for n in names]
        if any(not n.strip() for n in names):
            raise GalleryError("a person's name cannot be empty")
        sources = list(sources) if sources is not None else [""] * len(names)
        x, norms = encode_vectors(vectors, frac=self.frac_bits)
        if not len(x) or len(x) != len(names) or len(sources) != len(names):
            raise GalleryError(f"{len(x)} vectors, {len(names)} names and {len(sources)} sources: "
                               "need one name (and source) per vector, and at least one vector")
        starts = range(0, len(x), max(1, int(chunk_rows)))
        with store.locked(self.root, exclusive=True):
            rec = self._start(embedder, x.shape[1])
            new = rec.successor(rec.entries + [Entry(n, str(s)) for n, s in zip(names, sources)])

            def send(client):
                for lo in _progress(starts, progress, "enrolling"):
                    client.share(x[lo:lo + chunk_rows], frac=rec.frac_bits)
                    client.share(norms[lo:lo + chunk_rows], frac=0)

            _, reports = self.parties.run(P.append_rows, self.root, new.version, new.id, len(starts), len(x),
                                         client=send)
            return self._commit(new, reports)

    def remove(self, name: str) -> int:
        """Remove every row of `name` from both halves; returns how many rows went."""
        with store.locked(self.root, exclusive=True):
            rec = self.require_entries() if self.record is None else self.record
            rows = rec.rows_of(name)
            if not rows:
                raise GalleryError(f"{name!r} is not enrolled in the gallery at {self.root}")
            self._open(rec)
            gone = set(rows)
            new = rec.successor(e for i, e in enumerate(rec.entries) if i not in gone)
            _, reports = self.parties.run(P.remove_rows, self.root, rows, new.version, new.id)
            self._commit(new, reports)
            return len(rows)

    # -- 1:N -------------------------------------------------------------------------------------------------
    def identify(self, queries, *, reveal: str = REVEAL, tolerance: float = TOLERANCE, top: int = 1,
                 exclude=None, progress: bool = False) -> list[Identification]:
        """Who each query is (nearest entry within `tolerance` on the Euclidean distance), under MPC.
        The MPC compares squared distances, so the tolerance is squared (0.6 -> 0.36)."""
        if reveal not in P.REVEAL_MODES:
            raise ValueError(f"unknown reveal mode {reveal!r}; choose one of {', '.join(P.REVEAL_MODES)}")
        with store.locked(self.root, exclusive=False):
            rec = self.require_entries()
            self._open(rec)
            x, norms = encode_vectors(queries, rec.dim, rec.frac_bits)
            exclude = None if exclude is None else np.asarray(exclude, dtype=np.int64)
            names = rec.names()
            out = []
            for s in _progress(range(0, len(x), self.batch), progress, "identifying"):
                part = slice(s, s + self.batch)
                raw = self.raw_query(rec, x[part], norms[part], reveal, tolerance,
                                     None if exclude is None else exclude[part])
                out += _answers(raw, reveal, names, tolerance, top)
            return out

    def raw_query(self, rec, x, norms, reveal, tolerance, exclude=None):
        """One MPC run for a batch of encoded queries: what the client reconstructs, per mode."""
        def ask(client):
            client.share(x, frac=rec.frac_bits)
            client.share(norms, frac=0)
            if reveal == "nearest":
                return decode_distances(client.reconstruct_raw(), rec.frac_bits), client.reconstruct()
            if reveal == "all":
                return decode_distances(client.reconstruct_raw(), rec.frac_bits)
            return client.reconstruct()

        out, _ = self.parties.run(P.query, reveal, tolerance ** 2, exclude, client=ask)
        return out


def _progress(steps, show: bool, what: str):
    if not show:
        return steps
    from tqdm import tqdm
    return tqdm(steps, desc=what, unit="chunk")


def decode_distances(result, frac_bits: int) -> np.ndarray:
    """Squared distances from their ring elements (raw, frac): in a 32-bit ring, modulo 2^32."""
    raw, frac = result
    if store.ring_bits(frac_bits) == 32:
        raw = raw.astype(np.uint32).view(np.int32).astype(np.int64).view(np.uint64)
    return FixedPoint().decode(raw, frac)


def _answers(raw, reveal, names, tolerance, top) -> list[Identification]:
    limit = tolerance ** 2
    answers = []
    if reveal == "match":
        for who in np.asarray(raw, dtype=np.int64):
            entry = int(who) - 1 if who else None
            answers.append(Identification(names[entry] if who else None, names[entry] if who else None,
                                          entry, None, None))
        return answers
    if reveal == "nearest":
        values, rows = raw
        pairs = zip(np.asarray(values, dtype=np.float64), np.asarray(rows, dtype=np.int64))
    else:
        rows = np.argmin(raw, axis=1)
        pairs = zip(raw[np.arange(len(rows)), rows], rows)
    for i, (sq, row) in enumerate(pairs):
        sq, row = float(sq), int(row)
        hit = Identification(names[row] if sq <= limit else None, names[row], row, sq, float(np.sqrt(max(sq, 0.0))))
        if reveal == "all" and top > 1:
            best: dict[str, float] = {}
            for j in np.argsort(raw[i], kind="stable"):
                best.setdefault(names[j], float(np.sqrt(max(raw[i, j], 0.0))))
                if len(best) == top:
                    break
            hit.candidates = list(best.items())
        answers.append(hit)
    return answers


# -- 1:1 --------------------------------------------------------------------------------------------------------
def pair_distances(a, b, *, session: Session | None = None, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """Squared Euclidean distances ||a_i - b_i||^2 computed under MPC (rows of a and b are pairs)."""
    xa, _ = encode_vectors(a, frac=frac_bits)
    xb, _ = encode_vectors(b, xa.shape[1], frac=frac_bits)
    if len(xa) != len(xb):
        raise ValueError(f"{len(xa)} vectors on one side and {len(xb)} on the other")
    parties = _Parties(session)
    try:
        parties.run(P.receive_templates, "pairs", client=lambda c: c.share(np.concatenate([xa, xb]), frac=frac_bits))
        n = len(xa)
        out, _ = parties.run(P.template_distances, "pairs", np.arange(n), np.arange(n, 2 * n),
                             client=lambda c: c.reconstruct())
        return out
    finally:
        parties.close()
