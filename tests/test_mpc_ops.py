"""Linear operations, products and truncation of the MPC engine against numpy float64, on every session
kind (the `session` fixture of conftest.py). Programs are module-level functions, so that they pickle
for parties in processes."""
import operator
from functools import partial

import numpy as np
import pytest

from mpc_util import encoded, evaluate
from ppfr.mpc import FixedPoint, LocalSession, RangeError, SessionMismatch, concatenate, stack
from ppfr.mpc import protocols
from ppfr.mpc.fixedpoint import COLUMN_CHUNK, INNER_CHUNK, ring_matmul

ULP = 2.0**-16
rng = np.random.default_rng(20261122)


# -- programs: what both servers run on their shares -------------------------------------------------------
def neg_plus_zero(x, y):
    return -x + 0 * y


def public_mix(x, pub):
    return (x + pub) - 2.5 + (7 - x) * 3


def times(x, other):
    return x * other


def divided_by_4(x):
    return x / 4.0


def plus_zero(x):
    return x + 0


def sum_axis_1(x):
    return x.sum(axis=1)


def sum_all(x):
    return x.sum()


def transpose_201(x):
    return x.transpose(2, 0, 1)


def slice_3d(x):
    return x[1:, ::2, -1]


def reshape_transpose(x):
    return x.reshape(12, 5).T


def concatenate_axis_2(x, y):
    return concatenate([x, y], axis=2)


def stack_first_two(x):
    return stack([x[0], x[1]], axis=1)


def store_row(x, y):
    x[1] = y
    return x


def square(x):
    return x.square()


def matmul_then_public(x, y, pub):
    return (x @ y) @ pub


def truncate_16(x):
    return x._new(protocols.truncate(x.server, [x.share], [16])[0], 0)


def apply_to_received(srv, program):
    return program(srv.receive(), srv.receive())


def keep_received(srv):
    srv.state["held"] = srv.receive()


def add_held(srv, held):
    return srv.receive() + held[srv.index]


def receive(srv):
    return srv.receive()


# -- encoding ------------------------------------------------------------------------------------------
def test_encode_decode_round_trip_and_limits():
    fp = FixedPoint()
    x = np.array([0.0, -1.5, 3.25, -(2.0**31), 2.0**31, 1e-5])
    assert np.all(np.abs(fp.decode(fp.encode(x)) - x) <= ULP / 2)
    with pytest.raises(RangeError, match="NaN"):
        fp.encode([1.0, np.nan])
    with pytest.raises(RangeError, match="NaN or infinity"):
        fp.encode([np.inf])
    with pytest.raises(RangeError, match=r"2\^32"):
        fp.encode([2.0**32])


def test_client_refuses_bad_values(session):
    with pytest.raises(RangeError, match="outside the fixed-point range"):
        session.client.share(np.array([1.0, -5e9]))
    with pytest.raises(RangeError):
        session.client.share(np.array([np.nan]))


# -- local operations ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape_a, shape_b", [((4, 5), (4, 5)), ((3, 1), (1, 6)), ((7,), (2, 7)), ((0, 3), (0, 3)), ((1,), (1,))])
def test_add_sub_neg_shared(session, shape_a, shape_b):
    a, b = rng.uniform(-1e4, 1e4, shape_a), rng.uniform(-1e4, 1e4, shape_b)
    ea, eb = encoded(a), encoded(b)
    for program, want in [(operator.add, ea + eb), (operator.sub, ea - eb), (neg_plus_zero, -ea + 0 * eb)]:
        got = evaluate(session, program, a, b)
        assert got.shape == want.shape
        assert np.array_equal(got, want)  # local operations are exact


def test_public_operands(session):
    a = rng.uniform(-100, 100, (6, 4))
    pub = rng.uniform(-3, 3, (4,))
    got = evaluate(session, partial(public_mix, pub=pub), a)
    assert np.allclose(got, (encoded(a) + encoded(pub)) - 2.5 + (7 - encoded(a)) * 3, atol=2 * ULP)
    got = evaluate(session, partial(times, other=pub), a)  # public float: one truncation
    assert np.max(np.abs(got - encoded(a) * encoded(pub))) < ULP
    got = evaluate(session, partial(times, other=np.array([2, -3, 0, 1])), a)  # public integers: exact
    assert np.array_equal(got, encoded(a) * np.array([2, -3, 0, 1]))
    got = evaluate(session, divided_by_4, a)
    assert np.max(np.abs(got - encoded(a) / 4)) < ULP


