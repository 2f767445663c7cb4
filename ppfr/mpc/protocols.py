"""Two-server protocols on raw ring shares (uint64 arrays). `SharedTensor` puts a face on these.

Every function is executed by both servers at the same time with their own shares; `srv.index` tells
which one runs it. The only values a server ever receives are the other server's shares of values masked
by fresh, uniform dealer randomness (x - a, y - b, x + r, bits XOR a): each is uniform on its domain and
independent of the inputs, so the transcript of a server can be simulated from its own shares alone.
"""
from __future__ import annotations

import numpy as np

from .dealer import MSB_LEVELS

U64 = np.uint64
ONE = U64(1)
LOW63 = U64(2**63 - 1)


# -- Beaver products ---------------------------------------------------------------------------------
def ask_products(srv, specs) -> int:
    """Ask ahead for the triples of products [(op, shape_x, shape_y)]."""
    return srv.ask("triples", specs=specs)


def products(srv, items, ticket: int | None = None):
    """Shares of x*y or x@y for each (op, x, y), op in {"mul", "matmul"}: one round for all of them.

    With a triple (a, b, c = a∘b) the servers open e = x - a and f = y - b; then
    x∘y = e∘f + e∘b + a∘f + c, where e∘f is public and added by server 0 only.
    Costs each server size(x) + size(y) ring elements.
    """
    if ticket is None:
        ticket = ask_products(srv, [(op, x.shape, y.shape) for op, x, y in items])
    triples = srv.take(ticket)
    masked = []
    for (op, x, y), (a, b, _) in zip(items, triples):
        masked += [x - a, y - b]
    opened = srv.open(*masked)
    out = []
    for i, ((op, _, _), (a, b, c)) in enumerate(zip(items, triples)):
        e, f = opened[2 * i], opened[2 * i + 1]
        if op == "mul":
            z = e * b + a * f + c
            if srv.index == 0:
                z += e * f
        else:
            z = e @ (b + f if srv.index == 0 else b) + a @ f + c
        out.append(z)
    return out


def squares(srv, xs):
    """x*x with a pair (a, a*a): open e = x - a only, then x^2 = e^2 + 2ea + a^2. One round, size(x)."""
    pairs = srv.dealer("squares", shapes=[x.shape for x in xs])
    opened = srv.open(*[x - a for x, (a, _) in zip(xs, pairs)])
    out = []
    for e, (a, a2) in zip(opened, pairs):
        z = U64(2) * e * a + a2
        if srv.index == 0:
            z += e * e
        out.append(z)
    return out


# -- Truncation ---------------------------------------------------------------------------------------
def ask_truncation(srv, sizes, shifts) -> int | None:
    """Ask ahead for the pairs to truncate tensors of these sizes by these shifts (None: nothing to ask)."""
    segments = [(n, s) for n, s in zip(sizes, shifts) if s and n]
    return srv.ask("truncation", segments=segments) if segments else None


def truncate(srv, xs, shifts, ticket: int | None = None):
    """Divide each shared x by 2^shift, exact to within one unit in the last place, never more.

    Local share truncation (SecureML, CrypTen) fails with probability ~|x|/2^64 by an error of 2^(64-f).
    Here the dealer supplies r, uniform on all of Z_2^64, with shares of r and of r >> shift. The servers
    open c = x + 2^L + r, where |x| < 2^L (L = bound_bits) so x' = x + 2^L lies in [0, 2^(L+1)).
    If c >= 2^(L+1), then x' + r did not wrap modulo 2^64 (a wrap would leave c < x' < 2^(L+1)), hence
        floor(c / 2^s) - floor(r / 2^s) - 2^(L-s) = floor(x / 2^s) + carry,   carry in {0, 1},
    an unbiased stochastic rounding of x / 2^s. If c < 2^(L+1) (probability 2^(L+1-64), 2^-15 with
    L = 48), the element is masked again with fresh randomness in one more round. c is uniform and
    independent of x whatever x is, and so is the decision to retry, so privacy is perfect, not
    statistical. Cost: size(x) ring elements and one round per server, plus the rare retry.
    """
    if ticket is None:
        ticket = ask_truncation(srv, [x.size for x in xs], shifts)
    work = [i for i, (x, s) in enumerate(zip(xs, shifts)) if s and x.size]  # a shift of 0 costs nothing
    out = list(xs)
    if not work:
        return out
    sizes = [xs[i].size for i in work]
    flat = np.concatenate([xs[i].ravel() for i in work]) if len(work) > 1 else xs[work[0]].ravel()
    per_element = np.repeat(np.array([shifts[i] for i in work], dtype=U64), sizes)
    result = _truncate_flat(srv, flat, per_element, srv.take(ticket))
    start = 0
    for i, n in zip(work, sizes):
        out[i] = result[start:start + n].reshape(xs[i].shape)
        start += n
    return out


