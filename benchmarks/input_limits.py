"""What the input limits save on images without a face: seconds and peak memory to read and detect (HOG)
an image, with the shipped `limits:` against no limits, each run in a fresh process (peak RSS is per
process). Publishes one JSON object (benchmarks/publish.py): its last line of output.

    python benchmarks/input_limits.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from publish import publish


UNLIMITED = "limits:\n  max_megapixels: 100000\n  retry_max_megapixels: 100000\n"


def _detect(path: str) -> None:
    """In the child: read and detect as `ppfr embed` does; prints seconds, outcome and peak RSS."""
    from ppfr.embed.detect import FaceDetector, SkipImage, read_rgb

    detector = FaceDetector("hog", 0, 1)
    start = time.perf_counter()
    try:
        outcome = f"{len(detector.detect(read_rgb(path)))} faces"
    except SkipImage as e:
        outcome = e.reason
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "outcome": outcome,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _child(path: Path, config: Path | None) -> dict:
    env = {**os.environ, **({"PPFR_CONFIG": str(config)} if config else {})}
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], env=env, capture_output=True,
                         text=True, check=True, timeout=900).stdout
    return json.loads(out.splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _detect(args.child)
    tmp = Path(tempfile.mkdtemp())
    unlimited = tmp / "unlimited.yaml"
    unlimited.write_text(UNLIMITED)
    rng = np.random.default_rng(0)
    images = {}
    for name, side in (("noise_9mp", 3000), ("noise_64mp", 8000)):   # random blocks: no face anywhere
        block = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
        images[name] = tmp / f"{name}.jpg"
        cv2.imwrite(str(images[name]), block.repeat(8, 0).repeat(8, 1))
    report = {"benchmark": "input_limits", "repeats": args.repeats}
    for name, path in images.items():
        repeats = args.repeats if name == "noise_9mp" else 1     # the unlimited 64 MP run takes a minute
        runs = {label: [_child(path, cfg) for _ in range(repeats)]
                for label, cfg in (("limits", None), ("unlimited", unlimited))}
        entry = {label: {"median_seconds": round(statistics.median(r["seconds"] for r in rs), 4),
                         "peak_mb": round(max(r["peak_mb"] for r in rs)), "outcome": rs[0]["outcome"]}
                 for label, rs in runs.items()}
        limited = entry["limits"]["median_seconds"]
        entry["speedup"] = round(entry["unlimited"]["median_seconds"] / limited, 1) if limited >= 0.01 else None
        report[name] = entry
        print(name, entry, file=sys.stderr)
    publish(report)


if __name__ == "__main__":
    main()
