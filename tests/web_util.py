"""Starting `ppfr web` (or another ppfr command that serves pages) as a real process for the tests."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time


def start(args, env_extra=None, pattern=r"open (http://127\.0\.0\.1:\d+/\S*)", timeout=60, **popen):
    """Run `python -m ppfr.cli ARGS`; (process, the URL it prints on stderr). Fails if none comes in time."""
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "ppfr.cli", *map(str, args)], env=env,
                            stderr=subprocess.PIPE, text=True, **{"stdout": subprocess.DEVNULL, **popen})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(pattern, proc.stderr.readline())
        if found:
            return proc, found.group(1)
    proc.kill()
    raise AssertionError(f"ppfr {' '.join(map(str, args))} printed no URL: {proc.stderr.read()}")


def stop(proc, timeout=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
