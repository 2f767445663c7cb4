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
    larger = tuple(_indices(index[t] for t in r[v:]) for r, (v, _) in zip(rows, layouts))
    return ProductPlan(variables, start, tuple(steps), tuple(_indices(index[t] for t in r) for r in rows), larger)


def _indices(values) -> np.ndarray:
    out = np.fromiter(values, dtype=np.intp)
    out.setflags(write=False)  # kept in a cache and shared
    return out


class ProductPlan:
    """The AND of every subset that a layout needs, for all subsets of k variables in one numpy call per
    k: each is the AND of the subset of its first k - 1 variables (the call before) with its last one,
    in a working array of rows [the variables, the subsets of 2, of 3, ...] (`size` rows); `order` picks
    each layout's rows from it, `larger` its rows beyond its variables' own masks (what the dealer sends
    where the servers derive those masks themselves: prefix_variables). (Instead of a reduce over k mask
    rows per subset.)"""

    def __init__(self, variables: int, size: int, steps: tuple, order: tuple, larger: tuple):
        self.variables, self.size, self.steps, self.order, self.larger = variables, size, steps, order, larger

    def products(self, work: np.ndarray) -> np.ndarray:
        """Fill rows variables.. of `work` (size x n; its first rows the masks of the variables) with the
        ANDs, in place; returns work."""
        for start, stop, parents, last in self.steps:
            np.bitwise_and(work[parents], work[last], out=work[start:stop])
        return work

    def shapes(self, n: int, larger: bool = False) -> list:
        """The shape of each layout's rows (with `larger`, of its rows beyond the variables), n words a row."""
        return [(o.size, n) for o in (self.larger if larger else self.order)]


# The prefix circuit of the comparison combines spans of bits, high to low, one level per round. A radix-2
# level:  G = G1 ^ P1 G0,  P = P1 P0                      over variables P1 P0 G0 = 0..2
# A radix-4 level (fewer rounds, about four times the arithmetic):
#   G = G3 ^ P3 G2 ^ P3 P2 G1 ^ P3 P2 P1 G0,  P = P3 P2 P1 P0   over P3 P2 P1 P0 G2 G1 G0 = 0..6
# and so on for radix R: variables P_(R-1) .. P_0 = 0 .. R-1, G_(R-2) .. G_0 = R .. 2R-2; monomial i < R-1
# is P_(R-1) .. P_(R-1-i) G_(R-2-i), the last one P's product. The last level needs G only.
# In the bitwise circuit (msb_by_circuit) the radices of the levels multiply to the width of the compared values;
# a level's variables are its p and g shifted (prefix_variables), and so are their masks: a level opens
# p and g alone, and the first, whose p and g are r's bits under public ones, opens nothing. The
# comparison by tables (msb_by_tables) runs one last level of radix 4 or 8 over 8-bit chunks.
PREFIX = {radix: {"variables": 2 * radix - 1,
                  "monomials": tuple(tuple(range(i + 1)) + (radix + i,) for i in range(radix - 1))
                  + (tuple(range(radix)),)}
          for radix in (2, 4, 8)}
RADICES = {64: (2,) * 6, 32: (2,) * 5, 16: (2,) * 4}  # width -> the circuit's radices (where arithmetic, not rounds, is the cost)


def prefix_monomials(radix: int, last: bool):
    monomials = PREFIX[radix]["monomials"]
    return monomials[:-1] if last else monomials


@functools.lru_cache(maxsize=None)
def _spans(radix: int, span: int) -> np.ndarray:
    """The shifts of a level's variables: span (radix - 1) .. 0, one row each."""
    out = (np.arange(radix - 1, -1, -1, dtype=np.uint64) * np.uint64(span))[:, None]
    out.setflags(write=False)  # kept in a cache and shared
    return out


