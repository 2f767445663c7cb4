"""Function secret sharing (ppfr.mpc.fss): the DCF against brute force, the one-round sign test in a
real session against numpy on every boundary value, and what one server's keys and view look like."""
import numpy as np
import pytest

from functools import partial

import privacy
from mpc_util import chi_square_uniform_bytes, evaluate
from ppfr.mpc import LocalSession, fss, protocols
from ppfr.mpc import functions as F
from ppfr.mpc.prg import SecureRandom

U64 = np.uint64
dealer_rng = SecureRandom()
rng = np.random.default_rng(15)

BOUNDARIES_64 = [0, 1, -1, 2, -2, 2**62, -(2**62), 2**62 - 1, -(2**62) + 1, 2**63 - 1, -(2**63), -(2**63) + 1,
                 2**63 - 2, 2**32, -(2**32), 2**31, -(2**31)]
BOUNDARIES_32 = [0, 1, -1, 2, -2, 2**30, -(2**30), 2**31 - 1, -(2**31), -(2**31) + 1, 2**31 - 2, 2**16, -(2**16)]
# masks at their own boundaries: x + r then lands on 0, 2^(w-1) - 1, 2^(w-1), 2^w - 1 for the values above
MASKS_64 = [0, 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1]
MASKS_32 = [0, 1, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1]


def _reconstruct(group, a, b):
    return a + b if group == "add" else a ^ b


@pytest.mark.parametrize("group", fss.GROUPS)
@pytest.mark.parametrize("bits", [1, 2, 3, 6])
def test_dcf_matches_brute_force_on_every_input_and_threshold(bits, group):
    """Eval(k0, x) + Eval(k1, x) = beta [x < alpha] (XOR for group "xor") for every pair (alpha, x) of a
    small domain."""
    size = 2**bits
    alpha = np.repeat(np.arange(size, dtype=U64), size)
    x = np.tile(np.arange(size, dtype=U64), size)
    beta = dealer_rng.uint64((alpha.size,)) & (~U64(0) if group == "add" else U64(1))
    k0, k1 = fss.dcf_keygen(dealer_rng, alpha, beta, bits, group)
    got = _reconstruct(group, fss.dcf_eval(0, k0, x), fss.dcf_eval(1, k1, x))
    assert np.array_equal(got, np.where(x < alpha, beta, U64(0)))


@pytest.mark.parametrize("group", fss.GROUPS)
def test_dcf_on_63_bits_across_chunks(group):
    """Full-width keys, more values than one chunk of the vectorised walk, x on both sides of alpha."""
    n = fss.CHUNK + 100
    alpha = dealer_rng.uint64((n,)) >> U64(1)
    offsets = rng.integers(-3, 4, n).astype(np.int64)
    x = (alpha.view(np.int64) + offsets).view(U64) & U64(2**63 - 1)
    k0, k1 = fss.dcf_keygen(dealer_rng, alpha, np.ones(n, dtype=U64), 63, group)
    got = _reconstruct(group, fss.dcf_eval(0, k0, x), fss.dcf_eval(1, k1, x))
    assert np.array_equal(got, (x < alpha).astype(U64))


def _sign_program(srv, width, key):
    """Both servers: the sign of the received ring integers with their FSS key; bit shares and cost."""
    x = srv.receive()
    before = srv.channel.stats.copy()
    bit = fss.less_than_zero(srv, x.share, key, width)
    spent = srv.channel.stats - before
    return bit, (spent.rounds, spent.bytes_sent)


def _sign_in_session(session, values: np.ndarray, width: int, masks=None, group="add"):
    """[x < 0] of the ring integers `values` (shared by the client) through fss.less_than_zero on both
    servers, reconstructed from the servers' output shares; and the rounds and bytes each spent on it."""
    values = np.asarray(values, dtype=np.int64)
    keys = (fss.sign_keygen(dealer_rng, values.size, width, group) if masks is None
            else fss.sign_keys_for_masks(dealer_rng, np.asarray(masks, dtype=U64), width, group))
    job = session.run(_sign_program, width, per_server=((keys[0],), (keys[1],)))
    session.client.share(values, frac=0)
    (b0, spent0), (b1, spent1) = job.result()
    return _reconstruct(group, b0, b1).view(np.int64), [spent0, spent1]