def test_values_near_the_range_limits(session):
    big = np.array([2.0**32 - 1, -(2.0**32) + 1, 2.0**31])
    assert np.array_equal(evaluate(session, plus_zero, big), encoded(big))
    near = np.array([255.9, -255.9, 100.0])  # products up to 65,535 (the product limit is 2^16)
    got = evaluate(session, operator.mul, near, near)
    assert np.max(np.abs(got - encoded(near) ** 2)) < ULP


def test_shape_operations(session):
    a = rng.normal(size=(3, 4, 5))
    e = encoded(a)
    assert np.allclose(evaluate(session, sum_axis_1, a), e.sum(axis=1), atol=ULP)
    assert np.allclose(evaluate(session, sum_all, a), e.sum(), atol=ULP)
    assert np.array_equal(evaluate(session, transpose_201, a), e.transpose(2, 0, 1))
    assert np.array_equal(evaluate(session, slice_3d, a), e[1:, ::2, -1])
    assert np.array_equal(evaluate(session, reshape_transpose, a), e.reshape(12, 5).T)
    assert np.array_equal(evaluate(session, concatenate_axis_2, a, a[:, :, :2]),
                          np.concatenate([e, e[:, :, :2]], axis=2))
    assert np.array_equal(evaluate(session, stack_first_two, a), np.stack([e[0], e[1]], axis=1))


def test_storing_into_a_received_tensor(session):
    """A share handed over on the channel is read-only; storing into its tensor writes to a copy."""
    a, b = rng.normal(size=(3, 4)), rng.normal(size=4)
    want = encoded(a)
    want[1] = encoded(b)
    assert np.array_equal(evaluate(session, store_row, a, b), want)


# -- products -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape_a, shape_b", [((50,), (50,)), ((4, 1), (1, 9)), ((2, 3, 4), (4,)), ((1,), (1,)), ((0,), (0,))])
def test_mul_shared(session, shape_a, shape_b):
    a, b = rng.uniform(-50, 50, shape_a), rng.uniform(-50, 50, shape_b)
    got = evaluate(session, operator.mul, a, b)
    want = encoded(a) * encoded(b)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) < ULP)  # truncation error only: below one unit in the last place


def test_square(session):
    a = rng.uniform(-200, 200, (40, 3))
    got = evaluate(session, square, a)
    assert np.all(np.abs(got - encoded(a) ** 2) < ULP)


@pytest.mark.parametrize("m, k, c", [(64, 128, 158), (1, 1, 1), (5, 128, 1), (3, 0, 2)])
def test_matmul(session, m, k, c):
    a, b = rng.normal(size=(m, k)), rng.normal(size=(k, c))
    got = evaluate(session, operator.matmul, a, b)
    assert got.shape == (m, c)
    assert np.all(np.abs(got - encoded(a) @ encoded(b)) < ULP)
    pub = rng.normal(size=(c, 2))
    got = evaluate(session, partial(matmul_then_public, pub=pub), a, b)
    assert np.max(np.abs(got - (encoded(a) @ encoded(b)) @ encoded(pub))) < 1e-3


