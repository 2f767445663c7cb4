"""The programs a server runs for remote clients, by name: no code crosses the wire, only a program's
name and plain-data arguments (wire.py).

A client's session.run(function, ...) is sent as the name registered for that function; a server looks
the name up here and runs the function on its own Server object. Each entry says what a run costs in
queries (what the per-client budget counts: rows classified or matched, or 1 a run where the rows are not
among the arguments) and whether it gives the client more than the answers of its mode (`revealing`:
e.g. the whole model, for tests and benchmarks that compare with plaintext), which a server runs only
when its config says `allow_revealing: true`.

Paths. Programs that store shares take a path (embedded mode: the client's choice). A server never
takes a path from a client: `paths` names the arguments it replaces by a place in its own data
directory, from a template of the run's arguments and the client's party name, e.g. a model's half goes
to DATA/models/<model id>.npz and each client's gallery to DATA/gallery/<client>/.
"""
from __future__ import annotations

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
    paths: tuple = ()                  # ((argument index, template), ...): see the module docstring

    def server_arguments(self, args: list, directory: Path, client: str) -> list:
        """args with each path argument replaced by its place in the server's directory."""
        args = list(args)
        for index, place in self.paths:
            if index >= len(args):
                raise ValueError(f"{self.target} takes a path as argument {index}")
            args[index] = directory / (place(args, directory, client) if callable(place) else
                                       place.format(*[_safe(a) for a in args], client=client))
        return args

    def function(self):
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


def _safe(value):
    """An argument as part of a path: letters, digits, '-', '_' and '.' only (no '..', no '/')."""
    if isinstance(value, (str, int)) and _SAFE.match(str(value)) and str(value) not in (".", ".."):
        return value
    return _Unsafe()


class _Unsafe:
    def __format__(self, spec):
        raise ValueError("an id in a path may only hold letters, digits, '-', '_' and '.'")


def _gallery(id_index, claim=False):
    """DATA/gallery/<client>/: one gallery per client certificate. The first gallery a client writes to
    is recorded there (GALLERY_ID, by `claim`ing programs); using another gallery of the same client is
    refused, since the halves of both would share one folder."""
    def place(args, directory, client):
        folder = Path("gallery") / client
        if id_index is None:
            return folder
        object_id = args[id_index]
        if not isinstance(object_id, str) or not _SAFE.match(object_id):
            raise ValueError("a gallery's id may only hold letters, digits, '-', '_' and '.'")
        gallery_id = object_id.rsplit("-v", 1)[0]
        marker = directory / folder / "GALLERY_ID"
        if marker.exists() and marker.read_text() != gallery_id:
            raise PermissionError(f"{client} already has gallery {marker.read_text()} on this server, not "
                                  f"{gallery_id}: one gallery per client certificate")
        if claim and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(gallery_id)
        return folder
    return place


_SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


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
    "model.save": Program("ppfr.models.store:_save_program", paths=((2, "models/{0}.npz"),)),
    "model.load": Program("ppfr.models.store:_load_program", paths=((0, "models/{1}.npz"),)),
    "model.forget": Program("ppfr.models.store:_forget_program"),
    "gallery.open": Program("ppfr.gallery.protocols:open_gallery", paths=((0, _gallery(2)),)),
    "gallery.append": Program("ppfr.gallery.protocols:append_rows", paths=((0, _gallery(2, claim=True)),)),
    "gallery.remove": Program("ppfr.gallery.protocols:remove_rows", paths=((0, _gallery(3)),)),
    "gallery.prune": Program("ppfr.gallery.protocols:prune_halves", paths=((0, _gallery(None)),)),
    "gallery.query": Program("ppfr.gallery.protocols:query", queries=_one),
    "gallery.templates": Program("ppfr.gallery.protocols:receive_templates"),
    "gallery.distances": Program("ppfr.gallery.protocols:template_distances", queries=_pairs),
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
