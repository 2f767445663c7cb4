"""Input limits (the config's `limits:` section) and the checks that apply them before any large
allocation: an image's size is read from its header (ppfr.embed.imagesize) and an .npz's array sizes
from the headers inside it, so a hostile file is refused for what it claims, not after it was loaded."""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MEGA = 1_000_000


class LimitError(ValueError):
    """An input is larger than a limit allows, or its headers claim more than the file holds."""


@dataclass(frozen=True)
class Limits:
    max_pixels: int           # an image with more pixels is refused before decoding
    retry_max_pixels: int     # the detector's upsampled retry runs only on images that stay within this
    max_npz_bytes: int        # an .npz whose arrays would take more memory is refused before loading

    @classmethod
    def from_config(cls) -> "Limits":
        from ppfr.config import section

        cfg = section("limits")
        return cls(max_pixels=int(cfg.get("max_megapixels", 40) * MEGA),
                   retry_max_pixels=int(cfg.get("retry_max_megapixels", 16) * MEGA),
                   max_npz_bytes=int(cfg.get("max_npz_megabytes", 1024) * MEGA))


def megapixels(pixels: int) -> str:
    return f"{pixels / MEGA:.1f} MP"


def check_pixels(width: int, height: int, limit: int, what: str = "image") -> None:
    """Raise LimitError when width x height is above `limit` pixels (limits.max_megapixels)."""
    if width * height > limit:
        raise LimitError(f"{what} is {width}x{height} = {megapixels(width * height)}, above the limit of "
                         f"{megapixels(limit)} (limits.max_megapixels in the config); scale it down")


def load_npz(path, max_bytes: int | None = None):
    """np.load(path) (an NpzFile, to use in a `with`) after checking every array's header: the arrays
    together may take at most `max_bytes` (default limits.max_npz_megabytes), and no header may claim
    more data than its member holds (numpy would allocate the claimed size before reading)."""
    path = Path(path)
    limit = Limits.from_config().max_npz_bytes if max_bytes is None else max_bytes
    if os.path.getsize(path) > limit:
        raise LimitError(f"the file is {os.path.getsize(path) / MEGA:,.0f} MB, above the limit of "
                         f"{limit / MEGA:,.0f} MB (limits.max_npz_megabytes in the config)")
    total = 0
    with zipfile.ZipFile(path) as z:
        for member in z.infolist():
            if member.filename.endswith(".npy"):
                claimed = _claimed_bytes(z, member)
                if claimed > member.file_size:
                    raise LimitError(f"array {member.filename[:-4]!r} claims {claimed:,} bytes but the file holds "
                                     f"{member.file_size:,}: the file is damaged")
                total += claimed
    if total > limit:
        raise LimitError(f"its arrays take {total / MEGA:,.0f} MB, above the limit of {limit / MEGA:,.0f} MB "
                         f"(limits.max_npz_megabytes in the config)")
    return np.load(path, allow_pickle=False)


def _claimed_bytes(z: zipfile.ZipFile, member: zipfile.ZipInfo) -> int:
    """The bytes the .npy header of `member` says its data takes (Python integers: no overflow)."""
    fmt = np.lib.format
    with z.open(member) as f:
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(f)
    count = 1
    for n in shape:
        count *= int(n)
    return count * dtype.itemsize