EDGE_VALUES = np.array([0, 1, 2**22 - 1, 2**22, 2**44 - 1, 2**44, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64)


@pytest.mark.parametrize("m, d, n", [(64, 128, 158), (128, 64, 158), (64, INNER_CHUNK, 64),
                                     (64, 2 * INNER_CHUNK + 1, 64), (20, 64, COLUMN_CHUNK + 3), (1, 128, 158)])
def test_ring_matmul_is_numpys_uint64_matmul_bit_for_bit(m, d, n):
    """Through float64 limbs, every product modulo 2^64 is exact: random full-range operands, operands
    near 2^64 - 1 (every limb near its largest: the float sums near 2^53, at the longest inner chunk and
    across chunks; with chunks too long they round), edge values everywhere, transposed operands."""
    gen = np.random.default_rng([m, d, n])
    full = lambda *shape: gen.integers(0, 2**64, shape, dtype=np.uint64, endpoint=False)  # noqa: E731
    near_max = lambda *shape: ~gen.integers(0, 2**20, shape, dtype=np.uint64)  # noqa: E731
    cases = [(full(m, d), full(d, n)), (near_max(m, d), near_max(d, n)),
             (gen.choice(EDGE_VALUES, (m, d)), gen.choice(EDGE_VALUES, (d, n))),
             (full(d, m).T, full(n, d).T)]
    for a, b in cases:
        got = ring_matmul(a, b)
        assert got.dtype == np.uint64 and np.array_equal(got, a @ b)


def test_integer_shares_need_no_truncation(session):
    bits = rng.integers(0, 2, 30)
    vals = rng.uniform(-9, 9, 30)
    got = evaluate(session, operator.mul, bits, vals, fracs=[0, None])
    assert np.array_equal(got, bits * encoded(vals))


# -- errors --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("program", [operator.add, operator.mul, operator.matmul])
def test_shapes_that_do_not_broadcast(new_session, program):
    session = new_session()  # a failed program ends its session: the parties stop waiting
    job = session.run(apply_to_received, program)
    session.client.share(np.ones((3, 4)))
    session.client.share(np.ones((5, 2)))
    with pytest.raises(ValueError, match="do not (broadcast|match)"):
        job.result()


def test_tensors_of_different_sessions_do_not_mix():
    """Threads only: a tensor object can be carried from one session's server to another's only where
    both live in one process (a server process never holds another session's tensors)."""
    with LocalSession() as s1, LocalSession() as s2:
        job = s2.run(keep_received)
        s2.client.share(np.ones(3))
        job.result()
        job = s1.run(add_held, [srv.state["held"] for srv in s2.servers])
        s1.client.share(np.ones(3))
        with pytest.raises(SessionMismatch, match="session"):
            job.result()


def test_share_from_another_session_is_refused(new_session):
    s1, s2 = new_session(), new_session()
    s1.client.session_id = s2.session_id  # a client of another session
    job = s1.run(receive)
    s1.client.share(np.ones(2))
    with pytest.raises(SessionMismatch, match="received a share of session"):
        job.result()


# -- truncation ------------------------------------------------------------------------------------------------
def test_ten_million_truncations_are_within_one_ulp(session):
    """Every |x| < 2^48 (the documented bound) truncated by 16 bits lands within 1 ulp of x / 2^16."""
    n, bits = 10_000_000, 16
    raw = rng.integers(-(2**48) + 1, 2**48, n, dtype=np.int64)
    raw[:6] = [2**48 - 1, -(2**48) + 1, 0, -1, 1, -(2**16)]  # the edges and the signs
    got = evaluate(session, truncate_16, raw, fracs=[0])
    err = got.astype(np.float64) - raw.astype(np.float64) / 2**bits
    assert np.max(np.abs(err)) < 1.0
    # stochastic rounding is unbiased: the mean error is ~0, not -0.5 as with flooring
    assert abs(float(np.mean(err))) < 1e-3


def reused_operand_products(srv, queries: int):
    """W once, then `queries` tensors x, each multiplied by W through one MaskedOperand; reveals every
    product and returns the bytes each product cost."""
    from ppfr.mpc.reuse import MaskedOperand

    operand = MaskedOperand(srv.receive(), pool_rows=6)
    outs, costs = [], []
    for _ in range(queries):
        x = srv.receive()
        before = srv.channel.stats.bytes_sent
        outs.append(operand.matmul(x))
        costs.append(srv.channel.stats.bytes_sent - before)
    for out in outs:
        srv.reveal_to(out)
    return costs


def test_reused_operand_products_match_and_cost_only_the_query(session):
    """x @ W with W masked once: exact products, and after the pool is opened a query of m rows costs m*d."""
    w = rng.normal(size=(128, 158)) * 0.3
    queries = [rng.normal(size=(m, 128)) for m in (1, 3, 1, 5)]
    job = session.run(reused_operand_products, len(queries))
    session.client.share(w)
    for q in queries:
        session.client.share(q)
    results = [session.client.reconstruct() for _ in queries]
    costs, _ = job.result()
    for q, got in zip(queries, results):
        assert np.all(np.abs(got - encoded(q) @ encoded(w)) < ULP)
    # the first query opens the pool (W - B: 128 x 158), the third fits the pool, the fourth needs a new one;
    # each also truncates its m x 158 result (a rare retry re-sends a few of those elements)
    expected = [128 * 158 + 1 * 128, 3 * 128, 1 * 128, 128 * 158 + 5 * 128]
    for cost, m, opened in zip(costs, (1, 3, 1, 5), expected):
        assert 8 * (opened + m * 158) <= cost <= 8 * (opened + m * 158 + 16)


def update_then_next_product(srv):
    """W, an update u of W at 24 more fractional bits, the next x, a y: U = u / 2^24 truncated together
    with the opening of the next product's masks, then x @ (W - U) and x^T @ y from them. Reveals U and
    both products; returns (rounds of the truncation, of x @ W', of x^T @ y)."""
    w, u, x, y = srv.receive(), srv.receive(), srv.receive(), srv.receive()
    material = srv.provider.update_then_product(u.size, 24, x.shape, w.shape)
    before = srv.channel.stats.rounds
    cut, prepared = protocols.truncate_with_next_product(srv, u.share.ravel(), 24, w.share, x.share, material)
    middle = srv.channel.stats.rounds
    updated = w.share - cut.reshape(w.shape)
    z = protocols.next_matmul(srv, prepared, updated)
    after = srv.channel.stats.rounds
    g = protocols.next_transposed_matmul(srv, prepared, y.share)
    rounds = (middle - before, after - middle, srv.channel.stats.rounds - after)
    srv.reveal_to(w._new(cut.reshape(w.shape)))
    srv.reveal_to(w._new(z, 32))
    srv.reveal_to(w._new(g, 32))
    return rounds


@pytest.mark.parametrize("bound_bits, redone", [(48, False), (60, True)])
def test_the_next_product_prepared_by_the_update_is_exact(bound_bits, redone):
    """The update's truncation opens the next product's masks in its own round; the product then costs
    no round, or one where the truncation was redone somewhere in W (bound 2^60: one value in 8 is, so
    among 96 some almost surely; 2^48: one in 2^15, so almost surely none); x^T @ y under x's mask, one."""
    w, x, y = rng.normal(size=(16, 6)), rng.normal(size=(5, 16)), rng.normal(size=(5, 6))
    u = rng.normal(size=(16, 6)) * 0.1
    with LocalSession(fixed=FixedPoint(bound_bits=bound_bits)) as session:
        job = session.run(update_then_next_product)
        session.client.share(w)
        session.client.share(u, frac=16 + 24)
        session.client.share(x)
        session.client.share(y)
        got_u, got_z, got_g = [session.client.reconstruct() for _ in range(3)]
        (rounds, _) = job.result()
    assert np.all(np.abs(got_u - encoded(u)) <= 2**-16)
    np.testing.assert_allclose(got_z, encoded(x) @ (encoded(w) - got_u), atol=1e-6)
    np.testing.assert_allclose(got_g, encoded(x).T @ encoded(y), atol=1e-6)
    assert rounds[0] >= 1 and rounds[1] == (1 if redone else 0) and rounds[2] == 1


def masked_product(srv, broken):
    """x*y through masked values: masks from the dealer, each operand opened once, the product local;
    positions listed in `broken` are treated as if a truncation had redone them (public part garbage),
    which the product must repair with a Beaver round. Reveals x*y; returns the product's rounds."""
    x, y = srv.receive(), srv.receive()
    # a chain that truncates (as every real one does) brings spare triples for its repairs
    steps = (("mask", "x"), ("mask", "y"), ("cross", "x", "y"), ("trunc", "unused", 8))
    m = srv.provider.masked_chain(x.size, steps).get()
    a, b, ab = m.mask("x"), m.mask("y"), m.cross("x", "y")
    mx, my = protocols.open_masked(srv, [x.share.ravel(), y.share.ravel()], [a, b])
    if broken.size:
        garbled = mx.public.copy()
        garbled[broken] += np.uint64(12345)
        mx = protocols.Masked(mx.share, garbled, mx.mask, broken)
    before = srv.channel.stats.rounds
    (z,) = protocols.masked_products(srv, [(mx, my)], [ab])
    rounds = srv.channel.stats.rounds - before
    srv.reveal_to(x._new(z.reshape(x.shape), 0))
    return rounds


@pytest.mark.parametrize("broken", [np.array([], dtype=np.int64), np.array([0, 7, 399])])
def test_masked_products_are_exact_and_repair_redone_positions(session, broken):
    rng = np.random.default_rng(3)
    x, y = rng.integers(-2**30, 2**30, 400), rng.integers(-2**30, 2**30, 400)
    job = session.run(masked_product, broken)
    session.client.share(x, frac=0)
    session.client.share(y, frac=0)
    got = session.client.reconstruct()
    rounds, _ = job.result()
    np.testing.assert_array_equal(got, x * y)
    # local where every operand is masked; one Beaver round for the redone positions
    assert rounds == (1 if broken.size else 0)


def masked_truncation(srv):
    """Truncate a received tensor by 8 bits with masked material; reveal the result's shares and its mask,
    return what the servers opened (the public part, the redone positions)."""
    t = srv.receive()
    material = srv.provider.masked_chain(t.size, (("trunc", "t", 8),)).get().trunc("t")
    (m,) = protocols.truncate_masked(srv, [t.share], [8], [material])
    srv.reveal_to(t._new(m.share, 8))
    srv.reveal_to(t._new(m.mask, 0))
    return m.public, m.broken


def test_truncation_keeps_its_result_masked(session):
    """What a truncation opens shows its result up to the dealer's mask: shares sum to public + mask."""
    x = np.random.default_rng(4).uniform(-1000, 1000, 5000)
    job = session.run(masked_truncation)
    session.client.share(x)
    (truncated, _), (mask, _) = session.client.reconstruct_raw(), session.client.reconstruct_raw()
    (public, broken), _ = job.result()
    kept = np.setdiff1d(np.arange(x.size), broken)
    assert kept.size >= x.size - 2
    assert np.array_equal(truncated[kept], public[kept] + mask[kept])
    # and the truncation itself: 16 fractional bits down to 8, within one unit of the last place
    assert np.max(np.abs(truncated.view(np.int64) / 2**8 - encoded(x))) <= 2**-8


_BLAS_THREADS = """
import sys, ctypes
if sys.argv[1] == "ppfr first":
    import ppfr  # noqa: F401
import numpy  # noqa: F401
path = next((line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()
             and line.split()[-1].endswith(".so")), None)
getters = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")
lib = ctypes.CDLL(path) if path else None
getter = next((getattr(lib, name) for name in getters if lib is not None and hasattr(lib, name)), None)
print(getter() if getter else "no openblas")
"""


def test_importing_ppfr_first_runs_numpys_blas_in_one_thread_unless_the_user_chose():
    """The parties call ring_matmul's small float products from several threads at once; BLAS threads on
    top oversubscribed the cores (training several times slower). ppfr, imported before numpy, keeps
    OpenBLAS to one thread, and leaves a user's own OPENBLAS_NUM_THREADS alone."""
    import os
    import subprocess
    import sys

    def threads(order, **env):
        base = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
        done = subprocess.run([sys.executable, "-c", _BLAS_THREADS, order], env={**base, **env},
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    if threads("numpy only") == "no openblas":
        pytest.skip("numpy is not built on OpenBLAS here")
    if int(threads("numpy only")) == 1 and (os.cpu_count() or 1) > 1:
        pytest.skip("OpenBLAS already runs one thread here without ppfr")
    assert threads("ppfr first") == "1"
    assert threads("ppfr first", OPENBLAS_NUM_THREADS="2") == "2"
