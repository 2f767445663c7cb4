"""The privacy checks have teeth: each leak below, planted in the engine, is caught by them.

Each mutant keeps every result right where it can (a leak that breaks a result would be caught by the
accuracy tests anyway; these must be caught by the privacy checks alone, as AssertionErrors of
tests/privacy.py). The README's table of leak classes lists them."""
from functools import partial

import numpy as np
import pytest

import privacy
from ppfr.mpc import FixedPoint, LocalSession
from ppfr.mpc import functions as F
from ppfr.mpc import fss, lut, material, party, prg, protocols, provider
from test_privacy import CONSTANT, RANDOM, argmin_row, exp_by_tables, fss_session, label, softmax, softmax_of_rows_of_80


def two_products(x, y):
    """Three products of one shape: a triple reused across them would show."""
    return (x * y) * y + x * x.T.T


def scale_twice(x, y):
    return (x * 0.3) * 0.7


def logits_to_client(x, w):
    """The servers' part of recognition with the logits revealed: x W behind a per-row offset."""
    return F.hide_offset(x @ w.T)


def masked_rows_queried_twice(x, y):
    """x (32 x 40) kept as masked rows in a 32-bit ring, then two batches of queries from y: Q G^T."""
    from ppfr.mpc.reuse import MaskedRows

    rows = MaskedRows(x.server, "mutant", x.shape[1], 32)
    rows.append(x.share)
    first, second = rows.products(y.share[:16]), rows.products(y.share[16:])
    return x._new(np.concatenate([first, second]).astype(np.uint64) & np.uint64(0xFFFFFFFF), 0)


def beaver_opens_x(monkeypatch):
    """A Beaver step that opens x and y themselves instead of x - a and y - b (results stay right:
    server 0 takes the whole product)."""
    def products(srv, items, material=None, tag="open"):
        if material is not None and not isinstance(material, list):
            material.get()
        opened = srv.open(*[v for _, x, y in items for v in (x, y)], tag=tag)
        out = []
        for i, (op, x, _) in enumerate(items):
            e, f = opened[2 * i], opened[2 * i + 1]
            z = (e * f if op == "mul" else e @ f)
            out.append(z if srv.index == 0 else np.zeros_like(z))
        return out
    monkeypatch.setattr(protocols, "products", products)


def _cached(method):
    """A provider method that hands out the same material for requests of the same shapes."""
    def ask(self, *args):
        cache = self.__dict__.setdefault("_mutant_cache", {})
        key = (method.__name__, repr(args))
        if key not in cache:
            material = method(self, *args).get()
            cache[key] = type("Reused", (), {"get": lambda _: material})()
        return cache[key]
    return ask


def triple_reused(monkeypatch):
    """One triple for every product of a shape."""
    monkeypatch.setattr(provider.Provider, "triples", _cached(provider.Provider.triples))


def query_mask_reused(monkeypatch):
    """One per-query mask A (and its C = A B^T) for every batch of queries of a size, against the same
    masked rows: results stay right, the second batch's Q - A differs from the first's by Q1 - Q2."""
    monkeypatch.setattr(provider.Provider, "row_products", _cached(provider.Provider.row_products))


def row_masks_zero(monkeypatch):
    """Every row mask B and query mask A zero (keys still drawn and sent): the gallery's rows and the
    queries are opened as they are; every product stays right."""
    from ppfr.mpc import reuse

    def zeros(rng, shape, bits):
        return np.zeros(shape, material.RING_DTYPES[bits])
    monkeypatch.setattr(material, "ring_words", zeros)
    monkeypatch.setattr(reuse, "ring_words", zeros)


def truncation_mask_reused(monkeypatch):
    """One truncation mask for every truncation of a size."""
    monkeypatch.setattr(provider.Provider, "truncation", _cached(provider.Provider.truncation))


def bits_without_t(monkeypatch):
    """Tournament and conversion bits opened without the dealer's random bit t (results stay right:
    the opened bit is public, bit * v is local)."""
    def open_bits(srv, bits, m, values):
        theirs = srv.exchange(("bits",), [np.packbits(bits.astype(np.uint8))])
        e = bits ^ np.unpackbits(theirs[0], count=bits.size).astype(np.uint64)
        return [e if srv.index == 0 else np.zeros_like(e)] + [e * v for v in values]
    monkeypatch.setattr(protocols, "_open_bits", open_bits)


