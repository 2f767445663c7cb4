"""Correlated randomness, typed: what a server may ask the dealer for and what it gets back.

Each kind is a frozen *request* dataclass (shapes and counts only, never data) with the dealer's `draw`,
and a *material* dataclass that protocols read by field. On the wire a request is (kind, fields) and a
material its fields as plain data, so any transport can carry them; `Provider` (provider.py) turns them
back into these types. The dealer knows everything it draws (masks, triples), nothing else.

Requests that contain truncations also carry `spares`: extra truncation pairs (and, for masked chains,
extra triples) of a size fixed by the request alone. A truncation that must be redone (probability
2^(L+1-64) per value) takes its fresh mask from these spares, so no request the dealer sees ever depends
on an opened value (see spare_count).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np

from .circuits import (PREFIX, RADICES, lane_constants, pack_bits, pack_lanes, prefix_monomials, prefix_variables,
                       product_plan, table_chunks, table_layout)
from .fixedpoint import ring_matmul
from .fss import SignKey, sign_keygen, sign_keys_for_masks
from .prg import SecureRandom
from .rows import GrowingRows

U64 = np.uint64
ONE = U64(1)
SPARE_FAILURE_LOG2 = -40  # spares run out with probability below 2^-40 per request


# -- sharing ---------------------------------------------------------------------------------------------
def additive(rng, x: np.ndarray):
    s0 = rng.uint64(x.shape)
    return s0, x - s0


def _minus(x: np.ndarray, share: np.ndarray) -> np.ndarray:
    """x - share, in x's memory: x is a value the dealer drew or computed for this alone (one array less
    a draw, whose fresh pages cost more than the subtraction)."""
    return np.subtract(x, share, out=x)


# -- the material -----------------------------------------------------------------------------------------
class Material:
    """Base of every kind of material: built from its wire form, field by field."""

    @classmethod
    def from_wire(cls, plain):
        return cls(*plain)

    def to_wire(self):
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class Triple(Material):
    """a, b and c = a*b (or a@b), this server's additive shares."""
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray


@dataclass(frozen=True)
class SquarePair(Material):
    a: np.ndarray
    aa: np.ndarray  # a*a


@dataclass(frozen=True)
class TruncationPair(Material):
    """r uniform on all of Z_2^64 and r >> shift, additively shared (one element per truncated value)."""
    r: np.ndarray
    r_high: np.ndarray


@dataclass(frozen=True)
class Spares(Material):
    """Truncation pairs per shift, and elementwise triples, for the rare redone truncations."""
    shifts: tuple             # (shift, count) of each block of pairs
    pairs: tuple              # a TruncationPair wire form per block
    triple: tuple | None      # a Triple wire form of `count` elementwise products, or None

    @classmethod
    def from_wire(cls, plain):
        shifts, pairs, triple = plain
        return cls(tuple(map(tuple, shifts)), tuple(TruncationPair.from_wire(p) for p in pairs),
                   None if triple is None else Triple.from_wire(triple))

    def to_wire(self):
        return (self.shifts, tuple(p.to_wire() for p in self.pairs),
                None if self.triple is None else self.triple.to_wire())


@dataclass(frozen=True)
class WithSpares(Material):
    """Material of a request that truncates, with its spares (see the module doc)."""
    main: object
    spares: Spares


@dataclass(frozen=True)
class ComparisonMaterial(Material):
    """For the sign of n values: a mask r shared additively and bitwise (in lanes, see pack_lanes); the
    masks of p and g of every level of the prefix circuit after the first, XOR-shared, (levels - 1, 2,
    words) (the first level's are r's bits: its p and g are r's bits and public ones); and each level's
    mask products beyond its variables' own masks, which the servers derive from those of p and g
    (circuits.prefix_variables), rows of circuits.monomial_layout after the variables."""
    r: np.ndarray
    r_bits: np.ndarray
    masks: np.ndarray
    levels: tuple


@dataclass(frozen=True)
class TableComparisonMaterial(Material):
    """For the sign of n values by tables (protocols.msb_by_tables): a mask r of `width` bits shared
    additively; XOR shares of its top bit, packed 64 values a word (circuits.pack_bits); for each value and
    each 8-bit chunk r_j of r's low width - 1 bits, XOR shares of its 256-bit thermometer [k < r_j] (the top
    chunk's 128 bits), 14 words a value on 32 bits, 30 on 64 (circuits.table_layout); and the AND material
    of the chunks' prefix (monomial_layout of circuits.prefix_monomials(chunks, last=True)) on packed
    words."""
    r: np.ndarray
    top: np.ndarray
    tables: np.ndarray
    products: np.ndarray


