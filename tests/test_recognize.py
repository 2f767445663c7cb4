"""ppfr recognize on real LFW images with the real pipeline and protocol: a model trained under MPC on ten
LFW people (and a background class of others), then held-out images of them, people it never saw, a video
made of LFW photos, and bad input."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ppfr.embed.detect import read_rgb
from ppfr.models.data import Preprocessing
from ppfr.models.reference import TrainConfig, label_and_band, softmax_rows, train_plaintext
from ppfr.models.service import reveal_model, train_mpc
from ppfr.models.store import save_model
from ppfr.mpc import LocalSession
from ppfr.storage import StorageError
from ppfr.demo.lfw import choose, embed_training
from ppfr.recognition.media import LatestFrame
from ppfr.recognition.recognizer import UNKNOWN, Recognizer
from ppfr.recognition.cli import recognize
from storage_util import edit_sql

THRESHOLD = 0.5
PREP = Preprocessing()


@pytest.fixture(scope="module")
def model(lfw_images, tmp_path_factory):
    """10 people with >= 20 LFW images (16 train, 4 held out each), 60 other people as the class 'unknown',
    12 further people never seen; embedded now with dlib (not from any cache) and trained on shares."""
    split = choose(lfw_images, people=10, min_images=20, max_images=20, background=60, strangers=12, seed=0)
    x, y, source, _ = embed_training(split, use_cache=False, workers=2, progress=False)
    assert source == "computed" and len(y) >= 200
    config = TrainConfig(epochs=10, batch_size=32)
    root = tmp_path_factory.mktemp("model")
    with LocalSession() as session:
        train_mpc(session, [(PREP.apply(x), y)], len(split.class_names), config)
        w, b = reveal_model(session)   # for the comparison with plaintext only
        save_model(session, root, split.class_names, PREP.as_dict(), config.as_dict())
    plain = train_plaintext(PREP.apply(x), y, len(split.class_names), config)
    return dict(split=split, root=root, w=w, b=b, plain=plain)


@pytest.fixture(scope="module")
def recognised(model):
    """Held-out images of the known people and the strangers' images, through the recogniser."""
    split = model["split"]
    queries = split.heldout + [(r, -1) for r in split.strangers]
    with Recognizer(model["root"], THRESHOLD) as rec:
        out = [(truth, rec.recognize(read_rgb(split.root / rel), policy="center")) for rel, truth in queries]
        timings = rec.timings
    return out, timings


def test_known_faces_are_named_and_strangers_rejected(model, recognised):
    results, _ = recognised
    names = model["split"].class_names
    known = [(t, faces[0]) for t, faces in results if t >= 0 and faces]
    strangers = [faces[0] for t, faces in results if t < 0 and faces]
    assert len(known) >= 38 and len(strangers) >= 11          # HOG finds nearly every LFW face
    correct = sum(f.known and f.name == names[t] for t, f in known)
    assert correct >= 0.9 * len(known), [(names[t], f.name, round(f.probability, 3)) for t, f in known]
    assert sum(not f.known for f in strangers) >= 0.75 * len(strangers)
    assert all(f.name == UNKNOWN for f in strangers if not f.known)


def test_every_probability_equals_the_plaintext_models(model, recognised):
    """With the probabilities revealed (--reveal probabilities), they are the float64 model's; by default
    (--reveal label) the client got only each face's label and band, which are those of the probabilities."""
    results, _ = recognised
    faces = [f for _, fs in results for f in fs]
    assert all(f.probabilities is None for f in faces)
    embeddings = np.array([f.embedding for f in faces])
    x = PREP.apply(embeddings)
    with Recognizer(model["root"], THRESHOLD, reveal="probabilities") as rec:
        prediction = rec.classify(embeddings)
    p = prediction.probabilities
    labels, bands = label_and_band(p, prediction.thresholds)
    near = np.abs(p.max(1)[:, None] - np.array(prediction.thresholds)).min(1) < 1e-3
    assert np.array_equal(np.array([f.label for f in faces])[~near], labels[~near])
    assert np.array_equal(np.array([f.band for f in faces])[~near], bands[~near])
    # the same model evaluated in float64: the MPC inference error alone
    assert np.abs(p - softmax_rows(x @ model["w"] + model["b"])).max() < 1e-3
    # the model trained the same way in float64: training on shares follows it just as closely
    reference = model["plain"].predict_proba(x)
    assert np.abs(p - reference).max() < 1e-3
    decided = np.abs(reference.max(1) - THRESHOLD) > 1e-3   # away from the threshold, the same decisions
    assert np.array_equal(p.argmax(1)[decided], reference.argmax(1)[decided])
    assert np.array_equal((p.max(1) >= THRESHOLD)[decided], (reference.max(1) >= THRESHOLD)[decided])


