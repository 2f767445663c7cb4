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


@functools.lru_cache(maxsize=None)
def product_plan(layouts: tuple) -> "ProductPlan":
    """How the dealer computes the rows of several monomial layouts at once (a tuple of (variables,
    monomials), their rows stacked layout after layout) from the masks of their variables (stacked too)."""
    variables = sum(v for v, _ in layouts)
    by_size: dict = {}    # k -> the subsets of k variables (numbered across the layouts)
    rows, offset = [], 0
    for v, monomials in layouts:
        rows.append([tuple(offset + i for i in t) for t in monomial_layout(v, monomials)])
        for t in rows[-1][v:]:
            by_size.setdefault(len(t), []).append(t)
        offset += v
    index = {(i,): i for i in range(variables)}
    steps, start = [], variables
    for k in sorted(by_size):  # a subset's first k - 1 variables are a subset the layout has too
        ts = by_size[k]
        index.update((t, start + j) for j, t in enumerate(ts))
        steps.append((start, start + len(ts), _indices(index[t[:-1]] for t in ts), _indices(t[-1] for t in ts)))
        start += len(ts)
    return ProductPlan(variables, start, tuple(steps), tuple(_indices(index[t] for t in r) for r in rows))


def _indices(values) -> np.ndarray:
    out = np.fromiter(values, dtype=np.intp)
    out.setflags(write=False)  # kept in a cache and shared
    return out


class ProductPlan:
    """The AND of every subset that a layout needs, for all subsets of k variables in one numpy call per
    k: each is the AND of the subset of its first k - 1 variables (the call before) with its last one,
    in a working array of rows [the variables, the subsets of 2, of 3, ...] (`size` rows); `order` picks
    each layout's rows from it. (Instead of a reduce over k mask rows per subset.)"""

    def __init__(self, variables: int, size: int, steps: tuple, order: tuple):
        self.variables, self.size, self.steps, self.order = variables, size, steps, order

    def products(self, work: np.ndarray) -> np.ndarray:
        """Fill rows variables.. of `work` (size x n; its first rows the masks of the variables) with the
        ANDs, in place; returns work."""
        for start, stop, parents, last in self.steps:
            np.bitwise_and(work[parents], work[last], out=work[start:stop])
        return work

    def shapes(self, n: int) -> list:
        """The shape of each layout's rows, for n words a row."""
        return [(o.size, n) for o in self.order]


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
