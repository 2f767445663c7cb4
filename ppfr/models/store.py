"""The classifier on disk: each server's half in its own directory, the client's record beside them.

    ROOT/server0/softmax.npz   server 0's shares of weight and bias, header with model id and settings
    ROOT/server1/softmax.npz   server 1's
    ROOT/client/softmax.json   the client's record: class names, model id, both halves' digests,
                               preprocessing, fixed-point settings and the embedder

The halves are written and checked by ppfr.mpc.storage (atomic writes, digests, ids); this module only
decides what goes in them. Loading refuses a missing half or record, a modified file, halves of two
different models and a half the client did not record, each with a ShareFileError that says which.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import numpy as np

from ppfr.atomic import write_bytes_atomic
from ppfr.mpc.storage import ShareFileError, check_record, load_share, save_share

from .protocols import STATE_KEY

MODEL_FILE = "softmax.npz"
RECORD_FILE = "softmax.json"
KIND = "model"


def model_paths(root) -> dict:
    root = Path(root)
    return {"server0": root / "server0" / MODEL_FILE, "server1": root / "server1" / MODEL_FILE,
            "client": root / "client" / RECORD_FILE}


def _save_program(srv, model_id: str, meta: dict, path):
    model = srv.state.get(STATE_KEY)
    if model is None:
        raise RuntimeError(f"{srv.name} holds no classifier to save")
    w, b = model["weight"], model["bias"]
    return save_share(path, party=srv.index, kind=KIND, object_id=model_id,
                      arrays={"weight": w.share, "bias": b.share},
                      meta={**meta, "weight_frac": w.frac, "bias_frac": b.frac})


def save_model(session, root, class_names, preprocessing: dict, train_settings: dict | None = None,
               embedder: str = "") -> dict:
    """Each server writes its half; the client writes its record last (so a record always names two halves
    that exist). `embedder` names what produced the training vectors (e.g. dlib_resnet_v1): a recogniser
    must embed with the same one. Returns the record."""
    paths = model_paths(root)
    model_id = secrets.token_hex(8)
    fixed = {"frac_bits": session.fixed.frac_bits, "bound_bits": session.fixed.bound_bits}
    meta = {"model_id": model_id, "classes": len(class_names), "fixed_point": fixed,
            "preprocessing": preprocessing, "embedder": embedder}
    job = session.run(_save_program, model_id, meta, per_server=((paths["server0"],), (paths["server1"],)))
    digests = job.result()
    record = {"kind": KIND, "id": model_id, "sha256": digests, "class_names": list(class_names),
              "classes": len(class_names), "fixed_point": fixed, "preprocessing": preprocessing,
              "embedder": embedder,
              "train": train_settings or {}, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "halves": {k: str(paths[k]) for k in ("server0", "server1")}}
    write_bytes_atomic(paths["client"], json.dumps(record, indent=1).encode())
    return record


def read_record(root) -> dict:
    path = model_paths(root)["client"]
    if not path.exists():
        raise ShareFileError(f"missing client record {path}: train a model with `ppfr train-mpc -o {root}`")
    try:
        record = json.loads(path.read_text())
        record["id"], record["sha256"], record["class_names"]
    except (ValueError, KeyError, TypeError) as e:
        raise ShareFileError(f"{path} is not a readable model record ({e})") from None
    return record


def _load_program(srv, path, model_id: str):
    arrays, header = load_share(path, party=srv.index, kind=KIND)
    if header["id"] != model_id:  # both servers check against the client's record: halves of one model
        raise ShareFileError(f"{path} holds model {header['id']}, but the client's record is of model {model_id}")
    fixed = header["meta"].get("fixed_point", {})
    if fixed != {"frac_bits": srv.fixed.frac_bits, "bound_bits": srv.fixed.bound_bits}:
        raise ShareFileError(f"{path} was written with fixed point {fixed}, this session uses "
                             f"frac_bits={srv.fixed.frac_bits}, bound_bits={srv.fixed.bound_bits}")
    meta = header["meta"]
    srv.state[STATE_KEY] = {"weight": srv.local(np.asarray(arrays["weight"], dtype=np.uint64), meta["weight_frac"]),
                            "bias": srv.local(np.asarray(arrays["bias"], dtype=np.uint64), meta["bias_frac"]),
                            "classes": meta["classes"]}
    return header["sha256"]


def _forget_program(srv):
    srv.state.pop(STATE_KEY, None)


def load_model(session, root) -> dict:
    """Both servers load and cross-check their halves; the client checks them against its record.
    Returns the record (class names, preprocessing). On any refusal nothing stays loaded."""
    paths = model_paths(root)
    record = read_record(root)
    job = session.run(_load_program, per_server=((paths["server0"], record["id"]), (paths["server1"], record["id"])))
    digests = job.result()
    try:
        check_record(record, digests)
    except ShareFileError:
        session.run(_forget_program).result()
        raise
    return record
