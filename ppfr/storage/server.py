"""A server's access to its own store, from inside the programs it runs (ppfr.mpc sessions).

A server opens its own store; the client never does. Which store:
- a server process started with its data directory (`ppfr server --data DIR`) attaches it once with
  `attach_store(srv, PartyStore(DIR, index))`; programs are then run with root=None, and a root that a
  client names is refused, so DIR is the only directory the server reads or writes;
- in embedded mode (today's commands, the parties in threads or processes of the client's command) the
  command names a root and server N opens ROOT/serverN/ itself.

The functions here are what the model and gallery programs call. Cost: loading a half is one round
between the servers (they exchange 65 bytes: a digest of kind, id and version, and one of the binding,
and refuse if they disagree); writing and committing cost no round.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .database import Half, PartyStore
from .digest import canonical
from .errors import StorageError

_ATTACHED = "ppfr.storage.own"     # srv.state keys
_OPENED = "ppfr.storage.opened"


def attach_store(srv, store: PartyStore) -> None:
    """Make `store` this server's one store (a service's --data directory)."""
    srv.state[_ATTACHED] = store


def party_store(srv, root, create: bool = True) -> PartyStore | None:
    """This server's store: the attached one, or (embedded mode) ROOT/serverN/, opened once per server.
    With create=False, None when ROOT/serverN/ holds no store (so that reading creates nothing)."""
    own = srv.state.get(_ATTACHED)
    if own is not None:
        if root is not None:
            raise StorageError(f"server {srv.index} keeps its own data directory ({own.directory}); "
                               "a client cannot name another")
        return own
    if root is None:
        raise StorageError(f"server {srv.index} has no data directory: start it with --data DIR")
    opened = srv.state.setdefault(_OPENED, {})
    directory = (Path(root) / f"server{srv.index}").resolve()
    if directory not in opened:
        if not create and not PartyStore.exists(directory):
            return None
        opened[directory] = store = PartyStore(directory, srv.index)
        srv.resources.callback(store.close)   # closed with the session, which leaves one complete file
    return opened[directory]


def load_half(srv, root, kind: str, object_id: str, version: int) -> Half:
    """Read and verify this server's half of `version`, and check with the other server that it holds
    the same version of the same object (both must call this together: one round)."""
    store = party_store(srv, root, create=False)
    if store is None:
        raise StorageError(f"server {srv.index}'s store {Path(root) / f'server{srv.index}'} is missing (the client's "
                           f"record names {kind} {object_id} version {version}): restore server {srv.index}'s data")
    half = store.load(kind, object_id, version)
    agree(srv, half)
    return half


def agree(srv, half: Half) -> None:
    """Refuse unless both servers hold the same kind, id and version, bound to the same record (a half
    whose commit was interrupted has no binding yet; the client's check covers it)."""
    mine = _agreement(half)
    (theirs,) = srv.exchange(("public",), [mine], tag="agree")   # not an opening: public metadata
    theirs = np.asarray(theirs, dtype=np.uint8)
    what = f"{half.kind} {half.id}"
    if theirs.shape != mine.shape or not np.array_equal(theirs[:32], mine[:32]):
        raise StorageError(f"server 0 and server 1 do not hold the same version of {what}: server {srv.index} "
                           f"holds version {half.version}, the other server another; refusing")
    if mine[64] and theirs[64] and not np.array_equal(theirs[32:64], mine[32:64]):
        raise StorageError(f"the servers' halves of {what} version {half.version} are bound to different "
                           "client records; refusing")


def _agreement(half: Half) -> np.ndarray:
    ident = hashlib.sha256(canonical([half.kind, half.id, half.version])).digest()
    bound = hashlib.sha256((half.binding or "").encode()).digest()
    return np.frombuffer(ident + bound + bytes([half.binding is not None]), dtype=np.uint8)


def write_half(srv, root, kind: str, object_id: str, version: int, meta: dict, **change) -> Half:
    """Write this server's pending `version` (PartyStore.write: parent=, add=, remove=, replace=)."""
    return party_store(srv, root).write(kind, object_id, version, meta, **change)


# -- programs the client runs on both servers (module level, so that they pickle) ------------------------
def commit_program(srv, root, kind: str, object_id: str, version: int, digests: list, binding: str) -> None:
    """Make `version` the head on this server, once the client has written its record."""
    party_store(srv, root).commit(kind, object_id, version, digests[srv.index], binding)


def heads_program(srv, root, kind: str) -> dict:
    """{object id: head version} of what this server holds of `kind` (public metadata)."""
    store = party_store(srv, root, create=False)
    return {} if store is None else store.heads(kind)

