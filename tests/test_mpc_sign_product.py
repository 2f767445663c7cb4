"""Signs by FSS against many public constants from one opening and one key, and signs with products by
other shared values in the same round (ppfr/mpc/sign_product.py), exact on every boundary, on every
session kind."""
from functools import partial

import numpy as np

from mpc_util import evaluate
from ppfr.mpc import sign_product

rng = np.random.default_rng(5)


def signs_and_products_of(x, y):
    bits, products = sign_product.signs_and_products(x.server, x.share.ravel(), y.share.ravel()[:x.size // 2])
    return x._new(np.concatenate([bits, products]), 0)


def test_signs_and_products_in_one_round(session):
    """[x < 0] for every x and [x < 0] y for the first half, exact for any ring values of x (0, -1 ulp, the
    ends of the ring) and any y; one round."""
    x = np.concatenate([[0, -1, 1, -(2**63), 2**63 - 1, 2**62, -(2**62)], rng.integers(-2**63, 2**63, 993)])
    y = rng.integers(-2**40, 2**40, x.size)
    got = evaluate(session, signs_and_products_of, x, y, fracs=[0, 0])
    bits = (x < 0).astype(np.int64)
    assert np.array_equal(got[:x.size], bits)
    assert np.array_equal(got[x.size:], bits[:x.size // 2] * y[:x.size // 2])



def signs_against(x, publics, width):
    return x._new(sign_product.signs_against(x.server, x.share.ravel(), publics, width), 0)


def test_signs_against_many_constants_from_one_key(session):
    """[x - t_k < 0] for every x and t_k: at 0, -1, +1 and the width's ends of x - t_k, on 32 and 64 bits."""
    for width in (32, 64):
        half = 2**(width - 1)
        t = np.array([0, 5, -7, 2**20, -(2**20)], dtype=np.int64)
        x = np.concatenate([t, t - 1, t + 1, rng.integers(-half // 2, half // 2, 200), [half // 2 - 1, -half // 2]])
        got = evaluate(session, partial(signs_against, publics=t.view(np.uint64), width=width), x, fracs=[0])
        diffs = x[:, None].astype(object) - t[None, :].astype(object)
        assert np.array_equal(got, (diffs < 0).astype(np.int64)), width
