"""The dealer's draws: every correlation each kind of material promises holds on the servers' shares
together, and the products of mask subsets (circuits.product_plan) equal an AND over each subset."""
import numpy as np
import pytest

from mpc_util import chi_square_uniform_bytes
from ppfr.mpc import material as M
from ppfr.mpc.circuits import (PREFIX, RADICES, monomial_layout, pack_lanes, prefix_monomials, product_plan, table_chunks,
                               table_layout)
from ppfr.mpc.fixedpoint import ring_matmul
from ppfr.mpc.prg import SecureRandom

U64 = np.uint64
AND_MONOMIALS = ((-1, -2, -3), (0, -4, -5), (1, 3, -6), (2, 4, 5))  # the argmax's tournament of 4


def subset_products(masks: np.ndarray, layout) -> np.ndarray:
    return np.stack([np.bitwise_and.reduce(masks[list(t)], axis=0) for t in layout])


@pytest.mark.parametrize("layouts", [
    ((3, PREFIX[2]["monomials"]),),
    ((7, PREFIX[4]["monomials"]), (7, prefix_monomials(4, True))),
    ((6, AND_MONOMIALS), (3, ((0, 2),)), (7, PREFIX[4]["monomials"])),
])
def test_product_plan_is_the_and_of_each_subset(layouts):
    plan = product_plan(layouts)
    n = 5
    work = SecureRandom().uint64((plan.size, n))
    masks = work[:plan.variables].copy()
    plan.products(work)
    start = 0
    for (variables, monomials), order in zip(layouts, plan.order):
        layout = monomial_layout(variables, monomials)
        assert len(order) == len(layout)
        np.testing.assert_array_equal(work[order], subset_products(masks[start:start + variables], layout))
        start += variables
    assert plan.shapes(n) == [(len(o), n) for o in plan.order]
    assert plan.shapes(n, larger=True) == [(len(o) - v, n) for o, (v, _) in zip(plan.order, layouts)]


def both(request):
    return request.draw(SecureRandom())


def test_triples_and_squares():
    specs = (("mul", (4, 3), (4, 3)), ("matmul", (5, 6), (6, 2)), ("mul", (7,), (7,)))
    for (op, *_), t0, t1 in zip(specs, *both(M.TriplesRequest(specs))):
        a, b, c = (x + y for x, y in zip(t0, t1))
        np.testing.assert_array_equal(c, a * b if op == "mul" else ring_matmul(a, b))
        assert not np.array_equal(t0[0], a)
    for s0, s1 in zip(*both(M.SquaresRequest(((3, 2), (4,))))):
        a, aa = s0[0] + s1[0], s0[1] + s1[1]
        np.testing.assert_array_equal(aa, a * a)


@pytest.mark.parametrize("segments", [((6, 16),), ((3, 16), (4, 23), (0, 8))])
def test_truncation_pairs(segments):
    spares = M.spares_for(segments, 40)
    ((r0, h0), spare0), ((r1, h1), spare1) = both(M.TruncationRequest(segments, spares))
    shifts = np.repeat([s for _, s in segments], [n for n, _ in segments]).astype(U64)
    np.testing.assert_array_equal(h0 + h1, (r0 + r1) >> shifts)
    for (shift, count), p0, p1 in zip(spare0[0], spare0[1], spare1[1]):
        assert p0[0].shape == (count,)
        np.testing.assert_array_equal(p0[1] + p1[1], (p0[0] + p1[0]) >> U64(shift))


@pytest.mark.parametrize("width,radices", list(RADICES.items()))
@pytest.mark.parametrize("n", [1, 7, 40, 9000])
def test_comparison_material(width, radices, n):
    (ra0, rb0, masks0, levels0), (ra1, rb1, masks1, levels1) = both(M.ComparisonRequest(n, radices, width))
    r = ra0 + ra1
    assert r.shape == (n,) and (width == 64 or (r >> U64(width) == 0).all())
    np.testing.assert_array_equal(rb0 ^ rb1, pack_lanes(r, width))
    words = rb0.size
    # the masks of p and g: r's bits but each lane's msb on the first level, fresh and uniform later
    r_low = pack_lanes(r & U64(2 ** (width - 1) - 1), width)
    masks = masks0 ^ masks1
    assert masks.shape == (len(radices) - 1, 2, words) and len(levels0) == len(radices)
    if words >= 40:
        assert 0.4 < np.unpackbits(masks.view(np.uint8)).mean() < 0.6
    span = 1
    for level, (radix, m0, m1) in enumerate(zip(radices, levels0, levels1)):
        p, g = (r_low, r_low) if level == 0 else masks[level - 1]
        shifts = [span * k for k in range(radix - 1, -1, -1)]  # P_(radix-1) .. P_0, G_(radix-2) .. G_0
        variables = np.stack([p >> U64(s) for s in shifts] + [g >> U64(s) for s in shifts[1:]])
        layout = monomial_layout(len(variables), prefix_monomials(radix, level == len(radices) - 1))
        products = m0 ^ m1  # only the subsets beyond the variables: the servers shift the masks of p and g
        assert products.shape == (len(layout) - len(variables), words)
        np.testing.assert_array_equal(products, subset_products(variables, layout)[len(variables):])
        span *= radix


