"""Comparison, max/argmax, exp, reciprocal and softmax under MPC against numpy float64, on every session
kind and with each way of comparing (protocols.use_comparisons: the bitwise circuit, function secret
sharing). Programs are module-level functions (or partials of them), so that they pickle for parties in
processes."""
import itertools
from functools import partial

import numpy as np
import pytest

from mpc_util import encoded, evaluate
from ppfr.mpc import functions as F
from ppfr.mpc import protocols
from ppfr.mpc.tensor import stack
from ppfr.mpc.session import SESSIONS, open_session

rng = np.random.default_rng(7)


# -- programs: what both servers run on their shares -------------------------------------------------------
def minimum_by_where(x, y):
    return F.where(F.less_than(x, y), x, y)


def argmax_index(t, axis, bound):
    return F.argmax(t, axis, bound)[1]


def argmin_value(t, axis, bound):
    return F.argmin(t, axis, bound)[0]


def argmin_index(t, axis, bound):
    return F.argmin(t, axis, bound)[1]


def reveal_hidden_offset(srv, axis):
    srv.reveal_to(F.hide_offset(srv.receive(), axis=axis))


def bytes_of_a_comparison(srv, width):
    """What a comparison of the received values at `width` bits sends to the other server."""
    x = srv.receive()
    peer = "server1" if srv.index == 0 else "server0"
    before = srv.channel.stats.bytes_to[peer]
    protocols.msb_bits(srv, x.share, width=width)
    return srv.channel.stats.bytes_to[peer] - before


@pytest.fixture(scope="module", params=[(kind, method) for kind in sorted(SESSIONS) for method in protocols.COMPARISONS],
                ids=lambda p: "-".join(p))
def session(request):
    kind, method = request.param
    with open_session(kind, comparisons=method) as s:
        yield s


def test_less_than_zero_is_exact(session):
    x = np.concatenate([rng.uniform(-1e4, 1e4, 5000), [0.0, 2**-16, -(2**-16), 2.0**32 - 1, -(2.0**32) + 1]])
    got = evaluate(session, F.less_than_zero, x)
    assert np.array_equal(got, encoded(x) < 0)


def test_comparisons_between_shared_and_public(session):
    a, b = rng.uniform(-5, 5, 300), rng.uniform(-5, 5, 300)
    a[:10] = b[:10]  # ties
    ea, eb = encoded(a), encoded(b)
    assert np.array_equal(evaluate(session, F.less_than, a, b), ea < eb)
    assert np.array_equal(evaluate(session, F.greater_than, a, b), ea > eb)
    assert np.array_equal(evaluate(session, F.greater_equal, a, b), ea >= eb)
    assert np.array_equal(evaluate(session, partial(F.less_than, y=1.5), a), ea < 1.5)


def test_where(session):
    a, b = rng.normal(size=50), rng.normal(size=50)
    got = evaluate(session, minimum_by_where, a, b)
    assert np.array_equal(got, np.minimum(encoded(a), encoded(b)))


@pytest.mark.parametrize("n", [1, 3, 1001, 5000])   # by tables and by the circuit, odd lane counts
def test_less_than_zero_on_32_bits_is_exact_inside_its_bound(session, n):
    """With |x| < bound known, the sign runs on x mod 2^32, two values to a word."""
    bound = 2.0**31 / 2**16 - 1e-3                                    # the largest bound 32 bits allow
    x = rng.uniform(-bound, bound, n)
    if n >= 4:
        x[:4] = [0.0, -(2**-16), bound, -bound]
    assert F.comparison_width(16, bound) == 32 and F.comparison_width(16, 2 * bound) == 64
    got = evaluate(session, partial(F.less_than_zero, bound=bound), x)
    assert np.array_equal(got, encoded(x) < 0)


# chunk boundaries of the comparison by tables on top of test_mpc_fss's: x + r with equal high chunks and
# the low chunk at 0, 255 or 256 (carries across a chunk), masks with chunks of 0x00, 0x7f, 0x80, 0xff
CHUNK_VALUES = [255, -255, 256, -256, 2**16 - 1, -(2**16) + 1, 2**24, -(2**24), 2**24 - 1]
CHUNK_MASKS = [0xFF, 0x100, 0x00FF00FF, 0x7F000000, 0x80FFFFFF, 0x7FFFFF00]


