"""One error path for every `ppfr` command: whatever goes wrong ends in one line that names the file or
option and the fix, with exit code 1 (2 for usage errors, which click reports; 130 for Ctrl-C), and
never a traceback unless `ppfr --debug` (or PPFR_DEBUG=1) asks for one.

Every command is declared with `command()` (a GuardedCommand), and the group (ppfr.cli) sends what fails
while it parses through the same path, so no command catches errors of its own: raising an exception
with a clear message is enough.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import click

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class Failed(click.ClickException):
    """A command's failure, already said in one line; click prints "Error: <line>" and exits."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        if self.exit_code == INTERRUPTED and "tqdm" in sys.modules:
            click.echo("", err=True)  # Ctrl-C can land in the middle of a progress bar's line
        super().show(file)


# errno -> what to do about it, said after the system's own words
_OS_FIXES = {
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a file is in the way of a folder there: choose another path or move the file",
    errno.EISDIR: "it is a folder: give a file",
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOSPC: "the disk is full: free some space, or choose another path",
}


def describe(e: BaseException, params: dict | None = None) -> str:
    """One line saying what failed and how to fix it. `params` (a command's parsed options) lets a
    failing path be named by the option that gave it."""
    from ppfr.mpc import MPCError, ProtocolAborted

    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, MemoryError):
        return ("out of memory; give fewer or smaller inputs (see limits: in the config, or a smaller "
                "--batch-size), or free memory")
    if isinstance(e, ProtocolAborted):
        return f"the MPC session stopped: {_flat(e)}; check that every party is running, then retry"
    if isinstance(e, OSError) and e.strerror:
        return _describe_os_error(e, params or {})
    if isinstance(e, (ValueError, MPCError, EOFError)) or _is_ours(e):
        return _with_os_fix(e, params or {})
    return f"unexpected {type(e).__name__}: {_flat(e)} (run `ppfr --debug ...` to see where, and report it)"


def _with_os_fix(e: BaseException, params: dict) -> str:
    """e's own message; when it wraps an OSError (raise ... from it, or from None inside its handler),
    also the option that gave the path and what to do about that OSError."""
    text = _flat(e) or type(e).__name__
    inner = e.__cause__ or e.__context__
    if not isinstance(inner, OSError) or not inner.strerror:
        return text
    option = _option_for(inner.filename, params) if inner.filename is not None else None
    fix = _OS_FIXES.get(inner.errno)
    return f"{option + ': ' if option else ''}{text}{'; ' + fix if fix else ''}"


def _is_ours(e: BaseException) -> bool:
    """Errors of ppfr's own modules carry a message written for the user."""
    return type(e).__module__.split(".")[0] == "ppfr"


def _flat(e: BaseException) -> str:
    return " ".join(str(e).split())


def _describe_os_error(e: OSError, params: dict) -> str:
    names = [n for n in (e.filename, e.filename2) if n is not None]
    where = " -> ".join(str(n) for n in names) or "a file"
    option = _option_for(names[0], params) if names else None
    fix = _OS_FIXES.get(e.errno)
    return f"{option + ' ' if option else ''}{where}: {e.strerror}{'; ' + fix if fix else ''}"


def _option_for(filename, params: dict) -> str | None:
    """The option whose path value is `filename`, holds it (-o OUT for OUT/server0/x.npz) or lies inside
    it (-o FILE/x.npz, when making the folder FILE failed)."""
    failing = Path(os.fsdecode(filename))
    for name, value in params.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (str, Path)) and str(v) and _related(failing, Path(v)):
                return "--" + name.replace("_", "-")
    return None


def _related(failing: Path, given: Path) -> bool:
    return failing == given or given in failing.parents or (failing in given.parents and failing != Path("."))


def debugging(ctx: click.Context | None) -> bool:
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug")) or os.environ.get("PPFR_DEBUG") == "1"


def fail(e: BaseException, ctx: click.Context | None, params: dict | None = None):
    """Re-raise `e` as a one-line Failed (unless --debug, or it is click's own, or an exit)."""
    if isinstance(e, (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit)) or debugging(ctx):
        raise e
    raise Failed(describe(e, params), INTERRUPTED if isinstance(e, KeyboardInterrupt) else 1) from None


class GuardedCommand(click.Command):
    """A click command that checks the config (ppfr.config.check) before it runs and turns any failure
    into one line (`fail`), whether it is run through `ppfr` or on its own (tests, `python -m`)."""

    def invoke(self, ctx: click.Context):
        from ppfr import config

        try:
            config.check()
            return super().invoke(ctx)
        except BaseException as e:  # noqa: BLE001 - every failure ends here, said in one line
            fail(e, ctx, ctx.params)


def command(**settings):
    """@click.command for ppfr's commands: one error path for all of them (GuardedCommand)."""
    return click.command(cls=GuardedCommand, **settings)
