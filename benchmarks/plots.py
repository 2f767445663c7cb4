"""The benchmarks' plots, drawn with matplotlib (the `bench` extra: `pip install -e '.[bench]'`).

Each plot is written twice beside the benchmark's JSON: PATH.png for reading and PATH.svg (vector) for
papers and zooming. matplotlib runs on its non-interactive Agg backend, so no display is needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = ("png", "svg")
REPO = Path(__file__).resolve().parent.parent


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plots need matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, stem: Path) -> list[str]:
    """Write STEM.png and STEM.svg; returns their paths, relative to the repository when inside it (as
    the committed JSON names them)."""
    stem = Path(stem).resolve()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in FORMATS:
        path = stem.parent / f"{stem.name}.{ext}"
        # no date in the SVG: the same figures give the same file
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path))
    return paths


def roc_corners(fpr: np.ndarray, tpr: np.ndarray):
    """The vertices of a ROC step curve (where its direction changes): the same curve drawn with far
    fewer points, which keeps the SVG small."""
    fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
    if len(fpr) < 3:
        return fpr, tpr
    df, dt = np.diff(fpr) > 0, np.diff(tpr) > 0
    turn = np.flatnonzero((df[1:] != df[:-1]) | (dt[1:] != dt[:-1])) + 1
    keep = np.concatenate([[0], turn, [len(fpr) - 1]])
    return fpr[keep], tpr[keep]


def roc_plot(stem: Path, curves: list, title: str) -> list[str]:
    """ROC curves on two panels, linear and with a log false-positive axis (where a face matcher's errors
    are). curves: [(label, fpr, tpr)]; the first is drawn wide beneath the others, so that identical
    curves stay visible. Returns the paths written."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, log in zip(axes, (False, True)):
        for k, (label, fpr, tpr) in enumerate(curves):
            f, t = roc_corners(fpr, tpr)
            ax.step(f, t, where="post", label=label, linewidth=5 if k == 0 else 1.2, alpha=0.45 if k == 0 else 1)
        ax.set_xlabel("false positive rate" + (" (log)" if log else ""))
        ax.set_ylabel("true positive rate")
        if log:
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1)
            ax.set_ylim(0.8, 1.0)
        else:
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title)
    paths = _save(fig, stem)
    plt.close(fig)
    return paths


def scaling_plot(stem: Path, series: dict, xlabel: str, ylabel: str, title: str) -> list[str]:
    """One line per series on log-log axes: series = {label: (sizes, values)}. Returns the paths written."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, (sizes, values) in series.items():
        ax.plot(sizes, values, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title)
    paths = _save(fig, stem)
    plt.close(fig)
    return paths
