"""LFW verification with plain (not secret-shared) dlib embeddings: the reference the MPC
protocols are measured against.

    python benchmarks/lfw_verify_plain.py [--lfw DIR] [--workers 2] [--throughput-images 300]

1. Loads (or builds, ~13 min on 2 cores) the shared cache of all 13,233 LFW embeddings
   (benchmarks/cache/, see benchmarks/CACHE.md).
2. Images of pairs.txt where HOG found no face even at 2x are embedded from a fixed box: the
   median HOG box over LFW, which is where LFW's centring puts the face. The standard protocol
   scores all 6,000 pairs, so every pair needs a distance. A second figure finds those faces
   with dlib's CNN detector instead.
3. Standard 10-fold accuracy: for each fold, the distance threshold that is best on the other
   nine folds is applied to it; mean and standard deviation over the ten folds.
4. Throughput (images/s, read + detect + align + embed) with 1 and 2 workers on a fixed sample of
   LFW images: steady (first result to last) and end to end (process start-up and model loading
   included).

The last line of output is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from publish import publish  # noqa: E402

from ppfr.embed.detect import Box, FaceDetector, choose_face, read_rgb  # noqa: E402
from ppfr.embed.embedders import embedder_name, make_embedder  # noqa: E402
from ppfr.embed.lfw import (LFW_SETTINGS, cache_path, default_lfw_dir, images_dir,  # noqa: E402
                            load_lfw_embeddings, pair_rows, read_pairs)
from ppfr.embed.pipeline import embed_files  # noqa: E402
from ppfr.embed.store import EmbeddingSet  # noqa: E402


def ten_fold_accuracy(distances: np.ndarray, same: np.ndarray, fold: np.ndarray) -> tuple[float, float, list]:
    """LFW View 2: threshold chosen on 9 folds, accuracy measured on the 10th."""
    accuracies, thresholds = [], []
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        threshold = best_threshold(distances[train], same[train])
        accuracies.append(float(np.mean((distances[test] < threshold) == same[test])))
        thresholds.append(threshold)
    return float(np.mean(accuracies)), float(np.std(accuracies)), thresholds


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The threshold (midway between two sorted distances) with the most correct calls."""
    order = np.argsort(distances)
    d, s = distances[order], same[order]
    # calling the first i pairs "same": correct = same among them + different among the rest
    correct = np.concatenate([[0], np.cumsum(s)]) + np.concatenate([[np.sum(~s)], np.sum(~s) - np.cumsum(~s)])
    i = int(np.argmax(correct))
    if i == 0:
        return float(d[0]) - 1e-6
    if i == len(d):
        return float(d[-1]) + 1e-6
    return float((d[i - 1] + d[i]) / 2)


def fallback_box(root: Path, sample: list[str]) -> Box:
    """The median HOG box over a sample of LFW images."""
    detector = FaceDetector("hog", 0, None)
    boxes = [b for p in sample for b in detector.detect(read_rgb(root / p))[:1]]
    left, top, right, bottom = np.median([(b.left, b.top, b.right, b.bottom) for b in boxes], axis=0)
    return Box(int(left), int(top), int(right), int(bottom))


def embed_from_box(root: Path, full, paths, embedder: str = "dlib") -> dict:
    """{path: embedding} of images where HOG found no face, embedded from the median HOG box, so that
    every LFW image has a vector (for the MPC benchmarks, which need all pairs or all images)."""
    if not paths:
        return {}
    box = fallback_box(root, full.paths[::50])
    model = make_embedder(embedder)
    return {p: model.embed(read_rgb(root / p), box) for p in paths}


def throughput(root: Path, paths: list[str], workers: int, settings) -> tuple[float, float]:
    """(end-to-end images/s including process start-up and model loading,
        steady images/s from the first result to the last)."""
    start = time.perf_counter()
    first = None
    embedded = 0
    for got in embed_files([root / p for p in paths], settings, workers=workers, progress=False):
        first = first or time.perf_counter()
        embedded += got.vector is not None
    end = time.perf_counter()
    assert embedded > 0.95 * len(paths)
    return len(paths) / (end - start), (len(paths) - 1) / (end - first)


