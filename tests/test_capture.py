"""ppfr capture: from a video the test writes out of LFW frames, from image folders, and bad sources."""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ppfr.capture.capture import capture_faces, check_name, crop_with_margin, next_number
from ppfr.capture.cli import capture
from ppfr.capture.sources import CaptureError, ImageFolderSource, VideoSource
from ppfr.embed.detect import Box, FaceDetector, read_rgb
from ppfr.embed.embedders import make_embedder
from ppfr.embed.pipeline import embed_image

SIZE = (250, 250)


def write_video(path, frames, fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def bush_video(tmp_path_factory, lfw_image):
    """32 frames: 4 blank, 4 with two faces, then Bush's photos 1..4, each held for 4 frames and
    followed by 2 blank ones."""
    blank = np.full((*SIZE, 3), 90, np.uint8)
    # the middle halves of two LFW photos side by side: two faces at full size in one frame
    two = np.hstack([cv2.imread(str(lfw_image("Colin_Powell", 1)))[:, 62:187],
                     cv2.imread(str(lfw_image("Tony_Blair", 1)))[:, 62:187]])
    frames = [blank] * 4 + [two] * 4
    for n in (1, 2, 3, 4):
        frames += [cv2.imread(str(lfw_image("George_W_Bush", n)))] * 4 + [blank] * 2
    path = tmp_path_factory.mktemp("video") / "bush.avi"
    write_video(path, frames)
    return path, len(frames)


def test_capture_from_video_saves_one_face_frames_with_gaps_and_continues_numbering(bush_video, tmp_path, lfw_image):
    video, n_frames = bush_video
    person = tmp_path / "George_W_Bush"
    person.mkdir()
    (person / "0007.jpg").write_bytes(b"from an earlier session")
    result = capture_faces(VideoSource(video=video), tmp_path, "George_W_Bush", count=10, every=3, progress=False)
    # Each photo is held 4 frames: with every=3, frames k and k+3 of a photo are both saved
    assert [p.name for p in result.saved] == [f"{n:04d}.jpg" for n in range(8, 16)]
    assert result.frames_read == n_frames
    assert result.several_faces == 4 and result.no_face >= 4
    assert (person / "0007.jpg").read_bytes() == b"from an earlier session"

    # the crops hold Bush's face with room around it: embed finds it again and knows him
    detector, embedder = FaceDetector("hog", 0, 1), make_embedder("dlib")
    reference = embed_image(read_rgb(lfw_image("George_W_Bush", 1)), detector, embedder, "center")[0]
    first = read_rgb(result.saved[0])
    assert 150 <= first.shape[0] <= 250 and first.shape[0] == first.shape[1]
    vec, box, _ = embed_image(first, detector, embedder, "single")
    assert np.linalg.norm(vec - reference) < 0.3


def test_capture_stops_at_count_and_every_spaces_the_saves(bush_video, tmp_path):
    video, _ = bush_video
    # every=10: a save at frame 8 (photo 1); frames 18-19 are blank, so the next at 20 (photo 3);
    # frames 30-31 are blank: the video ends with 2 of the 3 asked for
    result = capture_faces(VideoSource(video=video), tmp_path, "Bush", count=3, every=10, progress=False)
    assert [p.name for p in result.saved] == ["0001.jpg", "0002.jpg"]
    assert result.frames_read == 32 and result.frames_checked == 8 + 1 + 3 + 2
    # count=1 stops at the first save, without reading the rest of the video
    result = capture_faces(VideoSource(video=video), tmp_path, "Bush", count=1, every=1, progress=False)
    assert [p.name for p in result.saved] == ["0003.jpg"] and result.frames_read == 9


def test_cli_capture_from_images_reports_json_and_passes_over_bad_files(tmp_path, lfw_image):
    src = tmp_path / "photos"
    src.mkdir()
    for n in (1, 2, 3):
        (src / f"p{n}.jpg").write_bytes(lfw_image("Colin_Powell", n).read_bytes())
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    cv2.imwrite(str(src / "grey.png"), np.full((200, 200, 3), 128, np.uint8))
    (src / "readme.txt").write_text("ignored: not an image extension")
    out = tmp_path / "dataset"
    res = CliRunner().invoke(capture, ["Colin_Powell", "--out", str(out), "--images", str(src),
                                       "--count", "10", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["saved"] == 3 and summary["frames_without_face"] == 1
    assert summary["unreadable_images"] == ["broken.jpg"]
    assert sorted(p.name for p in (out / "Colin_Powell").iterdir()) == ["0001.jpg", "0002.jpg", "0003.jpg"]
    assert next_number(out / "Colin_Powell") == 4


def test_capture_from_images_lists_an_empty_file_as_unreadable(tmp_path, lfw_image):
    # a 0-byte .jpg made cv2.imdecode raise (!buf.empty()) and ended the whole run
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a_empty.jpg").write_bytes(b"")
    (src / "b_real.jpg").write_bytes(lfw_image("Colin_Powell", 1).read_bytes())
    source = ImageFolderSource(src)
    result = capture_faces(source, tmp_path / "dataset", "Colin_Powell", count=5, every=1, progress=False)
    assert [p.name for p in result.saved] == ["0001.jpg"]
    assert result.frames_read == 1
    assert result.unreadable == ["a_empty.jpg"]


@pytest.mark.parametrize("args, message", [
    ([], "exactly one source"),
    (["--camera", "0", "--images", "x"], "exactly one source"),
    (["--camera", "97"], "no camera at index 97"),
    (["--video", "{tmp}/missing.avi"], "not found"),
    (["--video", "{tmp}/garbage.avi"], "cannot read video"),
    (["--images", "{tmp}/empty"], "no images in"),
    (["--images", "{tmp}/blank"], "no frame of images in"),
])
def test_cli_capture_bad_sources_give_clear_errors(tmp_path, args, message):
    (tmp_path / "garbage.avi").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "blank").mkdir()
    cv2.imwrite(str(tmp_path / "blank" / "grey.png"), np.full((100, 100, 3), 128, np.uint8))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = CliRunner().invoke(capture, ["Someone", "--out", str(tmp_path / "out"), "--quiet", *args])
    assert res.exit_code != 0 and message in res.output, res.output


def test_show_without_a_display_is_a_clear_error(tmp_path, lfw_image):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.jpg").write_bytes(lfw_image("Colin_Powell", 1).read_bytes())
    try:
        cv2.namedWindow("probe")
        cv2.destroyWindow("probe")
        pytest.skip("this OpenCV can open windows here")
    except cv2.error:
        pass
    res = CliRunner().invoke(capture, ["X", "--out", str(tmp_path / "o"), "--images", str(src), "--show"])
    assert res.exit_code == 1 and "--show needs a display" in res.output


def test_show_with_no_display_set_is_a_clear_error(tmp_path, lfw_image, monkeypatch):
    # checked before OpenCV is asked: some GUI builds abort the process when there is no display
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.jpg").write_bytes(lfw_image("Colin_Powell", 1).read_bytes())
    if not sys.platform.startswith("linux"):
        pytest.skip("the DISPLAY check is for Linux")
    res = CliRunner().invoke(capture, ["X", "--out", str(tmp_path / "o"), "--images", str(src), "--show"])
    assert res.exit_code == 1 and "--show needs a display" in res.output and "run without --show" in res.output
    assert not (tmp_path / "o" / "X").exists()


def test_name_and_crop_rules(tmp_path):
    for bad in ("", "../up", ".hidden", "a/b"):
        with pytest.raises(CaptureError, match="invalid person name"):
            check_name(bad)
    frame = np.zeros((400, 600, 3), np.uint8)
    crop = crop_with_margin(frame, Box(250, 150, 350, 250), 0.5)     # 100 px face -> 200 px square
    assert crop.shape == (200, 200, 3)
    assert crop_with_margin(frame, Box(0, 0, 100, 100), 0.5).shape == (150, 150, 3)   # clipped at the edge
