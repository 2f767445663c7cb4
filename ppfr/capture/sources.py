"""Where capture frames come from: a webcam, a video file, or a folder of images."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class CaptureError(Exception):
    """The source cannot be used: no camera, an unreadable video, an empty folder."""


class FrameSource:
    """Iterate to get BGR frames; `len()` is the frame count when known (else None)."""
    description = ""
    length: int | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError


class VideoSource(FrameSource):
    """A webcam (an int index) or a video file (a path), both through cv2.VideoCapture."""

    def __init__(self, camera: int | None = None, video=None):
        import cv2

        if (camera is None) == (video is None):
            raise ValueError("give exactly one of camera and video")
        if video is not None:
            video = Path(video)
            if not video.is_file():
                raise CaptureError(f"video file {video} not found")
            self.cap = cv2.VideoCapture(str(video))
            self.description = f"video {video}"
            unusable = f"cannot read video {video}: not a video OpenCV can decode, or corrupt"
        else:
            self.cap = cv2.VideoCapture(camera)
            self.description = f"camera {camera}"
            unusable = f"no camera at index {camera}: none is connected, it is busy, or this user may not open it"
        # A capture can "open" and still deliver nothing (a truncated file, a camera held by
        # another program), so read the first frame now to fail here with a clear message.
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok or first is None:
            self.cap.release()
            raise CaptureError(unusable)
        self._first = first
        frames = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if video is not None else 0
        self.length = frames if frames > 0 else None

    def __iter__(self):
        try:
            yield self._first
            while True:
                ok, frame = self.cap.read()
                if not ok:
                    return
                yield frame
        finally:
            self.cap.release()


class ImageFolderSource(FrameSource):
    """Every image of a folder in name order; files OpenCV cannot decode are counted and passed over."""

    def __init__(self, folder):
        folder = Path(folder)
        if not folder.is_dir():
            raise CaptureError(f"image folder {folder} not found")
        self.files = sorted(f for f in folder.iterdir()
                            if f.is_file() and not f.name.startswith(".")
                            and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise CaptureError(f"no images in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
        self.description = f"images in {folder}"
        self.length = len(self.files)
        self.unreadable: list[str] = []

    def __iter__(self):
        from ppfr.embed.detect import SkipImage, read_bgr

        for f in self.files:
            try:
                frame = read_bgr(f)
            except SkipImage:    # empty, unreadable or not an image: listed, and the run goes on
                self.unreadable.append(f.name)
                continue
            yield frame
