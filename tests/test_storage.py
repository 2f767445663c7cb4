"""Stored data with real stores, the real protocol and real processes: every write path (enrolment,
removal, training output) stopped at every step boundary, by an exception and by SIGKILL; every bound
field of a half or of the record tampered with; damaged files; permissions."""
from __future__ import annotations

import gc
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from ppfr.embed.store import EmbeddingSet
from ppfr.gallery import Gallery, read_record as read_gallery
from ppfr.gallery import cli as gallery_cli
from ppfr.models.cli import train_mpc as train_mpc_command
from ppfr.models.protocols import STATE_KEY
from ppfr.models.service import predict_mpc
from ppfr.models.store import load_model, model_paths, save_model
from ppfr.mpc import LocalSession, ProcessSession
from ppfr.storage import PartyStore, StorageError, faults
from storage_util import db, digest_of_files, edit_header, edit_record, edit_sql, plaintext

FRAC = 20
RECORD_WRITTEN = "client: record written, servers not yet committed"
PREP = {"l2_normalize": True, "scale": 4.0}
rng = np.random.default_rng(13)


def unit(n, d=128):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Crash(Exception):
    """A party stops here (raised at a step boundary)."""


# -- galleries and models to break ---------------------------------------------------------------------
@pytest.fixture
def gallery(tmp_path):
    """Three people of two rows each (version 3)."""
    root, vecs = tmp_path / "gallery", unit(6)
    with Gallery(root) as g:
        for i in range(3):
            g.enroll(f"p{i}", vecs[2 * i:2 * i + 2])
    return root, vecs


def gallery_state(root):
    """What the gallery means: names in row order and the rows the halves add up to (via real loads)."""
    with Gallery(root) as g:
        g.identify(unit(1), reveal="all")            # both servers load and verify; a pending commit finishes
    rec = read_gallery(root)
    return rec.version, rec.names(), np.round(plaintext(root, "gallery", rec.to_json(), FRAC)[:, :128], 5)


def same_state(a, b):
    return a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2])


def _hold_model(srv, classes):
    w, b = srv.receive(), srv.receive()
    srv.state[STATE_KEY] = {"weight": w, "bias": b, "classes": classes}


def holding_model(w, b) -> LocalSession:
    """A session whose servers hold shares of (w, b), as after training."""
    session = LocalSession()
    job = session.run(_hold_model, w.shape[1])
    session.client.share(w)
    session.client.share(b)
    job.result()
    return session


def random_model(classes, seed):
    r = np.random.default_rng(seed)
    return r.normal(size=(128, classes)), r.normal(size=classes), [f"class{seed}_{i}" for i in range(classes)]


PROBE = unit(4) * 4


def model_state(root):
    with LocalSession() as session:
        record = load_model(session, root)
        p = predict_mpc(session, PROBE, reveal="logits").probabilities
    return record["version"], record["names"], np.round(p, 4)


@pytest.fixture
def model(tmp_path):
    root = tmp_path / "weights"
    w, b, names = random_model(5, seed=1)
    with holding_model(w, b) as session:
        save_model(session, root, names, PREP)
    return root


# -- every write path, stopped at every step ------------------------------------------------------------
def enrol_newcomer(root):
    with Gallery(root) as g:
        g.enroll("newcomer", np.full((2, 128), 0.05))


def remove_p1(root):
    with Gallery(root) as g:
        g.remove("p1")


def train_over(root):
    w, b, names = random_model(7, seed=2)
    with holding_model(w, b) as session:
        save_model(session, root, names, PREP)


def _stopped_at(step):
    def hook(reached):
        if reached == step:
            raise Crash(step)
    return hook