def selection_payloads_unmasked(monkeypatch):
    """Selections whose payload masks b are 0 (and so t b): v itself is opened beside bit XOR t, e.g. the
    top index + 1 that the bitwise label's comparison round multiplies by its first bit (results stay
    right)."""
    draw = material.SelectionRequest.draw

    def unmasked(self, rng):
        out0, out1 = draw(self, rng)
        zero = [(np.zeros(self.n, dtype=np.uint64),) * 2] * self.count
        return (*out0[:2], tuple(zero)), (*out1[:2], tuple(zero))
    monkeypatch.setattr(material.SelectionRequest, "draw", unmasked)


def comparison_without_mask(monkeypatch):
    """A comparison whose mask r is 0 (additively and bitwise, and so the products of its bits that the
    first level of the prefix takes as mask products: XOR shares of 0): c = x is opened."""
    draw = material.ComparisonRequest.draw

    def zero_r(self, rng):
        (r0, b0, m0, l0), (r1, b1, m1, l1) = draw(self, rng)
        first = np.zeros_like(l0[0])
        return ((np.zeros_like(r0), np.zeros_like(b0), m0, (first, *l0[1:])),
                (np.zeros_like(r1), np.zeros_like(b1), m1, (first, *l1[1:])))
    monkeypatch.setattr(material.ComparisonRequest, "draw", zero_r)


def comparison_level_masks_zero(monkeypatch):
    """The masks of p and g after the comparison's first level 0, and so every product of them (XOR shares
    of 0): each later level opens p and g themselves, the prefix of the borrow of x + r - r (results stay
    right)."""
    draw = material.ComparisonRequest.draw

    def zero_masks(self, rng):
        (r0, b0, m0, l0), (r1, b1, m1, l1) = draw(self, rng)
        zeros = tuple(np.zeros_like(p) for p in l0[1:])
        return (r0, b0, np.zeros_like(m0), (l0[0], *zeros)), (r1, b1, np.zeros_like(m1), (l1[0], *zeros))
    monkeypatch.setattr(material.ComparisonRequest, "draw", zero_masks)


class _FirstPartZero:
    """A dealer's rng whose first uint64_parts part is all zeros (a request's mask r: see its draw)."""

    def __init__(self, rng):
        self.rng = rng

    def uint64_parts(self, shapes):
        first, *rest = self.rng.uint64_parts(shapes)
        return [np.zeros_like(first), *rest]

    def __getattr__(self, name):
        return getattr(self.rng, name)


def table_comparison_without_mask(monkeypatch):
    """A comparison by tables for the mask r = 0 (its tables, and so the results, still right): c = x is
    opened."""
    draw = material.TableComparisonRequest.draw
    monkeypatch.setattr(material.TableComparisonRequest, "draw", lambda self, rng: draw(self, _FirstPartZero(rng)))


def table_prefix_masks_zero(monkeypatch):
    """A comparison by tables whose ANDs over the chunks have masks 0 (and so products: XOR shares of 0;
    results stay right): the chunks' bits [c_j < r_j], [c_j = r_j] are opened as they are."""
    draw = material.TableComparisonRequest.draw

    def zero_masks(self, rng):
        (r0, t0, tables0, p0), (r1, t1, tables1, p1) = draw(self, rng)
        return (r0, t0, tables0, np.zeros_like(p0)), (r1, t1, tables1, np.zeros_like(p1))
    monkeypatch.setattr(material.TableComparisonRequest, "draw", zero_masks)


def fss_comparison_without_mask(monkeypatch):
    """FSS keys for the mask r = 0 (the keys themselves still right): c = x is opened."""
    def zero_r(self, rng):
        k0, k1 = fss.sign_keys_for_masks(rng, np.zeros(self.n, dtype=np.uint64), self.width, self.group, self.payloads)
        return k0.to_wire(), k1.to_wire()
    monkeypatch.setattr(material.FSSComparisonRequest, "draw", zero_r)