def _run_lengths(shifts):
    edges = np.flatnonzero(np.diff(shifts)) + 1
    starts = np.concatenate([[0], edges])
    counts = np.diff(np.concatenate([starts, [shifts.size]]))
    return [(int(n), int(shifts[i])) for i, n in zip(starts, counts)]


def _truncate_flat(srv, x, shifts, material):
    L = srv.fixed.bound_bits
    r, r_high = material
    masked = x + r
    if srv.index == 0:
        masked += U64(2**L)
    (c,) = srv.open(masked)
    if srv.index == 0:
        out = (c >> shifts) - (U64(1) << (U64(L) - shifts)) - r_high
    else:
        out = -r_high
    retry = np.flatnonzero(c < U64(2 ** (L + 1)))
    if retry.size:
        again = srv.take(srv.ask("truncation", planned=False, segments=_run_lengths(shifts[retry])))
        out[retry] = _truncate_flat(srv, x[retry], shifts[retry], again)
    return out


# -- Comparison -----------------------------------------------------------------------------------------
def bitwise_and(srv, x, y, triple):
    """AND of XOR-shared 64-bit words with a boolean Beaver triple: one round, 2 words per word."""
    a, b, c = triple
    d, e = srv.open_xor(x ^ a, y ^ b)
    z = c ^ (d & b) ^ (e & a)
    if srv.index == 0:
        z ^= d & e
    return z


def msb(srv, x, ticket: int | None = None):
    """Additive shares (0 or 1) of the most significant bit of x, i.e. of [x < 0]. 8 rounds.

    Open c = x + r with r uniform (perfectly hiding). Then x = c - r, and
        msb(x) = msb(c) XOR msb(r) XOR borrow,   borrow = [c mod 2^63 < r mod 2^63].
    The borrow is a comparison of a public number with a bitwise-shared one: per bit, g = r AND NOT c
    ("r is larger here") and p = NOT (r XOR c) ("equal here"); a Kogge-Stone prefix over the 64 bit
    positions, run on whole uint64 words so that all positions move at once, combines
    (G, P) <- (G_hi XOR (P_hi AND G_lo), P_hi AND P_lo) in 6 levels of 2 ANDs. A random bit t shared
    both ways turns the XOR-shared result into an additive one (open b XOR t, one round).
    Costs each server 23 ring elements and one bit per value.
    """
    shape = x.shape
    x = x.ravel()
    n = x.size
    m = srv.take(srv.ask("msb", n=n) if ticket is None else ticket)
    (c,) = srv.open(x + m["r"])
    c_low = c & LOW63
    r_bits = m["r_bits"]
    g = (~c_low & LOW63) & r_bits
    p = (r_bits & LOW63) ^ (~c_low if srv.index == 0 else U64(0))
    a, b, t = m["and"]
    used = 0
    for level in range(MSB_LEVELS):
        s = U64(1 << level)
        p_hi = p >> s
        if level < MSB_LEVELS - 1:
            k = 2 * n
            both = bitwise_and(srv, np.concatenate([p_hi, p_hi]), np.concatenate([g, p]),
                               (a[used:used + k], b[used:used + k], t[used:used + k]))
            g, p = (g >> s) ^ both[:n], both[n:]
        else:
            k = n
            g = (g >> s) ^ bitwise_and(srv, p_hi, g, (a[used:used + k], b[used:used + k], t[used:used + k]))
        used += k
    bit = ((r_bits >> U64(63)) ^ g) & ONE
    if srv.index == 0:
        bit ^= c >> U64(63)
    return bit_to_additive(srv, bit, m["t_bits"], m["t"]).reshape(shape)


def bit_to_additive(srv, bit, t_bits, t):
    """XOR shares of a bit -> additive shares, with a random bit t shared both ways:
    e = bit XOR t is opened (packed 8 to a byte); bit = e + t - 2et."""
    mine = bit ^ t_bits
    theirs = srv.exchange(np.packbits(mine.astype(np.uint8)))
    e = mine ^ np.unpackbits(theirs, count=mine.size).astype(U64).reshape(mine.shape)
    out = t - U64(2) * e * t
    if srv.index == 0:
        out += e
    return out
