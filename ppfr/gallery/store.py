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

from ppfr.storage import StorageError, new_record, read_record as read_stored, record_path as stored_path

KIND = "gallery"
RECORD_NAME = "gallery.json"


class GalleryError(StorageError):
    """A gallery is missing, inconsistent, or asked for something it cannot do."""


def record_path(root) -> Path:
    return stored_path(root, RECORD_NAME)


def half_meta(dim: int, frac_bits: int) -> dict:
    """What each half's header says about its rows: dim shares of the embedding, then the squared norm."""
    return {"dim": int(dim), "frac_bits": int(frac_bits)}


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
