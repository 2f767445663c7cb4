"""Where a gallery lives, and what its record holds (the mechanism is ppfr.storage's).

    GALLERY/server0/ppfr.sqlite3   server 0's store: its shares of every row (embedding, squared norm)
    GALLERY/server1/ppfr.sqlite3   server 1's
    GALLERY/client/gallery.json    the client's record: gallery id, version, one name (and source) per row
                                   in row order, fixed point, dimension, embedder, both halves' headers
                                   and digests, and the binding

Only the client knows who is in the gallery; a server holds uniform shares and the number of rows.
An enrolment appends rows and a removal marks rows, each as a new version in one transaction on each
server's store; the client's record is then replaced (the commit point) and the servers commit. Writers
hold an exclusive lock on the gallery (GALLERY/client/.lock), readers a shared one.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppfr.storage import StorageError, new_record, read_record as read_stored, record_path as stored_path

KIND = "gallery"
RECORD_NAME = "gallery.json"


class GalleryError(StorageError):
    """A gallery is missing, inconsistent, or asked for something it cannot do."""


def record_path(root) -> Path:
    return stored_path(root, RECORD_NAME)


def half_meta(dim: int, frac_bits: int) -> dict:
    """What each half's header says about its rows: dim shares of the embedding, then the squared norm;
    with a 32-bit ring, the embedding's shares modulo 2^32, two to a stored word (pack_rows)."""
    return {"dim": int(dim), "frac_bits": int(frac_bits), **({"ring_bits": 32} if ring_bits(frac_bits) == 32 else {})}


# -- rings ---------------------------------------------------------------------------------------------------
NARROW_FRAC = 13      # galleries at up to this many fractional bits compute distances modulo 2^32
WIDE_MAX_NORM = 64.0  # above it: squared distances below 2^14, i.e. 2^54 ring units at 2*20 bits, far from 2^63


def ring_bits(frac_bits: int) -> int:
    """32 or 64: the ring of a gallery's distances (protocols module docstring)."""
    return 32 if frac_bits <= NARROW_FRAC else 64


def distance_limit(frac_bits: int) -> float:
    """With a 32-bit ring: every value the argmin compares (a squared distance, or an excluded entry's)
    lies in [0, limit), limit * 2^(2 frac) just below 2^31, so that the centred values, and the
    difference of a value and the tolerance, are below 2^31 ring units in magnitude."""
    return 0.99 * 2.0 ** (31 - 2 * frac_bits)


def max_norm(frac_bits: int) -> float:
    """The largest embedding norm a gallery takes: with a 32-bit ring, squared distances (at most
    (2 * norm)^2) stay below limit / 2, the other half of the range left for excluded entries (1.99 at
    13 bits, 3.98 at 12; LFW's dlib embeddings have norms 1.19 to 1.70)."""
    return WIDE_MAX_NORM if ring_bits(frac_bits) == 64 else (distance_limit(frac_bits) / 2) ** 0.5 / 2


def row_width(dim: int, frac_bits: int) -> int:
    """Stored words per row: the embedding (packed two to a word with a 32-bit ring) and the norm."""
    return (dim + 1) // 2 + 1 if ring_bits(frac_bits) == 32 else dim + 1


def pack_rows(emb, norms, frac_bits: int) -> np.ndarray:
    """A server's stored rows from its shares of embeddings (n x dim) and of their squared norms (n)."""
    emb, norms = np.asarray(emb, dtype=np.uint64), np.asarray(norms, dtype=np.uint64)
    if ring_bits(frac_bits) == 32:
        low = np.zeros((len(emb), 2 * ((emb.shape[1] + 1) // 2)), dtype=np.uint32)
        low[:, :emb.shape[1]] = emb     # modulo 2^32: all that the ring keeps
        emb = low.view(np.uint64)
    return np.concatenate([emb, norms[:, None]], axis=1)


def unpack_rows(rows: np.ndarray, dim: int, frac_bits: int):
    """(embedding shares n x dim, norm shares n) of stored rows: views, not copies (uint32 embedding
    shares with a 32-bit ring)."""
    width = row_width(dim, frac_bits) - 1
    emb = rows[:, :width].view(np.uint32)[:, :dim] if ring_bits(frac_bits) == 32 else rows[:, :width]
    return emb, rows[:, width]


@dataclass
class Entry:
    name: str
    source: str = ""          # where the client took the embedding from (an image path); client-only


@dataclass
class GalleryRecord:
    """The client's record of a gallery: everything needed to use it except the shares themselves."""

    id: str
    version: int
    frac_bits: int
    dim: int
    embedder: str
    entries: list = field(default_factory=list)       # one Entry per row, in row order
    halves: list = field(default_factory=list)        # each server's half: header and half digest
    binding: str = ""                                 # the digest of all of this (ppfr.storage.digest)
    written: str = ""

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def rows_of(self, name: str) -> list[int]:
        return [i for i, e in enumerate(self.entries) if e.name == name]

    def to_json(self) -> dict:
        data = new_record(KIND, self.id, self.version, self.names(), sources=[e.source for e in self.entries],
                          frac_bits=self.frac_bits, dim=self.dim, embedder=self.embedder)
        data.update(halves=self.halves, binding=self.binding, written=self.written)
        return data

    @classmethod
    def from_json(cls, data: dict, where) -> "GalleryRecord":
        sources = data.get("sources")
        if not (isinstance(sources, list) and len(sources) == data["rows"] and type(data.get("frac_bits")) is int
                and type(data.get("dim")) is int and isinstance(data.get("embedder"), str)):
            raise GalleryError(f"{where} is not a valid gallery record: sources, frac_bits, dim or embedder")
        return cls(data["id"], data["version"], data["frac_bits"], data["dim"], data["embedder"],
                   [Entry(n, str(s)) for n, s in zip(data["names"], sources)], data["halves"], data["binding"],
                   data.get("written", ""))

    @classmethod
    def new(cls, frac_bits: int, dim: int, embedder: str) -> "GalleryRecord":
        """Version 0: a gallery nobody has enrolled in yet (never written: records start at version 1)."""
        return cls(id=secrets.token_hex(8), version=0, frac_bits=frac_bits, dim=dim, embedder=embedder)

    def successor(self, entries) -> "GalleryRecord":
        return GalleryRecord(self.id, self.version + 1, self.frac_bits, self.dim, self.embedder, list(entries))


def read_record(root) -> GalleryRecord | None:
    """The committed record, verified, or None when there is no record file at `root`."""
    path = record_path(root)
    data = read_stored(path, KIND)
    return None if data is None else GalleryRecord.from_json(data, path)


@contextlib.contextmanager
def locked(root, exclusive: bool):
    """An advisory lock on the gallery (exclusive for writers, shared for readers)."""
    path = record_path(root).parent / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(os.open(path, os.O_CREAT | os.O_RDWR, 0o600)) as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
