"""Helpers for storage tests: read both halves as a colluding pair would (tests only), and edit a
server's store or the client's record the way a careless or hostile user could."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np

from ppfr.storage import DB_NAME, PartyStore
from ppfr.storage.digest import binding, half_digest, row_digests


def db(root, party: int) -> Path:
    return Path(root) / f"server{party}" / DB_NAME


def halves(root, kind: str, record: dict):
    """Both servers' halves of the recorded version, read straight from their stores."""
    return [PartyStore(Path(root) / f"server{i}", i).load(kind, record["id"], record["version"]) for i in (0, 1)]


def plaintext(root, kind: str, record: dict, frac: int) -> np.ndarray:
    """The rows the two halves add up to, as floats at `frac` fractional bits."""
    h0, h1 = halves(root, kind, record)
    return (h0.rows + h1.rows).view(np.int64) / 2.0**frac


def digest_of_files(root) -> dict:
    """sha256 of what the stored data means: each store's committed content and the record's bytes."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if path.name == DB_NAME:
            with sqlite3.connect(path) as c:
                dump = "\n".join(c.iterdump())
            out[str(path.relative_to(root))] = hashlib.sha256(dump.encode()).hexdigest()
        elif path.suffix == ".json":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def edit_sql(root, party: int, sql: str, *args) -> None:
    with sqlite3.connect(db(root, party)) as c:
        c.execute(sql, args)
    sqlite3.connect(db(root, party)).close()


def edit_header(root, party: int, kind: str, change, redigest: bool = True) -> None:
    """Apply change(header) to every version's header on one server; with redigest, also write a fresh
    half digest, as someone hiding the edit would."""
    path = db(root, party)
    with sqlite3.connect(path) as c:
        for version, text in c.execute("SELECT version, header FROM versions WHERE kind = ?", (kind,)).fetchall():
            header = json.loads(text)
            blocks = c.execute("SELECT data FROM rows WHERE kind = ? AND added <= ? AND (removed IS NULL OR "
                               "removed > ?) ORDER BY seq", (kind, version, version)).fetchall()
            rows = np.frombuffer(b"".join(b[0] for b in blocks), np.uint64).reshape(-1, header["width"])
            change(header)
            c.execute("UPDATE versions SET header = ? WHERE kind = ? AND version = ?", (json.dumps(header), kind, version))
            if redigest:
                c.execute("UPDATE versions SET sha256 = ? WHERE kind = ? AND version = ?",
                          (half_digest(header, row_digests(rows)), kind, version))


def edit_record(path, change, rebind: bool = False) -> None:
    record = json.loads(Path(path).read_text())
    change(record)
    if rebind:
        record["binding"] = binding(record)
    Path(path).write_text(json.dumps(record))
