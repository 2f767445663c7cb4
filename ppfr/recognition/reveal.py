"""What the client learns from one recognition query in each reveal mode, defined in plaintext.

The servers compute the logits z = xW + b of each face on shares; how much of z reaches the client is
the mode. These functions are the specification: the MPC side must reveal exactly these values (up to
its documented fixed-point error), and the extraction benchmark (benchmarks/extraction.py) attacks
them to measure what each mode costs a model thief.

    label          (default) the top class's index, or -1 ("unknown") when the top probability is below
                   the threshold, and a confidence band: how many of CONFIDENCE_BANDS the top probability
                   reaches (0 exactly when unknown). Nothing else.
    probabilities  every class's softmax probability, rounded to the fixed-point resolution 2^-16.
    logits         the logit differences z_j - z_0, rounded to 2^-16: what the logits behind a hidden
                   per-face offset tell (`--softmax-by client` until now).

Extraction risk, measured by benchmarks/extraction.py (README, "Threat model"): logit differences give
every W_j - W_0 and b_j - b_0 by one linear solve of 129 queries; probabilities as much after a log; the
label mode answers one bounded integer pair per face, so a thief must search for the class boundaries
query by query.

All functions take a batch: z is (n, C) float64; rows are faces.
"""
from __future__ import annotations

import numpy as np

from ppfr.models.softmax import softmax_rows

MODES = ("label", "probabilities", "logits")
DEFAULT_MODE = "label"
UNKNOWN_LABEL = -1
DEFAULT_THRESHOLD = 0.5           # recognize.threshold
CONFIDENCE_BANDS = (0.5, 0.8, 0.95)   # recognize.confidence_bands: band k means the top probability
                                      # reached the k-th of these (k = 1, 2, 3); band 0 is unknown
FRAC_BITS = 16                    # mpc.frac_bits: the resolution of revealed numbers, 2^-16


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"the reveal mode is one of {', '.join(MODES)}, not {mode!r}")
    return mode


def check_bands(bands) -> tuple[float, ...]:
    """Bands are strictly increasing probabilities in (0, 1]."""
    bands = tuple(float(t) for t in bands)
    if not bands or any(not 0 < t <= 1 for t in bands) or any(a >= b for a, b in zip(bands, bands[1:])):
        raise ValueError(f"confidence bands must be increasing probabilities in (0, 1], got {list(bands)}")
    return bands


def configured_bands() -> tuple[float, ...]:
    """recognize.confidence_bands of the config, else CONFIDENCE_BANDS."""
    from ppfr.config import section

    return check_bands(section("recognize").get("confidence_bands", CONFIDENCE_BANDS))


def _fixed(values: np.ndarray, frac_bits: int) -> np.ndarray:
    scale = float(2 ** frac_bits)
    return np.round(values * scale) / scale


def logit_differences(z: np.ndarray, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """(n, C): z_j - z_0 at resolution 2^-frac_bits (column 0 is 0). What logits behind a uniform offset
    unknown to the client reveal; under MPC the logits carry one truncation's stochastic rounding, so the
    revealed values agree with these within a few units of 2^-frac_bits."""
    z = np.asarray(z, dtype=np.float64)
    return _fixed(z - z[:, :1], frac_bits)


def probabilities(z: np.ndarray, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """(n, C): softmax(z) rounded to 2^-frac_bits (so probabilities below 2^-(frac_bits+1) read as 0).
    The engine's softmax on shares is within about 2e-5 of this."""
    return _fixed(softmax_rows(np.asarray(z, dtype=np.float64)), frac_bits)


def label_and_band(z: np.ndarray, threshold: float = DEFAULT_THRESHOLD, bands=CONFIDENCE_BANDS):
    """(labels, bands), both int64 (n,). labels: the top class (ties go to the lowest index, as the
    engine's argmax), or -1 when its probability p is below `threshold`. bands: 0 when unknown, else the
    number of `bands` that p reaches (p >= t), at least 1 (so a threshold below the first band still
    reads as band 1). p is compared exactly at the edges: p == t reaches t.

    Under MPC no reciprocal is needed: p >= t  <=>  sum_j exp(z_j - z_max) <= 1/t."""
    bands = check_bands(bands)
    if not 0 <= threshold <= 1:
        raise ValueError(f"the threshold is a probability in [0, 1], got {threshold}")
    z = np.asarray(z, dtype=np.float64)
    top = np.argmax(z, axis=1)
    # p_top = 1 / sum_j exp(z_j - z_max): the same comparison the MPC side makes, without dividing
    denominator = np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)
    known = denominator * threshold <= 1.0
    reached = (denominator[:, None] * np.asarray(bands)[None, :] <= 1.0).sum(axis=1)
    labels = np.where(known, top, UNKNOWN_LABEL).astype(np.int64)
    return labels, np.where(known, np.maximum(reached, 1), 0).astype(np.int64)


def reveal(z: np.ndarray, mode: str = DEFAULT_MODE, threshold: float = DEFAULT_THRESHOLD,
           bands=CONFIDENCE_BANDS, frac_bits: int = FRAC_BITS) -> dict:
    """What a client receives for the faces with logits z in `mode`, by name:
    {"label", "band"} | {"probabilities"} | {"differences"}."""
    check_mode(mode)
    if mode == "label":
        labels, band = label_and_band(z, threshold, bands)
        return {"label": labels, "band": band}
    if mode == "probabilities":
        return {"probabilities": probabilities(z, frac_bits)}
    return {"differences": logit_differences(z, frac_bits)}
