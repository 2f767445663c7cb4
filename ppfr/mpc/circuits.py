"""Boolean circuits on XOR-shared words that the dealer and the protocols both need to know the shape of:
monomials (ANDs of literals) and their subsets, the comparison's prefix circuit, lanes of narrow values."""
from __future__ import annotations

import functools

import numpy as np


def subsets(monomial):
    """Non-empty subsets of a monomial (a tuple of variable numbers), as sorted tuples."""
    monomial = tuple(sorted(monomial))
    return [tuple(v for i, v in enumerate(monomial) if mask >> i & 1) for mask in range(1, 2 ** len(monomial))]


def variable(literal: int) -> int:
    """Monomials are tuples of literals: j stands for variable j, -(j + 1) for NOT variable j."""
    return literal if literal >= 0 else -literal - 1


@functools.lru_cache(maxsize=None)
def monomial_layout(variables: int, monomials: tuple):
    """The rows of the dealer's mask-product matrix: every variable, then every larger subset that a
    monomial needs, in an order both sides derive the same way. (A negated variable shares the mask of
    the variable, so negation changes nothing here.)"""
    larger = sorted({t for m in monomials for t in subsets(tuple(map(variable, m))) if len(t) > 1})
    return [(v,) for v in range(variables)] + larger


# The prefix circuit of the comparison combines spans of bits, high to low, one level per round. A radix-2
# level:  G = G1 ^ P1 G0,  P = P1 P0                      over variables P1 P0 G0 = 0..2
# A radix-4 level (fewer rounds, about four times the arithmetic):
#   G = G3 ^ P3 G2 ^ P3 P2 G1 ^ P3 P2 P1 G0,  P = P3 P2 P1 P0   over P3 P2 P1 P0 G2 G1 G0 = 0..6
# The last level needs G only. The radices of the levels multiply to the width of the compared values.
PREFIX = {
    2: {"variables": 3, "monomials": ((0, 2), (0, 1))},
    4: {"variables": 7, "monomials": ((0, 4), (0, 1, 5), (0, 1, 2, 6), (0, 1, 2, 3))},
}
RADICES = {  # width -> (radices when latency matters, radices when arithmetic does)
    64: ((4, 4, 4), (2,) * 6),
    32: ((4, 4, 2), (2,) * 5),
}


def prefix_monomials(radix: int, last: bool):
    monomials = PREFIX[radix]["monomials"]
    return monomials[:-1] if last else monomials


@functools.lru_cache(maxsize=None)
def _lane_shifts(width: int) -> np.ndarray:
    """Each lane's shift within a word, one row per lane."""
    return (np.arange(64 // width, dtype=np.uint64) * np.uint64(width))[:, None]


def pack_lanes(values: np.ndarray, width: int) -> np.ndarray:
    """n values below 2^width -> ceil(n / lanes) uint64 words of 64 / width lanes; value i goes to lane
    i // words of word i % words (the first `words` values fill the low lanes)."""
    lanes = 64 // width
    if lanes == 1:
        return values
    parts = np.zeros((lanes, -(-values.size // lanes)), dtype=np.uint64)
    parts.ravel()[:values.size] = values  # row k: the values of lane k
    out = parts[0]
    for lane in range(1, lanes):
        out |= parts[lane] << np.uint64(lane * width)
    return out


def unpack_lane_bits(words: np.ndarray, n: int, width: int) -> np.ndarray:
    """The inverse of pack_lanes for one bit a lane: bit 0 of each lane, back in the order of the n values."""
    if width == 64:
        return words & np.uint64(1)
    return ((words >> _lane_shifts(width)) & np.uint64(1)).ravel()[:n]
