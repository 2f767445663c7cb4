"""Defaults from configs/default.yaml (or the file named by PPFR_CONFIG)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml

_DEFAULT = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


@lru_cache(maxsize=None)
def load_config(path: str | None = None) -> dict:
    path = Path(path or os.environ.get("PPFR_CONFIG") or _DEFAULT)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} not found (set PPFR_CONFIG or reinstall ppfr)")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def section(name: str) -> dict:
    return dict(load_config().get(name, {}))


def fixed_point():
    """The session's fixed-point settings from the `mpc:` section (model and gallery halves record theirs,
    and their loaders refuse a mismatch)."""
    from ppfr.mpc import FixedPoint

    cfg = section("mpc")
    return FixedPoint(cfg.get("frac_bits", 16), cfg.get("bound_bits", 48))


def mpc_parties() -> str:
    """Where the servers and the dealer run: "threads" of the client's process or "processes" of their own."""
    return section("mpc").get("parties", "threads")