def fss_loss_counts_unmasked(monkeypatch):
    """The by-rank tournament's loss counts opened without a mask (narrow keys for r = 0; the keys still
    right): each server sees every member's rank in its group."""
    draw = material.FSSComparisonRequest.draw

    def zero_r(self, rng):
        if self.width > 16:
            return draw(self, rng)
        k0, k1 = fss.sign_keys_for_masks(rng, np.zeros(self.n, dtype=np.uint64), self.width, self.group, self.payloads)
        return k0.to_wire(), k1.to_wire()
    monkeypatch.setattr(material.FSSComparisonRequest, "draw", zero_r)


def fss_payloads_unmasked(monkeypatch):
    """Comparison keys with payloads whose payload masks b are 0 (s b = 0, s v = f s still right): the
    servers open the values they select, v - 0."""
    keys_for_masks = fss.sign_keys_for_masks

    def zero_b(rng, r, width, group="add", payloads=0):
        k0, k1 = keys_for_masks(rng, r, width, group, payloads)
        z0, z1 = np.zeros_like(k0.masks), np.zeros_like(k1.masks)
        keys = fss.dcf_keygen(rng, r & np.uint64(2 ** (width - 1) - 1),
                              np.concatenate([(1 - 2 * (r >> np.uint64(width - 1)))[:, None],
                                              np.zeros((r.size, payloads), dtype=np.uint64)], axis=1), width - 1)
        top = (r >> np.uint64(width - 1))[:, None] * np.concatenate(
            [np.ones((r.size, 1), dtype=np.uint64), np.zeros((r.size, payloads), dtype=np.uint64)], axis=1)
        t0 = rng.uint64(top.shape)
        return (fss.SignKey(k0.r, t0, z0, keys[0]), fss.SignKey(k1.r, top - t0, z1, keys[1])) if payloads else (k0, k1)
    monkeypatch.setattr(fss, "sign_keys_for_masks", zero_b)


def truncation_with_fixed_mask(monkeypatch):
    """Truncation pairs whose r is always 2^63 (still shared at random, and never wrapping, so nothing is
    redone and every result is right): c = x + 2^L + 2^63 is opened."""
    draw = material.TruncationRequest.draw

    def fixed_r(self, rng):
        ((r0, h0), spare0), ((r1, h1), spare1) = draw(self, rng)
        shifts = np.repeat(np.array([s for _, s in self.segments], dtype=np.uint64), [n for n, _ in self.segments])
        r = np.full(r0.shape, 2**63, dtype=np.uint64)
        return ((r0, h0), spare0), ((r - r0, (r >> shifts) - h0), spare1)
    monkeypatch.setattr(material.TruncationRequest, "draw", fixed_r)


def prg_fixed_key(monkeypatch):
    """Every generator keyed with sixteen zero bytes: masks and shares repeat from run to run."""
    init = prg.SecureRandom.__init__
    monkeypatch.setattr(prg.SecureRandom, "__init__", lambda self, key=None: init(self, bytes(16)))


def client_sends_plaintext(monkeypatch):
    """The client's share for server 0 is 0, so server 1 receives x itself."""
    split = party.Client.split

    def plain(self, x, frac=None):
        s0, s1, f = split(self, x, frac)
        return np.zeros_like(s0), s0 + s1, f
    monkeypatch.setattr(party.Client, "split", plain)


def dealer_gives_whole_mask(monkeypatch):
    """The dealer hands server 0 all of a, b and c, and server 1 zeros."""
    def draw(self, rng):
        out0, out1 = material.TriplesRequest.__dict__["_original"](self, rng)
        whole = [tuple(x + y for x, y in zip(t0, t1)) for t0, t1 in zip(out0, out1)]
        return whole, [tuple(np.zeros_like(x) for x in t) for t in whole]
    monkeypatch.setattr(material.TriplesRequest, "_original", material.TriplesRequest.draw, raising=False)
    monkeypatch.setattr(material.TriplesRequest, "draw", draw)


