"""Where a gallery lives on disk, and how it changes atomically.

    GALLERY/server0/gallery-v000007.npz   server 0's shares (embeddings, squared norms) of version 7
    GALLERY/server1/gallery-v000007.npz   server 1's shares of the same version
    GALLERY/client/gallery.json           the client's record: gallery id, committed version, the
                                          digests of both halves, and the name of every row

Only the client knows who is in the gallery; a server holds uniform shares and the number of rows.

Atomic changes. A version's files are never modified: an enrolment or removal makes both servers write
version v+1 beside version v, and only then does the client replace its record (one atomic rename) to
point at v+1. A crash before that rename leaves the record, and so the gallery, at version v, with at
most a stray v+1 half that the next change overwrites or `prune` deletes; a crash after it leaves v+1
complete. Writers hold an exclusive lock on the gallery, readers a shared one, so a reader never sees
the version it is loading pruned under it.

The share files are written and checked with the project's one mechanism, ppfr.mpc.storage: each half
carries the gallery id and version and a digest of its arrays, each server checks its half against the id the client names,
and the client compares both digests with its record (`check_record`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ppfr.atomic import write_bytes_atomic
from ppfr.mpc.storage import ShareFileError, load_share, save_share

KIND = "gallery"
FORMAT = 1
RECORD_NAME = "gallery.json"
_HALF = re.compile(r"^gallery-v(\d{6})\.npz$")


class GalleryError(ShareFileError):
    """A gallery is missing, inconsistent, or asked for something it cannot do."""


def half_path(root, party: int, version: int) -> Path:
    return Path(root) / f"server{party}" / f"gallery-v{version:06d}.npz"


def record_path(root) -> Path:
    return Path(root) / "client" / RECORD_NAME


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
    sha256: list = field(default_factory=list)        # digests of server 0's and server 1's halves
    entries: list = field(default_factory=list)       # one Entry per row, in row order
    updated: float = 0.0

    @property
    def object_id(self) -> str:
        """The id written into both halves of this version: they must agree with each other and with it."""
        return f"{self.id}-v{self.version:06d}"

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def rows_of(self, name: str) -> list[int]:
        return [i for i, e in enumerate(self.entries) if e.name == name]

    def to_json(self) -> dict:
        return {"format": FORMAT, "kind": KIND, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> "GalleryRecord":
        fields = {k: data[k] for k in ("id", "version", "frac_bits", "dim", "embedder", "sha256", "updated")}
        return cls(**fields, entries=[Entry(**e) for e in data["entries"]])

    @classmethod
    def new(cls, frac_bits: int, dim: int, embedder: str) -> "GalleryRecord":
        return cls(id=secrets.token_hex(8), version=0, frac_bits=frac_bits, dim=dim, embedder=embedder)


def read_record(root) -> GalleryRecord | None:
    """The committed record, or None when no gallery has been created at `root`."""
    path = record_path(root)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("kind") != KIND or data.get("format") != FORMAT:
            raise ValueError(f"kind {data.get('kind')!r}, format {data.get('format')}")
        return GalleryRecord.from_json(data)
    except (ValueError, KeyError, TypeError) as e:
        raise GalleryError(f"{path} is not a ppfr gallery record ({e})") from e


def commit_record(root, record: GalleryRecord) -> None:
    """The commit point of every change: one atomic replacement of the client's record."""
    record.updated = time.time()
    write_bytes_atomic(record_path(root), json.dumps(record.to_json(), indent=1).encode())


# -- one server's half -----------------------------------------------------------------------------------
def save_half(root, party: int, version: int, object_id: str, embeddings: np.ndarray, norms: np.ndarray,
              frac_bits: int) -> str:
    """Write one server's half of a version (atomically); returns its digest."""
    meta = {"rows": int(embeddings.shape[0]), "dim": int(embeddings.shape[1]), "frac_bits": frac_bits,
            "version": version}
    return save_share(half_path(root, party, version), party=party, kind=KIND, object_id=object_id,
                      arrays={"embeddings": embeddings, "norms": norms}, meta=meta)


def load_half(root, party: int, version: int, object_id: str):
    """(embeddings, norms, header) of one server's half, refusing a half of anything else."""
    arrays, header = load_share(half_path(root, party, version), party=party, kind=KIND)
    if header["id"] != object_id:
        raise GalleryError(f"{half_path(root, party, version)} belongs to gallery {header['id']}, "
                           f"not {object_id}")
    emb, norms = arrays.get("embeddings"), arrays.get("norms")
    if emb is None or norms is None or emb.dtype != np.uint64 or emb.ndim != 2 or norms.shape != emb.shape[:1]:
        raise GalleryError(f"{half_path(root, party, version)} does not hold gallery shares")
    return emb, norms, header


def prune(root, party: int, keep: int) -> list[Path]:
    """Delete this server's halves of every version but `keep` (old versions and stray halves of an
    interrupted change). Call only under the writer's lock."""
    removed = []
    folder = Path(root) / f"server{party}"
    for path in folder.glob("gallery-v*.npz") if folder.is_dir() else []:
        m = _HALF.match(path.name)
        if m and int(m.group(1)) != keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def locked(root, exclusive: bool):
    """An advisory lock on the gallery (exclusive for writers, shared for readers)."""
    path = Path(root) / "client" / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
