"""The embeddings file: one .npz that `ppfr embed` writes and everything downstream reads.

Keys (all plain arrays, so `np.load(..., allow_pickle=False)` works):
    embeddings       float32 (N, D)   one row per embedded image
    labels           int64   (N,)     index into class_names
    class_names      str     (K,)     person folder names, sorted
    paths            str     (N,)     image path relative to the dataset folder, POSIX
    embedder         str     ()       e.g. "dlib_resnet_v1"; never compare embeddings of two embedders
    skipped_paths    str     (M,)     files that gave no embedding ...
    skipped_reasons  str     (M,)     ... and why: unreadable, no_face, multiple_faces, not_an_image, ...
    settings         str     ()       JSON: detector, policy, dataset folder
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppfr.atomic import atomic_path
from ppfr.limits import load_npz


@dataclass
class EmbeddingSet:
    embeddings: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    paths: list[str]
    embedder: str
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    settings: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.paths)

    def index(self) -> dict[str, int]:
        """path -> row, to look images up (e.g. the two images of an LFW pair)."""
        return {p: i for i, p in enumerate(self.paths)}

    def images_per_class(self, count_skipped: bool = True) -> np.ndarray:
        """Images of each class; with count_skipped, files that gave no embedding count too, so a
        'people with >= N images' subset matches the dataset's own definition."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        if count_skipped and self.skipped:
            name_to_label = {n: i for i, n in enumerate(self.class_names)}
            for path, _ in self.skipped:
                label = name_to_label.get(path.split("/", 1)[0])
                if label is not None:
                    counts[label] += 1
        return counts

    def select_min_images(self, min_images: int, count_skipped: bool = True) -> "EmbeddingSet":
        """The people with at least `min_images` images, relabelled 0..K'-1 in name order."""
        keep = np.flatnonzero(self.images_per_class(count_skipped) >= min_images)
        keep = keep[np.isin(keep, self.labels)]   # a class whose every image was skipped has no rows
        remap = np.full(len(self.class_names), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        rows = np.flatnonzero(remap[self.labels] >= 0)
        kept_names = {self.class_names[k] for k in keep}
        return EmbeddingSet(
            embeddings=self.embeddings[rows],
            labels=remap[self.labels[rows]],
            class_names=[self.class_names[k] for k in keep],
            paths=[self.paths[r] for r in rows],
            embedder=self.embedder,
            skipped=[(p, r) for p, r in self.skipped if p.split("/", 1)[0] in kept_names],
            settings={**self.settings, "min_images": min_images},
        )

    def save(self, path) -> Path:
        path = Path(path)
        arrays = dict(
            embeddings=np.asarray(self.embeddings, dtype=np.float32).reshape(len(self.paths), -1),
            labels=np.asarray(self.labels, dtype=np.int64),
            class_names=np.array(self.class_names, dtype=str),
            paths=np.array(self.paths, dtype=str),
            embedder=np.array(self.embedder),
            skipped_paths=np.array([p for p, _ in self.skipped], dtype=str),
            skipped_reasons=np.array([r for _, r in self.skipped], dtype=str),
            settings=np.array(json.dumps(self.settings, sort_keys=True)),
        )
        with atomic_path(path, suffix=".npz") as tmp:
            # np.savez on an open file, so numpy does not append a second ".npz" to the temp name
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "EmbeddingSet":
        with load_npz(path) as z:
            skipped_paths = z["skipped_paths"].tolist() if "skipped_paths" in z else []
            skipped_reasons = z["skipped_reasons"].tolist() if "skipped_reasons" in z else []
            return cls(
                embeddings=z["embeddings"].astype(np.float32, copy=False),
                labels=z["labels"].astype(np.int64, copy=False),
                class_names=z["class_names"].tolist(),
                paths=z["paths"].tolist(),
                embedder=str(z["embedder"]),
                skipped=list(zip(skipped_paths, skipped_reasons)),
                settings=json.loads(str(z["settings"])) if "settings" in z else {},
            )


def load_embeddings(path) -> EmbeddingSet:
    return EmbeddingSet.load(path)
