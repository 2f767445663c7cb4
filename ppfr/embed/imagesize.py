"""An image's width and height from its header, without decoding it (JPEG, PNG, BMP).

OpenCV has no header-only call and Pillow is not a dependency; these three formats cover what the
dataset walk and the capture folder accept. Other formats OpenCV decodes are checked after decoding.
"""
from __future__ import annotations

import struct

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (every coding process); C4, C8 and CC are other segments
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}   # TEM and RSTn carry no length field
_MAX_SEGMENTS = 4096                        # a real JPEG reaches its frame header within a few dozen


def image_size(f) -> tuple[int, int] | None:
    """(width, height) read from the start of the binary file `f`, or None for a format this does not
    parse (or a header too damaged to read; the decoder then decides)."""
    head = f.read(26)
    if head.startswith(_PNG) and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"BM") and len(head) >= 26:
        header_size = struct.unpack("<I", head[14:18])[0]
        if header_size == 12:                                    # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return struct.unpack("<HH", head[18:22])
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)                           # negative height: rows stored top-down
    if head.startswith(b"\xff\xd8"):
        f.seek(2)
        return _jpeg_size(f)
    return None


def _jpeg_size(f) -> tuple[int, int] | None:
    for _ in range(_MAX_SEGMENTS):
        byte = f.read(1)
        if byte != b"\xff":
            return None
        while byte == b"\xff":                                   # fill bytes before a marker
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in _NO_LENGTH:
            continue
        if marker in (0xD9, 0xDA):                               # end of image / scan before any frame
            return None
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if marker in _SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        if length < 2:
            return None
        f.seek(length - 2, 1)
    return None
