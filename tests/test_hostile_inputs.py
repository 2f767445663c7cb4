"""Hostile and careless input, one case per class of README's "Bad input" table: each must end in a clear
error (exit 1, or 2 for usage; the last line "Error: ..." and no traceback) or a correct result, and leave
every input file as it was (digests before and after).

Commands run through the real `ppfr` group: in this process with click's CliRunner where that is
faithful, and as `python -m ppfr.cli` where a fresh interpreter matters (a config broken at import time,
Ctrl-C).
"""
from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from ppfr import config
from ppfr.cli import COMMANDS, main
from ppfr.embed.store import EmbeddingSet
from ppfr.failures import GuardedCommand, command

ROOT = Path(__file__).resolve().parent.parent


# -- helpers -----------------------------------------------------------------------------------------------
def digests(*paths) -> dict:
    """sha256 of every file under `paths` (files or folders)."""
    out = {}
    for p in map(Path, paths):
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def run(*args, env: dict | None = None):
    """`ppfr ARGS` in this process; returns (exit code, stdout + stderr)."""
    res = CliRunner().invoke(main, [str(a) for a in args], env=env)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception      # a failure that escaped the error path: the test must see it
    return res.exit_code, res.output


def run_process(*args, env: dict | None = None, timeout: float = 60):
    """`python -m ppfr.cli ARGS` in a fresh interpreter; returns (exit code, stdout + stderr)."""
    p = subprocess.run([sys.executable, "-m", "ppfr.cli", *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, cwd=ROOT, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def assert_clear_error(code: int, output: str, *words, exit_code: int = 1) -> str:
    """The run failed with `exit_code`, no traceback, and its last line is one "Error: ..." line holding
    every one of `words`; returns that line."""
    assert code == exit_code, output
    assert "Traceback" not in output, output
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert last.startswith("Error: "), output
    for w in words:
        assert w in last, (w, last)
    return last


def write_config(tmp_path, text: str) -> dict:
    path = tmp_path / "ppfr.yaml"
    path.write_text(text)
    return {"PPFR_CONFIG": str(path)}


def embeddings_file(path, people=2, per_person=4, seed=0) -> Path:
    """A small embeddings file as `ppfr embed` writes it (unit vectors around one centre per person)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 128))
    x = np.repeat(centres, per_person, axis=0) + 0.1 * rng.normal(size=(people * per_person, 128))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(people), per_person)
    names = [f"person{i}" for i in range(people)]
    EmbeddingSet(x.astype(np.float32), labels, names, [f"{names[y]}/{i}.jpg" for i, y in enumerate(labels)],
                 "dlib_resnet_v1").save(path)
    return Path(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, lfw_image):
    """one.jpg (one face), three.jpg (three people side by side), notes.txt."""
    d = tmp_path_factory.mktemp("photos")
    people = ["Colin_Powell", "George_W_Bush", "Tony_Blair"]
    images = [cv2.imread(str(lfw_image(name, 1))) for name in people]
    cv2.imwrite(str(d / "three.jpg"), np.hstack(images))
    cv2.imwrite(str(d / "one.jpg"), images[1])
    cv2.imwrite(str(d / "bush2.jpg"), cv2.imread(str(lfw_image("George_W_Bush", 2))))
    (d / "notes.txt").write_text("not an image\n")
    return d


# -- the config ------------------------------------------------------------------------------------------
def test_the_schema_names_every_shipped_setting_and_nothing_else():
    shipped = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert {s: set(v) for s, v in shipped.items()} == {s: set(v) for s, v in config.SCHEMA.items()}
    config.validate(shipped, "default.yaml")   # and every shipped value is allowed


HELP_OF_EVERY_COMMAND = """
from click.testing import CliRunner
from ppfr.cli import main
for name in main.list_commands(None):
    res = CliRunner().invoke(main, [name, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output and res.exception is None, (name, res.output)
    print(name)
"""


def test_a_broken_yaml_config_breaks_no_help_and_fails_commands_in_one_line(tmp_path):
    env = write_config(tmp_path, "train:\n  epochs: [3\n")
    code, out = run_process("--help", env=env)
    assert code == 0 and "Usage:" in out and "Traceback" not in out, out
    # every command's --help, in one fresh interpreter that imports the commands under the broken config
    helps = subprocess.run([sys.executable, "-c", HELP_OF_EVERY_COMMAND], capture_output=True, text=True,
                           env={**os.environ, **env}, cwd=ROOT, timeout=120)
    assert helps.returncode == 0 and helps.stdout.split() == sorted(COMMANDS), helps.stdout + helps.stderr
    data = embeddings_file(tmp_path / "e.npz")
    before = digests(data)
    code, out = run_process("train-mpc", data, "-o", tmp_path / "w", env=env)
    assert_clear_error(code, out, str(tmp_path / "ppfr.yaml"), "not valid YAML", "line 3", "PPFR_CONFIG")
    assert digests(data) == before and not (tmp_path / "w").exists()


@pytest.mark.parametrize("text, words", [
    ("train:\n  epoch: 3\n", ["train.epoch is not a setting", "did you mean 'epochs'"]),         # unknown key
    ("galery:\n  batch: 4\n", ["unknown section 'galery'", "did you mean 'gallery'"]),
    ("train:\n  epochs: ten\n", ["train.epochs must be a whole number, got 'ten'"]),              # wrong type
    ("train:\n  lr: 1e-4\n", ["train.lr must be a number", "write 1.0e-4"]),
    ("train:\n  l2_normalize: 1\n", ["train.l2_normalize must be true or false"]),
    ("gallery:\n  batch: 0\n", ["gallery.batch must be >= 1, got 0"]),                            # out of range
    ("embed:\n  policy: biggest\n", ["embed.policy must be one of largest, center, single"]),
    ("limits:\n  max_megapixels: -1\n", ["limits.max_megapixels must be > 0"]),
    ("mpc:\n  frac_bits: 50\n", ["mpc.frac_bits (50) must be below mpc.bound_bits (48)"]),
    ("recognize:\n  confidence_bands: [0.8, 2]\n", ["recognize.confidence_bands item 2 must be <= 1, got 2"]),
    ("recognize:\n  confidence_bands: 0.8\n", ["recognize.confidence_bands must be a list, got 0.8"]),
    ("- just\n- a list\n", ["expected sections"]),
])
def test_a_config_that_breaks_the_schema_is_refused_in_one_line(tmp_path, text, words):
    env = write_config(tmp_path, text)
    data = embeddings_file(tmp_path / "e.npz")
    before = digests(data)
    code, out = run("train-mpc", data, "-o", tmp_path / "w", "--quiet", env=env)
    assert_clear_error(code, out, str(tmp_path / "ppfr.yaml"), *words, "unset PPFR_CONFIG")
    assert digests(data) == before and not (tmp_path / "w").exists()


def test_a_partial_config_changes_only_its_keys(tmp_path):
    env = write_config(tmp_path, "train:\n  epochs: 2\n")
    code, out = run_process("train-mpc", embeddings_file(tmp_path / "e.npz"), "-o", tmp_path / "w", "--quiet",
                    "--json", "--no-plaintext", "--test-split", "0", env=env)
    assert code == 0, out
    summary = json.loads(out[out.index("{"):])
    assert summary["config"]["epochs"] == 2 and summary["config"]["batch_size"] == 64


# -- images: size limits ---------------------------------------------------------------------------------
def test_a_huge_image_is_refused_from_its_header(tmp_path):
    huge = tmp_path / "huge.jpg"
    cv2.imwrite(str(huge), np.zeros((8000, 8000, 3), np.uint8))  # 64 MP, 1 MB on disk
    before = digests(huge)
    start = time.perf_counter()
    code, out = run("verify", huge, huge)
    assert time.perf_counter() - start < 10     # never decoded: decoding and detecting it take far longer
    assert_clear_error(code, out, str(huge), "too_large", "8000x8000", "limits.max_megapixels")
    code, out = run("enroll", "Big", huge, "--gallery", tmp_path / "g", "--quiet")
    assert_clear_error(code, out, "no face found")
    assert "too_large" in out and not (tmp_path / "g").exists()
    assert digests(huge) == before
    # a PNG cut off after its header: only the header says how large it is, so "too_large" (not
    # "unreadable") shows the refusal came before any decoding
    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((7000, 7000), np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes((tmp_path / "wide.png").read_bytes()[:200])
    code, out = run("verify", cut, cut)
    assert_clear_error(code, out, "too_large", "7000x7000")


def test_a_large_image_without_a_face_is_not_retried_upsampled(tmp_path):
    """9 MP of noise: one detection pass; the 2x retry would scan 36 MP, above limits.retry_max_megapixels
    (it used to cost seconds more and gigabytes: 35 s and 3.1 GB for 64 MP)."""
    noise = tmp_path / "noise.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(noise), rng.integers(0, 256, (375, 375, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1))
    before = digests(noise)
    start = time.perf_counter()
    code, out = run("verify", noise, noise)
    seconds = time.perf_counter() - start
    assert_clear_error(code, out, "no_face", "no upsampled retry", "limits.retry_max_megapixels")
    assert seconds < 30, seconds
    assert digests(noise) == before


# -- several faces -----------------------------------------------------------------------------------------
def test_several_faces_are_said_and_single_policy_refuses(tmp_path, photos):
    before = digests(photos)
    code, out = run("verify", photos / "three.jpg", photos / "one.jpg", "--json")
    assert code == 0, out
    result = json.loads(out[out.index("{"):])
    assert result["faces"] == [3, 1] and result["same"] is False   # the largest face is Powell's, not Bush's
    code, out = run("verify", photos / "three.jpg", photos / "one.jpg")
    assert code == 0 and "note: " in out and "shows 3 faces; the largest was used" in out, out
    code, out = run("verify", photos / "three.jpg", photos / "one.jpg", "--policy", "single")
    assert_clear_error(code, out, "three.jpg", "--policy single", "exactly one")

    gallery = tmp_path / "g"
    code, out = run("enroll", "Group", photos / "three.jpg", photos / "one.jpg", "--gallery", gallery,
                    "--policy", "single", "--quiet")
    assert_clear_error(code, out, "three.jpg", "--policy single")
    assert not gallery.exists()                        # refused before anything was written
    code, out = run("enroll", "Group", photos / "three.jpg", "--gallery", gallery, "--json", "--quiet")
    assert code == 0, out
    assert json.loads(out[out.index("{"):])["images"] == [{"image": str(photos / "three.jpg"), "faces": 3}]
    code, out = run("identify", photos / "three.jpg", "--gallery", gallery, "--json", "--quiet")
    assert code == 0 and json.loads(out[out.index("{"):])["results"][0]["faces"] == 3, out
    assert digests(photos) == before


# -- files and folders -------------------------------------------------------------------------------------
def test_an_output_under_an_existing_file_names_the_option(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("keep me\n")
    data = embeddings_file(tmp_path / "e.npz")
    before = digests(blocker, data)
    code, out = run("train-mpc", data, "-o", blocker / "weights", "--epochs", "1", "--quiet", "--no-plaintext")
    assert_clear_error(code, out, "--output", str(blocker), "Not a directory", "choose another path")
    code, out = run("train-mpc", data, "-o", blocker, "--quiet")        # click's own check: a usage error
    assert_clear_error(code, out, "is a file", exit_code=2)
    assert digests(blocker, data) == before


def test_debug_shows_the_traceback_the_error_path_hides(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    args = ["train-mpc", embeddings_file(tmp_path / "e.npz"), "-o", blocker / "w", "--epochs", "1", "--quiet",
            "--no-plaintext"]
    code, out = run_process("--debug", *args)
    assert code == 1 and "Traceback" in out and "Not a directory" in out


@pytest.mark.parametrize("damage", ["truncated", "huge_header", "a_photo", "zero_bytes"])
def test_a_broken_npz_is_refused_with_its_name(tmp_path, damage):
    path = tmp_path / "broken.npz"
    good = embeddings_file(tmp_path / "good.npz").read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "huge_header":   # an array header claiming 2^62 elements: numpy would allocate first
        import zipfile
        with zipfile.ZipFile(tmp_path / "good.npz") as z, zipfile.ZipFile(path, "w") as out:
            for name in z.namelist():
                member = z.read(name)
                if name == "embeddings.npy":
                    member = member.replace(b"(8, 128)", b"(4611686018427387904, 128)")
                out.writestr(name, member)
    elif damage == "a_photo":
        cv2.imwrite(str(tmp_path / "p.jpg"), np.zeros((8, 8, 3), np.uint8))
        path.write_bytes((tmp_path / "p.jpg").read_bytes())
    else:
        path.write_bytes(b"")
    before = digests(path)
    code, out = run("train-mpc", path, "-o", tmp_path / "w", "--quiet")
    line = assert_clear_error(code, out, str(path))
    assert damage != "huge_header" or "claims" in line and "damaged" in line
    assert digests(path) == before and not (tmp_path / "w").exists()


def test_an_npz_above_the_limit_is_refused_before_loading(tmp_path):
    data = embeddings_file(tmp_path / "e.npz", people=2, per_person=500)     # 256 kB of embeddings
    env = write_config(tmp_path, "limits:\n  max_npz_megabytes: 0.1\n")
    code, out = run("train-mpc", data, "-o", tmp_path / "w", "--quiet", env=env)
    assert_clear_error(code, out, str(data), "above the limit", "limits.max_npz_megabytes")


def test_empty_folders_and_wrong_file_types(tmp_path, photos):
    (tmp_path / "empty").mkdir()
    code, out = run("embed", tmp_path / "empty", "-o", tmp_path / "e.npz", "--quiet")
    assert_clear_error(code, out, "no images in", str(tmp_path / "empty"))
    code, out = run("recognize", tmp_path / "empty", "--quiet")
    assert_clear_error(code, out, "no images in folder")
    (tmp_path / "texts" / "Ada").mkdir(parents=True)
    (tmp_path / "texts" / "Ada" / "a.txt").write_text("hello")
    code, out = run("embed", tmp_path / "texts", "-o", tmp_path / "e.npz", "--quiet")
    assert_clear_error(code, out, "no images in")
    before = digests(photos)
    code, out = run("verify", photos / "notes.txt", photos / "one.jpg")
    assert_clear_error(code, out, "notes.txt", "unreadable")
    code, out = run("train-mpc", photos / "one.jpg", "-o", tmp_path / "w", "--quiet")
    assert_clear_error(code, out, "one.jpg", "not a readable .npz")
    assert digests(photos) == before


# -- failures inside the work: memory, a stopped party, Ctrl-C ---------------------------------------------
@command()
def _greedy():
    """Asks numpy for 4 EiB (numpy raises MemoryError at once)."""
    np.empty(2 ** 62, dtype=np.uint8)


def test_out_of_memory_is_one_line():
    res = CliRunner().invoke(_greedy, [])
    assert_clear_error(res.exit_code, res.output, "out of memory", "smaller")


def _stopped_peer(server, silent_seconds: float):
    """Server 1 stops answering (alive but silent) while server 0 waits for its half of an opening."""
    if server.index == 1:
        time.sleep(silent_seconds)
    return server.open(np.zeros(4, dtype=np.uint64))


@command()
def _open_with_a_stopped_peer():
    from ppfr.mpc import open_session

    with open_session("threads", timeout=0.5) as session:
        session.run(_stopped_peer, 3.0).result()


def test_a_stopped_party_fails_within_the_session_timeout():
    start = time.perf_counter()
    res = CliRunner().invoke(_open_with_a_stopped_peer, [])
    seconds = time.perf_counter() - start
    assert_clear_error(res.exit_code, res.output, "the MPC session stopped", "server0 waited", "server1")
    assert seconds < 10, seconds   # 0.5 s of waiting, then the silent server's own 3 s end


def test_ctrl_c_is_one_line_with_exit_130(tmp_path, lfw_images):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "Bush").symlink_to(lfw_images / "George_W_Bush")        # 530 images, read in place
    p = subprocess.Popen([sys.executable, "-m", "ppfr.cli", "embed", str(tmp_path / "ds"), "-o",
                          str(tmp_path / "e.npz"), "--workers", "2"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=ROOT)
    seen, deadline = b"", time.monotonic() + 60
    while b"embedding" not in seen and time.monotonic() < deadline:   # the work has started: the bar shows
        if select.select([p.stderr], [], [], 1)[0]:
            seen += os.read(p.stderr.fileno(), 4096)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        # Once in CI the first Ctrl-C was lost (not reproduced in 60 local runs): CPython drops a
        # KeyboardInterrupt raised inside a finalizer ("Exception ignored in ..."), which a signal landing
        # while the pool starts can hit. A user presses Ctrl-C again; so does this test, once.
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    assert_clear_error(1, (seen + err).decode(errors="replace").replace("\r", "\n"), "interrupted")
    assert not (tmp_path / "e.npz").exists()


def test_every_command_runs_through_the_error_path():
    import importlib

    for name, target in COMMANDS.items():
        module, attr = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), GuardedCommand), name
