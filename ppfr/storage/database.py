"""One server's store: a single SQLite database (stdlib sqlite3, WAL) in the server's own directory.

    DIR/               0700, owned by one server (ppfr server --data DIR; embedded: ROOT/serverN/)
    DIR/ppfr.sqlite3   0600 (SQLite creates its -wal and -shm files with the same mode)

Objects (a model, a gallery) are versioned. A version is a header (kind, id, version, party, rows,
width, metadata) and an ordered list of rows of `width` uint64 shares: one row per class of a model
(its weights and its bias) or per gallery entry (its embedding and its squared norm). Rows are stored
in blocks of up to BLOCK_ROWS; a block carries the version that added it and the one that removed it,
so version v is the blocks with added <= v < removed, in key order: an enrolment appends blocks, a
removal replaces each block it touches by one (same key) without the removed rows, each change in one
transaction and without rewriting the other blocks; a new model version marks all old blocks removed
and adds new ones.

Each change is written as a *pending* version v+1 beside the committed head v, and becomes the head
only when the client, having written its record, commits it (`commit`): then rows and versions older
than the head are deleted (with secure_delete, their pages are zeroed). A pending version that was never
committed is discarded only when the next change of the same object replaces it. Nothing else is ever
deleted: a store never prunes what the committed head does not supersede.

Reading verifies: the header names this party, object and version; every row has the width the header
says (checked on the bytes read, so no claim in a header allocates anything); the rows and header hash
to the half digest written with them. Any failure, including a damaged database file, raises
StorageError with one line naming the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppfr.mpc.rows import GrowingRows

from .digest import canonical, half_digest, row_digests
from .errors import StorageError
from .faults import checkpoint

DB_NAME = "ppfr.sqlite3"
FORMAT = 1
BUSY_SECONDS = 30.0
BLOCK_ROWS = 256      # rows stored together: reading costs one fetch per block, a removal rewrites the
                      # rows it keeps of each block it touches (at most this many)   # how long a writer waits for another process's transaction on the same store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, id TEXT NOT NULL, head INTEGER NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS versions (kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
    header TEXT NOT NULL, sha256 TEXT NOT NULL, binding TEXT, PRIMARY KEY (kind, id, version));
CREATE TABLE IF NOT EXISTS rows (kind TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    added INTEGER NOT NULL, removed INTEGER, count INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (kind, id, seq, added));
"""
_VISIBLE = "kind = ? AND id = ? AND added <= ? AND (removed IS NULL OR removed > ?)"


@dataclass
class Half:
    """One server's half of one version of an object, as read (and verified) or as just written."""

    header: dict                 # kind, id, version, party, rows, width, meta
    rows: np.ndarray | None      # (rows, width) uint64 shares; None once released (without_rows)
    sha256: str                  # the half digest (header and rows)
    binding: str | None          # binds it to the client's record and the other half; None while pending
    seqs: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))   # each row's block
    digests: list = field(repr=False, default_factory=list)                               # row digests
    buffer: GrowingRows | None = field(repr=False, default=None)   # holds `rows` with room to append in place

    @property
    def kind(self) -> str:
        return self.header["kind"]

    @property
    def id(self) -> str:
        return self.header["id"]

    @property
    def version(self) -> int:
        return self.header["version"]

    def without_rows(self) -> "Half":
        """This half without its rows in memory (a caller that keeps them in another form, such as a
        masked gallery): it can still be reported, agreed on and written after. An append to it gives
        a half without rows too; a removal reads the blocks it rewrites from the store."""
        return Half(self.header, None, self.sha256, self.binding, self.seqs, self.digests)

    def report(self) -> dict:
        """What a server tells the client about its half (public metadata and digests, no shares)."""
        return {"header": self.header, "sha256": self.sha256, "binding": self.binding}

    @classmethod
    def empty(cls, kind: str, object_id: str, party: int, width: int, meta: dict) -> "Half":
        """Version 0 of a new object: nothing stored yet."""
        header = make_header(kind, object_id, 0, party, np.zeros((0, width), np.uint64), meta)
        return cls(header, np.zeros((0, width), np.uint64), half_digest(header, []), None)