@dataclass(frozen=True)
class AndMaterial(Material):
    """XOR shares of a mask per variable and of the AND of every subset a monomial needs (monomial_layout)."""
    products: np.ndarray


@dataclass(frozen=True)
class SelectionMaterial(Material):
    """A random bit t per position, XOR- and additively shared, and per vector a mask b with t*b."""
    t_bits: np.ndarray
    t: np.ndarray
    masks: tuple  # ((b, tb), ...)


@dataclass(frozen=True)
class MaskedChain(Material):
    """The material of a chain of products on masked values (protocols.Masked), by the name of each step
    of MaskedChainRequest: mask(name), trunc(name) for a truncation whose result is masked by -(r >> s),
    cross(a, b) for the shares of the product of two masks."""
    steps: tuple
    values: tuple

    @functools.cached_property
    def _index(self) -> dict:  # once per chain: hashing the steps for every step showed in profiles
        return _chain_index(self.steps)

    def _at(self, *step_key):
        return self.values[self._index[step_key]]

    def mask(self, name: str) -> np.ndarray:
        return self._at("mask", name)

    def trunc(self, name: str) -> TruncationPair:
        return TruncationPair(*self._at("trunc", name))

    def trunc_mask(self, name: str) -> np.ndarray:
        """This server's share of the mask a truncation leaves on its result: -(r >> s)."""
        return -self._at("trunc", name)[1]

    def cross(self, a: str, b: str) -> np.ndarray:
        return self._at("cross", a, b)

    def sign_key(self, name: str) -> SignKey:
        """The sign keys of the ("sign", name, ...) step: for masks -a_name (fss.sign_from_opened)."""
        return SignKey.from_wire(self._at("sign", name))


@dataclass(frozen=True)
class ExpTable(Material):
    """For exp by tables (lut.exp_nonpositive) on n values: a 32-bit sign key whose mask r is also the
    lookup's; this server's shares of the one-hot vectors of (r >> j) mod 2^m and of r mod 2^j, each
    either whole (n x 2^m, n x 2^j) or as the 16-byte seed of a PRG that expands to it; and for the
    product of three, the masks (3 x n) and their products ab, ac, bc, abc (4 x n)."""
    low_bits: int
    high_bits: int
    key: SignKey
    high: np.ndarray
    low: np.ndarray
    masks: np.ndarray
    crosses: np.ndarray

    @classmethod
    def from_wire(cls, plain):
        j, m, key, high, low, masks, crosses = plain
        return cls(j, m, SignKey.from_wire(key), high, low, masks, crosses)

    def to_wire(self):
        return self.low_bits, self.high_bits, self.key.to_wire(), self.high, self.low, self.masks, self.crosses

    def high_one_hot(self) -> np.ndarray:
        return expand_share(self.high, (self.key.r.size, 2**self.high_bits))

    def low_one_hot(self) -> np.ndarray:
        return expand_share(self.low, (self.key.r.size, 2**self.low_bits))


def expand_share(share: np.ndarray, shape: tuple) -> np.ndarray:
    """A share sent whole, or the one a 16-byte seed stands for (AES-CTR keyed by the seed, prg.py)."""
    if share.shape == tuple(shape):
        return share
    return SecureRandom(share.tobytes()).uint64(shape)


@dataclass(frozen=True)
class UpdateThenProduct(Material):
    """For truncating an update U of a matrix W (UpdateThenProductRequest): the truncation pair, and a triple
    for the next product x @ (W - U) whose right mask is b_open + (r >> shift) on W's entries (this server
    adds its two shares), with a = x's mask and c its product; b_fallback with a @ b_fallback, for when the
    truncation was redone at some entry of W; and for the product x^T @ y that follows, under the same
    mask a (x opened once for both), y's mask b_grad and a^T @ b_grad."""
    pair: TruncationPair
    a: np.ndarray
    b_open: np.ndarray
    c: np.ndarray
    b_fallback: np.ndarray
    c_fallback: np.ndarray
    b_grad: np.ndarray
    c_grad: np.ndarray

    @classmethod
    def from_wire(cls, plain):
        pair, *rest = plain
        return cls(TruncationPair.from_wire(pair), *rest)

    def to_wire(self):
        return (self.pair.to_wire(), self.a, self.b_open, self.c, self.b_fallback, self.c_fallback, self.b_grad,
                self.c_grad)


