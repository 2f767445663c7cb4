"""Defaults from configs/default.yaml, with the file named by PPFR_CONFIG laid over them, checked
against a schema.

The schema below names every setting with its type and range (the same ranges as the command-line
options it stands for): an unknown key (a typo like `epoch: 3`), a wrong type or an out-of-range value
is refused with one line naming the file, the key and the fix, instead of being ignored or failing
deep inside a command. A file PPFR_CONFIG names need only hold the keys it changes.

A broken config must not break `ppfr --help`: the command modules read their defaults while click
builds the help, so `lenient()` lets `section()` fall back to the shipped defaults while they are
imported, and `check()` raises the error once a command really runs.
"""
from __future__ import annotations

import contextlib
import difflib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

_DEFAULT = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"
_FIX = "fix the file, or unset PPFR_CONFIG to use the defaults"


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file, the key and the fix, on one line."""


@dataclass(frozen=True)
class Setting:
    """One key's type and allowed values: `kind` is int, float, str, bool or list; `low`/`high` bound numbers
    (excluded when `low_open`/`high_open`); `choices` lists the allowed strings; `items` is the Setting of
    each element of a list."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    items: "Setting | None" = None

    def problem(self, value) -> str | None:
        """Why `value` is not allowed, or None."""
        if self.kind is list and isinstance(value, list):
            problems = [f"item {i + 1} {p}" for i, p in enumerate(map(self.items.problem, value)) if p]
            return problems[0] if problems else None
        if not self._type_ok(value):
            hint = ""
            if self.kind is float and isinstance(value, str) and _is_number(value):
                hint = " (YAML reads 1e-4 as text: write 1.0e-4)"
            return f"must be {_KIND_NAMES[self.kind]}, got {value!r}{hint}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}, got {value!r}"
        return None

    def _type_ok(self, value) -> bool:
        if isinstance(value, bool):          # YAML's true/false are ints to Python; only bool takes them
            return self.kind is bool
        if self.kind is float:
            return isinstance(value, (int, float))
        return isinstance(value, self.kind)


_KIND_NAMES = {int: "a whole number", float: "a number", str: "text", bool: "true or false", list: "a list"}


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _int(low=None, high=None):
    return Setting(int, low, high)


def _num(low=None, high=None, low_open=False, high_open=False):
    return Setting(float, low, high, low_open, high_open)


def _choice(*choices):
    return Setting(str, choices=choices)


_TEXT, _FLAG, _POSITIVE = Setting(str), Setting(bool), _num(0, low_open=True)
_DETECTOR, _UPSAMPLE = _choice("hog", "cnn"), _int(0, 3)

# section -> key -> Setting. Every key of configs/default.yaml, and nothing else (tests/test_hostile_inputs.py
# checks both ways); a new setting needs a line here.
SCHEMA: dict[str, dict[str, Setting]] = {
    "mpc": {"frac_bits": _int(1, 59), "bound_bits": _int(2, 60), "parties": _choice("threads", "processes"),
            "comparisons": _choice("bitwise", "fss", "auto"), "exp_table_values": _int(0),
            "timeout": _num(0, low_open=True)},
    "paths": {"lfw": _TEXT, "weights": _TEXT, "gallery": _TEXT},
    "embed": {"output": _TEXT, "embedder": _TEXT, "detector": _DETECTOR,
              "policy": _choice("largest", "center", "single"), "upsample": _UPSAMPLE,
              "retry_upsample": _UPSAMPLE},
    "capture": {"count": _int(1), "every": _int(1), "margin": _num(0, 2), "detector": _DETECTOR,
                "upsample": _UPSAMPLE},
    "train": {"epochs": _int(1), "lr": _POSITIVE, "momentum": _num(0, 1, high_open=True),
              "batch_size": _int(1), "l2": _num(0), "seed": _int(), "init_std": _num(0),
              "test_split": _num(0, 1, high_open=True), "scale": _POSITIVE, "l2_normalize": _FLAG},
    "recognize": {"threshold": _num(0, 1), "detector": _DETECTOR, "upsample": _UPSAMPLE,
                  "webcam_detect_scale": _num(0, 4, low_open=True),
                  "reveal": _choice("label", "probabilities", "logits"),
                  "confidence_bands": Setting(list, items=_num(0, 1, low_open=True)),
                  "track": _FLAG, "refresh": _int(1)},
    "demo": {"people": _int(1), "min_images": _int(2), "max_images": _int(2), "background": _int(0),
             "strangers": _int(0), "test_split": _num(0, 1, True, True), "seed": _int()},
    "gallery": {"frac_bits": _int(8, 22), "tolerance": _num(0, 100, low_open=True),
                "reveal": _choice("nearest", "match", "all"), "batch": _int(1)},
    "limits": {"max_megapixels": _POSITIVE, "retry_max_megapixels": _num(0), "max_npz_megabytes": _POSITIVE},
    "web": {"host": _TEXT, "port": _int(0, 65535), "max_upload_mb": _POSITIVE, "max_images": _int(1),
            "detect_scale": _num(0, 4, low_open=True), "refresh": _int(1)},
}