def prefix_variables(p: np.ndarray, g: np.ndarray | None, radix: int, span: int,
                     out: np.ndarray | None = None) -> np.ndarray:
    """The variables of a prefix level (PREFIX), one row each: P_(radix-1) .. P_0 = p shifted right by
    span (radix - 1) .. 0, then G_(radix-2) .. G_0 = g shifted likewise. A right shift commutes with XOR,
    so the same call gives the variables of XOR-shared p and g from their shares, and their masks from
    the masks of p and g: correlated masks, opened as two words instead of 2 radix - 1."""
    if out is None:
        out = np.empty((2 * radix - 1, p.size), dtype=np.uint64)
    spans = _spans(radix, span)
    np.right_shift(p, spans, out=out[:radix])
    if g is None:  # no g: the G rows 0
        out[radix:2 * radix - 1] = 0
    else:
        np.right_shift(g, spans[1:], out=out[radix:2 * radix - 1])
    return out


@functools.lru_cache(maxsize=None)
def lane_constants(width: int):
    """Words with all but each lane's msb set, and with each lane's bit 0 set."""
    lanes = 64 // width
    return (pack_lanes(np.full(lanes, 2**(width - 1) - 1, dtype=np.uint64), width)[0],
            pack_lanes(np.ones(lanes, dtype=np.uint64), width)[0])


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


CHUNK_BITS = 8  # the comparison by tables looks up 8 bits of c at a time: 256-entry tables


def table_chunks(width: int) -> int:
    """The 8-bit chunks of the width - 1 low bits that a comparison by tables compares: 4 for 32 bits
    (a radix-4 prefix over them), 8 for 64 (radix 8)."""
    return -(-(width - 1) // CHUNK_BITS)


def chunk_entries(width: int, j: int) -> int:
    """How many entries chunk j's table has: 256, but the top chunk's, which holds the width - 1 - 8 (K - 1)
    = 7 bits left (128)."""
    chunks = table_chunks(width)
    return 2 ** (width - 1 - CHUNK_BITS * (chunks - 1) if j == chunks - 1 else CHUNK_BITS)


@functools.lru_cache(maxsize=None)
def table_layout(width: int) -> tuple:
    """Where chunk j's thermometer [k < r_j] starts among a value's table words (64 entries a word: entry k
    in bit k % 64 of word k // 64), for j = 0 .. K - 1, and then the number of words: a thermometer alone,
    since [c_j = r_j] = [c_j - 1 < r_j] XOR [c_j < r_j] is read from it too (protocols.msb_by_tables).
    Every chunk's takes 4 words but the top chunk's, 2 (chunk_entries): 14 words a value on 32 bits, 30
    on 64."""
    starts = [0]
    for j in range(table_chunks(width)):
        starts.append(starts[-1] + chunk_entries(width, j) // 64)
    return tuple(starts)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """0/1 values along the last axis -> uint64 words, 64 values a word (value i in bit i % 64 of word
    i // 64; the last word padded with zeros)."""
    rows = bit_rows(bits.shape[:-1], bits.shape[-1])
    rows[..., :bits.shape[-1]] = bits
    return packed_rows(rows)


def bit_rows(shape: tuple, n: int) -> np.ndarray:
    """A zeroed uint8 buffer for rows of n bits (one a byte), n padded to whole words: fill [..., :n], then
    packed_rows."""
    return np.zeros((*shape, -(-n // 64) * 64), dtype=np.uint8)


def packed_rows(rows: np.ndarray) -> np.ndarray:
    """bit_rows' buffer -> uint64 words, 64 bits a word (as pack_bits)."""
    return np.packbits(rows, axis=-1, bitorder="little").view("<u8")


def unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """The inverse of pack_bits for one row of words: n values, 0/1 as uint64."""
    return np.unpackbits(words.view(np.uint8), count=n, bitorder="little").astype(np.uint64)


def unpack_lane_bits(words: np.ndarray, n: int, width: int) -> np.ndarray:
    """The inverse of pack_lanes for one bit a lane: bit 0 of each lane, back in the order of the n values."""
    if width == 64:
        return words & np.uint64(1)
    return ((words >> _lane_shifts(width)) & np.uint64(1)).ravel()[:n]
