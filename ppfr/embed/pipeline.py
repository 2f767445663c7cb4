"""Detect, align and embed: one image, a list of files, or a whole dataset, on several processes."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .dataset import list_dataset
from .detect import Box, FaceDetector, SkipImage, choose_face, read_rgb
from .embedders import Embedder, embedder_name, make_embedder
from .store import EmbeddingSet


@dataclass(frozen=True)
class EmbedSettings:
    """Everything a worker needs to rebuild the pipeline; plain values, so it pickles."""
    embedder: str = "dlib"
    detector: str = "hog"
    policy: str = "largest"
    upsample: int = 0
    retry_upsample: int | None = 1

    def build(self, embedder: Embedder | None = None) -> tuple[FaceDetector, Embedder]:
        """The detector and the embedder (`embedder` when given: one already built from these settings)."""
        return (FaceDetector(self.detector, self.upsample, self.retry_upsample),
                embedder if embedder is not None else make_embedder(self.embedder))


class Embedded(NamedTuple):
    vector: np.ndarray
    box: Box
    faces: int        # faces the detector found; the policy kept one (`box`)


def embed_image(rgb: np.ndarray, detector: FaceDetector, embedder: Embedder,
                policy: str = "largest") -> Embedded:
    """The embedding of the face `policy` picks in an RGB image; raises SkipImage when there is none."""
    boxes = detector.detect(rgb)
    if not boxes:
        raise SkipImage("no_face", detector.no_face_detail(rgb.shape))
    box = choose_face(boxes, rgb.shape, policy)
    return Embedded(embedder.embed(rgb, box), box, len(boxes))


class FileResult(NamedTuple):
    """What one file gave: a vector, or None and why not (a report reason code and its detail)."""
    vector: np.ndarray | None
    reason: str = ""
    detail: str = ""
    faces: int = 0    # faces found (one of them embedded when there are several)


# --- per-process state: each worker builds its detector and embedder (and so loads the models) once
_state: tuple | None = None


def _init_worker(settings: EmbedSettings, embedder: Embedder | None = None):
    global _state
    _state = (*settings.build(embedder), settings.policy)


def _init_pool_worker(settings: EmbedSettings):
    # Ctrl-C is for the parent, which stops the pool: a worker that took it too would print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(settings)


def _embed_file(path: str) -> FileResult:
    """What one file gives, in a worker; never raises, so that one bad image cannot end a run of thousands."""
    detector, embedder, policy = _state
    try:
        vec, _, faces = embed_image(read_rgb(path), detector, embedder, policy)
        return FileResult(vec, faces=faces)
    except SkipImage as e:
        return FileResult(None, e.reason, e.detail)
    except Exception as e:  # a dlib/opencv failure on one odd image is reported, not fatal
        return FileResult(None, "error", f"{type(e).__name__}: {e}")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_count(workers: int | None, files: int) -> int:
    """The processes a run over `files` files uses: `workers` (default: every CPU), at most one per file."""
    return max(1, min(workers or default_workers(), files or 1))


def embed_files(paths: list, settings: EmbedSettings = EmbedSettings(), workers: int | None = None,
                progress: bool = True, desc: str = "embedding"):
    """Embed files in order; yields a FileResult per file.

    Raises EmbedderError (before any work) when settings.embedder cannot be built.
    """
    from tqdm import tqdm

    workers = worker_count(workers, len(paths))
    # Build the embedder here first: a bad spec or weights file raises EmbedderError now, in the
    # caller, rather than in every pool worker's initializer (where Pool would respawn it forever).
    embedder = make_embedder(settings.embedder)
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, smoothing=0.05)
    try:
        if workers == 1:
            _init_worker(settings, embedder)     # in this process: the embedder just built, not a second one
            for p in paths:
                yield _embed_file(str(p))
                bar.update()
            return
        # spawn, not fork: a fresh interpreter per worker never inherits a half-used torch or
        # OpenCV thread pool from the parent
        ctx = mp.get_context("spawn")
        chunk = max(1, min(16, len(paths) // (workers * 8)))
        with ctx.Pool(workers, initializer=_init_pool_worker, initargs=(settings,)) as pool:
            for result in pool.imap(_embed_file, [str(p) for p in paths], chunksize=chunk):
                yield result
                bar.update()
    finally:
        bar.close()


def embed_dataset(root, settings: EmbedSettings = EmbedSettings(), workers: int | None = None,
                  progress: bool = True) -> tuple[EmbeddingSet, dict]:
    """Embed DATASET_DIR/<person>/<image>; returns the embeddings and a report of every skipped file.

    Raises DatasetError when the folder is missing or holds no image.
    """
    root = Path(root)
    listing = list_dataset(root)
    name = embedder_name(settings.embedder)  # also rejects an unknown spec before any work
    start = time.perf_counter()
    vectors, labels, paths, several = [], [], [], 0
    skipped = [dict(path=p, reason=r, detail=d) for p, r, d in listing.ignored]
    files = [root / rel for rel, _ in listing.images]
    workers = worker_count(workers, len(files))
    results = embed_files(files, settings, workers, progress)
    for (rel, label), got in zip(listing.images, results):
        if got.vector is None:
            skipped.append(dict(path=rel, reason=got.reason, detail=got.detail))
        else:
            several += got.faces > 1
            vectors.append(got.vector)
            labels.append(label)
            paths.append(rel)
    seconds = time.perf_counter() - start

    dim = vectors[0].shape[0] if vectors else 128
    result = EmbeddingSet(
        embeddings=np.array(vectors, dtype=np.float32).reshape(len(vectors), dim),
        labels=np.array(labels, dtype=np.int64),
        class_names=listing.class_names,
        paths=paths,
        embedder=name,
        skipped=[(s["path"], s["reason"]) for s in skipped],
        settings=dict(detector=settings.detector, upsample=settings.upsample,
                      retry_upsample=settings.retry_upsample, policy=settings.policy,
                      embedder_spec=settings.embedder if not settings.embedder.startswith("openface:")
                      else "openface"),
    )
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    report = dict(
        dataset=str(root),
        embedder=name,
        settings=result.settings,
        images_found=len(listing.images),
        embedded=len(paths),
        skipped_count=len(skipped),
        skipped_by_reason=reasons,
        several_faces=several,          # embedded images that showed several faces (the policy kept one)
        classes=len(listing.class_names),
        workers=workers,
        seconds=round(seconds, 3),
        images_per_second=round(len(files) / seconds, 2) if seconds > 0 else None,
        skipped=skipped,
    )
    return result, report