def validate(data, source) -> dict:
    """`data` (a parsed YAML document) if every key is known and every value allowed; else ConfigError
    naming `source` and every problem found."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {source}: expected sections such as 'train:' at the top, got "
                          f"{type(data).__name__}; {_FIX}")
    problems = []
    for name, values in data.items():
        known = SCHEMA.get(name)
        if known is None:
            problems.append(f"unknown section {name!r}{_did_you_mean(name, SCHEMA)}")
        elif not isinstance(values, dict) and values is not None:
            problems.append(f"section {name!r} must hold 'key: value' lines, got {values!r}")
        else:
            for key, value in (values or {}).items():
                setting = known.get(key)
                why = (f"is not a setting{_did_you_mean(key, known)}" if setting is None
                       else setting.problem(value))
                if why:
                    problems.append(f"{name}.{key} {why}")
    if problems:
        raise ConfigError(f"config {source}: {'; '.join(problems)}; {_FIX}")
    return data


def _did_you_mean(word, known) -> str:
    close = difflib.get_close_matches(str(word), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def _read(path: Path):
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; point PPFR_CONFIG at an existing file or unset it") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        why = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"config {path} is not valid YAML{where} ({why}); {_FIX}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config {path} cannot be read ({e}); {_FIX}") from None


@lru_cache(maxsize=None)
def _load(path: str | None) -> dict:
    merged = {name: dict(values or {}) for name, values in validate(_read(_DEFAULT), _DEFAULT).items()}
    if path is not None:
        for name, values in validate(_read(Path(path)), path).items():
            merged.setdefault(name, {}).update(values or {})
    mpc = merged.get("mpc", {})
    if mpc.get("frac_bits", 16) >= mpc.get("bound_bits", 48):
        raise ConfigError(f"config {path or _DEFAULT}: mpc.frac_bits ({mpc.get('frac_bits')}) must be below "
                          f"mpc.bound_bits ({mpc.get('bound_bits')}); {_FIX}")
    return merged


def config_path() -> str | None:
    """The file PPFR_CONFIG names (laid over configs/default.yaml), or None."""
    return os.environ.get("PPFR_CONFIG") or None


def load_config(path: str | None = None) -> dict:
    """The whole config: the shipped defaults with `path` (default: PPFR_CONFIG) laid over them, section
    by section. Raises ConfigError when either file is unreadable or breaks the schema."""
    return _load(path or config_path())


_lenient = False


@contextlib.contextmanager
def lenient():
    """While inside, `section()` answers from the shipped defaults when the user's config is broken
    (so that building `--help` never fails); `check()` reports the error when a command runs."""
    global _lenient
    before, _lenient = _lenient, True
    try:
        yield
    finally:
        _lenient = before


def check() -> None:
    """Raise ConfigError if the config in force is broken (called before every command runs)."""
    load_config()


def section(name: str) -> dict:
    try:
        return dict(load_config().get(name, {}))
    except ConfigError:
        if not _lenient:
            raise
    try:
        return dict(_load(None).get(name, {}))
    except ConfigError:    # the shipped file itself is broken: the code's own fallbacks, for --help
        return {}


def fixed_point():
    """The session's fixed-point settings from the `mpc:` section (model and gallery halves record theirs,
    and their loaders refuse a mismatch)."""
    from ppfr.mpc import FixedPoint

    cfg = section("mpc")
    return FixedPoint(cfg.get("frac_bits", 16), cfg.get("bound_bits", 48))


def mpc_parties() -> str:
    """Where the servers and the dealer run: "threads" of the client's process or "processes" of their own."""
    return section("mpc").get("parties", "threads")
