"""Face tracking between frames: the matching rules on boxes, then the live path on a clip made from LFW photos
with real dlib and the real gallery protocol (names kept between namings, embeddings only when due)."""
from __future__ import annotations

import numpy as np
import pytest

from ppfr.embed.detect import Box, FaceDetector, read_rgb
from ppfr.embed.embedders import make_embedder
from ppfr.embed.pipeline import embed_image
from ppfr.recognition.clip import still_clip, write_y4m
from ppfr.recognition.live import GalleryNamer, LivePipeline
from ppfr.recognition.tracking import Tracker, iou


def box(x, y, size=100):
    return Box(x, y, x + size, y + size)


def test_iou():
    assert iou(box(0, 0), box(0, 0)) == 1.0
    assert iou(box(0, 0), box(200, 0)) == 0.0
    assert abs(iou(box(0, 0), box(50, 0)) - 50 / 150) < 1e-12


def test_tracks_follow_moving_boxes_and_are_named_again_every_refresh_frames():
    t = Tracker(refresh=4)
    first = t.update([box(0, 0), box(300, 0)])
    assert [x.id for x in first] == [1, 2] and t.due(first) == first
    for x, name in zip(first, ("a", "b")):
        t.named(x, name, True, probability=0.9)
    due = []
    for step in range(1, 9):     # both move 5 px a frame, in the other order of detection
        tracks = t.update([box(300 + 5 * step, 0), box(5 * step, 0)])
        assert [x.name for x in tracks] == ["b", "a"] and tracks[1].box == box(5 * step, 0)
        due.append(len(t.due(tracks)))
        for x in t.due(tracks):
            t.named(x, x.name, True)
        assert max(x.age(t.frame) for x in tracks) <= t.refresh - 1
    assert due == [0, 0, 0, 2, 0, 0, 0, 2]


def test_a_new_face_gets_a_new_track_and_a_lost_one_is_forgotten():
    t = Tracker(refresh=10, max_missed=1)
    [a] = t.update([box(0, 0)])
    t.named(a, "a", True)
    [b] = t.update([box(400, 300)])           # far away: a new track, due at once
    assert b.id != a.id and t.due([b]) == [b]
    t.update([])
    [c] = t.update([box(0, 0)])               # a was missed for more than max_missed frames
    assert c.id not in (a.id, b.id)


def test_a_face_that_grows_is_named_again():
    t = Tracker(refresh=100, resize=0.5)
    [a] = t.update([box(100, 100, 100)])
    t.named(a, "a", True)
    [a2] = t.update([box(95, 95, 110)])
    assert a2 is a and t.due([a2]) == []
    [a3] = t.update([box(80, 80, 130)])       # area 1.69x of the named one, still overlapping
    assert a3 is a and t.due([a3]) == [a3]


def test_y4m_header_and_frame_size(tmp_path):
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 128, 255)]
    path = write_y4m(tmp_path / "c.y4m", frames, fps=25)
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    assert header == b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg"
    frame = len(b"FRAME\n") + 64 * 48 * 3 // 2
    assert len(rest) == 3 * frame and rest[frame:frame + 6] == b"FRAME\n"
    y_plane = np.frombuffer(rest[6 + frame:6 + frame + 64 * 48], np.uint8)
    assert abs(int(y_plane.mean()) - 128) <= 2      # grey stays grey in BT.601 full range


@pytest.fixture(scope="module")
def gallery(lfw_image, tmp_path_factory):
    from ppfr.gallery.service import Gallery

    detector, embedder = FaceDetector("hog", 0, 1), make_embedder("dlib")
    g = Gallery(tmp_path_factory.mktemp("gallery"))
    for person in ("Tony_Blair", "Colin_Powell"):
        vectors = [embed_image(read_rgb(lfw_image(person, n)), detector, embedder, "center")[0] for n in (1, 2)]
        g.enroll(person, np.stack(vectors))
    yield g
    g.close()


@pytest.mark.parametrize("refresh", [None, 5])
def test_live_path_names_every_frame_and_embeds_only_when_due(gallery, lfw_image, refresh):
    frames = still_clip([lfw_image("Tony_Blair", 12), lfw_image("Colin_Powell", 12)], 12, face_px=300)
    pipe = LivePipeline(GalleryNamer(gallery), FaceDetector("hog", 0, None), make_embedder("dlib"), 0.5,
                        Tracker(refresh) if refresh else None)
    for frame in frames:
        faces, stages = pipe.process(frame)
        assert [f.name for f in sorted(faces, key=lambda f: f.box.left)] == ["Tony_Blair", "Colin_Powell"]
        assert set(stages) == {"detect", "track", "embed", "mpc", "total"}
        if refresh:
            assert all(f.age <= refresh - 1 for f in faces)
    # with tracking both faces are embedded on frames 0, 5 and 10 only; without, on all 12
    assert pipe.timings.embedded == (2 * 3 if refresh else 2 * 12)
    assert pipe.timings.batches == (3 if refresh else 12)