def _bitwise_sign_program(srv, width, material):
    """Both servers: msb_bits of the received ring integers with the given bitwise material."""
    x = srv.receive()
    return protocols.msb_bits(srv, x.share, type("Given", (), {"get": lambda _: material})(), width)


# 16 bits (the coarse sign's): values up to 2^15 - 1 in magnitude, masks of 16 bits
BOUNDARIES_16 = [0, 1, -1, 2, -2, 2**14, -(2**14), 2**15 - 1, -(2**15), -(2**15) + 1, 2**15 - 2, 255, -255, 256, -256]
MASKS_16 = [0, 1, 2**15 - 1, 2**15, 2**15 + 1, 2**16 - 1, 0xFF, 0x100, 0x7F00, 0x80FF]


@pytest.mark.parametrize("method", ["tables", "circuit"])
@pytest.mark.parametrize("width", [64, 32, 16])
def test_bitwise_sign_is_exact_on_every_boundary_value_and_mask(method, width):
    """Both bitwise methods (by tables, by the radix-2 circuit), every boundary value against every
    boundary mask: x + r wraps, lands on 0, on 2^(w-1) and next to it, and on chunk boundaries."""
    from test_mpc_fss import BOUNDARIES_32, BOUNDARIES_64, MASKS_32, MASKS_64
    from ppfr.mpc import LocalSession, material as M
    from ppfr.mpc.prg import SecureRandom
    values = {64: BOUNDARIES_64 + CHUNK_VALUES, 32: BOUNDARIES_32 + CHUNK_VALUES, 16: BOUNDARIES_16}[width]
    masks = {64: MASKS_64 + CHUNK_MASKS, 32: MASKS_32 + CHUNK_MASKS, 16: MASKS_16}[width]
    x = np.repeat(np.array(values, dtype=np.int64), len(masks))
    r = np.tile(np.array(masks, dtype=np.uint64), len(values))
    request = (M.TableComparisonRequest(x.size, width) if method == "tables"
               else M.ComparisonRequest(x.size, protocols.RADICES[width], width))
    material = [M.MATERIAL_OF[type(request)](m) for m in request.draw_for_masks(SecureRandom(), r)]
    with LocalSession() as s:
        job = s.run(_bitwise_sign_program, width, per_server=((material[0],), (material[1],)))
        s.client.share(x, frac=0)
        b0, b1 = job.result()
    assert np.array_equal((b0 ^ b1) & np.uint64(1), (x < 0).astype(np.uint64))


def _coarse_sign_program(srv, shift):
    x = srv.receive()
    return protocols.coarse_msb_bits(srv, x.share, shift)


@pytest.mark.parametrize("shift", [15, 0, 8, 17, 23, 40])
def test_a_coarse_sign_errs_only_just_above_zero(session, shift):
    """coarse_msb_bits is [x < 0] for every |x| < 2^(shift + 15) - 2^shift but on [0, 2^shift), where it
    may say 1 (the low halves' carry, which depends on the shares): values at the range's ends, next to 0
    and to 2^shift, and random ones, many times over (fresh shares each time)."""
    limit = 2 ** (shift + 15) - 2 ** shift
    edges = [0, 1, -1, 2**shift - 1, 2**shift, 2**shift + 1, -(2**shift), limit - 1, -(limit - 1), 2**(shift + 14)]
    x = np.concatenate([np.repeat(np.array(edges, dtype=np.int64), 300),
                        rng.integers(-(limit - 1), limit, 20_000)])
    job = session.run(_coarse_sign_program, shift)
    session.client.share(x, frac=0)
    b0, b1 = job.result()
    bits = (b0 ^ b1) & np.uint64(1)
    zone = (x >= 0) & (x < 2**shift)
    assert np.array_equal(bits[~zone], (x[~zone] < 0).astype(np.uint64))
    if shift:  # the zone's answers follow the shares' carry: both occur
        assert 0 < bits[zone].sum() < zone.sum()


