"""The dealer: a party that hands out correlated randomness and never sees an input.

Server 0 names what the next protocol step needs (kind and shapes, no data); the dealer draws it fresh
and sends each server its shares. Server 1 executes the same program and simply receives in order.
What the dealer knows (a, b, a*b, masks) is independent of every input, so the dealer learns nothing,
provided it does not collude with a server.
"""
from __future__ import annotations

import numpy as np

from .errors import ProtocolAborted
from .prg import SecureRandom

MSB_LEVELS = 6  # log2(64): depth of the prefix circuit in the comparison protocol


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


def msb_material(rng, n: int):
    """For the sign test of n values: a mask r shared both additively and bitwise (XOR), AND triples
    for the prefix circuit (2n per level, n on the last), and a random bit t shared both ways for the
    conversion of the result back to an additive share."""
    r = rng.uint64((n,))
    and_count = 2 * n * (MSB_LEVELS - 1) + n
    a, b = rng.uint64((and_count,)), rng.uint64((and_count,))
    t = rng.bits((n,))
    (ra0, ra1), (rb0, rb1) = additive(rng, r), xor(rng, r)
    (a0, a1), (b0, b1), (c0, c1) = xor(rng, a), xor(rng, b), xor(rng, a & b)
    tb0 = rng.bits((n,))
    tb1 = t ^ tb0
    ta0, ta1 = additive(rng, t)
    return (
        {"r": ra0, "r_bits": rb0, "and": (a0, b0, c0), "t_bits": tb0, "t": ta0},
        {"r": ra1, "r_bits": rb1, "and": (a1, b1, c1), "t_bits": tb1, "t": ta1},
    )


MATERIAL = {
    "triples": lambda rng, specs: beaver_triples(rng, specs),
    "squares": lambda rng, shapes: square_pairs(rng, shapes),
    "truncation": lambda rng, segments: truncation_pairs(rng, segments),
    "msb": lambda rng, n: msb_material(rng, n),
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
            self.channel.send("server0", (ticket, share0))
            self.channel.send("server1", (ticket, share1))
            self.requests_served += 1
