"""exp by tables (ppfr/mpc/lut.py) against numpy float64, on every session kind: over its range and at every
boundary of the input (0, -1 ulp, a digit's edge, the tables' lowest value and one ulp below, far below)
and of the dealer's mask (masks chosen at their digits' edges); the local rotated lookup; how few rounds
and how many offline bytes it takes; where the few-rounds profile uses it."""
from functools import partial

import numpy as np
import pytest

from mpc_util import encoded, evaluate
from ppfr.mpc import LocalSession, functions as F, lut, material, protocols
from ppfr.mpc.fss import key_bytes
from ppfr.mpc.session import SESSIONS, open_session

rng = np.random.default_rng(11)
ULP = 2.0**-16
J, M = lut.digits(16)
LOWEST = lut.lowest(16)
TOLERANCE = 2.5e-7  # half a unit of each table (2^-24) and the truncation's unit (2^-23), with room


def boundaries():
    digit = 2.0**J * ULP  # one step of the high digit: 1/64
    edges = [0.0, -ULP, -digit, -digit + ULP, -digit - ULP, -2 * digit, -1.0, -8.0, LOWEST + ULP, LOWEST,
             LOWEST - ULP, -16.0, -17.0, -100.0, -1000.0, -16384.0, -32000.0]
    return np.concatenate([edges, -rng.uniform(0, 17, 1000), -np.linspace(0, 16, 1025)])


def exp_of_nonpositive(x, **kwargs):
    return lut.exp_nonpositive(x, **kwargs)


def test_exp_by_tables_within_its_error_everywhere(session):
    x = boundaries()
    got = evaluate(session, partial(exp_of_nonpositive, frac=23), x)
    want = np.exp(encoded(x))
    assert np.max(np.abs(got - want)) <= TOLERANCE, np.max(np.abs(got - want))
    assert got[0] == 1.0 or abs(got[0] - 1.0) <= 2.0**-23  # exp(0): the largest table product, truncated
    below = encoded(x) < LOWEST
    assert np.all(got[below] <= 2.0**-23)  # 0, rounded up by at most the truncation's unit


def test_untruncated_exp_by_tables_is_exact_to_the_tables_and_zero_below(session):
    """truncate=False leaves keep * A * B at 46 fractional bits: within a table unit, 0 below the tables."""
    x = boundaries()
    got = evaluate(session, partial(exp_of_nonpositive, truncate=False), x)
    want = np.exp(encoded(x))
    inside = encoded(x) >= LOWEST
    assert np.max(np.abs(got[inside] - want[inside])) <= 2.0**-23
    assert np.all(got[~inside] == 0.0)


@pytest.mark.parametrize("masks", ["digit edges", "uniform"])
def test_exp_by_tables_for_masks_at_every_digit_edge(masks, monkeypatch):
    """The lookup reads c - r digit by digit without a borrow: right for masks whose digits are 0, all
    ones, or carry into the next digit, and at 2^31 (the comparison's sign bit)."""
    edge = np.array([0, 1, 2**J - 1, 2**J, 2**(J + M) - 1, 2**(J + M), 2**31 - 1, 2**31, 2**32 - 1,
                     (2**M - 1) << J, 2**J - 1 + (5 << J)], dtype=np.uint64)
    x = boundaries()[:150]  # each value against every edge mask (np.resize lays them along a row)

    def draw(self, rng_):
        r = rng_.uint64((self.n,)) & np.uint64(2**32 - 1)
        if masks == "digit edges":
            r = np.resize(edge, self.n)
        return self.draw_for_masks(rng_, r)
    monkeypatch.setattr(material.ExpTableRequest, "draw", draw)
    with LocalSession() as s:
        got = evaluate(s, partial(exp_of_nonpositive, frac=23), x[:, None] + np.zeros(edge.size))
    assert np.max(np.abs(got - np.exp(encoded(x))[:, None])) <= TOLERANCE


def test_rotated_lookup_reads_the_table_at_public_minus_secret():
    """sum_k onehot_u[k] table[(p - k) mod K] = table[(p - u) mod K] for every u and p, on shares."""
    table = rng.integers(0, 2**63, 64, dtype=np.uint64)
    u = np.repeat(np.arange(32, dtype=np.uint64), 64)
    p = np.tile(np.arange(64, dtype=np.uint64), 32)
    one_hot = np.zeros((u.size, 32), dtype=np.uint64)
    one_hot[np.arange(u.size), u.astype(np.int64)] = 1
    share0 = rng.integers(0, 2**64, one_hot.shape, dtype=np.uint64)
    total = lut.rotated_lookup(share0, table, p) + lut.rotated_lookup(one_hot - share0, table, p)
    assert np.array_equal(total, table[(p.astype(np.int64) - u.astype(np.int64)) % 64])


