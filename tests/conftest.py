"""Shared fixtures. `lfw_dir` is the LFW copy beside the repository (../shared/data/lfw, or
$PPFR_LFW); tests that take it are skipped cleanly where it is absent. `session` and `new_session` run a
test on every session kind of ppfr.mpc.session.SESSIONS."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ppfr.mpc.session import SESSIONS, open_session

REPO_ROOT = Path(__file__).resolve().parent.parent


def _lfw_dir() -> Path:
    return Path(os.environ.get("PPFR_LFW") or REPO_ROOT.parent / "shared" / "data" / "lfw")


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """The LFW folder (holding pairs.txt and images_deepfunneled/); skips the test when absent."""
    path = _lfw_dir()
    if not (path / "pairs.txt").is_file() or not (path / "images_deepfunneled").is_dir():
        pytest.skip(f"LFW not found at {path} (set PPFR_LFW to an LFW folder with pairs.txt "
                    f"and images_deepfunneled/)")
    return path


@pytest.fixture(scope="session")
def lfw_images(lfw_dir) -> Path:
    """LFW's folder of per-person image folders."""
    return lfw_dir / "images_deepfunneled"


@pytest.fixture(scope="session")
def lfw_image(lfw_images):
    """lfw_image("George_W_Bush", 1) -> path of George_W_Bush_0001.jpg."""
    def path(name: str, number: int) -> Path:
        return lfw_images / name / f"{name}_{number:04d}.jpg"
    return path


@pytest.fixture(scope="module", params=sorted(SESSIONS))
def session(request):
    """A session of each kind (threads: LocalSession, processes: ProcessSession), shared by the tests of a
    module: a ProcessSession takes about a second to start. Programs run in it must pickle (module-level
    functions, functools.partial of them, plain data). A module may define its own `session` instead."""
    with open_session(request.param) as s:
        yield s


@pytest.fixture(params=sorted(SESSIONS))
def new_session(request):
    """new_session() -> a fresh session of each kind in turn, closed after the test: for programs that
    fail (a failure ends its session, so it cannot be shared) and for tests that need two sessions."""
    opened = []

    def make(**kwargs):
        opened.append(open_session(request.param, **kwargs))
        return opened[-1]

    yield make
    for s in opened:
        s.close()


def pytest_collection_modifyitems(items):
    # every test that needs LFW carries the `lfw` marker, so `-m "not lfw"` runs the rest
    for item in items:
        if "lfw_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lfw)
