"""Linear operations, products and truncation of the MPC engine against numpy float64."""
import numpy as np
import pytest

from mpc_util import encoded, evaluate
from ppfr.mpc import FixedPoint, LocalSession, RangeError, SessionMismatch, concatenate, stack
from ppfr.mpc import protocols

ULP = 2.0**-16
rng = np.random.default_rng(20261122)


@pytest.fixture(scope="module")
def session():
    with LocalSession() as s:
        yield s


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
    for program, want in [(lambda x, y: x + y, ea + eb), (lambda x, y: x - y, ea - eb), (lambda x, y: -x + 0 * y, -ea + 0 * eb)]:
        got = evaluate(session, program, a, b)
        assert got.shape == want.shape
        assert np.array_equal(got, want)  # local operations are exact


def test_public_operands(session):
    a = rng.uniform(-100, 100, (6, 4))
    pub = rng.uniform(-3, 3, (4,))
    got = evaluate(session, lambda x: (x + pub) - 2.5 + (7 - x) * 3, a)
    assert np.allclose(got, (encoded(a) + encoded(pub)) - 2.5 + (7 - encoded(a)) * 3, atol=2 * ULP)
    got = evaluate(session, lambda x: x * pub, a)  # public float: one truncation
    assert np.max(np.abs(got - encoded(a) * encoded(pub))) < ULP
    got = evaluate(session, lambda x: x * np.array([2, -3, 0, 1]), a)  # public integers: exact
    assert np.array_equal(got, encoded(a) * np.array([2, -3, 0, 1]))
    got = evaluate(session, lambda x: x / 4.0, a)
    assert np.max(np.abs(got - encoded(a) / 4)) < ULP


def test_values_near_the_range_limits(session):
    big = np.array([2.0**32 - 1, -(2.0**32) + 1, 2.0**31])
    assert np.array_equal(evaluate(session, lambda x: x + 0, big), encoded(big))
    near = np.array([255.9, -255.9, 100.0])  # products up to 65,535 (the product limit is 2^16)
    got = evaluate(session, lambda x, y: x * y, near, near)
    assert np.max(np.abs(got - encoded(near) ** 2)) < ULP


def test_shape_operations(session):
    a = rng.normal(size=(3, 4, 5))
    e = encoded(a)
    assert np.allclose(evaluate(session, lambda x: x.sum(axis=1), a), e.sum(axis=1), atol=ULP)
    assert np.allclose(evaluate(session, lambda x: x.sum(), a), e.sum(), atol=ULP)
    assert np.array_equal(evaluate(session, lambda x: x.transpose(2, 0, 1), a), e.transpose(2, 0, 1))
    assert np.array_equal(evaluate(session, lambda x: x[1:, ::2, -1], a), e[1:, ::2, -1])
    assert np.array_equal(evaluate(session, lambda x: x.reshape(12, 5).T, a), e.reshape(12, 5).T)
    assert np.array_equal(evaluate(session, lambda x, y: concatenate([x, y], axis=2), a, a[:, :, :2]),
                          np.concatenate([e, e[:, :, :2]], axis=2))
    assert np.array_equal(evaluate(session, lambda x: stack([x[0], x[1]], axis=1), a), np.stack([e[0], e[1]], axis=1))


def test_storing_into_a_received_tensor(session):
    """A share handed over on the channel is read-only; storing into its tensor writes to a copy."""
    a, b = rng.normal(size=(3, 4)), rng.normal(size=4)

    def store(x, y):
        x[1] = y
        return x

    want = encoded(a)
    want[1] = encoded(b)
    assert np.array_equal(evaluate(session, store, a, b), want)


# -- products -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape_a, shape_b", [((50,), (50,)), ((4, 1), (1, 9)), ((2, 3, 4), (4,)), ((1,), (1,)), ((0,), (0,))])
def test_mul_shared(session, shape_a, shape_b):
    a, b = rng.uniform(-50, 50, shape_a), rng.uniform(-50, 50, shape_b)
    got = evaluate(session, lambda x, y: x * y, a, b)
    want = encoded(a) * encoded(b)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) < ULP)  # truncation error only: below one unit in the last place


def test_square(session):
    a = rng.uniform(-200, 200, (40, 3))
    got = evaluate(session, lambda x: x.square(), a)
    assert np.all(np.abs(got - encoded(a) ** 2) < ULP)


@pytest.mark.parametrize("m, k, c", [(64, 128, 158), (1, 1, 1), (5, 128, 1), (3, 0, 2)])
def test_matmul(session, m, k, c):
    a, b = rng.normal(size=(m, k)), rng.normal(size=(k, c))
    got = evaluate(session, lambda x, y: x @ y, a, b)
    assert got.shape == (m, c)
    assert np.all(np.abs(got - encoded(a) @ encoded(b)) < ULP)
    pub = rng.normal(size=(c, 2))
    got = evaluate(session, lambda x, y: (x @ y) @ pub, a, b)
    assert np.max(np.abs(got - (encoded(a) @ encoded(b)) @ encoded(pub))) < 1e-3


def test_integer_shares_need_no_truncation(session):
    bits = rng.integers(0, 2, 30)
    vals = rng.uniform(-9, 9, 30)
    got = evaluate(session, lambda b, v: b * v, bits, vals, fracs=[0, None])
    assert np.array_equal(got, bits * encoded(vals))


# -- errors --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("program", [lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x @ y])
def test_shapes_that_do_not_broadcast(program):
    with LocalSession() as session:  # a failed program ends its session: the parties stop waiting
        job = session.run(lambda srv: program(srv.receive(), srv.receive()))
        session.client.share(np.ones((3, 4)))
        session.client.share(np.ones((5, 2)))
        with pytest.raises(ValueError, match="do not (broadcast|match)"):
            job.result()