def test_a_32_bit_comparison_opens_half_the_bytes(session, request):
    if request.node.callspec.params["session"][1] != "bitwise":
        pytest.skip("counts the bytes of the bitwise circuit (FSS: tests/test_mpc_fss.py)")
    cost = {}
    for width in (32, 64):
        job = session.run(bytes_of_a_comparison, width)
        session.client.share(np.ones(10_000))
        cost[width] = job.result()[0]
    # c (8 or 4 bytes a value), then six or five radix-2 levels on words of one or two values: the first
    # opens nothing (its masks are r's bits), each later one opens p and g (two masked words a word), from
    # which its variables P1, P0, G0 derive (correlated masks)
    assert cost[64] == 10_000 * 8 + 5 * 2 * 10_000 * 8
    assert cost[32] == 10_000 * 4 + 4 * 2 * 5_000 * 8


@pytest.mark.parametrize("shape, axis", [((6, 158), -1), ((5, 7), 0), ((1, 1), 1), ((3, 2, 9), 1)])
@pytest.mark.parametrize("bound", [None, 30.0])
def test_max_argmax_argmin(session, shape, axis, bound):
    x = rng.uniform(-30, 30, shape)
    e = encoded(x)
    assert np.array_equal(evaluate(session, partial(F.max_along, axis=axis, bound=bound), x), e.max(axis=axis))
    got_i = evaluate(session, partial(argmax_index, axis=axis, bound=bound), x)
    assert np.array_equal(got_i, e.argmax(axis=axis))
    got_v = evaluate(session, partial(argmin_value, axis=axis, bound=bound), x)
    got_i = evaluate(session, partial(argmin_index, axis=axis, bound=bound), x)
    assert np.array_equal(got_v, e.min(axis=axis))
    assert np.array_equal(got_i, e.argmin(axis=axis))


@pytest.mark.parametrize("n", [5, 6, 7, 8, 40, 158])
def test_tournament_groups_of_five_to_eight_break_ties_to_the_first_position(session, n):
    """Bitwise tournaments play small levels in groups of up to eight (functions.circuit_levels: 158 as 4,
    5 then 8); with values from {-1, 0, 1} nearly every group has ties, which go to the first best
    member, as numpy's argmax and argmin do."""
    x = rng.integers(-1, 2, size=(12, n)).astype(np.float64)
    x[0] = 1.0                                                   # all equal
    x[1, -1] = 7.0                                               # the best member last
    e = encoded(x)
    assert np.array_equal(evaluate(session, partial(argmax_index, axis=-1, bound=8.0), x), e.argmax(axis=-1))
    assert np.array_equal(evaluate(session, partial(argmin_index, axis=-1, bound=None), x), e.argmin(axis=-1))
    assert np.array_equal(evaluate(session, partial(argmin_value, axis=-1, bound=None), x), e.min(axis=-1))


def test_winner_literals_of_a_group_pick_the_first_best_member():
    """circuit_group(k)'s w_i, read on every outcome of k values drawn from {0, 1, 2} (ties included), is
    one-hot at numpy's argmax."""
    for k in range(2, F.CIRCUIT_MAX_GROUP + 1):
        group = F.circuit_group(k)
        for values in itertools.islice(itertools.product(range(3), repeat=k), 0, None, 7):
            v = np.array(values)
            loses = [v[i] < v[j] for i, j in group["pairs"]]           # m_ij = [v_i loses to v_j]
            wins = [all(loses[lit] if lit >= 0 else not loses[-lit - 1] for lit in w) for w in group["winner"]]
            assert wins == [i == v.argmax() for i in range(k)], (k, values)


@pytest.mark.parametrize("lo, hi", [F.EXP_RANGE, (-16.0, 0.0), (-32.0, 0.0), (-1.0, 1.0)])
def test_exp_within_bounds_over_its_range(session, lo, hi):
    """The whole range (7 squarings), and narrower ones that take fewer (5 on [-16, 0], as the softmax's
    clamp leaves it for rows of LFW's 158 classes)."""
    x = np.concatenate([rng.uniform(lo, hi, 20000), np.linspace(lo, hi, 2001), [0.0, -1e-5, min(1e-5, hi)]])
    got = evaluate(session, partial(F.exp, lower=lo, upper=hi), x)
    want = np.exp(x)
    tolerance = np.maximum(1e-3 * want, 1e-4)
    assert np.all(np.abs(got - want) <= tolerance), np.max(np.abs(got - want) / tolerance)


