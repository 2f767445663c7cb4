"""Stored data: each server's shares in one SQLite database of its own, the client's record beside them,
all versioned, self-verifying and bound to each other (README, "Storage").

    database.py   PartyStore: one server's store (versions, rows, pending and committed, verification)
    server.py     how a server's programs reach their own store (attach_store / party_store) and the
                  programs every object shares (agreement between the servers, commit, heads)
    record.py     the client's record: read, validate, write; the client's side of open and change
    digest.py     row and half digests, the binding
    faults.py     named step boundaries of every write (tests stop writes there)
"""
from .database import DB_NAME, Half, PartyStore
from .errors import StorageError
from .record import (check_halves, commit_change, finish_open, new_record, read_record, record_path,
                     require_unclaimed, settle, write_record)
from .server import attach_store, load_half, party_store, write_half

__all__ = ["DB_NAME", "Half", "PartyStore", "StorageError", "attach_store", "check_halves", "commit_change",
           "finish_open", "load_half", "new_record", "party_store", "read_record", "record_path",
           "require_unclaimed", "settle", "write_half", "write_record"]
