"""Recognition latency on LFW with the 158-person model: per face, split into detection, embedding (both on
the client) and MPC (share + classify on shares + reconstruct), and what one query costs on the wire.

    python benchmarks/recognize.py [--images 100] [--repeats 20] [--model DIR]

Model: benchmarks/out/lfw158 (written by benchmarks/open_set.py; trained here the same way if missing):
softmax over the 158 LFW people with at least 10 images, held by two servers as shares.
  1. `--images` held-out LFW photos of those people go through the real path (ppfr.recognition.Recognizer:
     read, detect every face with HOG, embed with dlib's ResNet, one MPC batch per photo). Per-face medians
     of each stage, and bytes / rounds per query per server (online, and from the dealer).
  2. The MPC part alone on batches of 1 .. 64 faces (one frame with that many faces): median time per
     batch and per face, bytes and rounds, with the softmax at the client (the default: the servers reveal
     the logits behind a per-face offset) and on shares. Target: <= 5 ms per face for 158 classes.
     Drawn as recognize_batches.png / .svg (matplotlib: the `bench` extra).
  3. Webcam-sized frames (640x480, faces of webcam size made from LFW photos): frames per second with
     detection on the full frame and on a half-size copy (what `ppfr recognize --webcam` does).
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from open_set import DEFAULT_MODEL, train_model  # noqa: E402
from plots import scaling_plot  # noqa: E402
from publish import publish  # noqa: E402

from ppfr.embed.detect import read_rgb  # noqa: E402
from ppfr.embed.lfw import images_dir, load_lfw_embeddings  # noqa: E402
from ppfr.models.data import stratified_split  # noqa: E402
from ppfr.models.reference import REVEALS  # noqa: E402
from ppfr.models.store import read_record  # noqa: E402
from ppfr.recognition.recognizer import Recognizer  # noqa: E402

TARGET_MPC_MS_PER_FACE = 5.0
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def heldout_photos(n: int, seed: int = 0) -> list[Path]:
    known = load_lfw_embeddings(compute=False, progress=False, min_images=10)
    test = stratified_split(known.labels, 0.2, seed)
    paths = np.array(known.paths)[test]
    rng = np.random.default_rng(seed)
    root = images_dir()
    return [root / p for p in rng.choice(paths, min(n, len(paths)), replace=False)]


def stage_deltas(rec: Recognizer, fn):
    t = rec.timings
    before = (t.detect, t.embed, t.mpc, t.faces, t.bytes_sent, t.rounds, t.offline_bytes)
    out = fn()
    after = (t.detect, t.embed, t.mpc, t.faces, t.bytes_sent, t.rounds, t.offline_bytes)
    return out, [a - b for a, b in zip(after, before)]


def webcam_frames(photos, faces_per_frame: int, count: int):
    """640x480 grey frames holding LFW photos enlarged so each face is ~130-160 px, as at a webcam."""
    import cv2

    frames = []
    size = 400 if faces_per_frame == 1 else 320
    for i in range(count):
        frame = np.full((480, 640, 3), 100, np.uint8)
        for k in range(faces_per_frame):
            photo = cv2.resize(read_rgb(photos[(i * faces_per_frame + k) % len(photos)]), (size, size))
            x0 = (640 - size) // 2 if faces_per_frame == 1 else k * (640 - size)
            frame[(480 - size) // 2:(480 - size) // 2 + size, x0:x0 + size] = photo
        frames.append(frame)
    return frames


def plot_batches(result: dict) -> list[str]:
    series = {f"{reveal} revealed": ([b["faces"] for b in result[f"mpc_reveal_{reveal}"]["batches"]],
                                     [b["ms_per_face"] for b in result[f"mpc_reveal_{reveal}"]["batches"]])
              for reveal in REVEALS}
    return scaling_plot(HERE / "results" / "recognize_batches", series, "faces in one MPC batch (one frame)",
                        "median ms per face", f"Recognition on shares, {result['classes']} classes")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if not (args.model / "client").exists():
        log(f"no model at {args.model}: training the 158-person model on shares first")
        train_model(args.model, log=log)

    # held out from the model's own training split (open_set.py records the seed it split with)
    photos = heldout_photos(args.images, read_record(args.model)["train"].get("split_seed", 0))
    result = {"benchmark": "recognize", "target_mpc_ms_per_face": TARGET_MPC_MS_PER_FACE}
    with Recognizer(args.model) as rec:
        classes = len(rec.class_names)
        result["classes"] = classes
        rec.recognize(read_rgb(photos[0]))          # load dlib's models before timing
        # 1. the real path, photo by photo
        per_face = {"detect": [], "embed": [], "mpc": []}
        query = {"bytes": [], "rounds": [], "offline": []}
        for p in photos:
            rgb = read_rgb(p)
            faces, (d, e, m, n, b, r, o) = stage_deltas(rec, lambda: rec.recognize(rgb))
            if not n:
                continue
            for k, v in (("detect", d), ("embed", e), ("mpc", m)):
                per_face[k].append(1000 * v / n)
            if n == 1:
                query["bytes"].append(b)
                query["rounds"].append(r)
                query["offline"].append(o)
        result["photos"] = {"photos": len(photos), "faces": int(sum(1 for _ in per_face["mpc"])),
                            "median_ms_per_face": {k: round(statistics.median(v), 2) for k, v in per_face.items()},
                            "mean_ms_per_face": {k: round(statistics.fmean(v), 2) for k, v in per_face.items()}}
        result["per_query_one_face"] = {"bytes_per_server": int(statistics.median(query["bytes"])),
                                        "rounds": int(statistics.median(query["rounds"])),
                                        "offline_bytes_per_server": int(statistics.median(query["offline"]))}
        log(f"real path, {len(per_face['mpc'])} photos: median per face " + ", ".join(
            f"{k} {v:.1f} ms" for k, v in result["photos"]["median_ms_per_face"].items()))

        # 2. the MPC part alone, one batch per frame of n faces, for each thing recognition may reveal
        rng = np.random.default_rng(0)
        pool = load_lfw_embeddings(compute=False, progress=False, min_images=10).embeddings
        for reveal in REVEALS:
            rec.reveal = reveal
            sweep = []
            for n in BATCHES:
                times, cost = [], None
                for _ in range(args.repeats):
                    x = pool[rng.choice(len(pool), n, replace=False)]
                    _, (_, _, m, _, b, r, o) = stage_deltas(rec, lambda: rec.classify(x))
                    times.append(m)
                    cost = (b, r, o)
                med = statistics.median(times)
                sweep.append({"faces": n, "median_ms": round(1000 * med, 2), "ms_per_face": round(1000 * med / n, 3),
                              "bytes_per_server": cost[0], "rounds": cost[1], "offline_bytes_per_server": cost[2]})
                log(f"MPC batch of {n:>2}, {reveal} revealed: {1000 * med:7.1f} ms, "
                    f"{1000 * med / n:6.2f} ms/face, {cost[0] / 1e3:8.1f} kB, {cost[1]} rounds per server")
            single = sweep[0]["ms_per_face"]
            result[f"mpc_reveal_{reveal}"] = {
                "batches": sweep, "ms_per_face_single": single, "meets_target_single_face": single <= TARGET_MPC_MS_PER_FACE,
                "smallest_batch_meeting_target": next(
                    (s["faces"] for s in sweep if s["ms_per_face"] <= TARGET_MPC_MS_PER_FACE), None)}
        rec.reveal = "label"
        result["batch_images"] = plot_batches(result)
        result["mpc_ms_per_face_single"] = result["mpc_reveal_label"]["ms_per_face_single"]

        # 3. webcam-sized frames
        cams = []
        for faces_per_frame in (1, 2):
            frames = webcam_frames(photos, faces_per_frame, 10)
            for scale in (1.0, 0.5):
                found, t0 = 0, time.perf_counter()
                for f in frames:
                    found += len(rec.recognize(f, detect_scale=scale))
                dt = time.perf_counter() - t0
                cams.append({"faces_per_frame": faces_per_frame, "detect_scale": scale,
                             "frames_per_second": round(len(frames) / dt, 2),
                             "faces_found": found, "faces_present": faces_per_frame * len(frames)})
                log(f"webcam frames, {faces_per_frame} face(s), detect at {scale:g}: "
                    f"{len(frames) / dt:.1f} frames/s, {found}/{faces_per_frame * len(frames)} faces found")
        result["webcam_640x480"] = cams
    publish(result)


if __name__ == "__main__":
    main()