def make_header(kind: str, object_id: str, version: int, party: int, rows, meta: dict) -> dict:
    """rows: the rows, or their shape (count, width)."""
    count, width = rows.shape if isinstance(rows, np.ndarray) else rows
    return {"kind": kind, "id": object_id, "version": int(version), "party": int(party),
            "rows": int(count), "width": int(width), "meta": meta}


class PartyStore:
    """The store in `directory`, owned by server `party`. Thread-safe; other processes may open the same
    store (SQLite locks it), and a writer waits up to BUSY_SECONDS for another's transaction."""

    @staticmethod
    def exists(directory) -> bool:
        return (Path(directory) / DB_NAME).is_file()

    def __init__(self, directory, party: int):
        self.directory = Path(directory)
        self.party = int(party)
        self.path = self.directory / DB_NAME
        self._lock = threading.RLock()
        _private_directory(self.directory)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(self.path, 0o600)
        with self._errors():
            self._db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None,
                                       check_same_thread=False)
        try:
            with self._errors():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA secure_delete=ON")    # removed shares are overwritten, not just unlinked
                self._db.execute("PRAGMA journal_size_limit=4194304")   # the WAL shrinks back after a large change
                self._db.executescript(_SCHEMA)
                self._claim()
        except BaseException:
            # not left for the collector: a connection closed late writes its log into whatever file is
            # there by then (a store restored meanwhile)
            self.close()
            raise

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    # -- reading ---------------------------------------------------------------------------------------
    def heads(self, kind: str) -> dict:
        """{object id: committed head version} of every object of `kind` (0: only a pending version)."""
        with self._lock, self._errors():
            return dict(self._db.execute("SELECT id, head FROM objects WHERE kind = ?", (kind,)).fetchall())

    def load(self, kind: str, object_id: str, version: int) -> Half:
        """Read and verify `version` (the committed head, or a pending version just above it)."""
        with self._lock, self._errors():
            head = self._head(kind, object_id)
            row = self._db.execute("SELECT header, sha256, binding FROM versions WHERE kind = ? AND id = ? "
                                   "AND version = ?", (kind, object_id, version)).fetchone()
            if head is None or row is None or version not in (head, head + 1) or version < 1:
                raise StorageError(self._missing(kind, object_id, version, head))
            return self._verified(kind, object_id, version, *row)

    # -- writing ---------------------------------------------------------------------------------------
    def write(self, kind: str, object_id: str, version: int, meta: dict, *, parent: Half | None = None,
              add=None, remove=(), replace: bool = False) -> Half:
        """Write pending version `version` = head + 1 in one transaction: the rows of `parent` (the
        head, as loaded) without the rows at positions `remove`, then `add`; with replace=True, only `add`.
        A pending version left by an earlier, uncommitted change is discarded first. The new half's rows
        are `add` itself when nothing precedes them (the caller hands them over), else one buffer that
        later appends fill in place (GrowingRows)."""
        with self._lock, self._errors(), self._transaction():
            head = self._head(kind, object_id)
            if head is None and version == 1:
                self._db.execute("INSERT INTO objects VALUES (?, ?, 0)", (kind, object_id))
                head = 0
            if head is None or version != head + 1 or (parent is not None and parent.version != head):
                raise StorageError(f"{self.path}: server {self.party} holds version {head or 0} of {kind} "
                                   f"{object_id}, so it cannot write version {version} after it: another "
                                   "client changed it, or the client's record is not the latest")
            self._discard_pending(kind, object_id, head)
            old, seqs, digests = _parts(parent, replace)
            count, width = len(seqs), (parent.header["width"] if parent is not None and not replace else 0)
            gone = np.unique(np.asarray(remove, dtype=np.int64))
            if gone.size and (gone[0] < 0 or gone[-1] >= count):
                raise StorageError(f"{self.path}: rows {gone.tolist()} are not all rows of {kind} {object_id} "
                                   f"version {head} ({count} rows)")
            new = np.zeros((0, width), np.uint64) if add is None else np.ascontiguousarray(add, np.uint64)
            if new.ndim != 2 or (count and new.shape[1] != width):
                raise StorageError(f"{self.path}: rows of shape {new.shape} do not fit {kind} {object_id}")
            if replace:
                self._db.execute(f"UPDATE rows SET removed = ? WHERE {_VISIBLE}",
                                 (version, kind, object_id, head, head))
            keep = np.setdiff1d(np.arange(count), gone)
            self._rewrite_blocks(kind, object_id, version, old, seqs, gone)
            new_seqs = self._append_blocks(kind, object_id, version, new)
            shape = (len(keep) + len(new), new.shape[1] if not count else width)
            buffer = None if old is None else \
                _appended(parent if not (replace or gone.size) else None, old[keep] if gone.size else old, new)
            half = Half(make_header(kind, object_id, version, self.party, shape, meta),
                        None if buffer is None else buffer.rows, "", None, np.concatenate([seqs[keep], new_seqs]),
                        (list(digests) if not gone.size else [digests[i] for i in keep]) + row_digests(new), buffer)
            half.sha256 = half_digest(half.header, half.digests)
            self._db.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, NULL)",
                             (kind, object_id, version, json.dumps(half.header), half.sha256))
            checkpoint(f"server{self.party}: {kind} version written, not yet durable")
        return half

    def commit(self, kind: str, object_id: str, version: int, sha256: str, binding: str) -> None:
        """Make pending `version` the head (the client has recorded it) and delete what it supersedes.
        Committing the head again with the same binding does nothing. Not flushed to disk at once
        (synchronous=NORMAL): a commit lost to a power cut is redone by the next open, which finds the
        recorded version still pending."""
        with self._lock, self._errors(), self._transaction(durable=False):
            head = self._head(kind, object_id)
            row = self._db.execute("SELECT sha256, binding FROM versions WHERE kind = ? AND id = ? AND version = ?",
                                   (kind, object_id, version)).fetchone()
            if row is None or head not in (version, version - 1) or row[0] != sha256:
                raise StorageError(f"{self.path}: server {self.party} holds version {head} of {kind} {object_id} "
                                   f"and not the pending version {version} the client recorded: this store was "
                                   "restored from an older copy, or another client rewrote the version")
            if head == version:
                if row[1] != binding:
                    raise StorageError(f"{self.path}: version {version} of {kind} {object_id} is bound to "
                                       "another client record")
                return
            self._db.execute("UPDATE versions SET binding = ? WHERE kind = ? AND id = ? AND version = ?",
                             (binding, kind, object_id, version))
            key = (kind, object_id, version)
            self._db.execute("UPDATE objects SET head = ? WHERE kind = ? AND id = ?", (version, kind, object_id))
            self._db.execute("DELETE FROM rows WHERE kind = ? AND id = ? AND removed <= ?", key)
            self._db.execute("DELETE FROM versions WHERE kind = ? AND id = ? AND version < ?", key)
            checkpoint(f"server{self.party}: {kind} commit written, not yet durable")

    # -- internals ---------------------------------------------------------------------------------------
    def _claim(self) -> None:
        """Mark a new store as this party's; refuse another party's store or another format."""
        with self._transaction():
            have = dict(self._db.execute("SELECT key, value FROM store").fetchall())
            if not have:
                self._db.executemany("INSERT INTO store VALUES (?, ?)",
                                     [("format", str(FORMAT)), ("party", str(self.party)),
                                      ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))])
                return
        if have.get("format") != str(FORMAT):
            raise StorageError(f"{self.path} is a store of format {have.get('format')}, this ppfr reads {FORMAT}")
        if have.get("party") != str(self.party):
            raise StorageError(f"{self.path} is server {have.get('party')}'s store, not server {self.party}'s")

    def _head(self, kind: str, object_id: str) -> int | None:
        row = self._db.execute("SELECT head FROM objects WHERE kind = ? AND id = ?", (kind, object_id)).fetchone()
        return None if row is None else row[0]

    def _rewrite_blocks(self, kind, object_id, version, old, seqs, gone) -> None:
        """Mark the blocks holding rows at positions `gone` removed in `version`, and store the rows each
        keeps as a block of the same key (so the order stays) added in `version`."""
        dropped = np.zeros(len(seqs), bool)
        dropped[gone] = True
        for block in np.unique(seqs[gone]).tolist():
            in_block = np.flatnonzero(seqs == block)
            rows = old[in_block] if old is not None else self._block_rows(kind, object_id, block, len(in_block))
            self._db.execute("UPDATE rows SET removed = ? WHERE kind = ? AND id = ? AND seq = ? AND removed IS NULL",
                             (version, kind, object_id, block))
            kept = ~dropped[in_block]
            if kept.any():
                self._db.execute("INSERT INTO rows VALUES (?, ?, ?, ?, NULL, ?, ?)",
                                 (kind, object_id, block, version, int(kept.sum()), rows[kept].tobytes()))

    def _block_rows(self, kind, object_id, block, count) -> np.ndarray:
        """The rows of a block of the head, read back (for a parent half held without its rows)."""
        (data,) = self._db.execute("SELECT data FROM rows WHERE kind = ? AND id = ? AND seq = ? AND removed IS NULL",
                                   (kind, object_id, block)).fetchone()
        return np.frombuffer(data, np.uint64).reshape(count, -1)

    def _append_blocks(self, kind, object_id, version, new) -> np.ndarray:
        """Store `new` as blocks after every existing one; returns each new row's block key."""
        start = self._db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM rows WHERE kind = ? AND id = ?",
                                 (kind, object_id)).fetchone()[0]
        starts = range(0, len(new), BLOCK_ROWS)
        self._db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, NULL, ?, ?)",
                             [(kind, object_id, start + i, version, len(new[lo:lo + BLOCK_ROWS]),
                               new[lo:lo + BLOCK_ROWS].tobytes()) for i, lo in enumerate(starts)])
        return start + np.arange(len(new), dtype=np.int64) // BLOCK_ROWS

    def _discard_pending(self, kind: str, object_id: str, head: int) -> None:
        self._db.execute("DELETE FROM rows WHERE kind = ? AND id = ? AND added > ?", (kind, object_id, head))
        self._db.execute("UPDATE rows SET removed = NULL WHERE kind = ? AND id = ? AND removed > ?",
                         (kind, object_id, head))
        self._db.execute("DELETE FROM versions WHERE kind = ? AND id = ? AND version > ?", (kind, object_id, head))

    def _verified(self, kind, object_id, version, header_text, sha256, binding) -> Half:
        where = f"{self.path} (server {self.party}'s half of {kind} {object_id}, version {version})"
        try:
            header = json.loads(header_text)
            width, rows_claimed = int(header["width"]), int(header["rows"])
            if width < 1 or rows_claimed < 0:
                raise ValueError(f"{rows_claimed} rows of width {width}")
        except (ValueError, KeyError, TypeError) as e:
            raise StorageError(f"{where}: unreadable header ({e})") from None
        expected = {"kind": kind, "id": object_id, "version": version, "party": self.party}
        wrong = {k: header.get(k) for k, v in expected.items() if header.get(k) != v}
        if wrong:
            raise StorageError(f"{where}: its header says {wrong}")
        query = f"SELECT seq, count, {{}} FROM rows WHERE {_VISIBLE} ORDER BY seq"
        blocks = self._db.execute(query.format("length(data)"), (kind, object_id, version, version)).fetchall()
        bad = next((b for b in blocks if b[2] != 8 * width * b[1]), None)   # sizes checked before any allocation
        total = sum(b[1] for b in blocks)
        if bad is not None or total != rows_claimed:
            raise StorageError(f"{where} is damaged: its header claims {rows_claimed} rows of {width} shares, "
                               f"the store holds {total}" + (f" (block {bad[0]} has {bad[2]} bytes for "
                                                             f"{bad[1]} rows)" if bad is not None else ""))
        # read block by block into one buffer (with room to append): a million rows never sit in memory twice
        buffer, digests = GrowingRows(width, np.uint64, total + spare_rows(total)), []
        for seq, count, data in self._db.execute(query.format("data"), (kind, object_id, version, version)):
            if len(data) != 8 * width * count or len(buffer) + count > total:
                raise StorageError(f"{where} changed while it was read: read it again")
            digests += row_digests(buffer.append(np.frombuffer(data, np.uint64).reshape(count, width))[-count:])
        if len(buffer) != total or half_digest(header, digests) != sha256:
            raise StorageError(f"{where} has been modified: its shares or header do not match the digest "
                               "written with them")
        seqs = np.repeat(np.array([b[0] for b in blocks], np.int64), [b[1] for b in blocks])
        return Half(header, buffer.rows, sha256, binding, seqs, digests, buffer)

    def _missing(self, kind, object_id, version, head) -> str:
        if head is None:
            return (f"{self.path}: server {self.party} holds no {kind} {object_id} (the client's record names "
                    f"version {version}): its data directory is missing, or another one was given")
        return (f"{self.path}: server {self.party} holds version {head} of {kind} {object_id}, the client's "
                f"record names version {version}: the record or this store was restored from an older copy")

    @contextlib.contextmanager
    def _transaction(self, durable: bool = True):
        """durable: flushed to disk before COMMIT returns (synchronous=FULL), as a pending version must
        be before the client's record names it."""
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _errors(self):
        try:
            yield
        except sqlite3.Error as e:
            raise StorageError(f"{self.path} is not a readable ppfr store ({e}): restore it from a backup "
                               f"(server {self.party}'s data)") from None
        except OSError as e:
            raise StorageError(f"cannot use server {self.party}'s store {self.path}: {e.strerror or e}") from None


