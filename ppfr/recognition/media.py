"""Inputs and outputs of `ppfr recognize`: image files and folders, a video file or a webcam; boxes and
labels drawn on frames; a preview window; annotated images or an annotated video written atomically."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ppfr.atomic import atomic_path, write_bytes_atomic
from ppfr.capture.window import Window as _Window
from ppfr.capture.window import WindowError
from ppfr.embed.dataset import IMAGE_EXTENSIONS


class MediaError(Exception):
    """An input or output cannot be used: nothing to read, no display, a video that cannot be written."""


# -- inputs ---------------------------------------------------------------------------------------------------
def list_images(paths) -> list[Path]:
    """Files as given (whatever their extension: a bad one is reported when it is read), and the image
    files inside folders, recursively, in name order; hidden entries are passed over."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise MediaError(f"no images in folder {p} (looked for {', '.join(IMAGE_EXTENSIONS)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise MediaError(f"{p}: no such file or folder")
    return out


def open_video(path=None, camera: int | None = None):
    """ppfr.capture's VideoSource (it reads the first frame up front, so an unreadable video or a missing
    camera fails here with a clear message) and the frame rate, for the annotated video."""
    import cv2

    from ppfr.capture.sources import CaptureError, VideoSource

    logging = cv2.utils.logging
    level = logging.getLogLevel()
    if camera is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)    # errors only: OpenCV's warnings about camera back-ends say nothing useful here
    try:
        source = VideoSource(video=path) if path is not None else VideoSource(camera=camera)
    except CaptureError as e:
        raise MediaError(str(e)) from None
    finally:
        logging.setLogLevel(level)
    fps = source.cap.get(cv2.CAP_PROP_FPS)
    return source, (fps if fps and 1 <= fps <= 240 else 15.0)


class LatestFrame:
    """Reads a live source in a thread and hands out only the newest frame, so that a recogniser slower
    than the camera skips frames instead of falling further and further behind. `dropped` counts the
    frames it never saw."""

    def __init__(self, frames):
        self._frames = iter(frames)
        self._cond = threading.Condition()
        self._frame = None
        self._done = False
        self._error = None
        self._stop = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._read, daemon=True, name="ppfr-camera")
        self._thread.start()

    def _read(self):
        try:
            for frame in self._frames:
                with self._cond:
                    if self._stop:
                        break
                    if self._frame is not None:
                        self.dropped += 1
                    self._frame = frame
                    self._cond.notify()
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            self._error = e
        finally:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()    # a generator's cleanup releases the camera now, not whenever it is collected
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self):
        while True:
            with self._cond:
                while self._frame is None and not self._done:
                    self._cond.wait()
                if self._frame is None:
                    if self._error is not None:
                        raise self._error
                    return
                frame, self._frame = self._frame, None
            yield frame

    def stop(self):
        with self._cond:
            self._stop = True


# -- drawing ---------------------------------------------------------------------------------------------------
KNOWN, UNKNOWN = (0, 200, 0), (0, 0, 255)   # BGR


def annotate(bgr: np.ndarray, faces) -> np.ndarray:
    """A copy of the frame with each face's box and 'name probability' label."""
    import cv2

    out = bgr.copy()
    for f in faces:
        b, colour = f.box, KNOWN if f.known else UNKNOWN
        cv2.rectangle(out, (b.left, b.top), (b.right, b.bottom), colour, 2)
        label = f"{f.name} {f.probability:.2f}"
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        y = b.bottom if b.bottom + h + base + 4 <= out.shape[0] else max(0, b.top - h - base - 4)
        cv2.rectangle(out, (b.left, y), (b.left + w + 4, y + h + base + 4), colour, cv2.FILLED)
        cv2.putText(out, label, (b.left + 2, y + h + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


class Window(_Window):
    """The --show window of `ppfr recognize` (ppfr.capture.window's, raising MediaError)."""

    TITLE = "ppfr recognize (q quits)"

    def __init__(self):
        try:
            super().__init__()
        except WindowError as e:
            raise MediaError(f"{e}; run without --show, and use --output DIR to keep annotated images or "
                             f"video") from None


def open_window(echo=print):
    """The --show window: OpenCV's when this build and machine can open one, else the annotated frames
    served to a local browser page (ppfr.web.viewer; its URL goes to `echo`)."""
    try:
        return Window()
    except MediaError as no_gui:
        try:
            from ppfr.web.viewer import FrameViewer
        except ImportError:
            raise MediaError(f"{no_gui}; or install the web extra (pip install 'ppfr[web]') to watch in a "
                             f"browser") from None
        viewer = FrameViewer()
        echo(f"--show: no window here ({str(no_gui).split(';')[0]}); open {viewer.url} in a browser to watch")
        return viewer


# -- outputs ---------------------------------------------------------------------------------------------------
class ImageOutput:
    """Annotated images into a folder as NAME.jpg (NAME-2.jpg, ... when two inputs share a name)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._used: set[str] = set()

    def path_for(self, source: Path) -> Path:
        stem, n = source.stem, 1
        name = f"{stem}.jpg"
        while name in self._used:
            n += 1
            name = f"{stem}-{n}.jpg"
        self._used.add(name)
        return self.folder / name

    def write(self, source: Path, bgr) -> Path:
        import cv2

        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise MediaError("OpenCV could not encode a JPEG")
        path = self.path_for(source)
        write_bytes_atomic(path, data.tobytes())
        return path


class VideoOutput:
    """An annotated video (Motion JPEG in .avi, which every OpenCV build can write). The frames go to a
    temporary file beside the target, which replaces the target only when the video is complete."""

    def __init__(self, path, fps: float):
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._ctx = None
        self._writer = None

    def write(self, bgr, repeat: int = 1):
        """Append a frame, `repeat` times (a live source recognised slower than its frame rate repeats each
        annotated frame for as long as it was current, so the video plays at the speed it was filmed)."""
        import cv2

        if self._writer is None:
            self._ctx = atomic_path(self.path, suffix=".avi")
            tmp = self._ctx.__enter__()
            h, w = bgr.shape[:2]
            self._writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), self.fps, (w, h))
            if not self._writer.isOpened():
                self._abort()
                raise MediaError(f"OpenCV cannot write a video to {self.path}")
        for _ in range(max(1, repeat)):
            self._writer.write(bgr)
            self.frames += 1

    def _abort(self):
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            try:
                ctx.__exit__(MediaError, MediaError("aborted"), None)
            except MediaError:
                pass

    def close(self, ok: bool = True):
        """Finish the video (ok) or throw the partial one away."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._ctx is not None:
            if ok:
                ctx, self._ctx = self._ctx, None
                ctx.__exit__(None, None, None)
            else:
                self._abort()
