"""exp of a non-positive shared value by table lookup, in three rounds: the few-rounds (fss) profile's exp.

Function secret sharing and lookup tables trade rounds for offline bytes and local work. exp(d) for
d = x - max <= 0 here is the split of SIGMA (Gupta et al., "SIGMA: Secure GPT Inference with Function
Secret Sharing", ePrint 2023/1269: nExp as the product of two lookup tables on the digits of the input)
read from one opening, with the rotated-table lookup of Pika (Wagh, PETS 2022) on a dealer one-hot
instead of a DPF. With D the ring integer of d (f fractional bits) and a dealer mask r (32 bits):

1. Open c = D + r mod 2^32 (one round, 4 bytes a value). With the low digits c_l = c mod 2^j,
   r_l = r mod 2^j and the high ones C_h = (c >> j) mod 2^m, R_h = (r >> j) mod 2^m,
       D = 2^j (C_h - R_h) + (c_l - r_l)   (mod 2^(j+m)),   c_l - r_l in (-2^j, 2^j) exactly,
   no borrow to propagate: each digit is "public minus dealer-known", and since 2^(j+m) divides 2^32 no
   wrap of D + r matters (unlike a truncation's, no retry). For D in [-(2^m - 1) 2^j, 0] the
   high digit h = (C_h - R_h) mod 2^m names one of 2^m values of (D - lo) / 2^j in [-(2^m - 1), 0].
   The dealer shares one-hot vectors of R_h (2^m entries) and of r_l (2^j); a server's share of
   T(p - u) = sum_k onehot_u[k] T(p - k) is a local dot product with a public rotated table. So
   A = exp(2^(j-f) h) and B = exp((c_l - r_l) / 2^f) come out at TABLE_FRAC bits, locally. On the same
   c, a DCF key for the same r (fss.sign_from_opened, 32 bits) gives additive shares of
   keep = [D >= -(2^m - 1) 2^j]: below that bound (d < -15.98 at f = 16) exp(d) < 1.2e-7, and h would
   wrap, so the result is keep * A * B. Exact for any D in [-2^31 + 2^(j+m), 0].
2. keep * A * B in one round: open the three values minus dealer masks (8 bytes each); the dealer's
   shares of the masks' pairwise and triple products make the product local (_product_of_three).
3. Truncate from 2 TABLE_FRAC bits to the caller's (one round, 8 bytes) -- or not, for a caller that
   only compares sums of exponentials (functions.confident_argmax).

Privacy: c is uniform (r is, on Z_2^32), so are the openings of step 2 (fresh masks on Z_2^64) and each
server's one-hot shares; a DCF key alone is pseudorandom (fss.py). Nothing the dealer is asked depends
on data (n and the digits' bits).

Error: the tables are exact to half a unit at TABLE_FRAC = 23 bits, so exp(d) is within 2.5e-7 absolute
(tests/test_mpc_lut.py), and 0 where -32,752 <= d < -15.98 (at f = 16; below -2^(31-f) the 32-bit opening
wraps and the result is garbage, as the polynomial's is below -64: callers pass x - max, which softmax's
logit bound keeps within -16,384). Local work: two dot products of 2^10 a value, a 31-level
DCF evaluation, a PRG expansion of one one-hot. Offline bytes a value and server:
8 (2^m + 2^j) for the one-hots, of which each server gets one as a 16-byte seed of a PRG instead
(server 0 the high one, server 1 the low one): 8 kB with j = m = 10; plus the DCF key (792 bytes),
the mask (8) and the product's masks (56). That is fine for one face (158 values, 1.4 MB) and too much
for a training batch (10,112 values, 90 MB): functions.py uses it up to TABLE_MAX_VALUES values.
"""
from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import fss, protocols
from .tensor import SharedTensor

U64 = np.uint64
TABLE_FRAC = 23          # fractional bits of the tables' entries (exp's output precision in softmax)
HIGH_BITS = 10           # m: the high digit's one-hot has 2^m entries
LOW_SPAN = 6             # the low digit covers |lo| < 2^-6: j = f - LOW_SPAN bits
TABLE_MAX_VALUES = 2048  # values a call may look up (8 kB offline each): one face is 158
WIDTH = 32               # the opening and the comparison run modulo 2^32


def use_exp_tables(srv, on: bool = True, max_values: int = TABLE_MAX_VALUES) -> None:
    """A program for both servers: whether the few-rounds profile (FSS comparisons) runs exp by tables
    for calls of up to `max_values` values (config mpc.exp_table_values; TABLE_MAX_VALUES, the default,
    covers a dozen faces; 10,112 a training batch, at ~9 kB a value offline) or the polynomial as before
    (on=False, for side-by-side measurements)."""
    if max_values < 0:
        raise ValueError(f"exp_table_values is a number of values, >= 0, not {max_values}")
    srv.provider.exp_tables = int(max_values) if on else 0


def digits(frac: int) -> tuple[int, int]:
    """(j, m): the low and the high digit's bits for inputs with `frac` fractional bits."""
    if not LOW_SPAN < frac <= 16:
        raise ValueError(f"exp by tables takes inputs with {LOW_SPAN + 1} to 16 fractional bits, not {frac}")
    return frac - LOW_SPAN, HIGH_BITS


