"""The client's record of a stored object, and the client's side of every change.

    ROOT/client/            0700
    ROOT/client/NAME.json   0600, replaced atomically (write beside, fsync, rename, fsync the folder)

A record holds what only the client knows (the names of the rows, in row order: class names or the
people of a gallery; preprocessing; fixed point; the embedder) and what binds it to the two halves: the
object's id and version, its row count, each half's header and half digest, and the *binding*, the
digest of all of it (digest.binding), which both servers store with their half when the version is
committed. Reading a record verifies its binding; opening an object verifies that each server's half
has the header and digest recorded and is bound to this record. An edit to any field of the record, or
of a half (a share, a row, the order, the metadata), is refused with a one-line StorageError.

A change (`commit_change`) is: both servers write a pending version; the client writes its new record
(the commit point); the servers commit (make it their head and delete what it supersedes). A crash
before the record leaves the old version; a crash after it leaves a record whose version a server may
still hold as pending, and the next open commits it (`finish_open`). The record is never written
before both halves exist, and a server never deletes anything a record may still name.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ppfr.atomic import write_bytes_atomic
from ppfr.mpc.errors import ProtocolAborted

from .digest import binding, is_digest
from .errors import StorageError
from .faults import checkpoint
from .server import commit_program, heads_program

FORMAT = 2
CLIENT_DIR = "client"


def record_path(root, name: str) -> Path:
    return Path(root) / CLIENT_DIR / name


def new_record(kind: str, object_id: str, version: int, names, **fields) -> dict:
    """A record before its halves are known (commit_change fills them in and seals it)."""
    names = [str(n) for n in names]
    return {"format": FORMAT, "kind": kind, "id": object_id, "version": int(version), "rows": len(names),
            "names": names, **fields, "halves": [], "binding": "", "written": ""}


def read_record(path, kind: str) -> dict | None:
    """The record at `path`, verified; None when there is no file (the caller decides what that means)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as e:   # (an OSError goes on as it is: the command's error path names its option)
        raise StorageError(f"{path} is not a readable ppfr record ({e}): restore it from a backup") from None
    try:
        record = json.loads(text)
    except ValueError as e:
        raise StorageError(f"{path} is not a readable ppfr record ({e}): restore it from a backup") from None
    validate(record, kind, path)
    return record


def validate(record, kind: str, where) -> None:
    """Refuse a record that is not a complete, self-consistent record of `kind` (one line each)."""
    if not isinstance(record, dict):
        raise StorageError(f"{where} is not a ppfr record (a JSON object was expected)")
    if record.get("format") != FORMAT:
        raise StorageError(f"{where} is a record of format {record.get('format')!r}, not {FORMAT}: it was "
                           "written by another version of ppfr (retrain or re-enrol into a new folder)")
    problem = _shape_problem(record, kind)
    if problem:
        raise StorageError(f"{where} is not a valid {kind} record: {problem}")
    if binding(record) != record["binding"]:
        raise StorageError(f"{where} has been edited since it was written: its contents do not match its "
                           "binding digest (restore it from a backup)")


def _shape_problem(r: dict, kind: str) -> str | None:
    names, halves = r.get("names"), r.get("halves")
    checks = [
        (r.get("kind") == kind, f"kind {r.get('kind')!r}"),
        (isinstance(r.get("id"), str) and r["id"] != "", "no object id"),
        (type(r.get("version")) is int and r["version"] >= 1, f"version {r.get('version')!r} (versions start at 1)"),
        (isinstance(names, list) and all(isinstance(n, str) for n in names), "names is not a list of strings"),
        (type(r.get("rows")) is int and isinstance(names, list) and r["rows"] == len(names),
         f"{r.get('rows')!r} rows but {len(names) if isinstance(names, list) else 'no'} names"),
        (isinstance(halves, list) and len(halves) == 2, "it must describe exactly two halves"),
        (is_digest(r.get("binding")), "its binding is not a sha256 digest"),
    ]
    failed = next((why for ok, why in checks if not ok), None)
    if failed:
        return failed
    for i, h in enumerate(halves):
        header = h.get("header") if isinstance(h, dict) else None
        if not isinstance(header, dict) or not is_digest(h.get("sha256")):
            return f"half {i} has no header or no sha256 digest"
        want = {"kind": kind, "id": r["id"], "version": r["version"], "party": i, "rows": r["rows"]}
        wrong = {k: header.get(k) for k, v in want.items() if header.get(k) != v}
        if wrong:
            return f"half {i}'s header says {wrong}, the record {dict((k, want[k]) for k in wrong)}"
    return None


