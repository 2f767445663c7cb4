"""Signs of shared values against many public constants at once, by FSS (fss.py), from one opening and
one key a value.

[x - t_k < 0] for public t_1 .. t_T needs one opening of c = x + r and ONE DCF key per value, evaluated
at every c - t_k (= x - t_k + r): a key may be evaluated at any number of public points, and each
server's view is still its key (pseudorandom) and c (uniform). So a threshold costs neither online nor
dealer bytes, only its evaluation (the reciprocal's guess, functions._below_thresholds). The servers need
not even open c themselves when x is a masked value (protocols.Masked: x = public + mask, the dealer
knowing the mask): a key for the mask -mask evaluated at public - t_k gives the same signs with no round
(functions._chain_signs).
"""
from __future__ import annotations

import numpy as np

from . import fss

U64 = np.uint64


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
    (c,) = srv.open(masked.astype(fss.OPENED[width]), tag=tag)
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
    return fss.SignKey(key.r[index], key.top[index], key.masks[index],
                       fss.DCFKey(d.seed[index], d.seed_cw[:, index], d.value_cw[..., index], d.right_t[index],
                                  d.final_cw[..., index]))