@functools.lru_cache(maxsize=256)
def _chain_index(steps: tuple) -> dict:
    return {(s[0], *s[1:3]) if s[0] == "cross" else (s[0], s[1]): i for i, s in enumerate(steps)}


# -- the requests -----------------------------------------------------------------------------------------
class Request:
    """Base of every request: plain, hashable fields (kinds, shapes, counts), compared field by field."""
    kind: str = ""

    def to_wire(self):
        """(kind, fields as nested tuples). Computed once: a request is frozen, and a planned step sends
        the same requests again and again."""
        wire = self.__dict__.get("_wire")
        if wire is None:
            wire = self.kind, tuple(v.to_wire()[1] if isinstance(v, Request) else v
                                    for v in (getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_wire", wire)  # not a field: equality and hashing ignore it
        return wire

    def draw(self, rng):  # pragma: no cover - interface
        """(server 0's material, server 1's), each in its wire form."""
        raise NotImplementedError


@dataclass(frozen=True)
class TriplesRequest(Request):
    specs: tuple  # ((op, shape_x, shape_y), ...), op "mul" or "matmul"
    kind = "triples"

    def draw(self, rng):
        out0, out1 = [], []
        for op, sx, sy in self.specs:
            a, b, a0, b0 = rng.uint64_parts((sx, sy, sx, sy))
            c = a * b if op == "mul" else ring_matmul(a, b)
            c0 = rng.uint64(c.shape)
            out0.append((a0, b0, c0))
            out1.append((a - a0, b - b0, _minus(c, c0)))
        return out0, out1


@dataclass(frozen=True)
class SquaresRequest(Request):
    shapes: tuple
    kind = "squares"

    def draw(self, rng):
        out0, out1 = [], []
        for shape in self.shapes:
            a, a0, s0 = rng.uint64_parts((shape,) * 3)
            out0.append((a0, s0))
            out1.append((a - a0, _minus(a * a, s0)))
        return out0, out1


def truncation_draw(rng, segments):
    """r and r >> shift for runs of (count, shift): each party's TruncationPair wire form."""
    if len(segments) == 1:
        (n, shift), = segments
        shifts = U64(shift)
    else:
        shifts = np.repeat(np.array([s for _, s in segments], dtype=U64), [n for n, _ in segments])
        n = shifts.size
    r, r0, h0 = rng.uint64_parts(((n,),) * 3)
    high = _minus(r >> shifts, h0)
    return (r0, h0), (_minus(r, r0), high)


@dataclass(frozen=True)
class TruncationRequest(Request):
    segments: tuple       # ((count, shift), ...)
    spares: "SparesRequest"
    kind = "truncation"

    def draw(self, rng):
        main0, main1 = truncation_draw(rng, self.segments)
        spare0, spare1 = self.spares.draw(rng)
        return (main0, spare0), (main1, spare1)


@dataclass(frozen=True)
class SparesRequest(Request):
    shifts: tuple         # ((shift, count), ...)
    triples: int = 0
    kind = "spares"

    def draw(self, rng):
        pairs0, pairs1 = [], []
        for shift, count in self.shifts:
            p0, p1 = truncation_draw(rng, [(count, shift)])
            pairs0.append(p0)
            pairs1.append(p1)
        t0 = t1 = None
        if self.triples:
            ([t0], [t1]) = TriplesRequest((("mul", (self.triples,), (self.triples,)),)).draw(rng)
        return (self.shifts, tuple(pairs0), t0), (self.shifts, tuple(pairs1), t1)


def comparison_masks(rng, n: int, width: int) -> np.ndarray:
    """n uniform masks of `width` bits (16, 32 or 64) as uint64, from width/8 bytes of the stream each."""
    if width not in RADICES:
        raise ValueError(f"comparisons are {sorted(RADICES)} bits wide, not {width}")
    if width == 64:
        return rng.uint64((n,))
    per_word = 64 // width
    return rng.uint64((-(-n // per_word),)).view(f"<u{width // 8}")[:n].astype(U64)


@dataclass(frozen=True)
class ComparisonRequest(Request):
    n: int
    radices: tuple
    width: int = 64
    kind = "comparison"

    def draw(self, rng):
        """Correlated masks (protocols.msb_bits): a level's variables are p and g shifted, so their masks
        are the masks of p and g shifted alike; the first level's p and g are r's bits (masked by
        themselves), a later level's have fresh masks, drawn as two uniform XOR shares."""
        return self.draw_for_masks(rng, comparison_masks(rng, self.n, self.width))

    def draw_for_masks(self, rng, r: np.ndarray):
        """draw with the masks r (< 2^width) chosen, which the tests use to reach every boundary."""
        n, width, radices = self.n, self.width, self.radices
        if tuple(radices) != RADICES[width]:  # protocols.msb_by_circuit runs these levels, no others
            raise ValueError(f"a {width}-bit comparison circuit has levels of radices {RADICES[width]}, not {radices}")
        plan = _prefix_plan(radices)
        words = -(-n // (64 // width))  # the bitwise mask's words (pack_lanes)
        later = (len(radices) - 1, 2, words)
        ra0, rb0, masks0, masks1 = rng.uint64_parts(((n,), (words,), later, later))
        r_bits = pack_lanes(r, width)
        r_low = r_bits & lane_constants(width)[0]
        masks = masks0 ^ masks1
        work = np.empty((plan.size, words), dtype=U64)
        row, span = 0, 1
        for level, radix in enumerate(radices):
            p, g = (r_low, r_low) if level == 0 else masks[level - 1]
            variables = PREFIX[radix]["variables"]
            prefix_variables(p, g, radix, span, out=work[row:row + variables])
            row, span = row + variables, span * radix
        shares = rng.uint64_parts(plan.shapes(words, larger=True))
        levels0, levels1 = monomial_shares(plan, work, shares, larger=True)
        return (ra0, rb0, masks0, levels0), (r - ra0, r_bits ^ rb0, masks1, levels1)


@dataclass(frozen=True)
class TableComparisonRequest(Request):
    """TableComparisonMaterial for n values of `width` bits: about 120 bytes a value and server on 32 bits,
    250 on 64 (r, the thermometers' words: circuits.table_layout), and the AND material of a level over the
    chunks, 1/64 of a word a value a row."""
    n: int
    width: int = 64
    kind = "table_comparison"

    def draw(self, rng):
        return self.draw_for_masks(rng, comparison_masks(rng, self.n, self.width))

    def draw_for_masks(self, rng, r: np.ndarray):
        """draw with the masks r (< 2^width) chosen, which the tests use to reach every boundary."""
        n, width, chunks = self.n, self.width, table_chunks(self.width)
        words = -(-n // 64)
        plan = product_plan(((2 * chunks - 1, prefix_monomials(chunks, True)),))
        table_words = table_layout(width)[-1]
        r0, top0, tables0, masks, *products0 = rng.uint64_parts(
            ((n,), (words,), (n, table_words), (plan.variables, words), *plan.shapes(words)))
        low = r & U64(2 ** (width - 1) - 1)
        chunk = (low[:, None] >> (U64(8) * np.arange(chunks, dtype=U64))) & U64(255)
        # every chunk's 4 words, of which the top chunk (the last) needs its first 2 only
        tables = THERMOMETERS[chunk.astype(np.intp)].reshape(n, 4 * chunks)[:, :table_words]
        work = np.empty((plan.size, words), dtype=U64)
        work[:plan.variables] = masks
        (p0,), (p1,) = monomial_shares(plan, work, products0)
        top = pack_bits(r >> U64(width - 1))
        return (r0, top0, tables0, p0), (r - r0, top ^ top0, tables ^ tables0, p1)


def _thermometers() -> np.ndarray:
    """For each v in 0 .. 255, the 256-bit thermometer [k < v] over k = 0 .. 255, as 4 uint64 words (bit
    k % 64 of word k // 64): shape (256, 4), 8 kB, computed once."""
    k, v = np.arange(256), np.arange(256)[:, None]
    tables = np.packbits(k < v, axis=-1, bitorder="little").view("<u8")
    tables.setflags(write=False)
    return tables


THERMOMETERS = _thermometers()


@functools.lru_cache(maxsize=64)
def _prefix_plan(radices: tuple):
    """The mask products of every level of a comparison's prefix circuit (circuits.PREFIX), all together."""
    return product_plan(tuple((PREFIX[radix]["variables"], prefix_monomials(radix, level == len(radices) - 1))
                              for level, radix in enumerate(radices)))


@dataclass(frozen=True)
class FSSComparisonRequest(Request):
    """For the sign of n values of `width` bits in one round, by function secret sharing (fss.py): a
    mask and a distributed comparison key per value, the output shares additive 0/1 ("add") or XOR
    bits ("xor"); with `payloads` (group "add"), also a mask per payload value and the key's products
    with it (fss.select_by_sign); fss.key_bytes(width, group, payloads) per value and server."""
    n: int
    width: int = 64
    group: str = "xor"
    payloads: int = 0
    kind = "fss_comparison"

    def draw(self, rng):
        k0, k1 = sign_keygen(rng, self.n, self.width, self.group, self.payloads)
        return k0.to_wire(), k1.to_wire()


def monomial_draw(rng, n: int, variables: int, monomials):
    """A mask per variable and, for every subset of the variables of a monomial, the AND of their masks;
    XOR-shared, one row per subset (circuits.monomial_layout)."""
    plan = product_plan(((variables, tuple(map(tuple, monomials))),))
    work = np.empty((plan.size, n), dtype=U64)
    rng.fill(work[:plan.variables])
    shares = rng.uint64_parts(plan.shapes(n))
    (m0,), (m1,) = monomial_shares(plan, work, shares)
    return m0, m1


def monomial_shares(plan, work: np.ndarray, shares, larger: bool = False):
    """XOR shares of the rows of each layout of a circuits.ProductPlan (with `larger`, of its rows beyond
    the variables): work (plan.size x n) holds the masks of the variables in its first rows; shares, fresh
    words of plan.shapes(n, larger), are server 0's. Both servers' shares, a tuple of arrays (a layout's
    rows x n) each."""
    plan.products(work)
    out1 = []
    for order, s0 in zip(plan.larger if larger else plan.order, shares):
        s1 = work[order]
        s1 ^= s0
        out1.append(s1)
    return tuple(shares), tuple(out1)


@dataclass(frozen=True)
class AndRequest(Request):
    n: int
    variables: int
    monomials: tuple
    kind = "and"

    def draw(self, rng):
        m0, m1 = monomial_draw(rng, self.n, self.variables, self.monomials)
        return (m0,), (m1,)


@dataclass(frozen=True)
class SelectionRequest(Request):
    n: int
    count: int
    kind = "selection"

    def draw(self, rng):
        t, tb0, ta0, *fresh = rng.uint64_parts(((self.n,),) * (3 + 3 * self.count))
        t &= U64(1)
        tb0 &= U64(1)
        masks0, masks1 = [], []
        for b, b0, p0 in zip(fresh[::3], fresh[1::3], fresh[2::3]):
            masks0.append((b0, p0))
            masks1.append((b - b0, _minus(t * b, p0)))
        return (tb0, ta0, tuple(masks0)), (t ^ tb0, t - ta0, tuple(masks1))


@dataclass(frozen=True)
class MaskedChainRequest(Request):
    """n values per step, one entry per step, in order:
      ("mask", name)          a fresh mask a_name:                    shares of a_name
      ("trunc", name, shift)  r and r >> shift; a_name = -(r >> shift): shares of r and of r >> shift
      ("cross", name, other)  the product of two masks drawn above:    shares of a_name * a_other
      ("sum", name, of, k)    a_name = the sums of a_of over runs of k values, each repeated k times (the
                              mask of a sum of masked values, broadcast back): nothing to send
      ("sign", name, w, k)    for every k-th value, a w-bit sign key (fss, group "add") for the mask
                              -a_name: at public - t it gives [x - t < 0] for x = public + a_name"""
    n: int
    steps: tuple
    spares: "SparesRequest"
    kind = "masked"
    DRAWS = {"mask": 2, "trunc": 3, "cross": 1, "sum": 0, "sign": 0}  # fresh rows of n words, by step

    def draw(self, rng):
        draws = sum(self.DRAWS[step[0]] for step in self.steps)
        # One draw, whose rows the channel copies apart (channel.hand_over), even where each row is large:
        # freeing that one large block is what lets glibc raise its mmap and trim thresholds, and a row
        # per part instead (uint64_parts) left them low, so the servers' arenas were trimmed after each
        # step and their temporaries took fresh pages: ~750 page faults a server per softmax 64x158,
        # whose online phase took 1.3-1.6x longer (measured by bisecting the dealer's changes).
        fresh = iter(rng.uint64((draws, self.n)))
        masks, out0, out1 = {}, [], []
        for step in self.steps:
            if step[0] == "mask":
                a = masks[step[1]] = next(fresh)
                s0 = next(fresh)
                s1 = a - s0
            elif step[0] == "trunc":
                r, r0, h0 = next(fresh), next(fresh), next(fresh)
                high = r >> U64(step[2])
                masks[step[1]] = -high
                s0, s1 = (r0, h0), (_minus(r, r0), _minus(high, h0))
            elif step[0] == "sum":
                runs = masks[step[2]].reshape(-1, step[3]).sum(axis=1, dtype=U64)
                masks[step[1]] = np.repeat(runs, step[3])
                s0 = s1 = np.zeros(0, dtype=U64)
            elif step[0] == "sign":
                width = step[2]
                k0, k1 = sign_keys_for_masks(rng, -masks[step[1]][::step[3]] & U64(2**width - 1), width, "add")
                s0, s1 = k0.to_wire(), k1.to_wire()
            else:
                s0 = next(fresh)
                s1 = _minus(masks[step[1]] * masks[step[2]], s0)
            out0.append(s0)
            out1.append(s1)
        spare0, spare1 = self.spares.draw(rng)
        return ((self.steps, tuple(out0)), spare0), ((self.steps, tuple(out1)), spare1)


@dataclass(frozen=True)
class UpdateThenProductRequest(Request):
    """count values truncated by shift, the first right[0] * right[1] of them an update U of the d x n
    matrix W (row-major); and for the next product x @ (W - U), x of shape left = (m, d): a fresh mask a
    of x, a fresh b_open, c = a @ (b_open + (r >> shift)[:d n]); b_fallback and a @ b_fallback; for the
    product x^T @ y (y: m x n) after it, b_grad and a^T @ b_grad."""
    count: int
    shift: int
    left: tuple
    right: tuple
    spares: "SparesRequest"
    kind = "update_then_product"

    def draw(self, rng):
        (m, d), n = self.left, self.right[1]
        r = rng.uint64((self.count,))
        high = r >> U64(self.shift)
        a, b_open, b_fallback, b_grad = rng.uint64((m, d)), rng.uint64((d, n)), rng.uint64((d, n)), rng.uint64((m, n))
        c = ring_matmul(a, b_open + high[:d * n].reshape(d, n))
        (r0, r1), (h0, h1), *rest = [additive(rng, v) for v in (r, high, a, b_open, c, b_fallback,
                                                                 ring_matmul(a, b_fallback), b_grad,
                                                                 ring_matmul(a.T, b_grad))]
        spare0, spare1 = self.spares.draw(rng)
        return (((r0, h0), *[s0 for s0, _ in rest]), spare0), (((r1, h1), *[s1 for _, s1 in rest]), spare1)


@dataclass(frozen=True)
class ExpTableRequest(Request):
    """For exp by tables on n values (lut.py), digits of `low_bits` and `high_bits`: a mask r of 32 bits
    with its sign key (fss, group "add"), one-hot vectors of its digits (server 0 gets the high one as a
    seed, server 1 the low one), and the masks of a product of three."""
    n: int
    low_bits: int
    high_bits: int
    kind = "exp_table"

    def draw(self, rng):
        return self.draw_for_masks(rng, rng.uint64((self.n,)) & U64(2**32 - 1))

    def draw_for_masks(self, rng, r: np.ndarray):
        """draw with the masks r (< 2^32) chosen, which the tests use to reach every boundary of a digit."""
        n, j, m = self.n, self.low_bits, self.high_bits
        k0, k1 = sign_keys_for_masks(rng, r, 32, "add")
        high0, high1 = _one_hot_shares(rng, (r >> U64(j)) & U64(2**m - 1), 2**m)
        low1, low0 = _one_hot_shares(rng, r & U64(2**j - 1), 2**j)
        masks = rng.uint64((3, n))
        a, b, c = masks
        (m0, m1), (x0, x1) = additive(rng, masks), additive(rng, np.stack([a * b, a * c, b * c, a * b * c]))
        return (j, m, k0.to_wire(), high0, low0, m0, x0), (j, m, k1.to_wire(), high1, low1, m1, x1)


def _one_hot_shares(rng, u: np.ndarray, size: int):
    """Additive shares of the one-hot vectors of u (n x size): (the seeded server's, the other's), the
    first as a 16-byte seed whose PRG expansion is that share."""
    one_hot = np.zeros((u.size, size), dtype=U64)
    one_hot[np.arange(u.size), u.astype(np.int64)] = 1
    seed = rng.uint64((2,))
    return seed, one_hot - expand_share(seed, one_hot.shape)

# -- rows kept masked across queries (reuse.MaskedRows) --------------------------------------------------------
RING_DTYPES = {32: np.uint32, 64: np.uint64}


def ring_words(rng, shape, bits: int) -> np.ndarray:
    """Uniform elements of Z_2^bits (bits 32 or 64) of `shape`, as uint32 or uint64."""
    if bits not in RING_DTYPES:
        raise ValueError(f"rings of 32 or 64 bits, not {bits}")
    n = math.prod(shape)
    words = rng.uint64(((n * bits + 63) // 64,))
    return (words.view(np.uint32)[:n] if bits == 32 else words).reshape(shape)


@dataclass(frozen=True)
class RowMask(Material):
    """A 16-byte AES key: this server's share of the mask is ring_words(SecureRandom(key), ...)."""
    seed: np.ndarray


@dataclass(frozen=True)
class RowProducts(Material):
    """For one product of queries Q (k x cols) with the masked rows G (rows x cols): a fresh mask A of Q
    and C = A B^T (k x rows) for the dealer's row mask B, this server's additive shares (mod 2^bits)."""
    a: np.ndarray
    c: np.ndarray


@dataclass(frozen=True)
class RowMaskRequest(Request):
    """Rows [start, start + rows) of the dealer's row mask named `mask` (cols wide, mod 2^bits). The
    dealer keeps the mask B (start 0 begins a new one) for RowProductsRequest; each server gets the
    AES key of its share B_i, 16 bytes however many rows."""
    mask: str
    start: int
    rows: int
    cols: int
    bits: int
    capacity: int = 0      # rows to make room for when a new mask starts (public: the gallery's size)
    kind = "row_mask"
    uses_memory = True

    def draw(self, rng, memory):
        held = memory.get(self.mask)
        if self.start != (0 if held is None or self.start == 0 else len(held)):
            raise ValueError(f"row mask {self.mask!r} has {0 if held is None else len(held)} rows, "
                             f"not {self.start}")
        seeds = [rng.uint64((2,)) for _ in range(2)]
        shares = [ring_words(SecureRandom(s.tobytes()), (self.rows, self.cols), self.bits) for s in seeds]
        if self.start == 0:
            held = memory[self.mask] = GrowingRows(self.cols, RING_DTYPES[self.bits], max(self.rows, self.capacity))
        held.append(shares[0] + shares[1])
        return (seeds[0],), (seeds[1],)


@dataclass(frozen=True)
class RowProductsRequest(Request):
    """Material for Q (queries x cols) times the first `rows` rows of row mask `mask`, transposed."""
    mask: str
    rows: int
    queries: int
    cols: int
    bits: int
    kind = "row_products"
    uses_memory = True
    CHUNK_ROWS = 1 << 16     # the dealer's product, a block of mask rows at a time

    def draw(self, rng, memory):
        held = memory.get(self.mask)
        if held is None or len(held) != self.rows:
            raise ValueError(f"row mask {self.mask!r} has {0 if held is None else len(held)} rows, not {self.rows}")
        a = ring_words(rng, (self.queries, self.cols), self.bits)
        c = np.empty((self.queries, self.rows), dtype=a.dtype)
        for lo in range(0, self.rows, self.CHUNK_ROWS):
            c[:, lo:lo + self.CHUNK_ROWS] = a @ held.rows[lo:lo + self.CHUNK_ROWS].T
        a0, c0 = ring_words(rng, a.shape, self.bits), ring_words(rng, c.shape, self.bits)
        return (a0, c0), (a - a0, c - c0)


MATERIAL_OF = {
    TriplesRequest: lambda plain: [Triple.from_wire(t) for t in plain],
    SquaresRequest: lambda plain: [SquarePair.from_wire(p) for p in plain],
    TruncationRequest: lambda plain: WithSpares(TruncationPair.from_wire(plain[0]), Spares.from_wire(plain[1])),
    SparesRequest: Spares.from_wire,
    ComparisonRequest: ComparisonMaterial.from_wire,
    TableComparisonRequest: TableComparisonMaterial.from_wire,
    FSSComparisonRequest: SignKey.from_wire,
    AndRequest: AndMaterial.from_wire,
    SelectionRequest: SelectionMaterial.from_wire,
    MaskedChainRequest: lambda plain: WithSpares(MaskedChain.from_wire(plain[0]), Spares.from_wire(plain[1])),
    UpdateThenProductRequest: lambda plain: WithSpares(UpdateThenProduct.from_wire(plain[0]),
                                                       Spares.from_wire(plain[1])),
    ExpTableRequest: ExpTable.from_wire,
    RowMaskRequest: RowMask.from_wire,
    RowProductsRequest: RowProducts.from_wire,
}
REQUESTS = {cls.kind: cls for cls in MATERIAL_OF}


def request_from_wire(kind: str, values) -> Request:
    """The request a server sent, rebuilt with tuples throughout (a transport may turn them into lists)."""
    cls = REQUESTS.get(kind)
    if cls is None:
        raise ValueError(f"unknown kind of material {kind!r}")
    values = list(_tuples(values))
    for i, f in enumerate(fields(cls)):
        if f.name == "spares":
            values[i] = SparesRequest(*values[i])
    return cls(*values)


class RequestReader:
    """request_from_wire for a party that reads the same few wire forms over and over (the dealer both
    servers' asks, a provider the dealer's echoes, a few dozen kinds and shapes a session): each form is
    rebuilt once (a request is immutable, so one instance serves every reading). The cache is the
    party's own and ends with it: nothing a peer sends is kept beyond its session."""

    def __init__(self, size: int = 1024):
        self._read = functools.lru_cache(maxsize=size)(request_from_wire)

    def __call__(self, kind: str, values) -> Request:
        try:
            return self._read(kind, values)
        except TypeError:  # unhashable: lists from a transport
            return self._read(kind, _tuples(values))


def _tuples(value):
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


# -- how many spares ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def spare_count(n: int, bound_bits: int) -> int:
    """Spare truncation pairs for n truncated values: enough that all of their redone truncations (each
    value is redone with probability p = 2^(L+1-64), and again with p, ...) run out of spares with
    probability below 2^SPARE_FAILURE_LOG2, by the tail of a Poisson count with mean n p / (1 - p)^2 (at
    least the mean and the variance of the total). A constant over a request's lifetime: it depends on
    the request's size alone, never on what was opened."""
    if n <= 0:
        return 0
    p = 2.0 ** (bound_bits + 1 - 64)
    mean = n * p / (1 - p) ** 2
    log_tail_limit = SPARE_FAILURE_LOG2 * math.log(2)
    k = math.floor(mean)
    while True:  # the Chernoff bound P(X > k) <= exp(-mean) (e mean / (k + 1))^(k + 1), falling in k > mean
        j = k + 1
        log_bound = -mean + j * (1 + math.log(mean) - math.log(j))
        if log_bound < log_tail_limit:
            return max(k, 1)
        k += 1 + k // 64


def spares_for(segments, bound_bits: int, triples: int = 0) -> SparesRequest:
    """The spares a request that truncates `segments` ((count, shift), ...) carries; `triples`: spare
    triples per redone truncation (a masked chain's: 1, or k where a sum spreads one over k values)."""
    by_shift: dict = {}
    for count, shift in segments:
        by_shift[shift] = by_shift.get(shift, 0) + count
    shifts = tuple((s, spare_count(n, bound_bits)) for s, n in sorted(by_shift.items()) if n)
    return SparesRequest(shifts, spare_count(sum(by_shift.values()), bound_bits) * int(triples) if triples else 0)
