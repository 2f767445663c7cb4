"""The client's side of recognition against a softmax model held as two shares.

For each image or frame the client detects every face (optionally on a downscaled copy, which is what
makes a webcam keep up), embeds each face at full resolution, and sends the servers shares of all the
frame's embeddings at once: one MPC batch per frame. The servers compute the logits xW + b on shares and
reveal to the client what `reveal` says (ppfr.models.reference.REVEALS): by default only each face's top
class, where its probability reaches the threshold, and a coarse confidence band, both computed on
shares; or the probabilities; or the logits' differences. The face is named after the top class, or
`unknown` below the threshold. A class whose name is `unknown` (a background class of other people's
faces, as `ppfr demo` trains) also reads as unknown.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ppfr.embed.detect import Box, FaceDetector, SkipImage, choose_face
from ppfr.embed.embedders import make_embedder

UNKNOWN = "unknown"
DEFAULT_THRESHOLD = 0.5   # see benchmarks/open_set.py for the false-accept / false-reject trade-off
DEFAULT_REVEAL = "label"  # see ppfr.models.service.predict_mpc


@dataclass
class Face:
    box: Box                      # in the coordinates of the full image
    name: str                     # the top class, or "unknown"
    probability: float            # the top class's probability; with reveal="label", its band's lower edge
    known: bool
    label: int                    # index of the top class (-1 when reveal="label" and below the threshold)
    band: int                     # how many confidence thresholds the top probability reaches
    probabilities: np.ndarray | None  # every class's probability, unless reveal="label" (the client's only)
    embedding: np.ndarray

    def as_dict(self) -> dict:
        b = self.box
        return {"name": self.name, "probability": round(float(self.probability), 6), "known": self.known,
                "band": int(self.band), "box": {"top": b.top, "right": b.right, "bottom": b.bottom, "left": b.left}}


@dataclass
class Timings:
    """Client wall time in each stage and what the MPC part cost on the wire (per server)."""
    frames: int = 0
    faces: int = 0
    embedded: int = 0             # faces embedded (fewer than `faces` when a tracker keeps names)
    detect: float = 0.0
    track: float = 0.0
    embed: float = 0.0
    mpc: float = 0.0              # share + classify on shares + reconstruct
    batches: int = 0              # MPC batches (one per frame that holds a face)
    bytes_sent: int = 0           # online bytes server 0 sent (server 1 sends as many)
    rounds: int = 0
    offline_bytes: int = 0        # server 0's traffic with the dealer

    def as_dict(self) -> dict:
        per_face = (lambda v: round(1000 * v / self.faces, 3) if self.faces else None)
        per_batch = (lambda v: round(v / self.batches) if self.batches else None)
        return {"frames": self.frames, "faces": self.faces, "embedded": self.embedded, "mpc_batches": self.batches,
                "seconds": {"detect": round(self.detect, 4), "track": round(self.track, 4),
                            "embed": round(self.embed, 4), "mpc": round(self.mpc, 4)},
                "ms_per_face": {"detect": per_face(self.detect), "embed": per_face(self.embed),
                                "mpc": per_face(self.mpc)},
                "per_batch": {"bytes_per_server": per_batch(self.bytes_sent), "rounds": per_batch(self.rounds),
                              "offline_bytes_per_server": per_batch(self.offline_bytes)}}


def scale_box(box: Box, factor: float) -> Box:
    """A box found on an image resized by `factor`, in the original image's coordinates."""
    return Box(int(round(box.left / factor)), int(round(box.top / factor)), int(round(box.right / factor)),
               int(round(box.bottom / factor)), box.score)


def detect_scaled(detector: FaceDetector, rgb: np.ndarray, scale: float = 1.0) -> list[Box]:
    """Every face of an RGB image, found on a copy resized by `scale` (HOG's cost grows with the pixel
    count, so a half-size copy costs a quarter) and mapped back to the image's coordinates."""
    if scale == 1.0:
        return detector.detect(rgb)
    import cv2

    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return [scale_box(b, scale) for b in detector.detect(small)]


