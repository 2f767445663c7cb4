"""The client role behind the web app: photos in, embeddings shared with the servers, answers out.

Faces exist here only in memory: an uploaded photo is decoded, embedded and dropped; only shares of its
embedding leave the client (to the gallery's or the model's servers, in this process as in `ppfr enroll`).
The embeddings of people enrolled in this run are kept in memory too, so that a model can be trained
from them (the gallery keeps none in the clear, and a new run starts without them).

One lock serialises all face and MPC work: an MPC session runs one program at a time, and dlib's models
are not meant to be shared between threads.
"""
from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

import numpy as np

from ppfr.config import section
from ppfr.embed.detect import FaceDetector, SkipImage, choose_face
from ppfr.embed.embedders import make_embedder
from ppfr.embed.imagesize import image_size
from ppfr.limits import LimitError, check_pixels

_embed = section("embed")
_web = section("web")

IMAGE_TYPES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


class WebError(ValueError):
    """Input the page can be told about in one sentence (the status says whose fault it is)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _max_pixels() -> int:
    from ppfr.limits import Limits as InputLimits

    return InputLimits.from_config().max_pixels


@dataclass(frozen=True)
class Limits:
    upload_bytes: int = int(float(_web.get("max_upload_mb", 8)) * 2**20)   # per photo
    images: int = int(_web.get("max_images", 20))                          # per request
    pixels: int = _max_pixels()                                             # per photo: limits.max_megapixels


def decode_image(data: bytes, label: str, limits: Limits = Limits()) -> np.ndarray:
    """An RGB array from a JPEG or PNG file's bytes, in memory; WebError names what is wrong."""
    import cv2

    if len(data) > limits.upload_bytes:
        raise WebError(f"{label}: {len(data) / 2**20:.1f} MB is over the limit of "
                       f"{limits.upload_bytes / 2**20:g} MB per photo", 413)
    if not any(data.startswith(magic) for magic in IMAGE_TYPES):
        raise WebError(f"{label}: not a JPEG or PNG image", 415)
    size = image_size(io.BytesIO(data))           # from the header: a hostile size is refused undecoded
    try:
        if size is not None:
            check_pixels(*size, limits.pixels, label)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise WebError(f"{label}: a damaged image that cannot be decoded", 415)
        check_pixels(bgr.shape[1], bgr.shape[0], limits.pixels, label)
    except LimitError as e:
        raise WebError(str(e), 413) from None
    return np.ascontiguousarray(bgr[:, :, ::-1])


def party_costs(before: dict, after: dict) -> dict:
    """Per party, what one operation cost on the wire: bytes sent online, rounds, bytes to or from the
    dealer (from the engine's counts, ppfr.mpc.channel.PartyStats)."""
    out = {}
    for name in after:
        if name in before:
            d = after[name] - before[name]
            out[name] = {"bytes_sent": d.bytes_sent, "rounds": d.rounds, "messages": d.messages_sent,
                         "offline_bytes": d.offline_bytes}
    return out


class WebClient:
    """The gallery at `gallery_dir`, the model at `weights_dir`, and the face pipeline, for the app."""

    def __init__(self, gallery_dir, weights_dir, limits: Limits = Limits()):
        from ppfr.gallery.service import Gallery

        self.gallery_dir, self.weights_dir, self.limits = gallery_dir, weights_dir, limits
        self.lock = threading.RLock()
        self.gallery = Gallery(gallery_dir)
        self.detector = FaceDetector(_embed.get("detector", "hog"), int(_embed.get("upsample", 0)),
                                     _embed.get("retry_upsample", 1))
        self.live_detector = FaceDetector(_embed.get("detector", "hog"), 0, None)   # frames are many: no retry
        self.embedder = make_embedder(_embed.get("embedder", "dlib"))
        self.policy = _embed.get("policy", "largest")
        self.enrolled: dict[str, list[np.ndarray]] = {}     # this run's embeddings, for training
        self._recognizer = None
        self._model_key = None

    def close(self):
        with self.lock:
            self.gallery.close()
            if self._recognizer is not None:
                self._recognizer.close()
                self._recognizer = None

    # -- photos ---------------------------------------------------------------------------------------------
    def embed_photos(self, photos: list[tuple[str, bytes]]) -> tuple[list[dict], list[np.ndarray], float]:
        """A report per photo (faces found, used or rejected and why), the embeddings of the usable ones,
        and the seconds the embedding took. Nothing is kept."""
        if not photos:
            raise WebError("no photo was sent")
        if len(photos) > self.limits.images:
            raise WebError(f"{len(photos)} photos at once; the limit is {self.limits.images}", 413)
        reports, vectors = [], []
        start = time.perf_counter()
        for label, data in photos:
            report = {"photo": label, "faces": 0, "used": False}
            try:
                rgb = decode_image(data, label, self.limits)
                with self.lock:
                    boxes = self.detector.detect(rgb)
                    report["faces"] = len(boxes)
                    box = choose_face(boxes, rgb.shape, self.policy)
                    vectors.append(self.embedder.embed(rgb, box).astype(np.float64))
                report.update(used=True, box=[box.left, box.top, box.right, box.bottom])
                if len(boxes) > 1:
                    report["note"] = f"{len(boxes)} faces: used the {self.policy} one"
            except SkipImage as e:
                report["reason"] = {"no_face": "no face found", "multiple_faces": e.detail}.get(e.reason, e.reason)
            except WebError as e:
                report["reason"] = str(e).split(": ", 1)[-1]
            reports.append(report)
        return reports, vectors, time.perf_counter() - start

    # -- the gallery ----------------------------------------------------------------------------------------
    def people(self) -> list[dict]:
        rec = self.gallery.record
        counts: dict[str, int] = {}
        for n in rec.names() if rec else []:
            counts[n] = counts.get(n, 0) + 1
        return [{"name": n, "photos": c, "trainable": len(self.enrolled.get(n, []))} for n, c in sorted(counts.items())]

    def enroll(self, name: str, photos: list[tuple[str, bytes]]) -> dict:
        from ppfr.embed.embedders import embedder_name

        name = name.strip()
        if not name:
            raise WebError("give the person a name")
        if len(name) > 100:
            raise WebError("a name of at most 100 characters, please")
        reports, vectors, embed_s = self.embed_photos(photos)
        if not vectors:
            why = "; ".join(f"{r['photo']}: {r.get('reason')}" for r in reports)
            raise WebError(f"no usable face ({why}); nothing enrolled", 422)
        with self.lock:
            start = time.perf_counter()
            rec = self.gallery.enroll(name, np.stack(vectors), [r["photo"] for r in reports if r["used"]],
                                      embedder=embedder_name(_embed.get("embedder", "dlib")))
            mpc_s = time.perf_counter() - start
            self.enrolled.setdefault(name, []).extend(vectors)
        return {"name": name, "enrolled": len(vectors), "photos": reports, "entries": len(rec.entries),
                "seconds": {"embed": round(embed_s, 4), "mpc": round(mpc_s, 4)}}

    def remove(self, name: str) -> dict:
        from ppfr.gallery.store import GalleryError

        with self.lock:
            try:
                removed = self.gallery.remove(name)
            except GalleryError as e:
                raise WebError(str(e), 404) from None
            self.enrolled.pop(name, None)
        return {"name": name, "removed": removed}

    def identify(self, photos: list[tuple[str, bytes]], reveal: str = "nearest") -> dict:
        """One photo: who it is (1:N against the gallery). Two: whether they show one person (1:1). Either
        way with what each party sent and the time of the MPC against the embedding."""
        from ppfr.gallery.protocols import REVEAL_MODES
        from ppfr.gallery.service import TOLERANCE, pair_distances

        if len(photos) not in (1, 2):
            raise WebError("send one photo to identify, or two to verify")
        if reveal not in REVEAL_MODES:
            raise WebError(f"reveal is one of {', '.join(REVEAL_MODES)}")
        if len(photos) == 1:
            self.gallery.require_entries()
        reports, vectors, embed_s = self.embed_photos(photos)
        missing = [r for r in reports if not r["used"]]
        if missing:
            raise WebError("; ".join(f"{r['photo']}: {r.get('reason')}" for r in missing), 422)
        with self.lock:
            session = self.gallery.parties.session
            before = session.stats()
            start = time.perf_counter()
            if len(vectors) == 1:
                [hit] = self.gallery.identify(vectors[0][None], reveal=reveal)
                answer = {"mode": "identify", "reveal": reveal, **hit.as_dict()}
            else:
                (sq,) = pair_distances(vectors[0][None], vectors[1][None], session=session)
                distance = float(max(float(sq), 0.0) ** 0.5)
                answer = {"mode": "verify", "same": bool(sq <= TOLERANCE ** 2), "distance": distance,
                          "squared_distance": float(sq)}
            mpc_s = time.perf_counter() - start
            costs = party_costs(before, session.stats())
        answer.update(tolerance=TOLERANCE, photos=reports, parties=costs,
                      seconds={"embed": round(embed_s, 4), "mpc": round(mpc_s, 4)})
        return answer

    # -- the model ------------------------------------------------------------------------------------------
    def recognizer(self):
        """The Recognizer of the model in weights_dir, loaded once per model written there."""
        from ppfr.models.store import model_paths
        from ppfr.recognition.recognizer import Recognizer

        record = model_paths(self.weights_dir)["client"]
        try:
            st = record.stat()
        except FileNotFoundError:
            raise WebError("no model yet: train one on the Model page (or with ppfr train-mpc)", 409) from None
        key = (st.st_ino, st.st_mtime_ns)
        if self._recognizer is None or key != self._model_key:
            if self._recognizer is not None:
                self._recognizer.close()
                self._recognizer = None
            self._recognizer = Recognizer(self.weights_dir, detector=self.live_detector)
            self._model_key = key
        return self._recognizer

    def training_data(self):
        """The embeddings of the people enrolled in this run, as one data owner's set."""
        from ppfr.embed.embedders import embedder_name
        from ppfr.models.data import ClientData, Dataset

        people = sorted(n for n, v in self.enrolled.items() if v)
        if len(people) < 2:
            raise WebError("training needs at least two people enrolled in this run of the app (their "
                           "embeddings are held in memory only), or an embeddings file")
        x = np.concatenate([np.stack(self.enrolled[n]) for n in people])
        y = np.concatenate([np.full(len(self.enrolled[n]), i, dtype=np.int64) for i, n in enumerate(people)])
        return Dataset(people, [ClientData("enrolled", x, y)], embedder_name(_embed.get("embedder", "dlib")))

    def live(self, mode: str, tracking: bool = True, refresh: int | None = None):
        """A LivePipeline for one live connection: its own tracker, this client's models and gallery."""
        from ppfr.recognition.live import ClassifierNamer, GalleryNamer, LivePipeline
        from ppfr.recognition.tracking import Tracker

        if mode == "recognize":
            namer = ClassifierNamer(self.recognizer())
        elif mode == "identify":
            self.gallery.require_entries()
            namer = GalleryNamer(self.gallery)
        else:
            raise WebError("mode is recognize (the trained model) or identify (the gallery)")
        tracker = Tracker(refresh or int(_web.get("refresh", 10))) if tracking else None
        return LivePipeline(namer, self.live_detector, self.embedder, float(_web.get("detect_scale", 0.5)), tracker)
