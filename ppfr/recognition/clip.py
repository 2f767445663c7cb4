"""Camera-like clips made from still photos, for the live benchmarks and the browser tests.

`still_clip` puts photos (one per face) on a grey 640x480 frame, enlarged to webcam size, and moves
each a few pixels from frame to frame as a person in front of a camera does, so that a tracker has
something to follow. `write_y4m` writes frames as YUV4MPEG2 (4:2:0), the format Chromium's fake camera
reads (`--use-file-for-fake-video-capture=clip.y4m`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def still_clip(photos, frames: int, size=(640, 480), face_px: int | None = None, sway: int = 6) -> list[np.ndarray]:
    """`frames` RGB frames of `size` (width, height) with one photo per face side by side, each resized to
    `face_px` square (default: as large as fits) and swaying by up to `sway` pixels."""
    import cv2

    from ppfr.embed.detect import read_rgb

    width, height = size
    n = len(photos)
    face_px = face_px or min(height - 2 * sway, width // n - 2 * sway)
    faces = [cv2.resize(read_rgb(p), (face_px, face_px), interpolation=cv2.INTER_CUBIC) for p in photos]
    slot = width // n
    out = []
    for i in range(frames):
        frame = np.full((height, width, 3), 110, np.uint8)
        dx = int(round(sway * np.sin(2 * np.pi * i / 40)))
        dy = int(round(sway * np.cos(2 * np.pi * i / 55)))
        for k, face in enumerate(faces):
            x0 = k * slot + (slot - face_px) // 2 + dx
            y0 = (height - face_px) // 2 + dy
            frame[y0:y0 + face_px, x0:x0 + face_px] = face
        out.append(frame)
    return out


def write_y4m(path, frames, fps: int = 30) -> Path:
    """Write RGB frames (all of one even width and height) as a YUV4MPEG2 file with 4:2:0 chroma."""
    import cv2

    path = Path(path)
    height, width = frames[0].shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"4:2:0 needs an even width and height, got {width}x{height}")
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())   # Y plane, then U, then V
    return path
