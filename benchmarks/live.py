"""Frames per second of the live path (`ppfr recognize --webcam`, and the web app's Live page), with and
without face tracking, for one and two faces at 640x480.

    python benchmarks/live.py [--frames 60] [--refresh 10] [--no-app]

Frames: ppfr.recognition.clip.still_clip, i.e. held-out LFW photos enlarged to webcam size (faces of
~300 px, two side by side at ~260 px) on a 640x480 frame, swaying a few pixels from frame to frame.
Model: a softmax trained on shares here, from 8 photos each of 6 LFW people (the classifier's MPC cost
grows little with the class count; benchmarks/recognize.py measures 158 classes).
  1. In process, the path `ppfr recognize --webcam` runs (ppfr.recognition.live.LivePipeline): per-stage
     medians (detect on a half-size copy, track, embed, MPC) and frames per second, tracking on and off.
  2. Through the app: `ppfr web` as a process, a WebSocket client sending JPEG frames one at a time as
     the Live page does (the next frame only when the answer for the last has come): frames per second
     and the median round trip (JPEG decode + the path above + JSON), tracking on and off.
The machine's load average before the run is in the JSON and after it in the provenance (`load`); the
last line is one JSON object, also kept in benchmarks/results/live.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from publish import publish  # noqa: E402

from ppfr.embed.lfw import default_lfw_dir, images_dir  # noqa: E402
from ppfr.recognition.clip import still_clip  # noqa: E402

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez"]
TRAIN_PHOTOS = range(1, 9)
CLIP_PHOTOS = {1: ["Tony_Blair_0012"], 2: ["Colin_Powell_0012", "Donald_Rumsfeld_0012"]}
FACE_PX = {1: 360, 2: 300}      # the photo's side; the face in it is about half of that
TARGET_FPS = {1: 20, 2: 12}


def log(message):
    print(message, file=sys.stderr, flush=True)


def photo(root: Path, stem: str) -> Path:
    return root / stem.rsplit("_", 1)[0] / f"{stem}.jpg"


def train(model_dir: Path, root: Path):
    """A small classifier trained on shares from LFW photos embedded now."""
    from ppfr.embed.detect import read_rgb
    from ppfr.embed.embedders import embedder_name, make_embedder
    from ppfr.embed.pipeline import EmbedSettings, embed_image
    from ppfr.models.data import ClientData, Dataset, Preprocessing, split_dataset
    from ppfr.models.reference import TrainConfig
    from ppfr.models.train import run_training

    detector, embedder = EmbedSettings().build(make_embedder("dlib"))
    x, y = [], []
    for label, person in enumerate(PEOPLE):
        for n in TRAIN_PHOTOS:
            vec, _ = embed_image(read_rgb(photo(root, f"{person}_{n:04d}")), detector, embedder, "center")
            x.append(vec)
            y.append(label)
    data = Dataset(PEOPLE, [ClientData("lfw", np.array(x, np.float64), np.array(y))], embedder_name("dlib"))
    run_training(split_dataset(data, 0.0, 0), TrainConfig.from_config(), Preprocessing(), model_dir,
                 plaintext=False, progress=False)


def in_process(model_dir: Path, frames, refresh: int | None) -> dict:
    """The live path in this process: medians per stage (ms) and frames per second."""
    from ppfr.recognition.live import ClassifierNamer, LivePipeline
    from ppfr.embed.detect import FaceDetector
    from ppfr.recognition.recognizer import Recognizer, Timings
    from ppfr.recognition.tracking import Tracker

    with Recognizer(model_dir, detector=FaceDetector("hog", 0, None)) as rec:
        pipe = LivePipeline(ClassifierNamer(rec), rec.detector, rec.embedder, 0.5,
                            Tracker(refresh) if refresh else None)
        pipe.process(frames[0])      # load dlib's models before timing
        pipe.timings = Timings()
        if pipe.tracker:
            pipe.tracker.reset()
        stages, names = {k: [] for k in ("detect", "track", "embed", "mpc", "total")}, []
        start = time.perf_counter()
        for f in frames:
            faces, st = pipe.process(f)
            names.append(sorted(x.name for x in faces))
            for k in stages:
                stages[k].append(st[k])
        seconds = time.perf_counter() - start
    return {"frames_per_second": round(len(frames) / seconds, 2),
            "median_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()},
            "mean_ms": {k: round(statistics.fmean(v), 2) for k, v in stages.items()},
            "embedded_per_frame": round(pipe.timings.embedded / len(frames), 3),
            "names": sorted({n for row in names for n in row})}


def start_app(model_dir: Path, gallery: Path):
    proc = subprocess.Popen([sys.executable, "-m", "ppfr.cli", "web", "--port", "0", "--model", str(model_dir)],
                            env={**os.environ, "PPFR_GALLERY": str(gallery)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"open http://(127\.0\.0\.1:\d+)/", proc.stderr.readline())
        if found:
            return proc, found.group(1)
    proc.kill()
    raise SystemExit("ppfr web did not start")


def through_app(address: str, frames, track: bool) -> dict:
    """Frames over the Live page's WebSocket, one in flight: frames per second and round trips (ms)."""
    import cv2
    from websockets.sync.client import connect

    jpegs = [cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for f in frames]
    trips, server = [], {k: [] for k in ("decode", "detect", "track", "embed", "mpc")}
    with connect(f"ws://{address}/ws/live?mode=recognize&track={int(track)}", max_size=2**24,
                 open_timeout=30, close_timeout=5) as ws:
        ws.send(jpegs[0])
        json.loads(ws.recv(timeout=60))    # warm-up: the app loads the model and dlib's networks
        start = time.perf_counter()
        for data in jpegs:
            t = time.perf_counter()
            ws.send(data)
            reply = json.loads(ws.recv(timeout=60))
            trips.append(1000 * (time.perf_counter() - t))
            if "error" in reply:
                raise SystemExit(f"the app answered: {reply['error']}")
            for k in server:
                server[k].append(reply["stages"][k])
        seconds = time.perf_counter() - start
    return {"frames_per_second": round(len(jpegs) / seconds, 2), "median_round_trip_ms": round(statistics.median(trips), 2),
            "server_median_ms": {k: round(statistics.median(v), 2) for k, v in server.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--refresh", type=int, default=None, help="frames between re-embeddings of a tracked face "
                    "[default: the config's web.refresh]")
    ap.add_argument("--no-app", action="store_true", help="skip the measurement through `ppfr web`")
    args = ap.parse_args(argv)
    from ppfr.config import section

    refresh = args.refresh or int(section("web").get("refresh", 10))
    root = images_dir(default_lfw_dir())
    result = {"benchmark": "live", "frame": "640x480", "refresh": refresh, "frames": args.frames,
              "load_before": [round(v, 2) for v in os.getloadavg()], "target_fps": TARGET_FPS}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "weights"
        log("training a 6-person model on shares ...")
        train(model, root)
        clips = {n: still_clip([photo(root, s) for s in stems], args.frames, face_px=FACE_PX[n])
                 for n, stems in CLIP_PHOTOS.items()}
        rows = []
        for n, frames in clips.items():
            for track in (False, True):
                r = in_process(model, frames, refresh if track else None)
                rows.append({"faces": n, "tracking": track, **r})
                log(f"in process, {n} face(s), tracking {'on ' if track else 'off'}: {r['frames_per_second']:5.1f} "
                    f"frames/s; median ms " + ", ".join(f"{k} {v}" for k, v in r["median_ms"].items()))
        result["in_process"] = rows
        result["tracking_speedup"] = {str(n): round(_fps(rows, n, True) / _fps(rows, n, False), 2) for n in clips}
        result["meets_target"] = {str(n): _fps(rows, n, True) >= TARGET_FPS[n] for n in clips}
        if not args.no_app:
            proc, address = start_app(model, Path(tmp) / "gallery")
            try:
                app_rows = []
                for n, frames in clips.items():
                    for track in (False, True):
                        r = through_app(address, frames, track)
                        app_rows.append({"faces": n, "tracking": track, **r})
                        log(f"through ppfr web, {n} face(s), tracking {'on ' if track else 'off'}: "
                            f"{r['frames_per_second']:5.1f} frames/s, round trip {r['median_round_trip_ms']} ms")
                result["through_app"] = app_rows
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    publish(result)


def _fps(rows, faces, tracking):
    return next(r["frames_per_second"] for r in rows if r["faces"] == faces and r["tracking"] == tracking)


if __name__ == "__main__":
    main()