INDENTED_ROWS = 100_000


def write_record(path, record: dict) -> None:
    """Seal (bind) and write the record atomically, readable by the client alone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    record["written"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["binding"] = binding(record)
    # indented for a person to read, up to INDENTED_ROWS rows: indenting takes json's pure-Python encoder,
    # seconds for a million names, where the compact form takes its C encoder a fraction of one
    indent = 1 if record.get("rows", 0) <= INDENTED_ROWS else None
    write_bytes_atomic(path, json.dumps(record, indent=indent, ensure_ascii=False).encode(), mode=0o600)


# -- the client's side of opening and changing an object ---------------------------------------------------
def check_halves(record: dict, reports: list, where) -> list[int]:
    """Each server's report on its half (header, half digest, binding) against the record; returns the
    servers whose half is still pending (written, recorded, but its commit was interrupted)."""
    pending = []
    what = f"{record['kind']} {record['id']} version {record['version']}"
    for i, (report, recorded) in enumerate(zip(reports, record["halves"], strict=True)):
        diff = _differences(report["header"], recorded["header"])
        if diff:
            raise StorageError(f"server {i}'s half of {what} does not match the client record {where}: {diff}")
        if report["sha256"] != recorded["sha256"]:
            raise StorageError(f"server {i}'s half of {what} is not the one the client record {where} names "
                               f"(digest {report['sha256'][:12]}…, recorded {recorded['sha256'][:12]}…)")
        if report["binding"] is None:
            pending.append(i)
        elif report["binding"] != record["binding"]:
            raise StorageError(f"server {i}'s half of {what} is bound to another client record than {where}")
    return pending


def finish_open(run, root, record: dict, reports: list, where) -> None:
    """Check the halves; commit a version whose commit was interrupted after its record was written."""
    if check_halves(record, reports, where):
        run(commit_program, root, record["kind"], record["id"], record["version"],
            [r["sha256"] for r in reports], record["binding"])


def commit_change(run, root, path, record: dict, reports: list) -> dict:
    """After both servers wrote pending halves (`reports`): write the record (the commit point), then have
    the servers commit. If that last step fails the change still stands: the next open commits it."""
    record["halves"] = [{"header": r["header"], "sha256": r["sha256"]} for r in reports]
    checkpoint("client: halves written, record not yet")
    write_record(path, record)
    checkpoint("client: record written, servers not yet committed")
    try:
        run(commit_program, root, record["kind"], record["id"], record["version"],
            [r["sha256"] for r in reports], record["binding"])
    except (ProtocolAborted, OSError):
        return record       # a server stopped: the change stands, and the next open commits it there
    checkpoint("client: servers committed")
    return record


def settle(run, root, record: dict) -> None:
    """Before writing the version after `record`'s: each server's head must be the recorded version (a
    server whose commit of it was interrupted commits it now, against the recorded digest)."""
    what = f"{record['kind']} {record['id']}"
    heads = [held.get(record["id"], 0) for held in run(heads_program, root, record["kind"])]
    for i, head in enumerate(heads):
        if head not in (record["version"], record["version"] - 1):
            raise StorageError(f"server {i} holds version {head} of {what}, the client record names version "
                               f"{record['version']}: the record or the server's store was restored from an "
                               "older copy (nothing was changed)")
    if record["version"] - 1 in heads:
        run(commit_program, root, record["kind"], record["id"], record["version"],
            [h["sha256"] for h in record["halves"]], record["binding"])


def require_unclaimed(run, root, kind: str, path) -> None:
    """With no record at `path`: refuse when the servers already hold `kind` data at `root`, which a new
    object would otherwise hide (nothing is ever treated as empty that is not)."""
    held = [h for h in run(heads_program, root, kind) if h]
    if held:
        count = sorted({len(h) for h in held})[-1]
        raise StorageError(f"the client record {path} is missing, but the servers hold {count} {kind}(s) at "
                           f"{root}: restore the record from a backup, or use another folder (nothing was changed)")


def _differences(got: dict, want: dict, prefix: str = "") -> str:
    """The first field where two headers differ, as 'meta.weight_frac 20 on the server, 16 recorded'."""
    for key in sorted(set(got) | set(want)):
        a, b = got.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, f"{prefix}{key}.")
            if inner:
                return inner
        elif a != b:
            return f"{prefix}{key} is {a!r} on the server, {b!r} recorded"
    return ""