def pairs_only_embeddings(root: Path, pairs, settings, cache: Path, workers) -> EmbeddingSet:
    if cache.exists():
        return EmbeddingSet.load(cache)
    paths = sorted({p.path_a for p in pairs} | {p.path_b for p in pairs})
    names = sorted({p.split("/")[0] for p in paths})
    label = {n: i for i, n in enumerate(names)}
    rows, skipped = [], []
    for p, got in zip(paths, embed_files([root / p for p in paths], settings, workers)):
        (rows.append((p, got.vector)) if got.vector is not None else skipped.append((p, got.reason)))
    result = EmbeddingSet(np.array([v for _, v in rows], np.float32), np.array([label[p.split("/")[0]] for p, _ in rows]),
                          names, [p for p, _ in rows], embedder_name(settings.embedder), skipped,
                          dict(detector=settings.detector, upsample=settings.upsample,
                               retry_upsample=settings.retry_upsample, policy=settings.policy,
                               embedder_spec=settings.embedder, subset="pairs.txt images"))
    result.save(cache)
    return result


def retry_study(root, full, pairs, distances, same, fold, box, embedder) -> dict:
    """How many faces HOG misses at 1x, how many the 2x retry recovers, and what that is worth:
    the 10-fold accuracy when the recovered images are embedded from the fixed box instead."""
    from tqdm import tqdm

    detector = FaceDetector("hog", 0, None)
    skipped = {p for p, _ in full.skipped}
    every = sorted(full.paths + list(skipped))
    missed_1x = [p for p in tqdm(every, desc="HOG at 1x", unit="img") if not detector.detect(read_rgb(root / p))]
    recovered = [p for p in missed_1x if p not in skipped]
    print(f"HOG at 1x finds no face in {len(missed_1x)} of {len(every)} images; the 2x retry finds "
          f"{len(recovered)} of them, {len(missed_1x) - len(recovered)} stay without a face")
    in_pairs = set(recovered) & ({p.path_a for p in pairs} | {p.path_b for p in pairs})
    index = full.index()
    boxed = {p: embedder.embed(read_rgb(root / p), box) for p in in_pairs}

    def vec(path):
        return boxed[path] if path in boxed else full.embeddings[index[path]]

    changed = np.array([p.path_a in boxed or p.path_b in boxed for p in pairs])
    without = distances.copy()
    without[changed] = [np.linalg.norm(vec(p.path_a) - vec(p.path_b)) for p, c in zip(pairs, changed) if c]
    mean, std, _ = ten_fold_accuracy(without, same, fold)
    print(f"without the retry ({int(changed.sum())} pairs use the fixed box instead): "
          f"{100 * mean:.2f} % ± {100 * std:.2f}")
    return dict(hog_1x_no_face=len(missed_1x), retry_recovered=len(recovered),
                retry_recovered_in_pairs=len(in_pairs), accuracy_10fold_without_retry=round(mean, 5))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", default=None, help="LFW folder [default: $PPFR_LFW or ../shared/data/lfw]")
    parser.add_argument("--workers", type=int, default=None, help="workers to build the cache with")
    parser.add_argument("--embedder", default="dlib", choices=["dlib", "dlib68"],
                        help="dlib: 5-point alignment (the shared cache); dlib68: 68-point (its own cache)")
    parser.add_argument("--retry-study", action="store_true",
                        help="also measure what the 2x retry buys: HOG at 1x on every image (~2 min), "
                             "and the accuracy when retried images fall back to the fixed box instead")
    parser.add_argument("--throughput-images", type=int, default=600,
                        help="images embedded for each throughput figure (0: skip)")
    args = parser.parse_args()

    lfw_dir = Path(args.lfw) if args.lfw else default_lfw_dir()
    root = images_dir(lfw_dir)
    settings = replace(LFW_SETTINGS, embedder=args.embedder)
    cache = cache_path(settings=settings)
    if args.embedder == "dlib":
        full = load_lfw_embeddings(lfw_dir, workers=args.workers, settings=settings)
    else:   # a comparison only: embed just the images of pairs.txt, into a cache of their own
        cache = cache.with_name(cache.name.replace("lfw_", "lfw_pairs_"))
        full = pairs_only_embeddings(root, read_pairs(lfw_dir), settings, cache, args.workers)
    build = json.loads(cache.with_suffix(".report.json").read_text()) \
        if cache.with_suffix(".report.json").exists() else {}
    print(f"cache {cache}: {len(full)} embedded, {len(full.skipped)} skipped "
          f"{dict((r, sum(1 for _, x in full.skipped if x == r)) for r in {x for _, x in full.skipped})}")

    pairs = read_pairs(lfw_dir)
    a, b, same, fold = pair_rows(full, pairs)
    missing = sorted({p.path_a for p, i in zip(pairs, a) if i < 0} | {p.path_b for p, i in zip(pairs, b) if i < 0})
    detected = (a >= 0) & (b >= 0)
    print(f"pairs: {len(pairs)}; {int((~detected).sum())} involve one of {len(missing)} images without a detected face")

    # embed the undetected pair images from the median HOG box (kept: the retry study reuses both)
    box = fallback_box(root, full.paths[::50])
    embedder = make_embedder(args.embedder)
    extra = {p: embedder.embed(read_rgb(root / p), box) for p in missing}
    emb = full.embeddings

    def vector(row, path):
        return emb[row] if row >= 0 else extra[path]

    distances = np.array([np.linalg.norm(vector(i, p.path_a) - vector(j, p.path_b))
                          for p, i, j in zip(pairs, a, b)], dtype=np.float64)
    mean, std, thresholds = ten_fold_accuracy(distances, same, fold)
    print(f"10-fold accuracy, all 6000 pairs (undetected faces from the box {box}): "
          f"{100 * mean:.2f} % ± {100 * std:.2f}; thresholds {min(thresholds):.3f}..{max(thresholds):.3f}")
    mean_det, std_det, _ = ten_fold_accuracy(distances[detected], same[detected], fold[detected])
    print(f"10-fold accuracy, the {int(detected.sum())} pairs whose faces were both detected: "
          f"{100 * mean_det:.2f} % ± {100 * std_det:.2f}")
    fixed = float(np.mean((distances < 0.6) == same))
    print(f"accuracy at dlib's fixed threshold 0.6: {100 * fixed:.2f} %")
    # the same, with the undetected images found by dlib's CNN detector instead of the fixed box
    cnn = FaceDetector("cnn", 0, 1)
    by_cnn = {}
    for p in missing:
        rgb = read_rgb(root / p)
        found = cnn.detect(rgb)
        by_cnn[p] = embedder.embed(rgb, choose_face(found, rgb.shape, "center")) if found else extra[p]
    distances_cnn = np.array([np.linalg.norm((emb[i] if i >= 0 else by_cnn[p.path_a]) -
                                             (emb[j] if j >= 0 else by_cnn[p.path_b]))
                              for p, i, j in zip(pairs, a, b)])
    mean_cnn, std_cnn, _ = ten_fold_accuracy(distances_cnn, same, fold)
    print(f"10-fold accuracy, all 6000 pairs, undetected faces found by the CNN detector "
          f"({sum(p in by_cnn and not np.array_equal(by_cnn[p], extra[p]) for p in missing)} of {len(missing)}): "
          f"{100 * mean_cnn:.2f} % ± {100 * std_cnn:.2f}")
    errors = [dict(a=p.path_a, b=p.path_b, same=bool(p.same), distance=round(float(d), 3))
              for p, d, t in zip(pairs, distances, np.array(thresholds)[fold]) if (d < t) != p.same]

    study = {}
    if args.retry_study:
        study = retry_study(root, full, pairs, distances, same, fold, box, embedder)

    rates, steady = {}, {}
    if args.throughput_images:
        sample = full.paths[:: max(1, len(full.paths) // args.throughput_images)][: args.throughput_images]
        load = os.getloadavg()[0]
        print(f"load average before the throughput runs: {load:.2f} (other work on the machine lowers these figures)")
        for w in (1, 2):
            rates[w], steady[w] = throughput(root, sample, w, settings)
            print(f"throughput with {w} worker{'s' if w > 1 else ''}: {steady[w]:.1f} images/s steady, "
                  f"{rates[w]:.1f} images/s over {len(sample)} images counting start-up and model loading")

    publish(dict(
        benchmark="lfw_verify_plain", embedder=full.embedder, settings=full.settings,
        cache=str(cache), images_embedded=len(full), images_skipped=len(full.skipped),
        pairs=len(pairs), pairs_with_undetected_face=int((~detected).sum()), fallback_box=list(box.__dict__.values())[:4],
        accuracy_10fold=round(mean, 5), accuracy_10fold_std=round(std, 5),
        accuracy_10fold_cnn_fallback=round(mean_cnn, 5),
        accuracy_10fold_detected_only=round(mean_det, 5), detected_only_pairs=int(detected.sum()),
        accuracy_fixed_threshold_0_6=round(fixed, 5), thresholds=[round(t, 4) for t in thresholds],
        errors=len(errors), false_accepts=sum(1 for e in errors if not e["same"]),
        false_rejects=sum(1 for e in errors if e["same"]),
        images_per_second={str(k): round(v, 2) for k, v in steady.items()},
        images_per_second_with_startup={str(k): round(v, 2) for k, v in rates.items()},
        load_average_at_throughput=round(load, 2) if rates else None,
        cache_build_images_per_second=build.get("images_per_second"), cache_build_workers=build.get("workers"),
        **study,
    ))


if __name__ == "__main__":
    main()
