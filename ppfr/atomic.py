"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)  # read once, at import: setting the umask is process-wide and threads write files
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", mode: int | None = None):
    """Yield a temporary path beside `path`; on success it replaces `path` (and the directory entry is
    flushed, so the replacement survives a power cut), on failure it is removed. `mode` sets the file's
    permissions (e.g. 0o600 for what only its owner may read); by default they follow the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK if mode is None else mode)  # mkstemp makes 0600
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path, data: bytes, mode: int | None = None) -> None:
    with atomic_path(path, mode=mode) as tmp:
        Path(tmp).write_bytes(data)