def test_one_mpc_batch_per_image_whatever_its_number_of_faces(model):
    split = model["split"]
    a, b = (split.root / split.heldout[i][0] for i in (0, 4))   # two different known people
    pair = np.ascontiguousarray(np.hstack([read_rgb(a)[:, 62:187], read_rgb(b)[:, 62:187]]))
    with Recognizer(model["root"], THRESHOLD) as rec:
        faces = rec.recognize(pair)
        t = rec.timings
    assert len(faces) == 2 and t.batches == 1 and t.faces == 2
    want = {split.class_names[split.heldout[i][1]] for i in (0, 4)}
    assert {f.name for f in faces} == want
    assert t.rounds >= 3 and t.bytes_sent > 0   # the classification really ran on shares


def _run(args, **kw):
    return CliRunner().invoke(recognize, [str(a) for a in args], **kw)


def test_cli_images_csv_and_json_one_line_per_face(model, tmp_path):
    split = model["split"]
    files = [split.root / rel for rel, _ in split.heldout[:3]]
    folder = tmp_path / "more"
    folder.mkdir()
    shutil.copy(split.root / split.strangers[0], folder / "stranger.jpg")
    cv2.imwrite(str(folder / "blank.png"), np.full((200, 200, 3), 120, np.uint8))   # no face: no line
    result = _run(["-m", model["root"], *files, folder, "--output", tmp_path / "out", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows if r[0] != str(folder / "stranger.jpg")] == [str(f) for f in files]
    for r, (_, label) in zip(rows, split.heldout[:3]):
        assert r[1] == split.class_names[label] and THRESHOLD <= float(r[2]) <= 1
        top, right, bottom, left = map(int, r[3:])
        assert 0 <= left < right <= 250 and 0 <= top < bottom <= 250
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f.stem + ".jpg" for f in files] + ["stranger.jpg", "blank.jpg"])

    result = _run(["-m", model["root"], files[0], "--json", "--quiet"])
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["source"] == str(files[0]) and record["frame"] is None and record["known"] is True
    assert set(record["box"]) == {"top", "right", "bottom", "left"}
    # the probabilities revealed instead of the label: the same face and name, a probability in its band
    result = _run(["-m", model["root"], files[0], "--json", "--quiet", "--reveal", "probabilities"])
    on_shares = json.loads(result.stdout)
    assert on_shares["name"] == record["name"] and on_shares["band"] == record["band"] >= 1
    assert record["probability"] <= on_shares["probability"] + 1e-3


def write_video(path, frames, fps=5):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()


