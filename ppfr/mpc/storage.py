"""Shares on disk: what a server keeps (model or gallery shares) and how halves are tied together.

Each server writes its half to its own directory as one .npz: the share arrays plus a JSON header with the
kind of object ("model", "gallery"), its id, the server index, fixed-point settings, free metadata and a
SHA-256 digest of the arrays. The client keeps a record with the id and both digests. Loading refuses:
a missing half; a half of the wrong server or kind; a half whose arrays no longer match its digest; a
half whose id is not the one the client names (each server checks its own against the id it is sent,
so two halves of different objects are refused); and, on the client, a half whose digest is not the one
it recorded (`check_record`) — which catches a file rewritten with a fresh digest. Files are written atomically, so an interrupted write leaves the previous version in place.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .errors import SessionMismatch

FORMAT = 1


class ShareFileError(SessionMismatch):
    """A share file is missing, damaged, tampered with, or belongs to something else."""


def digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + b"\0" + str(a.dtype).encode() + b"\0" + str(a.shape).encode() + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


def save_share(path, *, party: int, kind: str, object_id: str, arrays: dict, meta: dict | None = None) -> str:
    """Write one server's half atomically; returns its digest (for the client's record)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    header = {"format": FORMAT, "kind": kind, "id": object_id, "party": party, "meta": meta or {},
              "sha256": digest(arrays)}
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())
    return header["sha256"]


def load_share(path, *, party: int, kind: str):
    """Read and verify one server's half: returns (arrays, header)."""
    path = Path(path)
    if not path.exists():
        raise ShareFileError(f"missing share file {path} (server {party}'s half of the {kind})")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["__header__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__header__"}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ShareFileError(f"{path} is not a readable ppfr share file ({e})") from e
    if header.get("format") != FORMAT or header.get("kind") != kind:
        raise ShareFileError(f"{path} holds a {header.get('kind')!r} (format {header.get('format')}), not a {kind!r}")
    if header.get("party") != party:
        raise ShareFileError(f"{path} is server {header.get('party')}'s half, but server {party} is loading it")
    if digest(arrays) != header.get("sha256"):
        raise ShareFileError(f"{path} has been modified: its arrays do not match the digest written with them")
    return arrays, header


def check_record(record: dict, digests: list[str]) -> None:
    """Client side: the digests the servers report must be the ones recorded when the object was made."""
    for i, (want, got) in enumerate(zip(record["sha256"], digests)):
        if want != got:
            raise ShareFileError(f"server {i}'s half of {record['kind']} {record['id']} is not the one this "
                                 f"client recorded (digest {got[:12]}…, expected {want[:12]}…)")
