"""The programs a server runs for remote clients, by name: no code crosses the wire, only a program's
name and plain-data arguments (wire.py).

A client's session.run(function, ...) is sent as the name registered for that function; a server looks
the name up here and runs the function on its own Server object. Each entry says what a run costs in
queries (what the per-client budget counts: rows classified or matched) and whether it gives the client
more than the answers of its mode (`revealing`: e.g. the whole model, for tests and benchmarks that
compare with plaintext), which a server runs only when its config says `allow_revealing: true`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from . import wire


@dataclass(frozen=True)
class Program:
    target: str                        # "module:function", called as function(server, *args)
    queries: Callable = lambda *args: 0  # noqa: E731 - the cost of a run, from its arguments
    revealing: bool = False

    def function(self):
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


def _rows(chunks, *_):
    return int(sum(chunks))


PROGRAMS = {
    "softmax.train": Program("ppfr.models.softmax:_train_program"),
    "softmax.predict": Program("ppfr.models.softmax:_predict_program", queries=_rows),
    "softmax.reveal_model": Program("ppfr.models.softmax:_reveal_model_program", revealing=True),
}
# argument types beyond plain data that these programs take
WIRE_TYPES = ("ppfr.models.softmax:TrainConfig",)


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