def dealer_hears_of_retries(monkeypatch):
    """A redone truncation asks the dealer for fresh pairs (as ppfr did before spares): the dealer sees
    which values were redone, i.e. comparison bits of the data."""
    def ask_dealer(self, shifts):
        segments = [(1, int(s)) for s in shifts]
        return self.truncation(segments).get()
    monkeypatch.setattr(provider.Provider, "spare_truncation", ask_dealer)


def _exp_tables_with_masks(monkeypatch, masks):
    """Exp-table material drawn for the masks masks(r) instead of r (keys, one-hots and all still right)."""
    def draw(self, rng):
        return self.draw_for_masks(rng, masks(rng.uint64((self.n,)) & np.uint64(2**32 - 1)))
    monkeypatch.setattr(material.ExpTableRequest, "draw", draw)


def exp_table_without_mask(monkeypatch):
    """Exp tables whose mask r is 0: c = D, the exponent itself, is opened."""
    _exp_tables_with_masks(monkeypatch, np.zeros_like)


def exp_table_without_low_digit(monkeypatch):
    """Exp tables whose mask has no low digit (r mod 2^j = 0, so the low one-hot is always the first
    entry): the low bits of D are opened, the high ones still masked."""
    _exp_tables_with_masks(monkeypatch, lambda r: r & ~np.uint64(2**lut.digits(16)[0] - 1))


def exp_table_mask_reused(monkeypatch):
    """One mask r for every value of a request: c_i - c_k = D_i - D_k, the differences opened."""
    _exp_tables_with_masks(monkeypatch, lambda r: np.full_like(r, r[0]))


def offset_removed(monkeypatch):
    monkeypatch.setattr(F, "hide_offset", lambda x, axis=-1: x)


RETRIES = partial(LocalSession, fixed=FixedPoint(bound_bits=60))
MUTANTS = [  # (mutant, the check that catches it: session, program)
    (beaver_opens_x, LocalSession, two_products),
    (triple_reused, LocalSession, two_products),
    (truncation_mask_reused, LocalSession, scale_twice),
    (query_mask_reused, LocalSession, masked_rows_queried_twice),
    (row_masks_zero, LocalSession, masked_rows_queried_twice),
    (bits_without_t, LocalSession, softmax),
    (selection_payloads_unmasked, LocalSession, label),
    (comparison_without_mask, LocalSession, softmax_of_rows_of_80),
    (comparison_level_masks_zero, LocalSession, softmax_of_rows_of_80),
    (table_comparison_without_mask, LocalSession, softmax),
    (table_prefix_masks_zero, LocalSession, softmax),
    (fss_comparison_without_mask, fss_session, softmax),
    (fss_loss_counts_unmasked, fss_session, argmin_row),
    (fss_payloads_unmasked, fss_session, argmin_row),
    (truncation_with_fixed_mask, LocalSession, scale_twice),
    (prg_fixed_key, LocalSession, two_products),
    (client_sends_plaintext, LocalSession, two_products),
    (dealer_gives_whole_mask, LocalSession, two_products),
    (dealer_hears_of_retries, RETRIES, scale_twice),
    (exp_table_without_mask, LocalSession, exp_by_tables),
    (exp_table_without_low_digit, LocalSession, exp_by_tables),
    (exp_table_mask_reused, LocalSession, exp_by_tables),
]


@pytest.mark.parametrize("mutant, session, program", MUTANTS, ids=[m[0].__name__ for m in MUTANTS])
def test_a_planted_leak_is_caught(mutant, session, program, monkeypatch):
    privacy.check_program(session, program, (CONSTANT, CONSTANT), (RANDOM, RANDOM))  # passes unplanted
    mutant(monkeypatch)
    with pytest.raises(AssertionError):
        privacy.check_program(session, program, (CONSTANT, CONSTANT), (RANDOM, RANDOM))


class _DrawRepeats:
    """A dealer's rng whose draw number `which` of each request is the first such draw ever made."""

    def __init__(self, rng, memo: dict, which: int):
        self.rng, self.memo, self.which, self.calls = rng, memo, which, 0

    def uint64(self, shape):
        self.calls += 1
        value = self.rng.uint64(shape)
        return self.memo.setdefault(shape, value) if self.calls == self.which else value

    def __getattr__(self, name):  # the rng's other draws (uint64_parts, fill: the spares) as they are
        return getattr(self.rng, name)


