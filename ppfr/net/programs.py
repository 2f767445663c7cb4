"""The programs a server runs for remote clients, by name: no code crosses the wire, only a program's
name and plain-data arguments (wire.py).

A client's session.run(function, ...) is sent as the name registered for that function; a server looks
the name up here and runs the function on its own Server object. Each entry says what a run costs in
queries (what the per-client budget counts: rows classified or matched, or 1 a run where the rows are not
among the arguments) and whether it gives the client more than the answers of its mode (`revealing`:
e.g. the whole model, for tests and benchmarks that compare with plaintext), which a server runs only
when its config says `allow_revealing: true`.

Storage. Programs that read or write shares take a root (embedded mode: the client's directory, whose
serverN/ holds server N's store). A server never takes a path from a client: the client sends, in its
place, a name for that directory (`root_name`: a digest of its absolute path, which tells nothing of
it), and the server runs the program with root None on the store it keeps for that client and name
(DATA/clients/<client>/<name>/, attached with ppfr.storage.attach_store). So each of a client's model
and gallery folders has a store of its own on each server, and no client reaches another's.
"""
from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import wire


@dataclass(frozen=True)
class Program:
    target: str                        # "module:function", called as function(server, *args)
    queries: Callable = lambda *args: 0  # noqa: E731 - the cost of a run, from its arguments
    revealing: bool = False
    root: int | None = None            # the index of its root argument (see the module docstring)

    def function(self):
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)

    def client_arguments(self, args) -> list:
        """What the client sends: args with the root (if any) replaced by its name (root_name)."""
        return [root_name(a) if k == self.root else a for k, a in enumerate(args)]

    def server_arguments(self, args) -> tuple[list, str | None]:
        """(args with the root replaced by None, the root's name or None): what the server runs."""
        if self.root is None:
            return list(args), None
        if self.root >= len(args) or not isinstance(args[self.root], str) or not _NAME.match(args[self.root]):
            raise ValueError(f"{self.target}: argument {self.root} must name a store (16 hex digits)")
        return [None if k == self.root else a for k, a in enumerate(args)], args[self.root]


_NAME = re.compile(r"^[0-9a-f]{16}$")


def root_name(root) -> str:
    """The name a client gives a folder of its records on the servers: 16 hex digits of a digest of its
    absolute path."""
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]


def _rows(chunks, *_):
    return int(sum(chunks))


def _one(*_):
    return 1


def _pairs(key, rows_a, *_):
    return len(rows_a)


PROGRAMS = {
    "softmax.train": Program("ppfr.models.protocols:train_program"),
    "softmax.predict": Program("ppfr.models.protocols:predict_program", queries=_rows),
    "softmax.reveal_model": Program("ppfr.models.protocols:reveal_model_program", revealing=True),
    "model.save": Program("ppfr.models.store:_save_program", root=0),
    "model.load": Program("ppfr.models.store:_load_program", root=0),
    "model.forget": Program("ppfr.models.store:_forget_program"),
    "storage.commit": Program("ppfr.storage.server:commit_program", root=0),
    "storage.heads": Program("ppfr.storage.server:heads_program", root=0),
    "gallery.open": Program("ppfr.gallery.protocols:open_gallery", root=0),
    "gallery.append": Program("ppfr.gallery.protocols:append_rows", root=0),
    "gallery.remove": Program("ppfr.gallery.protocols:remove_rows", root=0),
    "gallery.query": Program("ppfr.gallery.protocols:query", queries=_one),
    "gallery.templates": Program("ppfr.gallery.protocols:receive_templates"),
    "gallery.distances": Program("ppfr.gallery.protocols:template_distances", queries=_pairs),
    "mpc.use_comparisons": Program("ppfr.mpc.protocols:use_comparisons"),
    "mpc.use_comparison_tables": Program("ppfr.mpc.protocols:use_comparison_tables"),
    "mpc.use_exp_tables": Program("ppfr.mpc.lut:use_exp_tables"),
    "mpc.round_seconds": Program("ppfr.mpc.protocols:round_seconds"),
}
# argument types beyond plain data that these programs take
WIRE_TYPES = ("ppfr.models.reference:TrainConfig",)


def register_wire_types() -> None:
    for target in WIRE_TYPES:
        module, name = target.split(":")
        wire.register(getattr(importlib.import_module(module), name))


def name_of(function) -> str:
    """The registered name of a program function, or a one-line error for one no server runs."""
    target = f"{function.__module__}:{getattr(function, '__qualname__', function)}"
    for name, program in PROGRAMS.items():
        if program.target == target:
            return name
    raise ValueError(f"{target} is not a program the servers run remotely (see ppfr/net/programs.py)")


def lookup(name) -> Program:
    program = PROGRAMS.get(name) if isinstance(name, str) else None
    if program is None:
        raise ValueError(f"no program called {name!r}")
    return program
