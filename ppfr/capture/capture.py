"""Collect face crops of one person: keep frames with exactly one face, save a margin crop."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppfr.atomic import write_bytes_atomic
from ppfr.embed.detect import Box, FaceDetector

from .sources import CaptureError, FrameSource
from .window import Window, WindowError

PREVIEW_TITLE = "ppfr capture (q to stop)"
SAVED, NOT_USABLE = (0, 200, 0), (0, 0, 255)   # BGR box colours in the preview

_NUMBERED = re.compile(r"^(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)


def next_number(person_dir: Path) -> int:
    """1 + the highest NNNN.jpg already in the folder, so a second session adds, never overwrites."""
    if not person_dir.is_dir():
        return 1
    numbers = [int(m.group(1)) for f in person_dir.iterdir() if (m := _NUMBERED.match(f.name))]
    return max(numbers, default=0) + 1


def check_name(name: str) -> str:
    if not name or name.strip() != name or name.startswith(".") or "/" in name or "\\" in name:
        raise CaptureError(f"invalid person name {name!r}: use a plain folder name such as Ada_Lovelace")
    return name


def crop_with_margin(frame: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """A square crop around the face, `margin` x the box size added on every side, clipped to the frame.

    The margin matters: dlib's detector boxes only the inner face, and `ppfr embed` must find the
    face again in the crop, which HOG cannot do without some forehead, chin and background.
    """
    h, w = frame.shape[:2]
    cx, cy = box.center
    half = max(box.right - box.left, box.bottom - box.top) * (0.5 + margin)
    left, top = max(0, int(round(cx - half))), max(0, int(round(cy - half)))
    right, bottom = min(w, int(round(cx + half))), min(h, int(round(cy + half)))
    return frame[top:bottom, left:right]


@dataclass
class CaptureResult:
    person_dir: Path
    saved: list[Path] = field(default_factory=list)
    frames_read: int = 0
    frames_checked: int = 0
    no_face: int = 0
    several_faces: int = 0
    unreadable: list[str] = field(default_factory=list)
    stopped_early: bool = False   # Ctrl-C, or q/Esc in (or closing) the preview

    def summary(self) -> dict:
        return dict(person_dir=str(self.person_dir), saved=len(self.saved),
                    files=[str(p) for p in self.saved], frames_read=self.frames_read,
                    frames_checked=self.frames_checked, frames_without_face=self.no_face,
                    frames_with_several_faces=self.several_faces, unreadable_images=self.unreadable,
                    stopped_early=self.stopped_early)


def capture_faces(source: FrameSource, out_dir, name: str, count: int = 20, every: int = 5,
                  detector: FaceDetector | None = None, margin: float = 0.5, show: bool = False,
                  progress: bool = True, jpeg_quality: int = 95) -> CaptureResult:
    """Save up to `count` crops to out_dir/name/NNNN.jpg from frames holding exactly one face.

    `every`: at least this many frames from one save to the next (consecutive video frames are
    near-duplicates); frames in between are not even searched. A frame with no face or several
    faces is passed over and the next frame is tried.
    """
    from tqdm import tqdm

    if count < 1 or every < 1:
        raise ValueError("count and every must be at least 1")
    person_dir = Path(out_dir) / check_name(name)
    detector = detector or FaceDetector("hog", upsample=0, retry_upsample=None)
    result = CaptureResult(person_dir)
    number = next_number(person_dir)
    try:
        preview = Window(PREVIEW_TITLE) if show else None
    except WindowError as e:
        raise CaptureError(f"{e}; run without --show") from None
    bar = tqdm(total=count, desc=f"capturing {name}", unit="face", disable=not progress)
    wait_until = 0   # index of the next frame worth checking
    try:
        for index, frame in enumerate(source):
            result.frames_read += 1
            if index < wait_until:
                continue
            result.frames_checked += 1
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            boxes = detector.detect(rgb)
            usable = len(boxes) == 1
            if usable:
                result.saved.append(_save_crop(frame, boxes[0], margin, person_dir / f"{number:04d}.jpg",
                                               jpeg_quality))
                number += 1
                wait_until = index + every
                bar.update()
            elif boxes:
                result.several_faces += 1
            else:
                result.no_face += 1
            bar.set_postfix(frames=result.frames_read, refresh=False)
            if preview and not _show(preview, frame, boxes, SAVED if usable else NOT_USABLE):
                result.stopped_early = True
                break
            if len(result.saved) >= count:
                break
    except KeyboardInterrupt:
        result.stopped_early = True   # what was saved stays saved; each file was written atomically
    finally:
        bar.close()
        if preview:
            preview.close()
    result.unreadable = list(getattr(source, "unreadable", []))
    return result


def _save_crop(frame, box, margin: float, path: Path, jpeg_quality: int) -> Path:
    """Write the face's crop with its margin as a JPEG, atomically."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", crop_with_margin(frame, box, margin), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise CaptureError("OpenCV could not encode a JPEG")
    write_bytes_atomic(path, jpeg.tobytes())
    return path


def _show(preview, frame, boxes, colour) -> bool:
    """Show the frame with its boxes; False when the user closed the preview."""
    import cv2

    view = frame.copy()
    for b in boxes:
        cv2.rectangle(view, (b.left, b.top), (b.right, b.bottom), colour, 2)
    return preview.show(view)