def spare_rows(rows: int) -> int:
    """Room left for appends when a half is read: a sixteenth more, so that an enrolment into a large
    gallery appends in place instead of copying it (GrowingRows)."""
    return rows // 16 + BLOCK_ROWS


def _appended(parent: Half | None, old: np.ndarray, new: np.ndarray) -> GrowingRows:
    """A buffer holding old then new: the parent's own, appended in place, when `old` is all of its
    rows and nothing has been appended after them; else a new one."""
    buffer = parent.buffer if parent is not None else None
    if buffer is not None and len(buffer) == len(parent.rows) and len(old) == len(parent.rows):
        buffer.append(new)
        return buffer
    if not len(old):   # the new rows as they are: a first enrolment of a million rows is not copied again
        return GrowingRows.adopting(new)
    out = GrowingRows(old.shape[1], np.uint64, len(old) + len(new) + spare_rows(len(old)))
    for rows in (old, new):
        if len(rows):
            out.append(rows)
    return out


def _parts(parent: Half | None, replace: bool):
    """(rows or None when the parent is held without them, row keys, row digests) of what a new version
    starts from."""
    if parent is None or replace:
        width = parent.header["width"] if parent is not None else 0
        return np.zeros((0, width), np.uint64), np.zeros(0, np.int64), []
    return parent.rows, parent.seqs, parent.digests


def _private_directory(directory: Path) -> None:
    """Create `directory` (and parents) and make it readable by its owner alone."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
    except FileExistsError:
        raise StorageError(f"{directory} is a file, not a data directory: move it away or choose another") from None
    except OSError as e:
        raise StorageError(f"cannot create the data directory {directory}: {e.strerror or e}") from None
