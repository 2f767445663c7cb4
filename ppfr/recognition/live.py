"""The live path: frame in, named boxes out, with the faces tracked between frames.

    pipeline = LivePipeline(ClassifierNamer(recognizer), recognizer.detector, recognizer.embedder)
    faces, stages = pipeline.process(rgb)      # stages: milliseconds of detect, track, embed, mpc

Every frame is detected (on a copy resized by `detect_scale`); with a Tracker (ppfr.recognition.tracking)
only the faces it says are due are embedded and sent to the servers, in one MPC batch for the frame, and
the other faces keep the name their track was given. Without one every face is embedded and named in
every frame. Two namers: the softmax model held as shares (`ClassifierNamer`, what `ppfr recognize` does)
and the secret-shared gallery (`GalleryNamer`, what `ppfr identify` does); each MPC batch costs what that
command's batch costs (see their modules for rounds and bytes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ppfr.embed.detect import Box

from .recognizer import UNKNOWN, Timings, detect_scaled
from .tracking import Tracker, Track


@dataclass
class LiveFace:
    """A face of the current frame: its box (this frame's), and its track's name."""
    box: Box
    name: str
    known: bool
    probability: float | None
    distance: float | None
    track: int
    age: int | None           # frames since the name was computed (0: in this frame)

    @property
    def caption(self) -> str:
        if self.probability is not None:
            return f"{self.name} {self.probability:.2f}"
        return self.name if self.distance is None else f"{self.name} {self.distance:.2f}"

    def as_dict(self) -> dict:
        b = self.box
        return {"name": self.name, "known": self.known,
                "probability": None if self.probability is None else round(float(self.probability), 6),
                "distance": None if self.distance is None else round(float(self.distance), 6),
                "track": self.track, "age": self.age,
                "box": {"top": b.top, "right": b.right, "bottom": b.bottom, "left": b.left}}


class ClassifierNamer:
    """Names embeddings with the softmax model held as shares (a ppfr.recognition.Recognizer)."""
    mode = "recognize"

    def __init__(self, recognizer):
        self.recognizer = recognizer

    @property
    def session(self):
        return self.recognizer.session

    def name(self, x: np.ndarray) -> list[dict]:
        """What the model's reveal mode tells: with reveal="label" (the default) the name and, as the
        probability, the lower edge of the confidence band the top class reached."""
        prediction = self.recognizer.classify(x)
        top = prediction.top_probability()
        out = []
        for label, p in zip(prediction.labels, top):
            name, known = self.recognizer.name(int(label))
            out.append({"name": name, "known": known, "probability": float(p)})
        return out


class GalleryNamer:
    """Names embeddings by the nearest entry of the secret-shared gallery (ppfr.gallery.service.Gallery)."""
    mode = "identify"

    def __init__(self, gallery, reveal: str = "nearest", tolerance: float | None = None):
        from ppfr.gallery.service import TOLERANCE

        self.gallery = gallery
        self.reveal = reveal
        self.tolerance = TOLERANCE if tolerance is None else tolerance

    @property
    def session(self):
        return self.gallery.parties.session

    def name(self, x: np.ndarray) -> list[dict]:
        hits = self.gallery.identify(x, reveal=self.reveal, tolerance=self.tolerance)
        return [{"name": h.name if h.known else UNKNOWN, "known": h.known, "distance": h.distance} for h in hits]


class LivePipeline:
    """Detect, track, embed and name the faces of successive frames of one source."""

    def __init__(self, namer, detector, embedder, detect_scale: float = 0.5, tracker: Tracker | None = None):
        self.namer = namer
        self.detector = detector
        self.embedder = embedder
        self.detect_scale = detect_scale
        self.tracker = tracker
        self.timings = Timings()

    def process(self, rgb: np.ndarray) -> tuple[list[LiveFace], dict]:
        """The named faces of one RGB frame, and the milliseconds each stage took on it."""
        tm = self.timings
        t0 = time.perf_counter()
        boxes = detect_scaled(self.detector, rgb, self.detect_scale)
        t1 = time.perf_counter()
        if self.tracker is not None:
            tracks = self.tracker.update(boxes)
            due = self.tracker.due(tracks)
        else:
            tracks = due = [Track(0, b) for b in boxes]
        t2 = time.perf_counter()
        x = np.array([self.embedder.embed(rgb, t.box) for t in due], dtype=np.float64).reshape(len(due), self.embedder.dim)
        t3 = time.perf_counter()
        if len(due):
            self._name(due, x)
        t4 = time.perf_counter()
        frame = self.tracker.frame if self.tracker is not None else tm.frames
        faces = [LiveFace(t.box, t.name, t.known, t.probability, t.distance, t.id,
                          t.age(frame) if self.tracker is not None else 0) for t in tracks]
        tm.frames += 1
        tm.faces += len(faces)
        tm.embedded += len(due)
        tm.detect += t1 - t0
        tm.track += t2 - t1
        tm.embed += t3 - t2
        tm.mpc += t4 - t3
        stages = {"detect": t1 - t0, "track": t2 - t1, "embed": t3 - t2, "mpc": t4 - t3, "total": t4 - t0}
        return faces, {k: round(1000 * v, 3) for k, v in stages.items()}

    def _name(self, due: list[Track], x: np.ndarray) -> None:
        """One MPC batch for every face due in this frame; its traffic goes into the timings."""
        before = self.namer.session.stats()["server0"]
        named = self.namer.name(x)
        cost = self.namer.session.stats()["server0"] - before
        tm = self.timings
        tm.batches += 1
        tm.bytes_sent += cost.bytes_sent
        tm.rounds += cost.rounds
        tm.offline_bytes += cost.offline_bytes
        for t, n in zip(due, named):
            if self.tracker is not None:
                self.tracker.named(t, n["name"], n["known"], n.get("probability"), n.get("distance"))
            else:
                t.name, t.known, t.probability, t.distance = (n["name"], n["known"], n.get("probability"),
                                                              n.get("distance"))