@pytest.mark.parametrize("group", fss.GROUPS)
@pytest.mark.parametrize("width, boundaries, masks", [(64, BOUNDARIES_64, MASKS_64), (32, BOUNDARIES_32, MASKS_32)])
def test_sign_is_exact_on_every_boundary_value_and_mask(session, width, boundaries, masks, group):
    """Every boundary value against every boundary mask (so that x + r wraps, lands on 0, on 2^(w-1)
    and next to it), then against fresh random masks."""
    x = np.repeat(np.array(boundaries, dtype=np.int64), len(masks))
    r = np.tile(np.array(masks, dtype=U64), len(boundaries))
    got, _ = _sign_in_session(session, x, width, masks=r, group=group)
    assert np.array_equal(got, (x < 0).astype(np.int64))
    x = np.repeat(np.array(boundaries, dtype=np.int64), 50)
    got, _ = _sign_in_session(session, x, width, group=group)
    assert np.array_equal(got, (x < 0).astype(np.int64))


@pytest.mark.parametrize("group", fss.GROUPS)
@pytest.mark.parametrize("width", [64, 32])
def test_sign_matches_numpy_on_random_values_in_one_round(session, width, group):
    n = 20_000
    if width == 64:
        x = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
    else:
        x = rng.integers(-(2**31), 2**31 - 1, n, dtype=np.int64, endpoint=True)
    x[: n // 2] >>= rng.integers(0, 60 if width == 64 else 28, n // 2)  # many magnitudes, both signs
    got, spent = _sign_in_session(session, x, width, group=group)
    assert np.array_equal(got, (x < 0).astype(np.int64))
    # one round, and all each server sends is its share of c = x + r: 8 or 4 bytes a value
    assert spent == [(1, n * width // 8)] * 2


def test_the_output_shares_also_xor_share_the_bit():
    """Bit 0 of the additive shares is an XOR sharing (what selections and ANDs consume)."""
    x = rng.integers(-(2**63), 2**63 - 1, 1000, dtype=np.int64, endpoint=True)
    k0, k1 = fss.sign_keygen(dealer_rng, x.size)
    c = x.view(U64) + k0.r + k1.r
    s0, s1 = fss.sign_from_opened(0, k0, c), fss.sign_from_opened(1, k1, c)
    assert np.array_equal((s0 ^ s1) & U64(1), (x < 0).astype(U64))


def _key_bytes(key: fss.SignKey) -> bytes:
    r, top, masks, dcf = key.to_wire()
    return b"".join(a.tobytes() for a in (r, top, masks, *dcf))


@pytest.mark.parametrize("group, payloads", [("add", 0), ("xor", 0), ("add", 1), ("add", 2)])
@pytest.mark.parametrize("width", [64, 32, 16, 8])
def test_one_servers_key_material_is_uniform(width, group, payloads):
    k0, k1 = fss.sign_keygen(dealer_rng, 2000, width, group, payloads)
    assert k0.nbytes() == k1.nbytes() == 2000 * fss.key_bytes(width, group, payloads)
    for key in (k0, k1):
        stat, critical = chi_square_uniform_bytes(_key_bytes(key))
        assert stat < critical


def _bit_frequencies(key: fss.SignKey) -> np.ndarray:
    """The frequency of a 1 at every bit of every word of the key, over its n values."""
    dcf, n = key.dcf, key.r.size
    words = np.concatenate([key.r[:, None], key.top.reshape(n, -1), key.masks, dcf.seed,
                            np.moveaxis(dcf.seed_cw, 1, 0).reshape(n, -1), np.moveaxis(dcf.value_cw, 2, 0).reshape(n, -1),
                            dcf.right_t[:, None], np.atleast_2d(dcf.final_cw).T], axis=1)
    return ((words[:, :, None] >> np.arange(64, dtype=U64)) & U64(1)).mean(axis=0)


@pytest.mark.parametrize("group, payloads", [("add", 0), ("xor", 0), ("add", 2)])
@pytest.mark.parametrize("width", [64, 8])
def test_one_servers_keys_look_the_same_whatever_the_mask(group, payloads, width):
    """Keys for masks at opposite extremes (r = 0 and r = 2^w - 1: alpha, beta and r_top all differ) give
    every bit of server 0's and of server 1's key a frequency of 1/2, within binomial noise."""
    n = 4000
    for party in (0, 1):
        low = _bit_frequencies(fss.sign_keys_for_masks(dealer_rng, np.zeros(n, dtype=U64), width, group,
                                                       payloads)[party])
        high = _bit_frequencies(fss.sign_keys_for_masks(dealer_rng, np.full(n, 2**width - 1, dtype=U64), width,
                                                        group, payloads)[party])
        sigma = 0.5 / np.sqrt(n)
        assert np.abs(low - 0.5).max() < 6 * sigma and np.abs(high - 0.5).max() < 6 * sigma
        assert np.abs(low - high).max() < 6 * np.sqrt(2) * sigma


@pytest.mark.parametrize("width", [64, 32])
def test_the_opened_value_is_uniform(width):
    """What the servers open in the sign test, c = x + r, is uniform bytes even for inputs that are all
    the same, and so is the share of it that each receives (tests/privacy.py reconstructs the views)."""
    with LocalSession() as s:
        s.record_views()
        _sign_in_session(s, np.full(20_000, -7, dtype=np.int64), width)
        raw, views = s.views(), privacy.views(s)
    for server, peer in (("server0", "server1"), ("server1", "server0")):
        (opening,) = views[server].openings
        (received,) = [m[2][0] for d, p, m in raw[server] if d == "recv" and p == peer]
        for value in (opening.value, received):
            assert value.dtype == (np.uint64 if width == 64 else np.uint32) and value.size == 20_000
            stat, critical = chi_square_uniform_bytes(value.tobytes())
            assert stat < critical and not privacy.looks_like_data(value)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="8, 16, 32, 64 bits wide"):
        fss.sign_keygen(dealer_rng, 3, width=24)
    with pytest.raises(ValueError, match="payloads need keys of group add"):
        fss.sign_keygen(dealer_rng, 3, group="xor", payloads=1)
    with pytest.raises(ValueError, match="add or xor"):
        fss.dcf_keygen(dealer_rng, np.zeros(3, dtype=U64), np.zeros(3, dtype=U64), 8, group="mul")
    with pytest.raises(ValueError, match="1 to 63 bits"):
        fss.dcf_keygen(dealer_rng, np.zeros(3, dtype=U64), np.zeros(3, dtype=U64), 64)


def _apply(srv, function):
    function(srv.receive())


def _rounds_of(session, function, x) -> int:
    """Rounds server 0 spends on function(shared x): its planned openings to server 1 (one message a
    round), without the rare redone truncations (tagged "retry" or "repair", random in number)."""
    session.record_views()
    job = session.run(_apply, function)
    session.client.share(x)
    job.result()
    return sum(1 for d, p, m in session.views()["server0"] if d == "send" and p == "server1" and m[0] == "open")


def test_fss_comparisons_cut_the_rounds_of_what_compares():
    """With use_comparisons("fss"): a sign in 1 round (3 bitwise); argmax of 2 x 158 by rank in 4 (groups
    of 7 and of 23, 2 rounds each; 12 bitwise, in groups of 4, 5 and 8). The softmax of a row besides its maximum
    (functions._softmax_by_tables): exp by tables (2 rounds, the clamp built in), the truncation of e (1;
    the reciprocal's guess comes with it), the opening of its mask (1), one Newton step (2), the product
    (1): 7 rounds, against 3 + 10 + 8 bitwise (clamp, exp on [-16, 0], guess and two Newton steps) + 2."""
    rounds = {}
    for method in protocols.COMPARISONS:
        with LocalSession() as s:
            s.run(protocols.use_comparisons, method).result()
            rounds[method] = [_rounds_of(s, F.less_than_zero, rng.normal(size=10)),
                              _rounds_of(s, lambda t: F.argmax(t, axis=-1), rng.normal(size=(2, 158))),
                              _rounds_of(s, F.softmax, rng.normal(size=(1, 158))),
                              _rounds_of(s, lambda t: F.softmax(t, clamp=False), rng.normal(size=(1, 158))),
                              _rounds_of(s, partial(F.max_along, bound=F.SOFTMAX_BOUND), rng.normal(size=(1, 158)))]
    less, argmax, softmax, unclamped, maximum = rounds["fss"]
    assert F.rank_levels(158, 2, 64) == (7, 23)
    assert (less, argmax, softmax - unclamped, softmax - maximum) == (1, 4, 0, 7)
    bitwise = rounds["bitwise"]
    assert (bitwise[0], bitwise[1], bitwise[2] - bitwise[3], bitwise[2] - bitwise[4]) == (3, 12, 1, 23)

def _argmin_index(t):
    return F.argmin(t, axis=-1)[1]


@pytest.mark.parametrize("n, rows, bound", [(158, 1, None), (158, 64, None), (158, 1, 8192.0), (13_233, 1, None)])
def test_rounds_of_a_tournament_by_rank(n, rows, bound):
    """A by-rank tournament costs 1 round a level of pairs and 2 a level of groups (or of pairs by
    selection): argmax of one row of 158 in 4 (groups of 7, then 23; 3 on 32 bits), of 64 rows in 6;
    argmin over 13,233 in 8."""
    levels = F.rank_levels(n, rows, 32 if bound else 64)
    planned = sum(1 if k == 2 else 2 for k in levels)
    with LocalSession() as s:
        s.run(protocols.use_comparisons, "fss").result()
        got = _rounds_of(s, partial(_argmax_bounded, bound=bound), rng.normal(size=(rows, n)))
    assert got == planned
    assert planned <= {158: 4 if rows == 1 else 6, 13_233: 8}[n]


@pytest.mark.parametrize("n, rows, bound", [(158, 1, None), (158, 64, 8192.0), (13_233, 1, None)])
def test_rounds_of_a_bitwise_tournament(n, rows, bound):
    """A bitwise tournament level costs its comparison's rounds (2 by tables, 5 or 6 by the radix-2
    circuit), one of ANDs for the winner (groups of three or more) and one selection: argmax of a row of
    158 in 12 (groups of 4, 5 and 8), of 64 rows in 30 on 32 bits (pairs, then fours: levels this large
    keep them), argmin over 13,233 in 42."""
    width = 32 if bound else 64
    planned, left = 0, n
    for k in F.circuit_levels(n, rows, width):
        comparisons = rows * -(-left // k) * k * (k - 1) // 2
        planned += protocols.comparison_rounds(comparisons, width) + (k > 2) + 1
        left = -(-left // k)
    with LocalSession() as s:
        got = _rounds_of(s, partial(_argmax_bounded, bound=bound), rng.normal(size=(rows, n)))
    assert left == 1 and got == planned
    assert planned <= {(158, 1): 12, (158, 64): 30, (13_233, 1): 42}[n, rows]


def _argmax_bounded(t, bound):
    return F.argmax(t, axis=-1, bound=bound)[1]


def test_open_session_takes_the_comparison_method_to_server_processes():
    """open_session(comparisons="fss") sets both servers, wherever they run; a bad name is refused."""
    from ppfr.mpc import functions as F, open_session

    x = rng.normal(size=300)
    with open_session("processes", comparisons="fss") as s:
        assert _rounds_of(s, F.less_than_zero, x) == 1
        views = s.views()
    kinds = [kind for d, p, m in views["server0"] if d == "send" and p == "dealer" for kind, _ in m[2]]
    assert kinds == ["fss_comparison"]
    with pytest.raises(ValueError, match="bitwise, fss or auto"):
        open_session(comparisons="garbled")


# -- several output words, narrow widths, selection in the comparison's round -------------------------------
@pytest.mark.parametrize("words", [2, 3, 4])
@pytest.mark.parametrize("bits", [1, 3, 5])
def test_dcf_with_several_output_words_matches_brute_force(bits, words):
    """Each output word of a key with beta in (Z_2^64)^m is its own DCF: beta_j [x < alpha]."""
    size = 2**bits
    alpha = np.repeat(np.arange(size, dtype=U64), size)
    x = np.tile(np.arange(size, dtype=U64), size)
    beta = dealer_rng.uint64((alpha.size, words))
    k0, k1 = fss.dcf_keygen(dealer_rng, alpha, beta, bits)
    got = fss.dcf_eval(0, k0, x) + fss.dcf_eval(1, k1, x)
    assert np.array_equal(got, np.where((x < alpha)[:, None], beta, U64(0)))


def _boundaries(width: int) -> list:
    """0, +-1 and +-2, the ends of the signed range of `width` bits and their neighbours."""
    top = 2 ** (width - 1)
    return sorted({0, 1, -1, 2, -2, top - 1, top - 2, -top, -top + 1, top // 2, -top // 2})


def _select_program(srv, width, key):
    x, v, w = srv.receive(), srv.receive(), srv.receive()
    before = srv.channel.stats.copy()
    s, (sv, sw) = fss.select_by_sign(srv, x.share, [v.share, w.share], key, width)
    spent = srv.channel.stats - before
    return s, sv, sw, (spent.rounds, spent.bytes_sent)


@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_select_by_sign_is_exact_on_every_boundary_in_one_round(session, width):
    """s = [x < 0], s v and s w from one key with two payloads, for x on every boundary of its width
    against masks on every boundary of theirs, and payloads anywhere in the ring; one round, width/8 +
    16 bytes a value each way."""
    values = np.array(_boundaries(width), dtype=np.int64)
    masks = np.array([0, 1, 2 ** (width - 1) - 1, 2 ** (width - 1), 2 ** (width - 1) + 1, 2**width - 1], dtype=U64)
    x = np.repeat(values, masks.size + 20)
    fresh = dealer_rng.uint64((values.size * 20,))
    r = np.concatenate([np.tile(masks, values.size), fresh if width == 64 else fresh % U64(2**width)])
    keys = fss.sign_keys_for_masks(dealer_rng, r, width, "add", payloads=2)
    v = rng.integers(-(2**63), 2**63 - 1, x.size, dtype=np.int64, endpoint=True)
    w = rng.integers(-1000, 1000, x.size, dtype=np.int64)
    job = session.run(_select_program, width, per_server=((keys[0],), (keys[1],)))
    for a in (x, v, w):
        session.client.share(a, frac=0)
    (s0, v0, w0, spent0), (s1, v1, w1, spent1) = job.result()
    bit = (x < 0).astype(np.int64)
    assert np.array_equal((s0 + s1).view(np.int64), bit)
    assert np.array_equal((v0 + v1).view(np.int64), bit * v)
    assert np.array_equal((w0 + w1).view(np.int64), bit * w)
    assert spent0 == spent1 == (1, x.size * (width // 8 + 16))


def _tournament_reveal(srv, want_min, width, levels):
    """Both servers, with FSS comparisons for this program only: the by-rank tournament of the received
    tensor by the given levels, with indices (value and index revealed) and without (value revealed)."""
    t, method = srv.receive(), srv.provider.comparisons
    protocols.use_comparisons(srv, "fss")
    try:
        value, index = F._tournament_by_rank(t, want_min, True, width, levels)
        srv.reveal_to(value)
        srv.reveal_to(index)
        (plain, _) = F._tournament_by_rank(t, want_min, False, width, levels)
        srv.reveal_to(plain)
    finally:
        protocols.use_comparisons(srv, method)


# (n, levels): pairs with and without padding, every group size from 3 to 9 with and without padding, the
# whole row in one group, groups after pairs (shared indices) and pairs after groups; pairs by selection
# (-2) first (public positions), after the others and before them
S = F.BY_SELECTION
LEVELS = [(1, ()), (2, (2,)), (3, (2, 2)), (5, (2, 2, 2)), (3, (3,)), (4, (4,)), (5, (5,)), (6, (6,)), (7, (7,)),
          (8, (8,)), (9, (9,)), (10, (4, 3)), (11, (3, 4)), (13, (5, 3)), (23, (2, 3, 4)), (30, (3, 2, 5)),
          (40, (40,)), (17, (6, 2, 2)), (2, (S,)), (5, (S, S, S)), (11, (S, 2, 3)), (13, (3, S, 2, 2)), (9, (2, S, 3))]


@pytest.mark.parametrize("want_min", [False, True], ids=["max", "min"])
@pytest.mark.parametrize("width", [64, 32])
def test_tournament_by_rank_is_exact_for_every_group_size(session, want_min, width):
    """Values and first indices of the maximum (minimum) equal numpy's, with many ties, for every level
    plan above; values at the ends of the width's range (differences of two within it) and next to them."""
    limit = 2**62 - 1 if width == 64 else 2**30 - 1
    for n, levels in LEVELS:
        rows = 6
        x = rng.integers(-3, 4, (rows, n)).astype(np.int64)  # ties everywhere
        x[1] = rng.integers(-limit, limit, n, endpoint=True)
        x[2] = limit
        x[3, :] = -limit
        x[3, n // 2] = -limit + 1
        x[4, :] = limit - 1
        x[4, -1] = limit
        x[5, ::2] = 0
        x[5, 1::2] = -1
        job = session.run(_tournament_reveal, want_min, width, levels)
        session.client.share(x, frac=0)
        value, index, plain = (session.client.reconstruct() for _ in range(3))
        job.result()
        best = x.min(axis=-1) if want_min else x.max(axis=-1)
        where = x.argmin(axis=-1) if want_min else x.argmax(axis=-1)
        assert np.array_equal(value, best) and np.array_equal(plain, best), (n, levels)
        assert np.array_equal(index, where), (n, levels)


def _queries_with_material_ahead(srv, count):
    """Both servers, with FSS comparisons: `count` argmins of the received tensor, each followed by
    prepare_tournament for the next; how many requests each argmin itself sent the dealer."""
    x, method = srv.receive(), srv.provider.comparisons
    protocols.use_comparisons(srv, "fss")
    asked, ready = [], []
    try:
        for _ in range(count):
            before = srv.provider.requests_sent
            value, index = F.argmin(x, axis=-1)
            asked.append(srv.provider.requests_sent - before)
            srv.reveal_to(index)
            ready.append(F.prepare_tournament(srv, x.shape, -1, want_min=True, with_index=True))
    finally:
        protocols.use_comparisons(srv, method)
    return asked, ready


def test_the_next_tournaments_keys_can_be_asked_for_ahead(session):
    """After the first run (which records its requests), prepare_tournament asks for the next run's keys
    at once: that run then asks the dealer for nothing, and is still exact."""
    x = rng.normal(size=(3, 300))
    job = session.run(_queries_with_material_ahead, 3)
    session.client.share(x)
    got = [session.client.reconstruct() for _ in range(3)]
    (asked, ready), _ = job.result()
    assert all(np.array_equal(g, encoded_argmin(x)) for g in got)
    assert asked[0] > 0 and asked[1:] == [0, 0] and ready == [True, True, True]


def encoded_argmin(x):
    return np.rint(x * 2**16).argmin(axis=-1)


def test_rank_levels_meet_the_round_targets_and_cover_every_size():
    """The planned rounds of a by-rank tournament (1 a level of pairs, 2 a level of groups or of pairs by
    selection): one row of 158 in 4, 64 rows in 6, 13,233 values in 8 (nearest: + 1 for the distances,
    <= 20), 10^6 in 21 (<= 30); and every plan ends on one value."""
    def rounds(levels):
        return sum(1 if k == 2 else 2 for k in levels)
    assert rounds(F.rank_levels(158, 1, 64)) == 4 and rounds(F.rank_levels(158, 64, 64)) == 6
    assert rounds(F.rank_levels(13_233, 1, 64)) == 8 and rounds(F.rank_levels(10**6, 1, 64)) == 21
    assert F.BY_SELECTION in F.rank_levels(10**6, 1, 64)  # the largest levels by the lightest keys
    for n in list(range(1, 300)) + [4095, 4096, 4097, 13_233, 99_999]:
        for rows in (1, 64):
            left = n
            for k in F.rank_levels(n, rows, 32):
                left = -(-left // abs(k))
            assert left == 1, (n, rows)