def _rounds_and_offline(fn, x, method="fss"):
    with LocalSession() as s:
        s.run(protocols.use_comparisons, method).result()
        s.record_views()
        got = evaluate(s, fn, x)
        views = s.views()["server0"]
        rounds = sum(1 for d, p, m in views if d == "send" and p == "server1" and m[0] == "open")
        stats = s.stats()
    return got, rounds, stats


def test_exp_by_tables_takes_three_rounds_and_nine_kilobytes_a_value():
    n = 158
    _, rounds, stats = _rounds_and_offline(partial(exp_of_nonpositive, frac=23), -rng.uniform(0, 20, n))
    assert rounds == 3
    # a whole one-hot (the other one a seed), the product's masks, the truncation's pair
    per_value = key_bytes(32, "add") + 8 * 2**J + 8 * (3 + 4) + 16
    for name in ("server0", "server1"):
        assert n * per_value <= stats[name].offline_bytes <= n * per_value + 4096, (name, stats[name].offline_bytes)


def test_the_few_rounds_profile_runs_exp_by_tables_where_it_fits():
    """exp(x, upper <= 0) in the fss profile: 3 rounds; with upper > 0, or over TABLE_MAX_VALUES values,
    or bitwise, the polynomial (12)."""
    x = -rng.uniform(0, 60, 158)
    got, rounds, _ = _rounds_and_offline(partial(F.exp, upper=0.0, frac=23), x)
    assert rounds == 3 and np.max(np.abs(got - np.exp(encoded(x)))) <= TOLERANCE
    assert _rounds_and_offline(partial(F.exp, upper=0.0), x, "bitwise")[1] == 12
    assert _rounds_and_offline(F.exp, x)[1] == 12
    big = -rng.uniform(0, 60, lut.TABLE_MAX_VALUES + 1)
    got, rounds, _ = _rounds_and_offline(partial(F.exp, upper=0.0), big)
    assert rounds >= 12 and np.max(np.abs(got - np.exp(encoded(big)))) <= 1e-4  # its tested bound


def test_one_face_label_takes_three_rounds_besides_the_tournament():
    """confident_argmax in the few-rounds profile: its tournament (on 32 bits), exp by tables untruncated
    (2), the comparisons with the label's product (1); at most 12 rounds in all for one face (#15)."""
    x = rng.normal(size=(1, 158)) * 3
    label = partial(F.confident_argmax, thresholds=(0.5, 0.9))
    _, rounds, _ = _rounds_and_offline(lambda t: label(t)[0], x)
    _, tournament, _ = _rounds_and_offline(lambda t: F.argmax(t, axis=-1, bound=F.SOFTMAX_BOUND)[1], x)
    assert rounds - tournament == 3 and rounds <= 12


def test_softmax_and_label_by_tables_are_right_where_truncations_are_redone(monkeypatch):
    """With every masked truncation told |x| < 2^60, one in eight is redone (fresh masks from the spares):
    the chain's products repair those positions (and the rows whose sums they break), and softmax and the
    label stay right. Threads only: the patch lives in this process."""
    from ppfr.mpc import FixedPoint
    from ppfr.models.reference import label_and_band, softmax_rows

    truncate_masked = protocols.truncate_masked
    monkeypatch.setattr(protocols, "truncate_masked",
                        lambda srv, xs, shifts, materials, bound_bits=None: truncate_masked(srv, xs, shifts, materials, 60))
    x = rng.normal(size=(6, 158)) * np.linspace(0.5, 10, 6)[:, None]
    with LocalSession(fixed=FixedPoint(bound_bits=60)) as s:
        s.run(protocols.use_comparisons, "fss").result()
        s.record_views()
        got = evaluate(s, F.softmax, x)
        labels = evaluate(s, lambda t: F.confident_argmax(t, (0.3, 0.9))[0], x)
        redone = [m for d, p, m in s.views()["server0"] if d == "send" and p == "server1" and m[0] != "open"]
    assert redone, "nothing was redone: the test tests nothing"
    assert np.max(np.abs(got - softmax_rows(encoded(x)))) <= 1e-4
    assert np.array_equal(labels, label_and_band(softmax_rows(encoded(x)), (0.3, 0.9))[0])


@pytest.mark.parametrize("kind", sorted(SESSIONS))
def test_softmax_by_tables_within_1e4_of_float64(kind):
    """The few-rounds softmax (exp by tables, the chain's tail) on a dozen rows of every kind: uniform in
    [-30, 30], peaked, flat, with logits far below the maximum and a winner far above, within 1e-4."""
    x = rng.uniform(-30, 30, (12, 158))
    x[2, 5], x[3] = 30.0, -30.0
    x[4:8, :40] = rng.uniform(-900, -100, (4, 40))
    x[6:8, 77] = 400.0
    x[8:] = rng.uniform(-3, 3, (4, 158))
    with open_session(kind, comparisons="fss") as s:
        got = evaluate(s, F.softmax, x)
    from ppfr.models.reference import softmax_rows

    assert np.max(np.abs(got - softmax_rows(encoded(x)))) <= 1e-4
