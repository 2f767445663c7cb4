"""Signs by FSS against many public constants from one opening and one key a value
(ppfr/mpc/thresholds.py), exact on every boundary, on every session kind."""
from functools import partial

import numpy as np

from mpc_util import evaluate
from ppfr.mpc import thresholds

rng = np.random.default_rng(5)


def signs_against(x, publics, width):
    return x._new(thresholds.signs_against(x.server, x.share.ravel(), publics, width), 0)


def test_signs_against_many_constants_from_one_key(session):
    """[x - t_k < 0] for every x and t_k: at 0, -1, +1 and the width's ends of x - t_k, on 32 and 64 bits."""
    for width in (32, 64):
        half = 2**(width - 1)
        t = np.array([0, 5, -7, 2**20, -(2**20)], dtype=np.int64)
        x = np.concatenate([t, t - 1, t + 1, rng.integers(-half // 2, half // 2, 200), [half // 2 - 1, -half // 2]])
        got = evaluate(session, partial(signs_against, publics=t.view(np.uint64), width=width), x, fracs=[0])
        diffs = x[:, None].astype(object) - t[None, :].astype(object)
        assert np.array_equal(got, (diffs < 0).astype(np.int64)), width
