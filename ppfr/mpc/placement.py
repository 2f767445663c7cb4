"""Which CPU cores a LocalSession's server threads run on.

The two servers of a LocalSession share the interpreter lock, so their Python never runs at once, and they
hand the lock to each other several times a round (a message sent, the lock given up to wait for the
reply). When the other thread sleeps on another core, each hand-over wakes that core, which on this VM
costs tens of microseconds; on one core it is a plain switch. So both server threads keep to one core
(`keep_to`): one face 16-19 ms -> 10 ms (benchmarks/inprocess.py).

Work that runs long without the lock (numpy on large arrays: a gallery of a million rows times a query)
is the opposite case: there the two servers compute side by side on two cores, and one core would
serialise them (a 10^6-row query: its cross products took 0.60-0.66 s on one core, 0.28-0.46 s free, and
its argmin 0.46-0.52 s against 0.36-0.50 s). Such work (the masked gallery's products, the tournaments of
large inputs) runs inside `any_core()`, which lets the thread use every core it had for the block's
duration: two system calls, some microseconds, against tens of milliseconds of work.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading

# Blocks below this many elementary operations stay on the thread's core: they are over before a
# migration would pay for itself (one multiply-add of a uint64 product is some nanoseconds).
ANY_CORE_FROM = 1 << 22

_sessions_placed = itertools.count()
_thread = threading.local()   # .core: the core this thread keeps to; .cores: the ones it may use otherwise


def servers_core() -> int | None:
    """The CPU core for the next LocalSession's two server threads, or None to leave them where the OS
    puts them (no sched_setaffinity here, or only one core allowed). Sessions take the allowed cores in
    turn, so that servers of sessions run side by side do not all crowd onto one."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    return cores[next(_sessions_placed) % len(cores)] if len(cores) > 1 else None


def keep_to(core: int | None) -> None:
    """Keep the calling thread to `core` (None: leave it where it is), until any_core lets it go."""
    if core is None:
        return
    _thread.cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})  # 0: this thread (Linux), not the process
    _thread.core = core


@contextlib.contextmanager
def any_core(operations: int):
    """Run the block on any core this thread may use, if it keeps to one and the block does `operations`
    elementary operations or more, most of them outside the interpreter lock; then back to its core."""
    core = getattr(_thread, "core", None)
    if core is None or operations < ANY_CORE_FROM:
        yield
        return
    os.sched_setaffinity(0, _thread.cores)
    _thread.core = None   # a nested block is inside this one
    try:
        yield
    finally:
        os.sched_setaffinity(0, {core})
        _thread.core = core
