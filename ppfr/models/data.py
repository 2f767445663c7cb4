"""Training data for the classifier: embedding files in, checked, preprocessed and split.

Each embeddings .npz (see ppfr.embed.store) stands for one data owner (a client). Everything here that
touches an embedding is per row, so each client can do it on its own data without seeing anyone else's:
checking, L2 normalisation and scaling. What is shared between files is public: the class names (the
union, sorted, defines the label space) and the split seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppfr.limits import LimitError, load_npz

from .defaults import TRAIN_DEFAULTS

DIM = 128  # dlib's (and OpenFace's) embedding size


class DataError(ValueError):
    """An embeddings file cannot be trained on; the message says which file and why."""


@dataclass(frozen=True)
class Preprocessing:
    """x -> scale * x / ||x||. On dlib embeddings plain SGD on raw vectors converges very slowly; unit-norm
    inputs times 4 with momentum give well-conditioned logits (and stay far inside the fixed-point range)."""

    l2_normalize: bool = TRAIN_DEFAULTS["l2_normalize"]
    scale: float = TRAIN_DEFAULTS["scale"]

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.l2_normalize:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            if np.any(norms == 0):
                raise DataError(f"{int(np.sum(norms == 0))} embedding(s) are all zeros and cannot be normalised")
            x = x / norms
        return x * self.scale

    def as_dict(self) -> dict:
        return {"l2_normalize": self.l2_normalize, "scale": self.scale}


@dataclass
class ClientData:
    """One data owner's embeddings, labels in the common label space."""

    source: str
    embeddings: np.ndarray  # float64 (n, DIM), raw
    labels: np.ndarray      # int64 (n,)


@dataclass
class Dataset:
    class_names: list[str]
    clients: list[ClientData]
    embedder: str = ""

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([c.labels for c in self.clients])

    def __len__(self):
        return sum(len(c.labels) for c in self.clients)


@dataclass
class Split:
    """Train and test rows of each client, in client order (the order the servers concatenate shares in)."""

    class_names: list[str]
    train: list[ClientData]
    test: list[ClientData] = field(default_factory=list)
    embedder: str = ""

    @staticmethod
    def _stack(parts, prep: Preprocessing):
        if not parts or sum(len(p.labels) for p in parts) == 0:
            return np.zeros((0, DIM)), np.zeros(0, dtype=np.int64)
        return (np.concatenate([prep.apply(p.embeddings) for p in parts if len(p.labels)]),
                np.concatenate([p.labels for p in parts]))

    def train_arrays(self, prep: Preprocessing):
        return self._stack(self.train, prep)

    def test_arrays(self, prep: Preprocessing):
        return self._stack(self.test, prep)


def read_embeddings(path, dim: int = DIM) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(embeddings float64, labels, class names, embedder) of one file, checked."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        with load_npz(path) as z:
            missing = [k for k in ("embeddings", "labels", "class_names") if k not in z.files]
            if missing:
                raise DataError(f"{path}: not an embeddings file (no {', '.join(missing)}; write it with `ppfr embed`)")
            x = np.asarray(z["embeddings"])
            y = np.asarray(z["labels"])
            names = [str(n) for n in z["class_names"].tolist()]
            embedder = str(z["embedder"]) if "embedder" in z.files else ""
    except DataError:
        raise
    except LimitError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - zip, pickle and format errors all mean "not readable"
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if x.size == 0:
        raise DataError(f"{path}: holds no embeddings")
    if x.dtype.kind not in "fiu":
        raise DataError(f"{path}: embeddings must be numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        raise DataError(f"{path}: embeddings must be a 2-d array (rows x {dim}), got shape {x.shape}")
    if x.shape[1] != dim:
        raise DataError(f"{path}: embeddings have dimension {x.shape[1]}, expected {dim}")
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise DataError(f"{path}: labels must be {len(x)} integers, got dtype {y.dtype} shape {y.shape}")
    if y.min() < 0 or y.max() >= len(names):
        raise DataError(f"{path}: labels must index its {len(names)} class names, found {y.min()}..{y.max()}")
    bad = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
    if bad.size:
        raise DataError(f"{path}: {bad.size} embedding(s) contain NaN or infinity (first at row {bad[0]})")
    return x.astype(np.float64), y.astype(np.int64), names, embedder


def load_dataset(paths, dim: int = DIM) -> Dataset:
    """Read one or more embeddings files into a common label space (the sorted union of class names)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no embeddings file given")
    read = [read_embeddings(p, dim) for p in paths]
    embedders = {e for *_, e in read if e}
    if len(embedders) > 1:
        raise DataError(f"the files come from different embedders ({', '.join(sorted(embedders))}); "
                        "their embeddings cannot be compared")
    names = sorted({names[label] for _, y, names, _ in read for label in np.unique(y)})
    index = {n: i for i, n in enumerate(names)}
    clients = []
    for p, (x, y, file_names, _) in zip(paths, read):
        remap = np.array([index.get(n, -1) for n in file_names], dtype=np.int64)
        clients.append(ClientData(str(p), x, remap[y]))
    data = Dataset(names, clients, next(iter(embedders), ""))
    check_classes(data)
    return data


def check_classes(data: Dataset, minimum: int = 2) -> None:
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    few = np.flatnonzero(counts < minimum)
    if few.size:
        shown = ", ".join(f"{data.class_names[i]!r} ({counts[i]})" for i in few[:5])
        more = f" and {few.size - 5} more" if few.size > 5 else ""
        raise DataError(f"every class needs at least {minimum} samples (to train and to hold one out); "
                        f"{few.size} have fewer: {shown}{more}")
    if len(data.class_names) < 2:
        raise DataError(f"a classifier needs at least 2 classes, the data has {len(data.class_names)}")


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of test rows: round(test_fraction * n) of each class's n rows, at least one and
    never all of them (so every class is both trained on and tested) when test_fraction > 0."""
    if not 0 <= test_fraction < 1:
        raise DataError(f"the test fraction must be in [0, 1), got {test_fraction}")
    test = np.zeros(len(labels), dtype=bool)
    if test_fraction == 0:
        return test
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        k = int(np.clip(round(test_fraction * len(rows)), 1, len(rows) - 1))
        test[rng.permutation(rows)[:k]] = True
    return test


def split_dataset(data: Dataset, test_fraction: float, seed: int) -> Split:
    """Stratified over all files together (an evaluation convenience: the labels of every file are
    needed to stratify; in a deployment each client would hold out its own test rows)."""
    test = stratified_split(data.labels, test_fraction, seed)
    train_parts, test_parts, start = [], [], 0
    for c in data.clients:
        t = test[start:start + len(c.labels)]
        start += len(c.labels)
        train_parts.append(ClientData(c.source, c.embeddings[~t], c.labels[~t]))
        test_parts.append(ClientData(c.source, c.embeddings[t], c.labels[t]))
    return Split(data.class_names, train_parts, test_parts, data.embedder)
