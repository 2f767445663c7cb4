"""The dealer: a party that hands out correlated randomness and never sees an input.

Server 0 names what the next protocol step needs (kind and shapes, no data); the dealer draws it fresh
and sends each server its shares. Server 1 executes the same program and simply receives in order.
What the dealer knows (a, b, a*b, masks) is independent of every input, so the dealer learns nothing,
provided it does not collude with a server.
"""
from __future__ import annotations

import functools

import numpy as np

from .errors import ProtocolAborted
from .prg import SecureRandom


def additive(rng: SecureRandom, x: np.ndarray):
    s0 = rng.uint64(x.shape)
    return s0, x - s0


def xor(rng: SecureRandom, x: np.ndarray):
    s0 = rng.uint64(x.shape)
    return s0, x ^ s0


def beaver_triples(rng, specs):
    """specs: [(op, shape_x, shape_y)], op in {"mul", "matmul"} -> per party [(a, b, c)]."""
    out0, out1 = [], []
    for op, sx, sy in specs:
        a, b = rng.uint64(tuple(sx)), rng.uint64(tuple(sy))
        c = a * b if op == "mul" else a @ b
        (a0, a1), (b0, b1), (c0, c1) = additive(rng, a), additive(rng, b), additive(rng, c)
        out0.append((a0, b0, c0))
        out1.append((a1, b1, c1))
    return out0, out1


def square_pairs(rng, shapes):
    out0, out1 = [], []
    for shape in shapes:
        a = rng.uint64(tuple(shape))
        (a0, a1), (s0, s1) = additive(rng, a), additive(rng, a * a)
        out0.append((a0, s0))
        out1.append((a1, s1))
    return out0, out1


def truncation_pairs(rng, segments):
    """r uniform in Z_2^64 and r >> shift, both additively shared; segments = [(count, shift), ...]."""
    shifts = np.repeat(np.array([s for _, s in segments], dtype=np.uint64), [n for n, _ in segments])
    r = rng.uint64(shifts.shape)
    (r0, r1), (h0, h1) = additive(rng, r), additive(rng, r >> shifts)
    return (r0, h0), (r1, h1)


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


def monomial_material(rng, n: int, variables: int, monomials):
    """For ANDs of several XOR-shared words in one round: a mask per variable and, for every subset of
    the variables of a monomial, the AND of their masks; XOR-shared, one row per subset."""
    masks = rng.uint64((variables, n))
    rows = monomial_layout(variables, tuple(map(tuple, monomials)))
    products = np.empty((len(rows), n), dtype=np.uint64)
    for i, t in enumerate(rows):
        products[i] = masks[t[0]] if len(t) == 1 else np.bitwise_and.reduce(masks[list(t)], axis=0)
    return xor(rng, products)


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


