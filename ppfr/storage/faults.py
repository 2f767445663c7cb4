"""Step boundaries of every write, named, so that tests can stop a write at each one.

Every write path (training output, enrolment, removal) calls `checkpoint(step)` between the steps that
change something on disk. In normal use nothing is installed and a checkpoint costs one global read; a
test installs a hook (`installed(hook)`) that raises, or pauses the process for a SIGKILL, at a chosen
step, and then checks that what was committed before is still loadable.
"""
from __future__ import annotations

import contextlib

_hook = None


def checkpoint(step: str) -> None:
    """Mark a step boundary (a crash here must leave the previous state, or the new one, loadable)."""
    if _hook is not None:
        _hook(step)


@contextlib.contextmanager
def installed(hook):
    """Call hook(step) at every checkpoint while the block runs (tests only)."""
    global _hook
    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous
