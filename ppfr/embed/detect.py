"""Reading images, finding faces, and choosing which face an image stands for."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppfr.limits import LimitError, Limits, check_pixels, megapixels

from . import models
from .imagesize import image_size

POLICIES = ("largest", "center", "single")
DETECTORS = ("hog", "cnn")


class SkipImage(Exception):
    """An image that yields no embedding; `reason` is one of the report's reason codes."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_BYTES_PER_PIXEL, _HEADROOM = 8, 1 << 20   # 16-bit RGBA stored raw, plus room for metadata


def read_bgr(path, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to a BGR uint8 array (OpenCV's order), or raise SkipImage: 'unreadable', or
    'too_large' when it has more than `max_pixels` (default limits.max_megapixels) — read from the
    header before decoding for JPEG, PNG and BMP, and checked after decoding for other formats."""
    import cv2

    path = Path(path)
    limit = Limits.from_config().max_pixels if max_pixels is None else max_pixels
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > _BYTES_PER_PIXEL * limit + _HEADROOM:
                raise SkipImage("too_large", f"the file takes {os.fstat(f.fileno()).st_size / 1e6:,.0f} MB, more "
                                f"than any image within limits.max_megapixels ({megapixels(limit)}) would")
            size = image_size(f)
            if size is not None:
                _check_size(*size, limit)
            f.seek(0)
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except OSError as e:
        raise SkipImage("unreadable", f"cannot read file: {e.strerror or e}") from None
    if data.size == 0:
        raise SkipImage("unreadable", "empty file")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SkipImage("unreadable", "not a decodable JPEG/PNG image (corrupt or not an image)")
    _check_size(bgr.shape[1], bgr.shape[0], limit)
    return bgr


def _check_size(width: int, height: int, limit: int) -> None:
    try:
        check_pixels(width, height, limit)
    except LimitError as e:
        raise SkipImage("too_large", str(e)) from None


def read_rgb(path) -> np.ndarray:
    """Decode an image file to an RGB uint8 array, or raise SkipImage('unreadable')."""
    return np.ascontiguousarray(read_bgr(path)[:, :, ::-1])


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int
    score: float = 0.0

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)

    @property
    def center(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2

    def to_dlib(self):
        import dlib
        return dlib.rectangle(int(self.left), int(self.top), int(self.right), int(self.bottom))


class FaceDetector:
    """dlib's frontal face detector: HOG (fast, default) or the CNN (MMOD) one.

    `retry_upsample`: when nothing is found at `upsample`, look again with the image upsampled this
    many times. On LFW's 250x250 crops this recovers most of the faces HOG misses (small or tilted
    faces); it costs about 4x the detection time, but only on the images that need it — and only when
    the upsampled image stays within `limits.retry_max_megapixels`, so that a large photo without a
    face costs one pass, not five. No pass ever scans more than `limits.max_megapixels`.
    """

    def __init__(self, kind: str = "hog", upsample: int = 0, retry_upsample: int | None = 1,
                 limits: Limits | None = None):
        if kind not in DETECTORS:
            raise ValueError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTORS)}")
        self.kind = kind
        self.upsample = upsample
        self.retry_upsample = retry_upsample if retry_upsample and retry_upsample > upsample else None
        self.limits = limits or Limits.from_config()

    def detect(self, rgb: np.ndarray) -> list[Box]:
        """Face boxes; raises SkipImage('too_large') when --upsample would scan more than the limit."""
        pixels = rgb.shape[0] * rgb.shape[1]
        if pixels * 4 ** self.upsample > self.limits.max_pixels:
            raise SkipImage("too_large", f"upsampled {self.upsample}x the {megapixels(pixels)} image would be "
                            f"scanned at {megapixels(pixels * 4 ** self.upsample)}, above limits.max_megapixels "
                            f"({megapixels(self.limits.max_pixels)}); lower --upsample")
        boxes = self._run(rgb, self.upsample)
        if not boxes and self._may_retry(pixels):
            boxes = self._run(rgb, self.retry_upsample)
        return boxes

    def _may_retry(self, pixels: int) -> bool:
        return self.retry_upsample is not None and pixels * 4 ** self.retry_upsample <= self.limits.retry_max_pixels

    def no_face_detail(self, shape) -> str:
        """Why detect() found nothing, for the report: whether the upsampled retry ran or was capped."""
        if self.retry_upsample is None:
            return "the detector found no face"
        if self._may_retry(shape[0] * shape[1]):
            return f"the detector found no face, also upsampled {self.retry_upsample}x"
        return (f"the detector found no face; no upsampled retry, as the {megapixels(shape[0] * shape[1])} image "
                f"upsampled would exceed limits.retry_max_megapixels ({megapixels(self.limits.retry_max_pixels)})")

    def _run(self, rgb, upsample) -> list[Box]:
        if self.kind == "hog":
            rects, scores, _ = models.hog_detector().run(rgb, upsample, 0.0)
            return [Box(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in zip(rects, scores)]
        found = models.cnn_detector()(rgb, upsample)
        return [Box(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence))
                for d in found]


def choose_face(boxes: list[Box], image_shape, policy: str = "largest") -> Box:
    """Pick the face an image stands for, or raise SkipImage('no_face' / 'multiple_faces').

    largest: the biggest box — right for photos of one person with bystanders.
    center:  the box whose centre is nearest the image centre — right for pre-cropped sets such
             as LFW, where the named person was centred and others may be larger at the edges.
    single:  exactly one face, else the image is skipped.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if not boxes:
        raise SkipImage("no_face", "the detector found no face")
    if policy == "single":
        if len(boxes) > 1:
            raise SkipImage("multiple_faces", f"{len(boxes)} faces found; --policy single takes only images "
                                              "with exactly one (crop the image, or use --policy largest)")
        return boxes[0]
    if policy == "largest":
        return max(boxes, key=lambda b: b.area)
    cy, cx = image_shape[0] / 2, image_shape[1] / 2
    return min(boxes, key=lambda b: (b.center[0] - cx) ** 2 + (b.center[1] - cy) ** 2)
