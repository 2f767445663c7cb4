"""The classifier on disk (the mechanism is ppfr.storage's): each server's half in its own store, the
client's record beside them.

    ROOT/server0/ppfr.sqlite3   server 0's store: one row of shares per class (its weights, its bias)
    ROOT/server1/ppfr.sqlite3   server 1's
    ROOT/client/softmax.json    the client's record: class names in row order, model id and version,
                                preprocessing, fixed point, embedder, both halves' headers and digests,
                                and the binding

Training into an existing ROOT writes the new model as the next version of the same object, beside the
old one, and switches to it only when both halves are written and the record is replaced: a training
run killed at any moment leaves the previous model loadable. Loading refuses a missing half or record,
a modified row, header or record, halves of two models or versions, and a half the client did not
record, each with a one-line StorageError that says which.
"""
from __future__ import annotations

import secrets
import time
from pathlib import Path

import numpy as np

from ppfr.storage import (DB_NAME, StorageError, commit_change, finish_open, load_half, new_record, read_record as
                          read_stored, record_path, require_unclaimed, settle, write_half)

from .protocols import STATE_KEY

RECORD_FILE = "softmax.json"
KIND = "model"


def model_paths(root) -> dict:
    root = Path(root)
    return {"server0": root / "server0" / DB_NAME, "server1": root / "server1" / DB_NAME,
            "client": record_path(root, RECORD_FILE)}


def _fixed(fixed) -> dict:
    return {"frac_bits": fixed.frac_bits, "bound_bits": fixed.bound_bits}


def _save_program(srv, root, model_id: str, version: int, classes: int) -> dict:
    """Write this server's half as pending `version`: row c holds column c of the weights and bias c."""
    model = srv.state.get(STATE_KEY)
    if model is None:
        raise RuntimeError(f"{srv.name} holds no classifier to save")
    w, b = model["weight"], model["bias"]
    if w.shape[1] != classes:
        raise StorageError(f"{srv.name} holds a classifier of {w.shape[1]} classes, the client names {classes}")
    rows = np.concatenate([w.share.T, b.share[:, None]], axis=1)
    meta = {"dim": int(w.shape[0]), "weight_frac": w.frac, "bias_frac": b.frac, "fixed_point": _fixed(srv.fixed)}
    return write_half(srv, root, KIND, model_id, version, meta, add=rows, replace=True).report()


def prepare_output(session, root) -> tuple[str, int]:
    """(model id, version) that a model trained into `root` will be written as: the next version of the
    model recorded there, or version 1 of a new one. Refuses, before any training, a record that cannot
    be read and server data that no record accounts for."""
    path = model_paths(root)["client"]
    run = lambda program, *args: session.run(program, *args).result()  # noqa: E731
    old = read_stored(path, KIND)
    if old is None:
        require_unclaimed(run, root, KIND, path)
        return secrets.token_hex(8), 1
    settle(run, root, old)
    return old["id"], old["version"] + 1


def save_model(session, root, class_names, preprocessing: dict, train_settings: dict | None = None,
               embedder: str = "", target: tuple[str, int] | None = None) -> dict:
    """Both servers write their half as a new version beside the old; the client then writes its record
    (the commit point) and the servers switch to it. `embedder` names what produced the training vectors
    (e.g. dlib_resnet_v1): a recogniser must embed with the same one. Returns the record."""
    run = lambda program, *args: session.run(program, *args).result()  # noqa: E731
    model_id, version = target or prepare_output(session, root)
    reports = run(_save_program, root, model_id, version, len(class_names))
    record = new_record(KIND, model_id, version, class_names, preprocessing=preprocessing,
                        fixed_point=_fixed(session.fixed), embedder=embedder, train=train_settings or {},
                        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return _with_aliases(commit_change(run, root, model_paths(root)["client"], record, reports))


def read_record(root) -> dict:
    """The client's record of the model at `root`, verified."""
    path = model_paths(root)["client"]
    record = read_stored(path, KIND)
    if record is None:
        raise StorageError(f"missing client record {path}: train a model with `ppfr train-mpc -o {root}`")
    if not (isinstance(record.get("preprocessing"), dict) and isinstance(record.get("fixed_point"), dict)):
        raise StorageError(f"{path} is not a valid model record: no preprocessing or fixed point")
    return _with_aliases(record)


def _with_aliases(record: dict) -> dict:
    return {**record, "class_names": record["names"], "classes": record["rows"]}


def _load_program(srv, root, model_id: str, version: int, classes: int) -> dict:
    half = load_half(srv, root, KIND, model_id, version)
    meta = half.header["meta"]
    if meta.get("fixed_point") != _fixed(srv.fixed):
        raise StorageError(f"server {srv.index}'s half of model {model_id} was written with fixed point "
                           f"{meta.get('fixed_point')}, this session uses {_fixed(srv.fixed)}")
    dim = meta["dim"]
    if half.rows.shape != (classes, dim + 1):
        raise StorageError(f"server {srv.index}'s half of model {model_id} holds {half.rows.shape[0]} classes "
                           f"of {half.rows.shape[1] - 1} weights, the client's record {classes}")
    srv.state[STATE_KEY] = {"weight": srv.local(np.ascontiguousarray(half.rows[:, :dim].T), meta["weight_frac"]),
                            "bias": srv.local(np.ascontiguousarray(half.rows[:, dim]), meta["bias_frac"]),
                            "classes": classes}
    return half.report()


def _forget_program(srv):
    srv.state.pop(STATE_KEY, None)


def load_model(session, root) -> dict:
    """Both servers load and cross-check their halves; the client checks them against its record.
    Returns the record (class names, preprocessing). On any refusal nothing stays loaded."""
    record = read_record(root)
    run = lambda program, *args: session.run(program, *args).result()  # noqa: E731
    reports = run(_load_program, root, record["id"], record["version"], record["rows"])
    try:
        finish_open(run, root, record, reports, model_paths(root)["client"])
    except StorageError:
        run(_forget_program)
        raise
    return record