class Recognizer:
    """Load a model (both halves and the client's record) into a session and recognise faces with it.

        with Recognizer("weights", threshold=0.5) as r:
            faces = r.recognize(rgb)          # one MPC batch for all faces of the image

    Raises StorageError (ppfr.storage) when a half or the record is missing, modified or mismatched.
    """

    def __init__(self, model_root, threshold: float = DEFAULT_THRESHOLD, detector: FaceDetector | None = None,
                 embedder: str = "dlib", session=None, reveal: str = DEFAULT_REVEAL, bands=None):
        from ppfr.models.data import Preprocessing
        from ppfr.models.reference import CONFIDENCE_BANDS, check_reveal, confidence_thresholds
        from ppfr.models.store import load_model

        if not 0 < threshold <= 1:
            raise ValueError(f"the threshold is a probability in (0, 1], got {threshold}")
        self.threshold = threshold
        self.reveal = check_reveal(reveal)   # before loading anything
        self.thresholds = confidence_thresholds(threshold, CONFIDENCE_BANDS if bands is None else bands)
        self.detector = detector or FaceDetector("hog", upsample=0, retry_upsample=1)
        self._own_session = session is None
        self.session = session if session is not None else new_session()
        try:
            self.record = load_model(self.session, model_root)
            self.embedder = make_embedder(embedder)
            wanted = self.record.get("embedder") or self.record.get("train", {}).get("embedder")
            if wanted and wanted != self.embedder.name:
                raise ValueError(f"the model was trained on {wanted} embeddings, not {self.embedder.name}")
        except BaseException:
            self.close()
            raise
        self.class_names = list(self.record["class_names"])
        self.preprocessing = Preprocessing(**self.record.get("preprocessing", {}))
        self.timings = Timings()

    # -- the three stages ------------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray, scale: float = 1.0, policy: str = "all") -> list[Box]:
        """Faces of an RGB image; with scale < 1 the detector runs on a copy resized by that factor (HOG's
        cost grows with the pixel count) and the boxes are mapped back. policy 'all' keeps every face;
        'largest' / 'center' keep the one face an image stands for (see ppfr.embed.detect.choose_face)."""
        t = time.perf_counter()
        boxes = detect_scaled(self.detector, rgb, scale)
        if policy != "all":
            try:
                boxes = [choose_face(boxes, rgb.shape, policy)]
            except SkipImage:
                boxes = []
        self.timings.detect += time.perf_counter() - t
        return boxes

    def embed(self, rgb: np.ndarray, boxes: list[Box]) -> np.ndarray:
        t = time.perf_counter()
        out = np.array([self.embedder.embed(rgb, b) for b in boxes], dtype=np.float64).reshape(len(boxes), self.embedder.dim)
        self.timings.embed += time.perf_counter() - t
        return out

    def classify(self, embeddings: np.ndarray):
        """What the client learns of each embedding (a models.service.Prediction): one MPC batch (share,
        the classifier on shares, reveal to the client as `reveal` says)."""
        from ppfr.models.service import Prediction, predict_mpc

        x = self.preprocessing.apply(embeddings)
        if len(x) == 0:
            return Prediction(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), self.thresholds)
        before = self.session.stats()["server0"]
        t = time.perf_counter()
        p = predict_mpc(self.session, x, chunk=max(1, len(x)), reveal=self.reveal, thresholds=self.thresholds)
        dt = time.perf_counter() - t
        cost = self.session.stats()["server0"] - before
        tm = self.timings
        tm.mpc += dt
        tm.batches += 1
        tm.bytes_sent += cost.bytes_sent
        tm.rounds += cost.rounds
        tm.offline_bytes += cost.offline_bytes
        return p

    def name(self, label: int) -> tuple[str, bool]:
        """A face's name and whether it is known, from its revealed label (-1: below the threshold)."""
        known = label >= 0 and self.class_names[label] != UNKNOWN
        return (self.class_names[label] if known else UNKNOWN), known

    # -- all of it -------------------------------------------------------------------------------------
    def recognize(self, rgb: np.ndarray, detect_scale: float = 1.0, policy: str = "all") -> list[Face]:
        """Every face of an RGB image (or the one `policy` picks), named; one MPC batch for all of them."""
        boxes = self.detect(rgb, detect_scale, policy)
        x = self.embed(rgb, boxes)
        prediction = self.classify(x)
        self.timings.frames += 1
        self.timings.faces += len(boxes)
        self.timings.embedded += len(boxes)
        top = prediction.top_probability()
        faces = []
        for i, (box, vec) in enumerate(zip(boxes, x)):
            label = int(prediction.labels[i])
            name, known = self.name(label)
            probs = None if prediction.probabilities is None else prediction.probabilities[i]
            faces.append(Face(box, name, float(top[i]), known, label, int(prediction.bands[i]), probs, vec))
        return faces

    def close(self) -> None:
        if self._own_session and self.session is not None:
            self.session.close()
            self.session = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def new_session():
    """A session of the config's kind (mpc.parties) with its fixed-point settings (the model halves record
    theirs, and the loader refuses a mismatch)."""
    from ppfr.config import fixed_point
    from ppfr.mpc import open_session

    return open_session(fixed=fixed_point())