def update_mask_reused(which: int, monkeypatch):
    """Training's update opens W - b' and the next batch's x - a for the next products with one b' (draw
    3 of an UpdateThenProductRequest: r, a, b', ...) or one a (draw 2) for every step; the dealer's
    products stay consistent, so results stay right: W_t - b' and W_t+1 - b' differ by the update, x_t - a
    and x_t+1 - a by the difference of two batches."""
    memo, draw = {}, material.UpdateThenProductRequest.draw
    monkeypatch.setattr(material.UpdateThenProductRequest, "draw",
                        lambda self, rng: draw(self, _DrawRepeats(rng, memo, which)))


@pytest.mark.parametrize("which", [2, 3], ids=["a", "b_open"])
def test_a_reused_update_mask_is_caught(which, monkeypatch):
    """Training over three batches: two updates that open W - b' and x - a for the next products; a mask
    used by both is a mask opened against two different values."""
    from test_privacy_apps import assert_private, run_views, unit
    from ppfr.models.reference import TrainConfig
    from ppfr.models.service import train_mpc

    rng = np.random.default_rng(5)
    data = [(np.full((96, 128), 0.35), np.zeros(96, dtype=np.int64)),
            (4 * unit(rng.normal(size=(96, 128))), rng.integers(0, 4, 96))]
    train = lambda x, y: lambda session: train_mpc(session, [(x, y)], 4, TrainConfig(epochs=1, batch_size=32))  # noqa: E731
    assert_private(*[run_views(train(*d))[0] for d in data])    # passes unplanted
    update_mask_reused(which, monkeypatch)
    with pytest.raises(AssertionError, match="one mask used twice"):
        assert_private(*[run_views(train(*d))[0] for d in data])


def test_a_removed_offset_is_caught(monkeypatch):
    """With the logits revealed, the client may learn their differences only: the revealed row is the
    logits plus an offset nobody knows, uniform. Without hide_offset it would learn the logits."""
    w = RANDOM[:10]
    assert_client_learns_differences_only(w)
    offset_removed(monkeypatch)
    with pytest.raises(AssertionError):
        assert_client_learns_differences_only(w)


def assert_client_learns_differences_only(w):
    views = privacy.run_recorded(LocalSession, logits_to_client, (CONSTANT, w))
    [raw] = privacy.client_results(views["client"])
    first = raw[:, :1]
    assert not privacy.looks_like_data(first), "the client learns a logit, not only differences"
    expected = np.rint(CONSTANT @ w.T * 2**16).astype(np.int64) / 2**16
    got = (raw - first).view(np.int64) / 2**16
    np.testing.assert_allclose(got, expected - expected[:, :1], atol=1e-3)


def _row_mask_redrawn_from_old_seeds(original):
    """RowMaskRequest.draw that gives a gallery masked anew the seeds it had the first time (results stay
    right: the dealer's mask is what the seeds expand to)."""
    def draw(self, rng, memory):
        seeds = memory.setdefault(("seeds", self.mask), {})
        out = original(self, rng, memory)
        if self.start not in seeds:
            seeds[self.start] = (out[0][0], out[1][0])
            return out
        old = seeds[self.start]
        shares = [material.ring_words(material.SecureRandom(s.tobytes()), (self.rows, self.cols), self.bits)
                  for s in old]
        memory[self.mask].rows[-self.rows:] = shares[0] + shares[1]
        return (old[0],), (old[1],)
    return draw


def test_a_row_mask_reused_after_a_removal_is_caught(tmp_path, monkeypatch):
    """A dealer that masks a gallery anew after a removal with the old row mask: the rows kept are opened
    twice under one mask (the openings' common prefix, tests/privacy.py assert_no_reuse)."""
    from test_privacy_apps import assert_private, removal_views

    monkeypatch.setattr(material.RowMaskRequest, "draw", _row_mask_redrawn_from_old_seeds(material.RowMaskRequest.draw))
    with pytest.raises(AssertionError, match="related on their first"):
        assert_private(*removal_views(tmp_path))