@pytest.mark.parametrize("write", [enrol_newcomer, remove_p1, train_over])
def test_a_write_stopped_at_any_step_leaves_the_old_or_the_new_state(tmp_path, gallery, model, write):
    """Raise at each step boundary of the write (in the client, or in either server, inside or after its
    transaction); afterwards the object loads as exactly the state before the write (crashed before the
    record was written) or exactly the state after it, and the next change works."""
    root = model if write is train_over else gallery[0]
    state = model_state if write is train_over else gallery_state
    before = state(root)
    record_file = (model_paths(root)["client"] if write is train_over else root / "client" / "gallery.json")
    record_bytes = record_file.read_bytes()
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)
    steps = []
    with faults.installed(steps.append):
        write(clean)
    after = state(clean)
    assert not same_state(before, after) and RECORD_WRITTEN in steps and len(steps) >= 7
    for k, step in enumerate(steps):
        trial = tmp_path / f"trial{k}"
        shutil.copytree(root, trial)
        with faults.installed(_stopped_at(step)), pytest.raises(Crash):
            write(trial)
        committed = k >= steps.index(RECORD_WRITTEN)
        assert same_state(state(trial), after if committed else before), step
        if not committed:
            assert (trial / record_file.relative_to(root)).read_bytes() == record_bytes, step
        if write is train_over:       # training again straight away (no load first) also works
            retrain = tmp_path / f"retrain{k}"
            shutil.copytree(root, retrain)
            with faults.installed(_stopped_at(step)), pytest.raises(Crash):
                write(retrain)
            write(retrain)
            version, names, p = model_state(retrain)
            assert names == after[1] and np.array_equal(p, after[2]) and version == after[0] + committed, step
        for party in (0, 1):          # both servers now hold the loaded version as their head
            heads = PartyStore(trial / f"server{party}", party).heads("model" if write is train_over else "gallery")
            assert list(heads.values()) == [state(trial)[0]], (step, heads)
    if write is not train_over:       # the next change after a crash loses nothing
        enrol_newcomer(trial)
        version, names, _ = gallery_state(trial)
        assert names == after[1] + ["newcomer"] * 2 and version == after[0] + 1


KILL_SCRIPT = """
import sys, time
from ppfr.storage import faults
step = sys.argv[1]
def pause(reached):
    if reached == step:
        print("PAUSED", flush=True)
        time.sleep(120)
faults._hook = pause
"""
ENROL = KILL_SCRIPT + """
import numpy as np
from ppfr.gallery import Gallery
with Gallery(sys.argv[2]) as g:
    g.enroll("intruder", np.full((3, 128), 0.07))
"""
TRAIN = KILL_SCRIPT + """
from ppfr.models.cli import train_mpc
train_mpc(sys.argv[2:], standalone_mode=True)
"""


def _embeddings(path):
    """A small embeddings file of three separable people, as `ppfr embed` writes it."""
    r = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 8)
    x = r.normal(size=(3, 128))[labels] + 0.3 * r.normal(size=(24, 128))
    EmbeddingSet(x.astype(np.float32), labels, ["a", "b", "c"], [f"{i}.jpg" for i in range(24)],
                 "dlib_resnet_v1").save(path)
    return path