def test_tensors_of_different_sessions_do_not_mix():
    with LocalSession() as s1, LocalSession() as s2:
        held = {}
        job = s2.run(lambda srv: held.setdefault(srv.index, srv.receive()))
        s2.client.share(np.ones(3))
        job.result()
        job = s1.run(lambda srv: srv.receive() + held[srv.index])
        s1.client.share(np.ones(3))
        with pytest.raises(SessionMismatch, match="session"):
            job.result()


def test_share_from_another_session_is_refused():
    with LocalSession() as s1, LocalSession() as s2:
        s1.client.session_id = s2.session_id  # a client of another session
        job = s1.run(lambda srv: srv.receive())
        s1.client.share(np.ones(2))
        with pytest.raises(SessionMismatch, match="received a share of session"):
            job.result()


# -- truncation ------------------------------------------------------------------------------------------------
def test_ten_million_truncations_are_within_one_ulp(session):
    """Every |x| < 2^48 (the documented bound) truncated by 16 bits lands within 1 ulp of x / 2^16."""
    n, bits = 10_000_000, 16
    raw = rng.integers(-(2**48) + 1, 2**48, n, dtype=np.int64)
    raw[:6] = [2**48 - 1, -(2**48) + 1, 0, -1, 1, -(2**16)]  # the edges and the signs
    got = evaluate(session, lambda x: x._new(protocols.truncate(x.server, [x.share], [bits])[0], 0), raw, fracs=[0])
    err = got.astype(np.float64) - raw.astype(np.float64) / 2**bits
    assert np.max(np.abs(err)) < 1.0
    # stochastic rounding is unbiased: the mean error is ~0, not -0.5 as with flooring
    assert abs(float(np.mean(err))) < 1e-3


def test_reused_operand_products_match_and_cost_only_the_query(session):
    """x @ W with W masked once: exact products, and after the pool is opened a query of m rows costs m*d."""
    from ppfr.mpc.reuse import MaskedOperand

    w = rng.normal(size=(128, 158)) * 0.3
    queries = [rng.normal(size=(m, 128)) for m in (1, 3, 1, 5)]
    costs = []

    def program(srv):
        weights = srv.receive()
        operand = MaskedOperand(weights, pool_rows=6)
        outs = []
        for _ in queries:
            x = srv.receive()
            before = srv.channel.stats.copy()
            outs.append(operand.matmul(x))
            if srv.index == 0:
                costs.append(srv.channel.stats - before)
        for out in outs:
            srv.reveal_to(out)

    job = session.run(program)
    session.client.share(w)
    for q in queries:
        session.client.share(q)
    results = [session.client.reconstruct() for _ in queries]
    job.result()
    for q, got in zip(queries, results):
        assert np.all(np.abs(got - encoded(q) @ encoded(w)) < ULP)
    # the first query opens the pool (W - B: 128 x 158), the third fits the pool, the fourth needs a new one;
    # each also truncates its m x 158 result (a rare retry re-sends a few of those elements)
    expected = [128 * 158 + 1 * 128, 3 * 128, 1 * 128, 128 * 158 + 5 * 128]
    for cost, m, opened in zip(costs, (1, 3, 1, 5), expected):
        assert 8 * (opened + m * 158) <= cost.bytes_sent <= 8 * (opened + m * 158 + 16)


def _masked_product_program(broken):
    """x*y through masked values: masks from the dealer, each operand opened once, the product local;
    positions listed in `broken` are treated as if a truncation had redone them (public part garbage),
    which the product must repair with a Beaver round."""

    def program(x, y):
        srv = x.server
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
        srv.state["product_rounds"] = srv.channel.stats.rounds - before
        return x._new(z.reshape(x.shape), 0)

    return program


@pytest.mark.parametrize("broken", [np.array([], dtype=np.int64), np.array([0, 7, 399])])
def test_masked_products_are_exact_and_repair_redone_positions(session, broken):
    rng = np.random.default_rng(3)
    x, y = rng.integers(-2**30, 2**30, 400), rng.integers(-2**30, 2**30, 400)
    got = evaluate(session, _masked_product_program(broken), x, y, fracs=[0, 0])
    np.testing.assert_array_equal(got, x * y)
    # local where every operand is masked; one Beaver round for the redone positions
    assert session.servers[0].state.pop("product_rounds") == (1 if broken.size else 0)


def test_truncation_keeps_its_result_masked(session):
    """What a truncation opens shows its result up to the dealer's mask: shares sum to public + mask."""
    x = np.random.default_rng(4).uniform(-1000, 1000, 5000)

    def program(srv):
        t = srv.receive()
        material = srv.provider.masked_chain(t.size, (("trunc", "t", 8),)).get().trunc("t")
        (m,) = protocols.truncate_masked(srv, [t.share], [8], [material])
        srv.reveal_to(t._new(m.share, 8))
        srv.reveal_to(t._new(m.mask, 0))
        srv.state["seen"] = (m.public, m.broken)

    job = session.run(program)
    session.client.share(x)
    (truncated, _), (mask, _) = session.client.reconstruct_raw(), session.client.reconstruct_raw()
    job.result()
    public, broken = session.servers[0].state.pop("seen")
    kept = np.setdiff1d(np.arange(x.size), broken)
    assert kept.size >= x.size - 2
    assert np.array_equal(truncated[kept], public[kept] + mask[kept])
    # and the truncation itself: 16 fractional bits down to 8, within one unit of the last place
    assert np.max(np.abs(truncated.view(np.int64) / 2**8 - encoded(x))) <= 2**-8
