"""The --show preview window of `ppfr capture` and `ppfr recognize`."""
from __future__ import annotations

import os
import sys


class WindowError(Exception):
    """No window can be opened: no display, or an OpenCV build without GUI support."""


class Window:
    """A preview window; q or Esc (or closing it) asks to stop. Opening it checks first that there is a
    display at all: with no display some GUI builds of OpenCV abort the whole process instead of raising."""

    TITLE = "ppfr (q quits)"

    def __init__(self, title: str | None = None):
        import cv2

        self.title = title or self.TITLE
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise WindowError("--show needs a display, and none is available (DISPLAY is not set)")
        try:
            cv2.namedWindow(self.title)
        except cv2.error:
            raise WindowError("--show needs a display and an OpenCV build with GUI support (opencv-python, "
                              "not opencv-python-headless)") from None

    def show(self, bgr, wait_ms: int = 1) -> bool:
        """False when the user pressed q or Esc (or closed the window)."""
        import cv2

        cv2.imshow(self.title, bgr)
        key = cv2.waitKey(wait_ms) & 0xFF
        try:
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            visible = False
        return key not in (ord("q"), 27) and visible

    def close(self):
        import cv2

        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