def test_cli_video_gives_an_annotated_video_and_a_line_per_face(model, tmp_path):
    split = model["split"]
    people = [split.heldout[i] for i in (0, 4, 8, 12)]            # four known people, one photo each
    photos = [cv2.imread(str(split.root / rel)) for rel, _ in people]
    blank = np.full_like(photos[0], 90)
    pair = np.hstack([photos[0][:, 62:187], photos[1][:, 62:187]])
    frames = [photos[0], photos[0], blank, photos[1], pair, photos[2], blank, photos[3], photos[3]]
    faces_in = [1, 1, 0, 1, 2, 1, 0, 1, 1]
    video = tmp_path / "lfw.avi"
    write_video(video, frames)
    result = _run(["-m", model["root"], "--video", video, "--output", tmp_path / "out", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [sum(r["frame"] == i for r in lines) for i in range(len(frames))] == faces_in
    names = {i: split.class_names[label] for i, (_, label) in zip((0, 3, 5, 7), people)}
    names.update({1: names[0], 8: names[7]})
    assert sum(r["name"] == names[r["frame"]] for r in lines if r["frame"] in names) >= 6
    assert {r["name"] for r in lines if r["frame"] == 4} <= {names[0], names[3], UNKNOWN}
    assert "MPC" in result.stderr and "per MPC batch (7, one per frame" in result.stderr

    out = cv2.VideoCapture(str(tmp_path / "out" / "lfw.avi"))
    written = []
    while True:
        ok, frame = out.read()
        if not ok:
            break
        written.append(frame)
    assert len(written) == len(frames) and written[0].shape == frames[0].shape
    # the box is drawn: its top edge is green (known) or red (unknown) in the output, not in the input
    r = lines[0]
    top, left, right = r["box"]["top"], r["box"]["left"], r["box"]["right"]
    edge = written[0][top, left + 5:right - 5].astype(int)
    colour = edge.mean(0)
    assert max(colour[1], colour[2]) > 150 and min(colour[1], colour[2]) < 80 and colour[0] < 80
    assert not list((tmp_path / "out").glob(".*"))            # no temporary file left behind


# -- bad input -----------------------------------------------------------------------------------------------
def test_no_model_or_a_tampered_half_is_refused(model, tmp_path, lfw_image):
    img = lfw_image("George_W_Bush", 1)
    result = _run(["-m", tmp_path / "nothing", img])
    assert result.exit_code != 0 and "missing client record" in result.output and "train-mpc" in result.output
    copy = tmp_path / "model"
    shutil.copytree(model["root"], copy)
    edit_sql(copy, 1, "UPDATE rows SET data = zeroblob(length(data)) WHERE seq = 0")
    result = _run(["-m", copy, img])
    assert result.exit_code != 0 and "modified" in result.output
    shutil.rmtree(copy / "server0")
    with pytest.raises(StorageError, match="missing"):
        Recognizer(copy)


def test_unreadable_inputs_give_clear_errors(model, tmp_path, lfw_image):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    good = lfw_image(model["split"].class_names[0], 1)
    result = _run(["-m", model["root"], bad, good, "--quiet"])
    assert result.exit_code == 1
    assert "broken.jpg: not a decodable" in result.stderr and len(result.stdout.splitlines()) >= 1
    fake_video = tmp_path / "fake.avi"
    fake_video.write_bytes(b"\x00" * 1000)
    result = _run(["-m", model["root"], "--video", fake_video])
    assert result.exit_code != 0 and "cannot read video" in result.output
    result = _run(["-m", model["root"], "--video", tmp_path / "absent.avi"])
    assert result.exit_code != 0 and "not found" in result.output
    result = _run(["-m", model["root"], "--webcam", "--camera", "57"])
    assert result.exit_code != 0 and "no camera at index 57" in result.output
    assert "exactly one source" in _run(["-m", model["root"]]).output
    assert "exactly one source" in _run(["-m", model["root"], good, "--video", fake_video]).output
    assert _run(["-m", model["root"], tmp_path / "absent.jpg"]).exit_code != 0


def test_cli_tracking_names_every_frame_and_embeds_only_when_due(model, tmp_path):
    """--track on a clip of one held-out photo swaying as before a camera: a line for every frame, every line
    the same name, and the face embedded only on frames 0, 5, 10 and 15 (--refresh 5)."""
    from ppfr.recognition.clip import still_clip

    split = model["split"]
    rel, label = split.heldout[0]
    frames = [f[:, :, ::-1] for f in still_clip([split.root / rel], 20, face_px=300)]
    video = tmp_path / "sway.avi"
    write_video(video, frames)
    result = _run(["-m", model["root"], "--video", video, "--track", "--refresh", "5", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["frame"] for r in lines] == list(range(20))
    assert {r["name"] for r in lines} == {split.class_names[label]} and {r["track"] for r in lines} == {1}
    assert max(r["age"] for r in lines) == 4
    assert "tracking: 4 of 20 faces embedded" in result.stderr


def test_show_without_a_display_serves_the_frames_to_a_browser_page(monkeypatch):
    """No display (or the headless OpenCV wheel): --show serves the annotated frames at a local page instead
    of failing; Stop on the page ends the run as q does in the window. (tests/test_web.py drives the page in
    Chromium.)"""
    import urllib.request

    from websockets.sync.client import connect

    from ppfr.recognition.media import open_window
    from ppfr.web.viewer import FrameViewer

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    said = []
    window = open_window(said.append)
    try:
        assert isinstance(window, FrameViewer) and window.url.startswith("http://127.0.0.1:")
        assert "needs a display" in said[0] and window.url in said[0]
        assert "ppfr recognize" in urllib.request.urlopen(window.url, timeout=10).read().decode()
        frame = np.zeros((48, 64, 3), np.uint8)
        assert window.show(frame, wait_ms=1)
        with connect(window.url.replace("http:", "ws:").replace("/show", "/ws/show"), open_timeout=10) as ws:
            ws.send("frame")
            assert ws.recv(timeout=10)[:3] == b"\xff\xd8\xff"       # the frame, as a JPEG
            ws.send("stop")
            ws.send("frame")
            assert json.loads(ws.recv(timeout=10))["state"] == "running"   # answered after the stop was taken
        assert not window.show(frame, wait_ms=1)
    finally:
        window.close()


def test_a_slow_reader_of_a_live_source_gets_the_newest_frame():
    import threading
    import time

    produced = threading.Event()

    def camera():
        for i in range(50):
            yield i
            time.sleep(0.002)
        produced.set()

    seen = []
    for frame in LatestFrame(camera()):
        seen.append(frame)
        time.sleep(0.02)          # a recogniser ten times slower than the camera
    assert produced.is_set() and seen[-1] == 49 and seen == sorted(seen)
    assert len(seen) < 25         # it skipped frames rather than queueing them


def test_the_annotated_video_appears_only_when_complete(tmp_path):
    from ppfr.recognition.media import VideoOutput

    frame = np.full((120, 160, 3), 50, np.uint8)
    out = VideoOutput(tmp_path / "v.avi", fps=10)
    out.write(frame)
    out.write(frame, repeat=3)      # a live frame that stayed current for three frame times
    assert not (tmp_path / "v.avi").exists()
    out.close()
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 == out.frames
    broken = VideoOutput(tmp_path / "w.avi", fps=10)
    broken.write(frame)
    broken.close(ok=False)           # a failed run leaves neither the video nor its temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.avi"]
