"""LFW: where it is, its cached dlib embeddings, and its standard pairs.

The cache is the same .npz that `ppfr embed` writes (see ppfr.embed.store), holding every LFW
image, so each consumer selects what it needs in memory:

    from ppfr.embed.lfw import load_lfw_embeddings, read_pairs, pair_rows
    allset  = load_lfw_embeddings()                  # 13,233 images (minus the few with no face)
    train   = load_lfw_embeddings(min_images=10)     # 158 people / 4,324 images, labels 0..157
    pairs   = read_pairs()                           # 6,000 pairs of pairs.txt, 10 folds
    a, b, same, fold = pair_rows(allset, pairs)      # row indices; -1 where an image has no embedding
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppfr.config import section

from .pipeline import EmbedSettings, embed_dataset
from .store import EmbeddingSet

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO_ROOT / "benchmarks" / "cache"

# LFW's images are 250x250 crops centred on the named person, often with bystanders near the
# edges, so "center" picks the right face. Where HOG finds nothing at the original size, a second
# look at 2x recovers most of the misses (measured: see benchmarks/CACHE.md).
LFW_SETTINGS = EmbedSettings(embedder="dlib", detector="hog", policy="center", upsample=0, retry_upsample=1)


class LFWMissing(FileNotFoundError):
    pass


def default_lfw_dir() -> Path:
    """$PPFR_LFW, else `paths.lfw` of the config (../shared/data/lfw) relative to the repository."""
    env = os.environ.get("PPFR_LFW")
    if env:
        return Path(env)
    configured = Path(section("paths").get("lfw", "../shared/data/lfw"))
    return configured if configured.is_absolute() else (REPO_ROOT / configured).resolve()


def images_dir(lfw_dir=None) -> Path:
    """The folder of per-person folders inside an LFW copy (deep-funneled or plain)."""
    lfw_dir = Path(lfw_dir) if lfw_dir else default_lfw_dir()
    for name in ("images_deepfunneled", "lfw-deepfunneled", "lfw_funneled", "lfw"):
        candidate = lfw_dir / name
        if candidate.is_dir():
            return candidate
    if (lfw_dir / "Aaron_Eckhart").is_dir():     # already the images folder
        return lfw_dir
    raise LFWMissing(f"no LFW images under {lfw_dir} (set PPFR_LFW to the LFW folder)")


def cache_path(cache_dir=None, settings: EmbedSettings = LFW_SETTINGS) -> Path:
    cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
    tag = f"{settings.embedder}_{settings.detector}_{settings.policy}_up{settings.upsample}"
    tag += f"r{settings.retry_upsample}" if settings.retry_upsample else ""
    return cache_dir / f"lfw_{tag}.npz"


def _running_pid(lock: Path) -> int | None:
    """The pid recorded in a cache run's lock file, if that process is still alive."""
    try:
        pid = int(lock.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def load_lfw_embeddings(lfw_dir=None, min_images: int = 1, cache_dir=None, *, compute: bool = True,
                        workers: int | None = None, progress: bool = True,
                        settings: EmbedSettings = LFW_SETTINGS) -> EmbeddingSet:
    """dlib embeddings of LFW, from the cache or (compute=True) computed once and cached.

    min_images > 1 keeps the people with at least that many images in LFW (skipped images count,
    so min_images=10 is LFW's usual 158 people / 4,324 images), relabelled 0..K-1.
    """
    path = cache_path(cache_dir, settings)
    if not path.exists():
        lock = path.with_suffix(".running")
        pid = _running_pid(lock) if lock.exists() else None
        if pid is not None:
            raise RuntimeError(f"the LFW embedding cache {path} is being computed by process {pid} "
                               f"(log: {path.with_suffix('.log')}); wait for it to finish")
        if not compute:
            raise FileNotFoundError(f"no LFW embedding cache at {path}; "
                                    f"run: python -m ppfr.embed.lfw  (takes ~15 min on 2 cores)")
        build_cache(lfw_dir, cache_dir, workers=workers, progress=progress, settings=settings)
    full = EmbeddingSet.load(path)
    return full if min_images <= 1 else full.select_min_images(min_images)


def build_cache(lfw_dir=None, cache_dir=None, *, workers: int | None = None, progress: bool = True,
                settings: EmbedSettings = LFW_SETTINGS) -> Path:
    """Embed every LFW image into the cache (and a JSON report of skipped images beside it)."""
    path = cache_path(cache_dir, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_suffix(".running")
    lock.write_text(f"{os.getpid()}\n")
    try:
        images = images_dir(lfw_dir)
        result, report = embed_dataset(images, settings, workers=workers, progress=progress)
        result.settings["dataset"] = "lfw/" + images.name
        result.save(path)
        from ppfr.atomic import write_bytes_atomic
        write_bytes_atomic(path.with_suffix(".report.json"), json.dumps(report, indent=1).encode())
    finally:
        lock.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class LFWPair:
    path_a: str      # relative to the images folder, e.g. "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    path_b: str
    same: bool
    fold: int        # 0..9


def _image(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(lfw_dir=None) -> list[LFWPair]:
    """The 6,000 pairs of LFW's View 2 (pairs.txt): 10 folds of 300 same and 300 different pairs."""
    lfw_dir = Path(lfw_dir) if lfw_dir else default_lfw_dir()
    pairs_file = lfw_dir / "pairs.txt"
    if not pairs_file.exists():
        raise LFWMissing(f"{pairs_file} not found")
    lines = pairs_file.read_text().split("\n")
    folds, per_fold = (int(x) for x in lines[0].split())
    rows = [line.split() for line in lines[1:] if line.strip()]
    if len(rows) != folds * 2 * per_fold:
        raise ValueError(f"{pairs_file}: expected {folds * 2 * per_fold} pairs, found {len(rows)}")
    pairs = []
    for i, r in enumerate(rows):
        fold = i // (2 * per_fold)
        if len(r) == 3:
            pairs.append(LFWPair(_image(r[0], r[1]), _image(r[0], r[2]), True, fold))
        elif len(r) == 4:
            pairs.append(LFWPair(_image(r[0], r[1]), _image(r[2], r[3]), False, fold))
        else:
            raise ValueError(f"{pairs_file}: line {i + 2} is not a pair: {' '.join(r)}")
    return pairs


def pair_rows(embeddings: EmbeddingSet, pairs: list[LFWPair]):
    """(rows_a, rows_b, same, fold) arrays; a row is -1 where that image has no embedding."""
    index = embeddings.index()
    a = np.array([index.get(p.path_a, -1) for p in pairs], dtype=np.int64)
    b = np.array([index.get(p.path_b, -1) for p in pairs], dtype=np.int64)
    same = np.array([p.same for p in pairs], dtype=bool)
    fold = np.array([p.fold for p in pairs], dtype=np.int64)
    return a, b, same, fold


if __name__ == "__main__":   # python -m ppfr.embed.lfw [--workers N]: build the shared cache
    import argparse

    parser = argparse.ArgumentParser(description="Embed all of LFW into benchmarks/cache/.")
    parser.add_argument("--lfw", default=None, help="LFW folder (default: $PPFR_LFW or ../shared/data/lfw)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    out = build_cache(args.lfw, args.cache_dir, workers=args.workers)
    print(json.dumps(dict(cache=str(out), **{k: v for k, v in json.loads(
        out.with_suffix(".report.json").read_text()).items() if k != "skipped"})))