def test_reciprocal_relative_error_over_its_range(session):
    lo, hi = F.RECIPROCAL_RANGE
    x = np.concatenate([np.exp(rng.uniform(np.log(lo), np.log(hi), 20000)), [lo, hi, 1.0, 2.0, 0.5, 3.0]])
    got = evaluate(session, F.reciprocal, x)
    rel = np.abs(got * encoded(x) - 1)
    assert np.max(rel) <= 1e-3, np.max(rel)


def test_reciprocal_on_a_custom_range(session):
    x = rng.uniform(1, 200, 5000)
    got = evaluate(session, partial(F.reciprocal, lower=1, upper=200), x)
    assert np.max(np.abs(got - 1 / encoded(x))) <= 1e-3 / 200 + 2**-16  # 1e-3 relative, or the output's ulp


@pytest.mark.parametrize("lower, upper, octaves", [(1e-3, 1e3, 2.0), (1e-3, 1e3, 3.0), (1.0, 2.0**15, 1.0)])
def test_reciprocal_on_wide_ranges(session, lower, upper, octaves):
    """Wide ranges, where the bitwise line per band would round its coefficients too coarsely (its bound
    on |1 - x y0| past the band centres', even past 1): the band centres serve, within 1e-3 relative or
    the output's ulp."""
    x = np.exp(rng.uniform(np.log(lower), np.log(upper), 3000))
    got = evaluate(session, partial(F.reciprocal, lower=lower, upper=upper, octaves_per_comparison=octaves), x)
    want = 1 / encoded(x)
    assert np.all(np.abs(got - want) <= 1e-3 * want + 2**-16)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_on_rows_of_158_logits_anywhere_in_minus30_30(session):
    uniform = rng.uniform(-30, 30, (32, 158))
    # rows that span 25 units at offsets from one end of the range to the other, as a trained classifier's do
    offsets = np.linspace(-30, 5, 32)[:, None]
    spans = offsets + rng.uniform(0, 25, (32, 158))
    peaked = rng.uniform(-30, 30, (16, 158))
    peaked[np.arange(16), rng.integers(0, 158, 16)] = 30.0  # one clear winner
    flat = np.full((4, 158), -30.0)
    x = np.concatenate([uniform, spans, peaked, flat])
    got = evaluate(session, F.softmax, x)
    want = _softmax(x)
    assert np.max(np.abs(got - want)) <= 1e-3
    assert np.max(np.abs(got.sum(axis=1) - 1)) <= 1e-3


def test_softmax_along_axis_0_and_tiny_rows(session):
    x = rng.uniform(-30, 30, (10, 3))
    assert np.max(np.abs(evaluate(session, partial(F.softmax, axis=0), x) - _softmax(x, axis=0))) <= 1e-3
    x = rng.uniform(-30, 30, (5, 1))
    assert np.max(np.abs(evaluate(session, F.softmax, x) - 1)) <= 1e-3


def test_hide_offset_leaves_the_client_only_the_differences_along_the_axis(session):
    """What the client reconstructs is x plus one uniform offset per row: the differences within a row are
    exact, the offsets (which would give the absolute level of the logits) are uniform and fresh per row."""
    from mpc_util import chi_square_uniform_bytes

    x = np.tile(rng.uniform(-30, 30, (1, 158)), (4000, 1))   # one row of logits, asked 4,000 times
    job = session.run(reveal_hidden_offset, 1)
    session.client.share(x)
    raw, frac = session.client.reconstruct_raw()
    job.result()
    offsets = raw - (encoded(x) * 2**16).astype(np.int64).view(np.uint64)
    assert frac == 16 and np.all(offsets == offsets[:, :1])     # one offset per row
    stat, critical = chi_square_uniform_bytes(offsets[:, 0].tobytes())
    assert stat < critical and len(np.unique(offsets[:, 0])) == len(x)
    job = session.run(reveal_hidden_offset, 0)
    session.client.share(x[:3].T)
    got = session.client.reconstruct_differences(axis=0)
    job.result()
    assert np.array_equal(got, encoded(x[:3].T) - encoded(x[:3].T)[:1])


