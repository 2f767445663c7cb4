"""Shared fixtures. `lfw_dir` is the LFW copy beside the repository (../shared/data/lfw, or
$PPFR_LFW); tests that take it are skipped cleanly where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def pytest_collection_modifyitems(items):
    # every test that needs LFW carries the `lfw` marker, so `-m "not lfw"` runs the rest
    for item in items:
        if "lfw_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lfw)