def _kill_when_paused(script, *args):
    """Run `script` in a process of its own, wait (bounded) until it pauses at the step, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        line = b""
        while b"PAUSED" not in line and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline()
        assert b"PAUSED" in line, proc.stderr.read().decode() if proc.poll() is not None else "timed out"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.parametrize("step, committed", [
    ("server1: gallery version written, not yet durable", False),    # inside server 1's SQLite transaction
    (RECORD_WRITTEN, True),                                         # the record is new, neither server committed
])
def test_sigkill_during_an_enrolment(gallery, step, committed):
    root, _ = gallery
    before = gallery_state(root)
    _kill_when_paused(ENROL, step, root)
    version, names, rows = gallery_state(root)
    assert names == before[1] + (["intruder"] * 3 if committed else [])
    assert version == before[0] + committed and np.array_equal(rows[:6], before[2])


def test_sigkill_during_train_mpc_over_an_existing_model(model, tmp_path):
    """`train-mpc -o EXISTING` killed while server 0 writes the new model: the old one still loads."""
    before, record = model_state(model), model_paths(model)["client"].read_bytes()
    data = _embeddings(tmp_path / "e.npz")
    _kill_when_paused(TRAIN, "server0: model version written, not yet durable", data, "-o", model,
                      "--epochs", "1", "--quiet", "--no-plaintext")
    assert same_state(model_state(model), before) and model_paths(model)["client"].read_bytes() == record


# -- tampering: every bound field ---------------------------------------------------------------------------
def _refused_and_untouched(root, match, *commands):
    """Each command fails with a one-line StorageError matching `match`, and writes nothing."""
    snapshot = digest_of_files(root)
    for command in commands:
        with pytest.raises(StorageError, match=match) as info:
            command()
        assert "\n" not in str(info.value)
    assert digest_of_files(root) == snapshot


def _identify(root):
    with Gallery(root) as g:
        g.identify(unit(1))


def _enrol(root):
    with Gallery(root) as g:
        g.enroll("someone", unit(1))


def _add_ghost(r):
    r["names"].append("Ghost")
    r["sources"].append("")
    r["rows"] += 1


def _drop_last(r):
    r["names"].pop()
    r["sources"].pop()
    r["rows"] -= 1


RECORD_EDITS = {   # name: (edit, refusal without a fresh binding, refusal with one)
    "names reordered": (lambda r: r["names"].reverse(), "edited since it was written", "bound to another client record"),
    "an entry added": (_add_ghost, r"half 0's header says \{'rows': 6\}", r"half 0's header says \{'rows': 6\}"),
    "an entry removed": (_drop_last, r"half 0's header says \{'rows': 6\}", r"half 0's header says \{'rows': 6\}"),
    "names without rows": (lambda r: r["names"].pop(), "6 rows but 5 names", "6 rows but 5 names"),
    "sha256 []": (lambda r: r["halves"][1].update(sha256=[]), "no sha256 digest", "no sha256 digest"),
    "halves []": (lambda r: r.update(halves=[]), "exactly two halves", "exactly two halves"),
    "binding []": (lambda r: r.update(binding=[]), "binding is not a sha256", None),   # rebinding undoes it
    "version 0": (lambda r: r.update(version=0), "version 0", "version 0"),
    "frac_bits": (lambda r: r.update(frac_bits=16), "edited since", "record says .*'frac_bits': 16"),
    "header metadata": (lambda r: r["halves"][0]["header"]["meta"].update(frac_bits=16), "edited since",
                        "meta.frac_bits is 20 on the server, 16 recorded"),
}


@pytest.mark.parametrize("edit, rebind", [(e, r) for e, (_, _, fresh) in RECORD_EDITS.items()
                                          for r in (False, True) if fresh or not r])
def test_an_edited_gallery_record_is_refused(gallery, edit, rebind):
    """Edited by hand (the binding no longer matches), or edited and re-bound (by someone who knows how
    the binding is computed: then the servers' halves, bound to the original, refuse it)."""
    root, _ = gallery
    change, plain, rebound = RECORD_EDITS[edit]
    edit_record(root / "client" / "gallery.json", change, rebind=rebind)
    _refused_and_untouched(root, rebound if rebind else plain, lambda: _identify(root), lambda: _enrol(root))


@pytest.mark.parametrize("edit, match", [
    ("share", "has been modified"),
    ("rows deleted", "claims 6 rows of 129 shares, the store holds 4"),
    ("rows reordered", "has been modified"),
    ("rows truncated", "block 2 has 1024 bytes for 2 rows"),
    ("header rows", "claims 7 rows"),
    ("header rows, fresh digest", "claims 7 rows"),
    ("share, fresh digest", "not the one the client record"),
    ("header claims 2^62 bytes, fresh digest", "claims 6 rows of 576460752303423488 shares"),   # nothing allocated
    ("header metadata, fresh digest", "holds .*'frac_bits': 16.*record says .*'frac_bits': 20"),
])
def test_an_edited_half_is_refused(gallery, edit, match):
    root, _ = gallery
    if edit.startswith("share"):
        edit_sql(root, 1, "UPDATE rows SET data = zeroblob(length(data)) WHERE seq = 2")
        if "fresh" in edit:
            edit_header(root, 1, "gallery", lambda h: None)
    elif edit == "rows deleted":
        edit_sql(root, 0, "DELETE FROM rows WHERE seq = 2")
    elif edit == "rows reordered":
        for a, b in ((0, -1), (1, 0), (-1, 1)):
            edit_sql(root, 0, "UPDATE rows SET seq = ? WHERE seq = ?", b, a)
    elif edit == "rows truncated":
        edit_sql(root, 0, "UPDATE rows SET data = substr(data, 1, 1024) WHERE seq = 2")
    elif edit.startswith("header claims"):
        edit_header(root, 0, "gallery", lambda h: h.update(width=2**59))
    elif edit.startswith("header metadata"):
        edit_header(root, 1, "gallery", lambda h: h["meta"].update(frac_bits=16))
    else:
        edit_header(root, 0, "gallery", lambda h: h.update(rows=7), redigest="fresh" in edit)
    _refused_and_untouched(root, match, lambda: _identify(root), lambda: _enrol(root))


def test_weight_frac_edited_in_both_halves_is_refused(model):
    """The header metadata is bound: weight_frac changed in both halves (digests recomputed) would scale
    every logit silently; the client's record catches it."""
    for party in (0, 1):
        edit_header(model, party, "model", lambda h: h["meta"].update(weight_frac=20))
    _refused_and_untouched(model, "meta.weight_frac is 20 on the server, 16 recorded", lambda: model_state(model))


@pytest.mark.parametrize("rebind, match", [(False, "edited since"), (True, "bound to another client record")])
def test_preprocessing_scale_edited_in_the_model_record_is_refused(model, rebind, match):
    edit_record(model_paths(model)["client"], lambda r: r["preprocessing"].update(scale=100), rebind=rebind)
    _refused_and_untouched(model, match, lambda: model_state(model))


def test_servers_that_do_not_hold_the_same_version_refuse(gallery, tmp_path):
    root, _ = gallery
    old = tmp_path / "old"
    shutil.copytree(root, old)
    fork = tmp_path / "fork"
    shutil.copytree(root, fork)
    enrol_newcomer(root)
    _enrol(fork)                      # the same gallery, version 4 with someone else
    keep = tmp_path / "keep"
    shutil.copytree(root / "server1", keep)
    shutil.rmtree(root / "server1")
    shutil.copytree(fork / "server1", root / "server1")
    _refused_and_untouched(root, "bound to different client records", lambda: _identify(root), lambda: _enrol(root))
    shutil.rmtree(root / "server1")
    shutil.copytree(old / "server1", root / "server1")       # server 1 restored from an older copy
    _refused_and_untouched(root, "holds version 3 of gallery .* names version 4", lambda: _identify(root))
    shutil.rmtree(root / "server1")
    shutil.copytree(keep, root / "server1")
    assert gallery_state(root)[1][-2:] == ["newcomer"] * 2    # the genuine halves still work


@pytest.mark.parametrize("damage, match", [
    ("garbage", "not a readable ppfr store"),
    ("truncated", "not a readable ppfr store"),
    ("other party", "is server 0's store, not server 1's"),
    ("other gallery", "holds no gallery"),
    ("missing", "server 1's store .* is missing"),
])
def test_a_damaged_or_foreign_store_gives_one_clear_line(gallery, tmp_path, damage, match):
    root, vecs = gallery
    path = db(root, 1)
    if damage in ("garbage", "truncated"):
        data = path.read_bytes()
        for extra in ("-wal", "-shm"):
            (path.parent / (path.name + extra)).unlink(missing_ok=True)
        path.write_bytes(os.urandom(4096) if damage == "garbage" else data[:100])
    elif damage == "other party":
        shutil.rmtree(path.parent)
        shutil.copytree(root / "server0", path.parent)
    elif damage == "other gallery":
        with Gallery(tmp_path / "other") as g:
            g.enroll("x", vecs[:1])
        shutil.rmtree(path.parent)
        shutil.copytree(tmp_path / "other" / "server1", path.parent)
    else:
        shutil.rmtree(path.parent)
    with pytest.raises(StorageError, match=match) as info:
        _identify(root)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("session", [LocalSession, ProcessSession], ids=["threads", "processes"])
def test_a_closed_session_has_closed_each_store_into_one_whole_file(tmp_path, session):
    """Once a gallery's session has closed, each server's store is one file that holds everything, with no
    log beside it and no connection left to write into it later. Before, a server's connection lived until
    the garbage collector ran: a backup that copied the file alone missed the changes still in its log,
    and a file replaced meanwhile (test_a_damaged_or_foreign_store_gives_one_clear_line) was overwritten
    with the old store when the connection finally closed. The collector is off, so it cannot do this."""
    root, vecs = tmp_path / "gallery", unit(6)
    gc.disable()
    try:
        with session() as parties, Gallery(root, session=parties) as g:
            g.enroll("p0", vecs[:2])
            g.enroll("p1", vecs[2:4])
        for party in (0, 1):
            path = db(root, party)
            assert sorted(p.name for p in path.parent.iterdir()) == [path.name], f"server {party}"
            copy = tmp_path / f"copy{party}"
            copy.mkdir(mode=0o700)
            shutil.copy(path, copy / path.name)   # the file alone, as a backup would take it
            store = PartyStore(copy, party)
            (object_id, head), = store.heads("gallery").items()
            assert head == 2 and store.load("gallery", object_id, head).rows.shape == (4, 129)
            store.close()
    finally:
        gc.enable()


def _files_open_under(root) -> list:
    """The files under `root` that this process holds open (Linux: /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:      # the descriptor listdir itself used, closed by now
            continue
        if target.startswith(str(root)):
            found.append(target)
    return sorted(found)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads this process's open files from /proc")
def test_a_command_that_fails_leaves_no_store_open(gallery, tmp_path):
    """A refusal closes what it had opened, at once, not when the collector gets to it (which would let a
    connection write its log into a store restored meanwhile): a store that fails to open (another
    server's), and identify's early check of a missing record, which opens both stores to see what
    they hold. The collector is off, so it cannot close them instead."""
    root, vecs = gallery
    backup = tmp_path / "server1 backup"
    shutil.copytree(root / "server1", backup)
    gc.disable()
    try:
        shutil.rmtree(root / "server1")
        shutil.copytree(root / "server0", root / "server1")
        with pytest.raises(StorageError, match="is server 0's store, not server 1's"):
            _identify(root)
        assert _files_open_under(root) == []
        shutil.rmtree(root / "server1")
        shutil.copytree(backup, root / "server1")
        (root / "client" / "gallery.json").unlink()
        image = tmp_path / "face.jpg"
        image.write_bytes(b"not looked at: the record is checked first")
        result = CliRunner().invoke(gallery_cli.identify, [str(image), "--gallery", str(root)])
        assert result.exit_code == 1 and "is missing, but the servers hold 1" in result.output, result.output
        assert _files_open_under(root) == []
    finally:
        gc.enable()


@pytest.mark.parametrize("damage, match", [("truncated", "not a readable ppfr record"),
                                           ("older format", "format 1"), ("a list", "JSON object")])
def test_a_damaged_record_gives_one_clear_line(gallery, damage, match):
    root, _ = gallery
    path = root / "client" / "gallery.json"
    text = path.read_text()
    path.write_text({"truncated": text[:len(text) // 2], "older format": json.dumps({"format": 1}),
                     "a list": "[]"}[damage])
    _refused_and_untouched(root, match, lambda: _identify(root), lambda: _enrol(root))


def test_a_missing_record_is_never_an_empty_gallery(gallery, model):
    """No record, but the servers hold data: identify, enrol and training output are refused and nothing
    is pruned (before this, the next enrolment started a new gallery and deleted both halves)."""
    root, _ = gallery
    (root / "client" / "gallery.json").unlink()
    _refused_and_untouched(root, "record .* is missing, but the servers hold 1 gallery", lambda: _identify(root),
                           lambda: _enrol(root))
    model_paths(model)["client"].unlink()
    _refused_and_untouched(model, "is missing, but the servers hold 1 model", lambda: train_over(model))
    snapshot = digest_of_files(model), digest_of_files(root)
    data = _embeddings(model.parent / "e.npz")       # the commands say so in one line, before any work
    for command, args in ((train_mpc_command, [data, "-o", model, "--epochs", "1", "--quiet", "--no-plaintext"]),
                          (gallery_cli.identify, [data, "--gallery", root])):
        result = CliRunner().invoke(command, [str(a) for a in args])
        assert result.exit_code == 1 and "is missing, but the servers hold 1" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert (digest_of_files(model), digest_of_files(root)) == snapshot


# -- permissions --------------------------------------------------------------------------------------------
def test_only_the_owner_can_read_stored_data(gallery, model):
    root, _ = gallery
    (root / "server0").chmod(0o755)        # a folder made too open by hand is closed again on use
    _identify(root)
    for base in (root, model):
        for party in (0, 1):
            folder = base / f"server{party}"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            store = PartyStore(folder, party)      # while a store is open, SQLite keeps its -wal and -shm
            store.heads("gallery")
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()}
            store.close()
            assert modes == dict.fromkeys(["ppfr.sqlite3", "ppfr.sqlite3-wal", "ppfr.sqlite3-shm"], 0o600)
        assert stat.S_IMODE((base / "client").stat().st_mode) == 0o700
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in (base / "client").iterdir())


def test_training_into_a_folder_whose_servers_disagree_is_refused(model, tmp_path):
    """Checked before anything is written (train-mpc checks it before training, too)."""
    shutil.copytree(model / "server1", tmp_path / "old")
    train_over(model)                                                   # version 2
    shutil.rmtree(model / "server1")
    shutil.copytree(tmp_path / "old", model / "server1")               # server 1 restored to version 1
    _refused_and_untouched(model, "server 1 holds version 1 of model .* not the pending version 2", lambda: train_over(model))


def test_removal_inside_and_across_stored_blocks_keeps_every_other_row_in_order(tmp_path):
    """600 rows enrolled at once are stored as blocks of BLOCK_ROWS; removing a person whose rows
    straddle two blocks rewrites only those blocks and keeps every other row, in order."""
    from ppfr.storage.database import BLOCK_ROWS

    root, vecs = tmp_path / "big", unit(600) * 0.9
    names = [f"p{i // 3}" for i in range(600)]
    straddling = names[BLOCK_ROWS]                    # rows 255, 256, 257: the end of one block, the start of the next
    with Gallery(root) as g:
        g.enroll_many(names, vecs)
        g.remove(straddling)
        g.remove("p0")
        g.enroll("late", vecs[:1] * 0.5)
    keep = [i for i, n in enumerate(names) if n not in (straddling, "p0")]
    version, got_names, rows = gallery_state(root)
    assert got_names == [names[i] for i in keep] + ["late"]
    assert np.abs(rows[:-1] - vecs[keep]).max() <= 1e-5 and version == 4       # (rounded to 5 decimals)
    with Gallery(root) as g:
        assert [h.name for h in g.identify(vecs[keep[::97]], reveal="nearest")] == [names[i] for i in keep[::97]]


def test_an_append_to_a_read_half_writes_in_place_and_reads_back_the_same(tmp_path):
    """A half is read block by block into one buffer with room to spare; appending to it neither copies
    the rows it holds (the new half's rows share the read buffer) nor rewrites their blocks."""
    store = PartyStore(tmp_path / "s", 0)
    rows = np.arange(600 * 3, dtype=np.uint64).reshape(600, 3)
    first = store.write("gallery", "g", 1, {}, add=rows)
    store.commit("gallery", "g", 1, first.sha256, "b1")
    read = store.load("gallery", "g", 1)
    assert np.array_equal(read.rows, rows) and read.digests == first.digests
    more = np.full((5, 3), 7, np.uint64)
    second = store.write("gallery", "g", 2, {}, parent=read, add=more)
    assert np.shares_memory(second.rows, read.rows) and np.array_equal(second.rows[:600], rows)
    store.commit("gallery", "g", 2, second.sha256, "b2")
    again = store.load("gallery", "g", 2)
    assert np.array_equal(again.rows, np.concatenate([rows, more])) and again.sha256 == second.sha256
    pending = store.write("gallery", "g", 3, {}, parent=again, add=more)
    redone = store.write("gallery", "g", 3, {}, parent=again, add=more + 1)   # replaces the pending version
    assert (pending.rows[-5:] == 7).all() and (redone.rows[-5:] == 8).all()   # the second did not write over the first
    assert np.array_equal(store.load("gallery", "g", 3).rows, redone.rows)