def test_comparison_material_only_for_the_circuits_radices():
    """The circuit runs RADICES[width]; material for other levels would give wrong signs, so none is drawn."""
    for radices in [(4, 4, 4), (8, 8), (2,) * 7]:
        with pytest.raises(ValueError, match="radices"):
            both(M.ComparisonRequest(5, radices, 64))


@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("n", [1, 7, 64, 300])
def test_table_comparison_material(width, n):
    """The tables are, for every 8-bit chunk r_j of r's low width - 1 bits, its thermometer [k < r_j] over
    k = 0 .. 255 (the top chunk's 7 bits: k < 128); the top bits are r's msb, packed; the ANDs' material is
    the subset products of its masks."""
    (r0, top0, t0, p0), (r1, top1, t1, p1) = both(M.TableComparisonRequest(n, width))
    r = r0 + r1
    assert r.shape == (n,) and (width == 64 or (r >> U64(width) == 0).all())
    chunks = table_chunks(width)
    starts = table_layout(width)
    assert t0.shape == (n, starts[-1]) and starts[-1] == {32: 14, 64: 30}[width]
    low = r & U64(2 ** (width - 1) - 1)
    for j in range(chunks):
        bits = np.unpackbits((t0 ^ t1)[:, starts[j]:starts[j + 1]].copy().view(np.uint8), axis=-1, bitorder="little")
        k = np.arange(bits.shape[1])  # the entries sent: all 256, or the top chunk's 128
        assert k.size == (128 if j == chunks - 1 else 256)
        r_j = ((low >> U64(8 * j)) & U64(255)).astype(np.int64)
        assert r_j.max(initial=0) < k.size
        np.testing.assert_array_equal(bits, k[None, :] < r_j[:, None])
    top = np.unpackbits((top0 ^ top1).view(np.uint8), count=n, bitorder="little")
    np.testing.assert_array_equal(top, r >> U64(width - 1))
    layout = monomial_layout(2 * chunks - 1, prefix_monomials(chunks, True))
    products = p0 ^ p1
    if n >= 64:  # one server's tables alone are uniform bytes, though the tables are mostly zeros
        for share in (t0, t1):
            stat, critical = chi_square_uniform_bytes(share.tobytes())
            assert stat < critical
    assert products.shape == (len(layout), -(-n // 64))
    np.testing.assert_array_equal(products, subset_products(products[:2 * chunks - 1], layout))


def test_and_material():
    (m0,), (m1,) = both(M.AndRequest(9, 6, AND_MONOMIALS))
    products = m0 ^ m1
    layout = monomial_layout(6, AND_MONOMIALS)
    np.testing.assert_array_equal(products, subset_products(products[:6], layout))


@pytest.mark.parametrize("count", [0, 1, 3])
def test_selection_material(count):
    (tb0, ta0, masks0), (tb1, ta1, masks1) = both(M.SelectionRequest(11 + 3000 * count, count))
    t = ta0 + ta1
    assert set(np.unique(t)) <= {0, 1} and set(np.unique(tb0)) <= {0, 1}
    np.testing.assert_array_equal(tb0 ^ tb1, t)
    assert len(masks0) == count
    for (b0, p0), (b1, p1) in zip(masks0, masks1):
        np.testing.assert_array_equal(p0 + p1, t * (b0 + b1))


@pytest.mark.parametrize("exact_fit", [True, False])
@pytest.mark.parametrize("shapes", [((3,), (2, 2), (0,), (5,)), ((1,),), ((3000,), (2, 1000), (7,), (1, 8), (2000,))])
def test_parts_are_the_stream_in_order(monkeypatch, exact_fit, shapes):
    """uint64_parts, in one call or one per part, uint64 and fill, with or without an exact fit, are the
    same stream; every large part and every uint64 an array of its own."""
    if exact_fit and not SecureRandom.EXACT_FIT:
        pytest.skip("this cryptography wants room for a block more")
    monkeypatch.setattr(SecureRandom, "EXACT_FIT", exact_fit)
    key = bytes(range(16))
    parts = SecureRandom(key).uint64_parts(shapes)
    assert [p.shape for p in parts] == list(shapes)
    whole = np.concatenate([p.ravel() for p in parts])
    np.testing.assert_array_equal(whole, SecureRandom(key).uint64((whole.size,)))
    for p in parts:  # a large part is an array of its own (the channel hands it over without a copy)
        assert p.flags.owndata == (p.size > SecureRandom.FEW_WORDS)
    rng, rows = SecureRandom(key), np.zeros((3, whole.size), dtype=U64)
    rng.fill(rows[:1])
    np.testing.assert_array_equal(rows[0], whole)
    assert not rows[1:].any()
    assert rng.uint64(whole.shape).flags.owndata
    with pytest.raises(ValueError):
        rng.fill(np.zeros((4, 4), dtype=U64)[:, :2])


def test_parts_of_scalars_are_arrays():
    parts = SecureRandom().uint64_parts(((), (), (2,)))
    assert [p.shape for p in parts] == [(), (), (2,)] and all(isinstance(p, np.ndarray) for p in parts)