def test_softmax_is_safe_for_rows_spanning_far_more_than_64(session):
    """exp is only guaranteed down to -64; the default clamp makes any logits safe."""
    x = rng.uniform(-30, 30, (20, 158))
    x[:, :40] = rng.uniform(-900, -100, (20, 40))  # far below the row's maximum
    x[np.arange(20), rng.integers(40, 158, 20)] = 400.0  # and a winner far above
    got = evaluate(session, F.softmax, x)
    assert np.max(np.abs(got - _softmax(x))) <= 1e-3


def test_the_clamp_moves_the_softmax_by_under_its_bound(session):
    """Rows whose other 157 logits sit just below the clamp (-16 from the maximum for rows of 158), at it
    and just above it, and within the half unit above it where the clamp's coarse sign may raise them
    too: where the clamp moves the sum most, the probabilities stay within 1e-4 (the sum moves by under
    CLAMP_SUM_ERROR of itself)."""
    assert F.clamp_below(158) == -16.0 and F.clamp_below(1000) == -32.0
    rows = []
    for gap in (16.0001, 16.0, 15.999, 15.75, 15.5001, 15.4999, 20.0, 17.0):
        row = np.full(158, -gap)
        row[rng.integers(158)] = 0.0
        rows.append(row + rng.uniform(-5, 5))
    x = np.array(rows)
    got = evaluate(session, F.softmax, x)
    assert np.max(np.abs(got - _softmax(x))) <= 1e-4


THRESHOLDS = (0.3, 0.6, 0.9, 0.99)
LOW_THRESHOLDS = (0.01, 0.05, 0.5)  # 1/t up to 100: over 64, the untruncated squares' fixed-point range


def labels_and_bands(t, thresholds=THRESHOLDS):
    label, band = F.confident_argmax(t, thresholds)
    return stack([label, band], axis=-1)


@pytest.mark.parametrize("thresholds", [THRESHOLDS, LOW_THRESHOLDS])
@pytest.mark.parametrize("rows_per_call", [12, 48])
def test_confident_argmax_equals_float64_away_from_the_thresholds(session, rows_per_call, thresholds):
    """Label and band of rows whose top probability ranges over all bands (by the rows' spread), some with
    logits far below the maximum (the clamp, or the tables' comparison): those of float64 wherever the top
    probability is not within 1e-4 relative of a threshold (exp's error; 3e-5 by tables, which FSS
    sessions use for a dozen faces a call; 48 are over the tables' 2,048 values: the polynomial). Low
    thresholds (a band from 1 %) too, which the bitwise label once refused with a RangeError."""
    from ppfr.models.reference import label_and_band, softmax_rows

    draw = np.random.default_rng(1)  # its own draws: every band must occur whichever tests ran before
    x = draw.normal(size=(48, 158)) * np.linspace(0.1, 12, 48)[:, None]
    x[:8, :30] = draw.uniform(-900, -100, (8, 30))
    x[8] = 0.0  # a flat row: the top probability 1/158, under the lowest threshold
    x = np.clip(x, -8000, 8000)
    got = np.concatenate([evaluate(session, partial(labels_and_bands, thresholds=thresholds), x[i:i + rows_per_call])
                          for i in range(0, len(x), rows_per_call)])
    p = softmax_rows(encoded(x))
    label, band = label_and_band(p, thresholds)
    near = np.any(np.abs(p.max(axis=1, keepdims=True) / np.array(thresholds) - 1) < 1e-4, axis=1)
    assert len(set(band[~near])) == len(thresholds) + 1  # every band is tested
    assert np.array_equal(got[~near, 0], label[~near]) and np.array_equal(got[~near, 1], band[~near])
