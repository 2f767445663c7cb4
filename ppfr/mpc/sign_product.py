"""Signs of shared values, against many public constants at once or with products by other shared values,
in one round (FSS, fss.py).

Against many constants (signs_against): [x - t_k < 0] for public t_1 .. t_T needs one opening of
c = x + r and ONE DCF key per value, evaluated at every c - t_k (= x - t_k + r): a key may be evaluated at
any number of public points, and each server's view is still its key (pseudorandom) and c (uniform).
So a threshold costs neither online bytes nor dealer bytes, only its evaluation (reciprocal's guess).

With products:

b = [x < 0] by FSS (fss.py) opens c = x + r and evaluates a DCF key; b * y would take one more round (a
Beaver product) after it. But if y is masked by a dealer mask mu in the same round (e = y - mu opened
beside c), then b y = e b + mu b, and mu b needs no round either: with c = c_top 2^63 + c', r likewise,
    b = c_top XOR z,  z = r_top XOR [c' < r'],
    mu b = mu c_top + (1 - 2 c_top) mu z,   mu z = mu r_top + mu (1 - 2 r_top) [c' < r'],
where mu (1 - 2 r_top) [c' < r'] is a second DCF key on the same alpha = r' with beta = mu (1 - 2 r_top),
and the dealer shares mu and mu r_top. Everything else is public or this server's share: local. So
recognition's label (known * (index + 1), known = the first threshold's comparison) costs no round of
its own (functions.confident_argmax). Privacy: c and e are masked by fresh uniform r and mu; each DCF
key alone is pseudorandom (fss.py). Cost: 16 bytes a product online (c and e), and per product a second
64-bit DCF key of group "add" (fss.key_bytes(64), 1,560 bytes) and 16 more offline.
"""
from __future__ import annotations

import numpy as np

from . import fss

U64 = np.uint64
LOW = U64(2**63 - 1)


def signs_against(srv, x: np.ndarray, publics: np.ndarray, width: int = 64, material=None,
                  tag: str = "open") -> np.ndarray:
    """Additive 0/1 shares of [x_i - t_k < 0], shape (x.size, T), for a flat shared uint64 x and public ring
    integers t (T,), exact where every x_i - t_k lies in [-2^(width-1), 2^(width-1)). One round, width/8
    bytes a value whatever T; fss.key_bytes(width, "add") offline a value. `material`: a Pending of
    provider.fss_comparison(x.size, width, "add"), or a SignKey (a subset, key_at); tag: "retry" for a
    round that stands in for one a redone truncation spoilt (privacy.py leaves those out of a view's shape)."""
    key = material if isinstance(material, fss.SignKey) else (
        srv.provider.fss_comparison(x.size, width, "add") if material is None else material).get()
    masked = x + key.r
    (c,) = srv.open(masked.astype(np.uint32) if width < 64 else masked, tag=tag)
    return signs_at(srv, key, c.astype(U64), publics, width)


def signs_at(srv, key: fss.SignKey, c: np.ndarray, publics: np.ndarray, width: int) -> np.ndarray:
    """This server's additive 0/1 shares of [x_i - t_k < 0], shape (c.size, T), from the public c = x + r of
    each value (r: the key's mask) and the public t: the key of each value evaluated at every c - t_k. Local."""
    shifted = (c[:, None] - np.asarray(publics, dtype=U64)[None, :]).ravel()
    if width < 64:
        shifted &= U64(2**width - 1)
    each = key_at(key, np.repeat(np.arange(c.size), len(publics)))
    return fss.sign_from_opened(srv.index, each, shifted, width).reshape(c.size, -1)


def key_at(key: fss.SignKey, index: np.ndarray) -> fss.SignKey:
    """The keys of the values `index` (repeats allowed: to evaluate a key at several points)."""
    d = key.dcf
    return fss.SignKey(key.r[index], key.top[index], fss.DCFKey(d.seed[index], d.seed_cw[:, index],
                                                              d.value_cw[:, index], d.right_t[index], d.final_cw[index]))


def signs_and_products(srv, x: np.ndarray, y: np.ndarray, material=None):
    """(shares of [x < 0] for every x, additive 0/1; shares of [x_i < 0] * y_i for the first y.size
    values), x and y flat shared uint64 arrays, in one round of 8 bytes a value of x and of y.
    `material`: a Pending of provider.sign_products(x.size, y.size)."""
    m = (srv.provider.sign_products(x.size, y.size) if material is None else material).get()
    c, e = srv.open(x + m.key.r, y - m.mu)
    bits = fss.sign_from_opened(srv.index, m.key, c, 64)
    first, c_top = c[:y.size], c[:y.size] >> U64(63)
    mu_z = m.mu_top + fss.dcf_eval(srv.index, m.payload, first & LOW)
    mu_b = m.mu * c_top + (U64(1) - U64(2) * c_top) * mu_z
    return bits, e * bits[:y.size] + mu_b
