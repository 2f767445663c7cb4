"""The digests that make stored objects self-verifying and bind the client's record to both halves.

    row digest     sha256 of one row's bytes
    half digest    sha256 of the half's header (kind, id, version, party, rows, width, metadata) in
                   canonical JSON, then every row digest in row order: any change to a share, to the
                   order or number of rows, or to the metadata changes it
    binding        sha256 of the client's whole record in canonical JSON (names and their order,
                   preprocessing, fixed point, version, row count, both halves' headers and half
                   digests): written into the record and into both halves, so each of the three
                   commits to the other two

Canonical JSON: sorted keys, no spaces, UTF-8, so the same content always gives the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import re

import numpy as np

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def row_digests(rows: np.ndarray) -> list[bytes]:
    """One sha256 per row of a 2-D uint64 array (in memory, 32 bytes each)."""
    rows = np.ascontiguousarray(rows, dtype=np.uint64)
    return [hashlib.sha256(row.tobytes()).digest() for row in rows]


def half_digest(header: dict, digests: list[bytes]) -> str:
    h = hashlib.sha256(canonical(header))
    h.update(b"\0")
    for d in digests:
        h.update(d)
    return h.hexdigest()


def binding(record: dict) -> str:
    """The digest of everything in a client record but the binding itself."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "binding"})).hexdigest()


def is_digest(value) -> bool:
    return isinstance(value, str) and HEX64.match(value) is not None