def lowest(frac: int) -> float:
    """The lowest d the tables cover, -(2^m - 1) 2^(j - f) (-15.98): below, exp by tables gives 0."""
    j, m = digits(frac)
    return -float((2**m - 1) * 2**j) / 2.0**frac


@functools.lru_cache(maxsize=16)
def tables(frac: int) -> tuple[np.ndarray, np.ndarray]:
    """The public tables, at TABLE_FRAC bits: high[i] = exp(2^(j-f) h) for the digit h = i - 2^m (h = 0 at
    i = 0), low[i] = exp(lo / 2^f) for lo = i read as a signed (j+1)-bit number."""
    j, m = digits(frac)
    h = np.arange(2**m, dtype=np.float64)
    h[1:] -= 2**m
    lo = np.arange(2**(j + 1), dtype=np.float64)
    lo[2**j:] -= 2**(j + 1)
    encode = lambda v: np.rint(v * 2.0**TABLE_FRAC).astype(np.int64).view(U64)  # noqa: E731 - values <= 1.02
    return encode(np.exp(h * 2.0**(j - frac))), encode(np.exp(lo / 2.0**frac))


def ask(srv, n: int, frac: int):
    """Ask ahead for the material of exp_nonpositive on n values with `frac` fractional bits."""
    j, m = digits(frac)
    if n > srv.provider.exp_tables:
        raise ValueError(f"exp by tables looks up at most {srv.provider.exp_tables} values a call here "
                         f"(lut.use_exp_tables), not {n}")
    return srv.provider.exp_table(n, j, m)


def exp_nonpositive(d: SharedTensor, frac: int | None = None, truncate: bool = True, material=None) -> SharedTensor:
    """exp(d) for d <= 0 (and >= -2^31 / 2^f + 16), within 2^-23 of float64, 0 where d < lowest(d.frac).
    Three rounds (see the module doc); with truncate=False two, the result left at 2 TABLE_FRAC bits
    (sums of up to 2^16 such values stay exact in the ring and may be compared by 64-bit comparisons)."""
    srv = d.server
    out_frac = srv.fixed.frac_bits if frac is None else frac
    n = d.size
    material = ask(srv, n, d.frac) if material is None else material
    truncation = srv.provider.truncation([(n, 2 * TABLE_FRAC - out_frac)]) if truncate else None
    m = material.get()
    (c,) = srv.open((d.share.ravel() + m.key.r).astype(np.uint32))           # 1. one opening
    c = c.astype(U64)
    j, bits = m.low_bits, m.high_bits
    beyond = U64((2**bits - 1) * 2**j)                                      # [D + beyond < 0]: d below the tables
    below = fss.sign_from_opened(srv.index, m.key, (c + beyond) & U64(2**WIDTH - 1), WIDTH)
    keep = (U64(1) if srv.index == 0 else U64(0)) - below
    high_table, low_table = tables(d.frac)
    high = rotated_lookup(m.high_one_hot(), high_table, (c >> U64(j)) & U64(2**bits - 1))
    low = rotated_lookup(m.low_one_hot(), low_table, c & U64(2**j - 1))
    z = _product_of_three(srv, (keep, high, low), m.masks, m.crosses)      # 2. one round
    if not truncate:
        return d._new(z.reshape(d.shape), 2 * TABLE_FRAC)
    (e,) = protocols.truncate_masked(srv, [z], [2 * TABLE_FRAC - out_frac], [truncation.get()], 2 * TABLE_FRAC + 1)  # 3.
    return d._new(e.share.reshape(d.shape), out_frac)


def rotated_lookup(one_hot: np.ndarray, table: np.ndarray, public: np.ndarray) -> np.ndarray:
    """This server's share of table[(p - u) mod len(table)] for each value, given its share of the one-hot
    vector of u (n x K, K <= len(table)) and the public p: sum_k one_hot[k] table[(p - k) mod len]. Local."""
    size = table.size
    # the table reversed, twice over: row s of its windows of one_hot's width is table[(-(s + k)) mod size]
    # for k = 0, 1, ...; row (size - p) mod size is table[(p - k) mod size], contiguous (no index per entry)
    windows = sliding_window_view(np.tile(table[(-np.arange(size)) % size], 2), one_hot.shape[1])
    return (one_hot * windows[(size - public.astype(np.int64)) % size]).sum(axis=1, dtype=U64)


def _product_of_three(srv, values, masks, crosses) -> np.ndarray:
    """x y z for shared x, y, z in one round: open e = x - a, y - b, z - c with the dealer's masks, then
        x y z = e_x e_y e_z + e_x e_y c + e_x e_z b + e_y e_z a + e_x bc + e_y ac + e_z ab + abc,
    local given the dealer's shares of ab, ac, bc and abc (the all-public term added by server 0)."""
    a, b, c = masks
    ab, ac, bc, abc = crosses
    ex, ey, ez = srv.open(*[v - mask for v, mask in zip(values, masks)])
    out = abc + ex * bc + ey * ac + ez * ab + ex * ey * c + ex * ez * b + ey * ez * a
    if srv.index == 0:
        out += ex * ey * ez
    return out