def pack_lanes(values: np.ndarray, width: int) -> np.ndarray:
    """n values below 2^width -> ceil(n / lanes) uint64 words of 64 / width lanes; value i goes to lane
    i // words of word i % words (the first `words` values fill the low lanes)."""
    lanes = 64 // width
    if lanes == 1:
        return values
    words = -(-values.size // lanes)
    padded = np.zeros(lanes * words, dtype=np.uint64)
    padded[:values.size] = values
    parts = padded.reshape(lanes, words)
    out = parts[0].copy()
    for lane in range(1, lanes):
        out |= parts[lane] << np.uint64(lane * width)
    return out


def unpack_lane_bits(words: np.ndarray, n: int, width: int) -> np.ndarray:
    """The inverse of pack_lanes for one bit a lane: bit 0 of each lane, back in the order of the n values."""
    if width == 64:
        return words & np.uint64(1)
    return np.concatenate([(words >> np.uint64(lane * width)) & np.uint64(1) for lane in range(64 // width)])[:n]


def msb_material(rng, n: int, radices, width: int = 64):
    """For the sign test of n values of `width` bits: a mask r shared additively (n ring elements) and
    bitwise (XOR, in lanes, see pack_lanes), and the monomial material of each level of the prefix circuit."""
    if width not in RADICES:
        raise ValueError(f"comparisons are {sorted(RADICES)} bits wide, not {width}")
    r = rng.uint64((n,)) if width == 64 else rng.uint64(((n + 1) // 2,)).view(np.uint32)[:n].astype(np.uint64)
    (ra0, ra1), (rb0, rb1) = additive(rng, r), xor(rng, pack_lanes(r, width))
    levels0, levels1 = [], []
    for level, radix in enumerate(radices):
        m0, m1 = monomial_material(rng, rb0.size, PREFIX[radix]["variables"],
                                   prefix_monomials(radix, level == len(radices) - 1))
        levels0.append(m0)
        levels1.append(m1)
    return {"r": ra0, "r_bits": rb0, "levels": levels0}, {"r": ra1, "r_bits": rb1, "levels": levels1}


def and_material(rng, n: int, variables: int, monomials):
    m0, m1 = monomial_material(rng, n, variables, monomials)
    return {"products": m0}, {"products": m1}


def selection_material(rng, n: int, count: int):
    """To multiply n XOR-shared bits by `count` shared vectors of n values in one round: a random bit t
    per position, shared both ways, and per vector a mask b with t*b, additively shared."""
    t = rng.bits((n,))
    tb0 = rng.bits((n,))
    ta0, ta1 = additive(rng, t)
    masks0, masks1 = [], []
    for _ in range(count):
        b = rng.uint64((n,))
        (b0, b1), (p0, p1) = additive(rng, b), additive(rng, t * b)
        masks0.append((b0, p0))
        masks1.append((b1, p1))
    return {"t_bits": tb0, "t": ta0, "masks": masks0}, {"t_bits": t ^ tb0, "t": ta1, "masks": masks1}


def step_name(step) -> str:
    """What a step of masked_material is called by its user: the mask's name, or "a.b" for a product."""
    return f"{step[1]}.{step[2]}" if step[0] == "cross" else step[1]


def masked_material(rng, n: int, steps):
    """For a chain of products whose operands carry masks the servers can see through (see
    protocols.Masked), n values per step, one entry per step, in order:
      ("mask", name)          a fresh mask a_name:                    shares of a_name
      ("trunc", name, shift)  r and r >> shift; a_name = -(r >> shift): shares of r and of r >> shift
      ("cross", name, other)  the product of two masks drawn above:    shares of a_name * a_other
    """
    draws = sum({"mask": 2, "trunc": 3, "cross": 1}.get(step[0], 0) for step in steps)
    fresh = iter(rng.uint64((draws, n)))  # all of this request's randomness in one draw
    masks, out0, out1 = {}, [], []
    for step in steps:
        if step[0] == "mask":
            a = masks[step[1]] = next(fresh)
            s0 = next(fresh)
            s1 = a - s0
        elif step[0] == "trunc":
            r = next(fresh)
            high = r >> np.uint64(step[2])
            masks[step[1]] = -high
            r0, h0 = next(fresh), next(fresh)
            s0, s1 = (r0, h0), (r - r0, high - h0)
        elif step[0] == "cross":
            s0 = next(fresh)
            s1 = masks[step[1]] * masks[step[2]] - s0
        else:
            raise ValueError(f"unknown step {step!r}")
        out0.append(s0)
        out1.append(s1)
    return out0, out1


# kind of request -> generator(rng, **params): (server 0's material, server 1's)
MATERIAL = {
    "triples": beaver_triples,
    "squares": square_pairs,
    "truncation": truncation_pairs,
    "msb": msb_material,
    "selection": selection_material,
    "and": and_material,
    "masked": masked_material,
}


class Dealer:
    def __init__(self, channel, rng: SecureRandom | None = None):
        self.channel = channel
        self.rng = rng or SecureRandom()
        self.requests_served = 0

    def serve(self) -> None:
        """Answer server 0's requests until the network closes."""
        while True:
            try:
                ticket, kind, params = self.channel.recv("server0")
            except ProtocolAborted:
                return
            share0, share1 = MATERIAL[kind](self.rng, **params)
            # fresh arrays the dealer keeps no reference to: handed over, not copied
            self.channel.send("server0", (ticket, share0), copy=False)
            self.channel.send("server1", (ticket, share1), copy=False)
            self.requests_served += 1
