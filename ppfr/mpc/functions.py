"""Non-linear functions on shared tensors: comparison, max/argmax, exp, reciprocal, softmax.

Each function documents its input range and its error there; tests/test_mpc_functions.py checks both
against numpy float64. Internally the approximations run at more fractional bits than the session's
(their intermediate values are at most a few units, so there is room under the 2^48 truncation bound),
which is why they are exact to about 1e-5 rather than to the 1e-3 that a 16-bit schedule would give.
"""
from __future__ import annotations

import functools
import math
from functools import partial

import numpy as np

from . import lut, protocols, thresholds as many
from .placement import any_core
from .tensor import SharedTensor, multiply_many

U64 = np.uint64
ONE = U64(1)


# -- comparison ----------------------------------------------------------------------------------------
def less_than_zero(x: SharedTensor, bound: float | None = None) -> SharedTensor:
    """Shares of the bit [x < 0] (an integer tensor, frac 0). Exact for any x in the ring; given a bound
    on |x| small enough (comparison_width), the comparison runs on 32 bits at about half the cost. 3 rounds
    (6 or 7 for many values, 32 or 64 bits: protocols.comparison_rounds)."""
    return x._new(protocols.msb(x.server, x.share, width=comparison_width(x.frac, bound)), 0)


def comparison_width(frac: int, bound: float | None) -> int:
    """32 when every value compared with zero is known to be below `bound` in magnitude and that is below
    2^31 ring units, less one for rounding (the sign of such a value is bit 31 of it modulo 2^32), else 64."""
    return 32 if bound is not None and bound * 2.0**frac < 2.0**31 - 1 else 64


def any_nonnegative(x: SharedTensor) -> SharedTensor:
    """One shared bit: [some value of x is >= 0]. Exact for any ring values (64-bit comparisons), so it
    also catches values that overflowed. Costs one comparison of x (7 rounds for large x) and one of a
    single count (3 rounds)."""
    count = (1 - less_than_zero(x.reshape(-1))).sum()
    return 1 - less_than_zero(count - 1, bound=x.size + 1.0)


def less_than(x: SharedTensor, y) -> SharedTensor:
    """[x < y] elementwise, y shared or public. Exact while |x - y| < 2^63 / 2^frac."""
    return less_than_zero(x - y)


def greater_than(x: SharedTensor, y) -> SharedTensor:
    return less_than_zero(-(x - y))


def greater_equal(x: SharedTensor, y) -> SharedTensor:
    return 1 - less_than(x, y)


def where(bit: SharedTensor, a: SharedTensor, b: SharedTensor) -> SharedTensor:
    """bit ? a : b with a shared 0/1 bit: b + bit * (a - b). One round, no truncation."""
    return b + bit * (a - b)


# A tournament level compares the members of groups of k. All k(k-1)/2 comparisons
# m_ij = [v_i loses to v_j] (i < j) of every group run at once, and the first best member wins:
# w_i = AND_{j<i} m_ji AND AND_{j>i} NOT m_ij, exactly one per group (for pairs, w_1 = m_01). The ANDs of
# k - 1 literals take one round (protocols.and_monomials), and 2^(k-1) - 1 dealer products a monomial, so
# groups stay small: at most CIRCUIT_MAX_GROUP. Literal c is comparison c, -(c + 1) its negation. Since
# exactly one w_i is 1, the winner is v_0 + sum_{i>0} w_i (v_i - v_0): w_0 is never computed nor applied.
CIRCUIT_MAX_GROUP = 8
FOURS_MAX_VALUES = 4096  # above this many values a level plays in pairs (a third of the comparisons of fours)
# groups of more than four up to this many values a level. Up to 256 until 2026-12-06, when the tournament
# of 64 x 158 alone took the same CPU with them at 640 values (both servers 3.6-3.9 ms either way, three
# alternated runs of 80 each) in 26 rounds instead of 30 (levels 2, 2, 4, 2, 5 instead of 2, 2, 4, 4, 3);
# 5-10 % slower online than 256 in an earlier measurement of the whole softmax, within today's noise.
LARGE_GROUPS_MAX_VALUES = 1024


@functools.lru_cache(maxsize=None)
def circuit_group(k: int) -> dict:
    """The pairs of a group of k (comparison c compares pairs[c]), the literals of w_0 .. w_(k-1), and the
    pairs' first and second members as index arrays."""
    if not 2 <= k <= CIRCUIT_MAX_GROUP:
        raise ValueError(f"a tournament group has 2 to {CIRCUIT_MAX_GROUP} members, not {k}")
    pairs = tuple((i, j) for i in range(k) for j in range(i + 1, k))
    at = {pair: c for c, pair in enumerate(pairs)}
    winner = tuple(tuple([at[j, i] for j in range(i)] + [-(at[i, j] + 1) for j in range(i + 1, k)])
                   for i in range(k))
    return {"pairs": pairs, "winner": winner, "order": tuple(np.array(side) for side in zip(*pairs))}


@functools.lru_cache(maxsize=1024)
def circuit_levels(n: int, rows: int = 1, width: int = 64, table_words: int = protocols.TABLES_MAX_WORDS) \
        -> tuple:
    """The group size of each level of a bitwise tournament of n values in each of `rows` rows, where
    comparisons of up to table_words words run by tables (the provider's: use_comparison_tables). A level of
    more than FOURS_MAX_VALUES values plays in pairs, where arithmetic rather than rounds is the cost;
    others in pairs, in fours (a single group of the last two or three), or in groups of five to eight on a
    level of up to LARGE_GROUPS_MAX_VALUES values whose comparisons still run by tables, whichever gives
    the fewest rounds, then the fewest comparisons. A level's rounds: its comparison's (protocols.comparison_rounds:
    2 by tables, 5 or 6 by the radix-2 circuit), the winner's ANDs (groups of three or more), the selection."""

    @functools.lru_cache(maxsize=None)
    def best(n):  # (rounds, comparisons, group sizes) from n values down to one
        if n == 1:
            return 0, 0, ()
        if rows * n > FOURS_MAX_VALUES and n > 4:
            choices = (2,)
        else:  # pairs, fours (or one group of the n < 4 left), or a group of up to eight on a small level
            choices = ((2,) if n > 2 else ()) + (min(n, 4),) + (tuple(range(5, min(n, CIRCUIT_MAX_GROUP) + 1))
                                                                if rows * n <= LARGE_GROUPS_MAX_VALUES else ())
        options = []
        for k in choices:
            comparisons = rows * -(-n // k) * k * (k - 1) // 2
            if k > 4 and not protocols.by_tables(comparisons, width, table_words):
                continue
            rounds, count, sizes = best(-(-n // k))
            options.append((rounds + protocols.comparison_rounds(comparisons, width, table_words) + (k > 2) + 1,
                            count + comparisons, (k,) + sizes))
        return min(options)

    return best(n)[2]


def _tournament_planned(x: SharedTensor, axis: int, want_min: bool, with_index: bool, bound: float | None):
    """Tournament along `axis`. With bitwise comparisons (the default), small levels play in groups of
    up to eight: one comparison of all pairs of every group (2 rounds), one round of ANDs for the one-hot
    winner, one round that applies it to the differences of the values (and indices) from the group's
    first — 4 rounds a level, 12 for 158 values (groups of 4, 5 and 8; circuit_levels). Large levels,
    where arithmetic rather than rounds is the cost, play in pairs (comparison + 1 round). With FSS
    comparisons, by rank (_tournament_by_rank): 1 round a level of pairs, 2 a level of groups of any size (or of pairs by lighter keys); 4 rounds for
    a row of 158, 6 for 64 rows, 8 for 13,233 values, 21 for 10^6. With values known within +-bound, the comparisons of
    differences may run on 32 bits (less_than_zero). Exact: ties go to the first position."""
    with x.server.provider.plan("tournament", x.shape, axis, want_min, with_index, bound):
        return _tournament(x, axis, want_min, with_index, bound)


def prepare_tournament(server, shape: tuple, axis: int = -1, want_min: bool = False, with_index: bool = True,
                       bound: float | None = None) -> bool:
    """Ask the dealer now for the material of the next max_along/argmax/argmin of this shape (which must
    have run once: its requests are recorded), e.g. the next query's comparison keys while this query
    runs, so that the keys are drawn off the critical path. Both servers call it at the same point;
    False if nothing could be asked yet. (provider.prepare)"""
    return server.provider.prepare("tournament", tuple(shape), axis, want_min, with_index, bound)


def _tournament(x: SharedTensor, axis: int, want_min: bool, with_index: bool, bound: float | None):
    x = x.transpose(*[d for d in range(x.ndim) if d != axis % x.ndim], axis % x.ndim)
    if x.shape[-1] == 0:
        raise ValueError("max/min of an empty axis")
    width = comparison_width(x.frac, None if bound is None else 2 * bound)  # differences of two values
    with any_core(x.size * width):   # a million values: the other server's numpy runs beside this one's
        if x.server.provider.comparisons == "fss":
            return _tournament_by_rank(x, want_min, with_index, width)
        return _tournament_by_circuit(x, want_min, with_index, width)


def _tournament_by_circuit(x: SharedTensor, want_min: bool, with_index: bool, width: int):
    """The tournament along the last axis, level by level as circuit_levels plans it (see _tournament_planned)."""
    n = x.shape[-1]
    index = None
    if with_index:  # public positions to start with; shared once the first selections are made
        index = x._new(np.zeros(x.shape, dtype=U64), 0) + np.broadcast_to(np.arange(n), x.shape)
    server = x.server
    for k in circuit_levels(n, x.size // n, width, server.provider.table_words):
        group = circuit_group(k)
        groups = -(-x.shape[-1] // k)
        pad = k * groups - x.shape[-1]  # fill the last group with copies of its first member: ties are harmless
        x = _grouped(x, k, pad)
        index = _grouped(index, k, pad) if with_index else None
        # member i of every group, one row each: (k, ..., groups)
        members = np.moveaxis(x.share, -1, 0)
        # m_ij = [v_i loses to v_j]: v_i < v_j for max, v_i > v_j for min; the sign of one difference
        first, second = group["order"] if not want_min else group["order"][::-1]
        losses = members[first] - members[second]
        size = losses[0].size
        comparison = protocols.ask_msb(server, losses.size, width)
        winners = group["winner"][1:]  # w_1 .. w_(k-1): w_0 is not needed
        winner_and = server.provider.ands(size, len(group["pairs"]), winners) if k > 2 else None
        selection = server.provider.selection((k - 1) * size, 2 if with_index else 1)
        bits = protocols.msb_bits(server, losses, comparison, width).reshape(len(group["pairs"]), size)
        if k > 2:
            one_hot = protocols.and_monomials(server, bits, winners, winner_and.get().products)
        else:  # w_1 = m
            one_hot = bits
        # the winner: v_0 + sum_(i>0) w_i (v_i - v_0), and so its index
        columns = [members] + ([np.moveaxis(index.share, -1, 0)] if with_index else [])
        chosen = protocols.select(server, one_hot.ravel() & ONE, [(c[1:] - c[0]).ravel() for c in columns],
                                  selection)
        shape = members.shape[1:]
        won = [c[0] + z.reshape(k - 1, *shape).sum(axis=0, dtype=U64) for c, z in zip(columns, chosen)]
        x = x._new(won[0])
        if with_index:
            index = index._new(won[1])
    return x[..., 0], (index[..., 0] if with_index else None)


def _grouped(t: SharedTensor, k: int, pad: int) -> SharedTensor:
    """(..., kg - pad) -> (..., g, k), padding the last group with copies of its first member."""
    return t._new(_pad_groups(t.share, k, pad))


def _pad_groups(a: np.ndarray, k: int, pad: int) -> np.ndarray:
    """_grouped on an array (a share, or public positions)."""
    if pad:
        start = (a.shape[-1] // k) * k
        a = np.concatenate([a, np.repeat(a[..., start:start + 1], pad, axis=-1)], axis=-1)
    return a.reshape(*a.shape[:-1], a.shape[-1] // k, k)


# The tournament with FSS comparisons (use_comparisons("fss")) plays each level in groups of k, by rank:
# - k = 2, one round: s = [v1 beats v0] and s (v1 - v0) (and s (i1 - i0)) from one comparison key with
#   payloads (protocols.msb_select); the winner is v0 + s (v1 - v0).
# - k >= 3, two rounds: every pair's sign at once, m_ij = [v_i loses to v_j] for i < j, ties to the
#   earlier member; member i's loss count L_i = sum_{j>i} m_ij + sum_{j<i} (1 - m_ji) is local, and
#   since (value, position) orders the group totally the counts are 0 .. k-1, one each: the winner is
#   the one with L_i = 0. Then one comparison w_i = [L_i - 1 < 0] on 8 or 16 bits (COUNT_WIDTHS: the
#   shares of L_i - 1 reduced modulo 2^w, local and exact since reduction is a ring homomorphism, and
#   the sign of L_i - 1 in [-1, k - 2], inside [-2^(w-1), 2^(w-1)), is bit w - 1 of it modulo 2^w) with
#   the members' values (and shared indices) as payloads gives w_i v_i in the same round: the winner is
#   sum_i w_i v_i. Public positions (the first level) need no payload: sum_i w_i i is local.
# The pair signs are exact where the differences fit the width (comparison_width), so the order and the
# counts are exact: ties go to the first position, like numpy's argmax/argmin.
# - k = -2 (BY_SELECTION), two rounds: pairs by the lightest keys, XOR-output without payloads (one AES
#   block a level, 1,056 bytes on 64 bits, against 2,616 with two payloads), then a selection round
#   (protocols.select): for the largest levels, where the keys rather than the rounds are the cost.
# rank_levels picks the k of each level for the fewest rounds * ROUND_COST + comparisons.
# A round is worth ROUND_COST comparisons (of 31 levels; ~1 us each online, a few for the dealer): a round
# trip of about 10 ms, between data centres, where FSS comparisons are the choice (inside one process or
# a LAN, bitwise comparisons are faster). 1,000 would plan for a 1 ms link: more levels BY_SELECTION.
ROUND_COST = 10_000
BY_SELECTION = -2
SELECTION_WEIGHT = 0.4  # a pair's cost by XOR key and selection against one with payloads (dealer + servers)
MAX_GROUP = 2**15   # counts of larger groups would not fit COUNT_WIDTHS
COUNT_WIDTHS = (8, 16)


def _count_width(k: int) -> int:
    """The narrowest width whose signed range holds the counts minus one, -1 .. k - 2."""
    if not 2 <= k <= MAX_GROUP:
        raise ValueError(f"a tournament group has 2 to {MAX_GROUP} members, not {k}")
    return next(w for w in COUNT_WIDTHS if k - 2 < 2 ** (w - 1))


@functools.lru_cache(maxsize=256)
def rank_levels(n: int, rows: int = 1, width: int = 64) -> tuple:
    """The group sizes of the levels of a by-rank tournament of n values (in each of `rows` rows):
    the plan of least rounds * ROUND_COST + comparisons (a comparison weighted by its depth, width - 1
    levels, relative to a 32-bit one), over pairs (1 round, n/2 comparisons) and groups of k <= MAX_GROUP
    (2 rounds, g k(k-1)/2 + g k narrow comparisons), and pairs BY_SELECTION (2 rounds, n/2 comparisons at
    SELECTION_WEIGHT). Public: it depends on the sizes only."""
    weight, count_weight = rows * (width - 1) / 31, rows * 7 / 31
    best = {1: (0.0, ())}
    for m in sorted({-(-n // d) for d in range(1, n + 1)} if n <= 4096 else _quotients(n)):
        if m == 1:
            continue
        pairs = -(-m // 2)
        choice = min((ROUND_COST + pairs * weight + best[pairs][0], (2,) + best[pairs][1]),
                     (2 * ROUND_COST + pairs * weight * SELECTION_WEIGHT + best[pairs][0],
                      (BY_SELECTION,) + best[pairs][1]))
        for k in range(3, min(m, MAX_GROUP) + 1):
            g = -(-m // k)
            local = 2 * ROUND_COST + g * (k * (k - 1) // 2 * weight + k * count_weight)
            if local >= choice[0]:
                break  # the cost of a level only grows with k
            if local + best[g][0] < choice[0]:
                choice = (local + best[g][0], (k,) + best[g][1])
        best[m] = choice
    return best[n][1]


def _quotients(n: int) -> list:
    """Every ceil(n / d), d >= 1: the sizes a tournament of n values can reach (2 sqrt(n) of them)."""
    out, d = set(), 1
    while d <= n:
        q = -(-n // d)
        out.add(q)
        d = -(-n // (q - 1)) if q > 1 else n + 1
    return sorted(out)


def _tournament_by_rank(x: SharedTensor, want_min: bool, with_index: bool, width: int, levels=None):
    """The tournament along the last axis by rank (above): 1 round a level of pairs, 2 a level of groups.
    `levels`: the group sizes, rank_levels' unless given (the tests play every size)."""
    n = x.shape[-1]
    index = np.broadcast_to(np.arange(n, dtype=U64), x.shape) if with_index else None  # public, then shared
    for level in rank_levels(n, x.size // n, width) if levels is None else levels:
        k = abs(level)
        pad = -x.shape[-1] % k
        x = _grouped(x, k, pad)
        if with_index:
            index = _grouped(index, k, pad) if isinstance(index, SharedTensor) else _pad_groups(index, k, pad)
        play = {2: _pair_level, BY_SELECTION: _pair_level_by_selection}.get(level, _group_level)
        x, index = play(x, index, want_min, width)
    if x.shape[-1] != 1:
        raise ValueError(f"tournament levels {levels} leave {x.shape[-1]} values of {n}")
    if with_index and not isinstance(index, SharedTensor):  # n = 1: position 0, known to all
        index = x._new(np.zeros(x.shape, dtype=U64), 0) + index
    return x[..., 0], (index[..., 0] if with_index else None)


def _pair_level(x: SharedTensor, index, want_min: bool, width: int):
    """Groups of two (..., g, 2) -> winners (..., g): one round. index: public positions, shared ones or None."""
    v0, v1 = x[..., 0], x[..., 1]
    beaten = (v1 - v0) if want_min else (v0 - v1)  # s = [v1 beats v0]: v1 < v0 for min, v0 < v1 for max
    payloads = [(v1 - v0).share]
    if isinstance(index, SharedTensor):
        payloads.append((index[..., 1] - index[..., 0]).share)
    s, chosen = protocols.msb_select(x.server, beaten.share, payloads, width)
    winner = v0 + v0._new(chosen[0])
    if isinstance(index, SharedTensor):
        return winner, index[..., 0] + index._new(chosen[1])
    if index is None:
        return winner, None
    return winner, x._new(s * (index[..., 1] - index[..., 0]), 0) + index[..., 0]


def _pair_level_by_selection(x: SharedTensor, index, want_min: bool, width: int):
    """_pair_level in two rounds with lighter keys: s as an XOR bit (protocols.msb_bits), then
    s (v1 - v0) (and s (i1 - i0)) by a selection round (protocols.select)."""
    server, (v0, v1) = x.server, (x[..., 0], x[..., 1])
    beaten = (v1 - v0) if want_min else (v0 - v1)
    if index is not None and not isinstance(index, SharedTensor):  # public positions: shares of them
        index = x._new(np.zeros(index.shape, dtype=U64), 0) + index
    values = [(v1 - v0).share] + ([] if index is None else [(index[..., 1] - index[..., 0]).share])
    comparison = protocols.ask_msb(server, beaten.size, width)
    selection = server.provider.selection(beaten.size, len(values))
    bits = protocols.msb_bits(server, beaten.share, comparison, width)
    chosen = [c.reshape(v0.shape) for c in protocols.select(server, bits, values, selection)]
    return v0 + v0._new(chosen[0]), (None if index is None else index[..., 0] + index._new(chosen[1]))


def _group_level(x: SharedTensor, index, want_min: bool, width: int):
    """Groups of k >= 3 (..., g, k) -> winners (..., g): two rounds (the pairs' signs; the winner's
    selection by its loss count)."""
    server, k = x.server, x.shape[-1]
    first, second = np.triu_indices(k, 1)  # the pairs (i, j), i < j
    count_width = _count_width(k)
    shared_index = isinstance(index, SharedTensor)
    payloads = [x.share] + ([index.share] if shared_index else [])
    signs = protocols.ask_msb(server, x.size // k * first.size, width, "add")
    selection = server.provider.fss_comparison(x.size, count_width, "add", len(payloads))
    diff = x.share[..., first] - x.share[..., second]  # v_i - v_j: [v_i < v_j] for max, [v_j < v_i] for min
    lost = protocols.msb(server, -diff if want_min else diff, width, signs)  # m_ij = [i loses to j]
    counts = _sum_over(lost, first, k) - _sum_over(lost, second, k)
    if server.index == 0:  # + the number of j < i (each 1 - m_ji contributes its 1), - 1
        counts += np.arange(k, dtype=U64) - ONE
    won, chosen = protocols.msb_select(server, counts, payloads, count_width, selection)
    winner = x._new(chosen[0].sum(axis=-1, dtype=U64))
    if shared_index:
        return winner, index._new(chosen[1].sum(axis=-1, dtype=U64))
    if index is None:
        return winner, None
    return winner, x._new((won * index).sum(axis=-1, dtype=U64), 0)


def _sum_over(values: np.ndarray, owner: np.ndarray, k: int) -> np.ndarray:
    """(..., P) -> (..., k): for each member, the sum of the values of the pairs it is `owner` of."""
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=k)
    out = np.zeros((*values.shape[:-1], k), dtype=U64)
    held = counts > 0
    out[..., held] = np.add.reduceat(values[..., order], (np.cumsum(counts) - counts)[held], axis=-1)
    return out


def max_along(x: SharedTensor, axis: int = -1, bound: float | None = None) -> SharedTensor:
    """Maximum along an axis, by the tournament above (12 rounds for a row of 158, 4 with FSS). Exact. A `bound` on
    the magnitude of the values (if known) makes the comparisons cheaper; values beyond it give garbage."""
    return _tournament_planned(x, axis, want_min=False, with_index=False, bound=bound)[0]


def argmax(x: SharedTensor, axis: int = -1, bound: float | None = None):
    """(maximum, index of a maximum) along an axis, both shared. Exact. `bound` as for max_along."""
    return _tournament_planned(x, axis, want_min=False, with_index=True, bound=bound)


def argmin(x: SharedTensor, axis: int = -1, bound: float | None = None):
    """(minimum, index of a minimum) along an axis, both shared. Exact. `bound` as for max_along."""
    return _tournament_planned(x, axis, want_min=True, with_index=True, bound=bound)


# -- exp --------------------------------------------------------------------------------------------------
EXP_RANGE = (-64.0, 10.0)


def exp(x: SharedTensor, upper: float = EXP_RANGE[1], frac: int | None = None,
        lower: float = EXP_RANGE[0]) -> SharedTensor:
    """e^x for x in [lower, upper] (-64 <= lower, upper <= 10), within 1e-4 relative or 3e-5 absolute.

    Range reduction: y = x / 2^h, read for free from the same ring elements with h more fractional bits,
    lies in [-0.5, 0.5] (h = 7 for the whole range: y in [-0.5, 0.08]; 5 for [-16, 0]: _exp_halvings);
    a polynomial fitted to e^y on y's interval (_exp_polynomial: degree 5 there, within 4e-6 of e^x
    relative once the squarings have multiplied its error by 2^h) gives e^y; h squarings give e^x. Every product here has operands the servers can see through a dealer mask (protocols.Masked):
    y once its mask is opened, and every truncated value for free. So the products are local and only
    the truncations cost rounds: opening y, the powers y^2, y^3..y^4, y^5 (..y^8), the polynomial and the
    h squares, 12 rounds in all (10 on [-16, 0]; each of size(x) ring elements), plus a round where a
    truncation is redone (rare). The squarings rescale as they go so that each product stays under the truncation
    bound: small values keep up to f + 7 fractional bits, large ones fewer (their relative precision is
    what matters). `upper` is the largest input the caller expects, `lower` the smallest; the default
    schedule is valid for all of [-64, 10]. Below `lower` the result is not guaranteed (the polynomial is
    then evaluated outside its interval).

    In the few-rounds profile (comparisons "fss", see few_rounds), exp of values known to be <= 0
    (upper <= 0) runs by tables instead (lut.exp_nonpositive): 3 rounds, within 2.5e-7 absolute, 0 below
    -15.98 (where e^x < 1.2e-7), about 9 kB offline a value.
    """
    with x.server.provider.plan("exp", x.shape, x.frac, upper, frac, lower):
        if upper <= 0 and few_rounds(x):
            return lut.exp_nonpositive(x, frac)
        return _exp(x, upper, frac, lower)


def few_rounds(x: SharedTensor) -> bool:
    """Whether exp of x (and what builds on it) runs by tables: in the few-rounds profile, the servers'
    comparisons by FSS (protocols.use_comparisons "fss", for links where a round trip costs more than
    arithmetic and offline bytes), for calls of up to provider.exp_tables values (lut.TABLE_MAX_VALUES,
    2,048, unless lut.use_exp_tables or config mpc.exp_table_values says otherwise) with 7 to 16
    fractional bits. Bigger calls (a training batch, by default) keep the polynomial: the tables' offline
    bytes grow with the values. lut.use_exp_tables(srv, False) turns the tables off."""
    provider = x.server.provider
    return (provider.comparisons == "fss" and x.size <= provider.exp_tables and lut.LOW_SPAN < x.frac <= 16)


def _exp(x: SharedTensor, upper: float, frac: int | None, lower: float = EXP_RANGE[0],
         truncate_last: bool = True) -> SharedTensor:
    """exp (above); without truncate_last, the last square as it is, at twice its input's fractional bits
    (no round: for a caller that only sums and compares it, as confident_argmax does)."""
    srv, fixed = x.server, x.server.fixed
    out_frac = fixed.frac_bits if frac is None else frac
    if upper > EXP_RANGE[1] or lower < EXP_RANGE[0] or lower > min(upper, 0.0):
        raise ValueError(f"exp is documented for inputs in [{EXP_RANGE[0]}, {EXP_RANGE[1]}], asked for "
                         f"[{lower}, {upper}]")
    yf, squares = _exp_schedule(fixed, x.frac, lower, upper, out_frac)
    constant, coefficients = _exp_polynomial(fixed, yf, *_exp_interval(lower, upper))
    degree = len(coefficients)
    m = srv.provider.masked_chain(x.size, _exp_steps(yf, squares, truncate_last, degree)).get()
    # powers y .. y^degree, level by level (y^2; y^3, y^4; y^5 .. y^8): each level's products are local,
    # then one truncation round. |y| <= 1/2, so the powers are below 2^(2 yf - 1) before truncation: the
    # tighter bound makes retries rarer.
    power_bits = min(2 * yf - 1, fixed.bound_bits)
    (y,) = protocols.open_masked(srv, [x.share.ravel()], [m.mask("y")])
    powers = {1: y}
    for level in _power_levels(degree):
        pairs = [(powers[k - half], powers[half]) for k, half in level]
        names = [(_power_name(k - half), _power_name(half)) for k, half in level]
        products = protocols.masked_products(srv, pairs, [m.cross(*n) for n in names])
        truncated = protocols.truncate_masked(srv, products, [yf] * len(level),
                                              [m.trunc(_power_name(k)) for k, _ in level], power_bits)
        powers.update(zip((k for k, _ in level), truncated))
    # sum of c_k y^k: public coefficients at yf, one truncation (masked: it feeds the first square)
    acc = y.share * coefficients[0]
    for k in range(2, degree + 1):
        acc += powers[k].share * coefficients[k - 1]
    if srv.index == 0:
        acc += constant
    (z,) = protocols.truncate_masked(srv, [acc], [yf], [m.trunc("z0")], min(2 * yf + 1, fixed.bound_bits))  # e^y < 2
    # squarings: each square is local, its truncation one round
    for k, (frac_in, frac_out, value_bits) in enumerate(squares):
        (square,) = protocols.masked_products(srv, [(z, z)], [m.cross(f"z{k}", f"z{k}")])
        if k == len(squares) - 1 and not truncate_last:
            return x._new(square.reshape(x.shape), 2 * frac_in)
        (z,) = protocols.truncate_masked(srv, [square], [2 * frac_in - frac_out], [m.trunc(f"z{k + 1}")],
                                         2 * frac_in + value_bits + 1)
    return x._new(z.share.reshape(x.shape), out_frac)


# How far exp's polynomial may be from e^y, relative, once the h squarings have multiplied its error by
# 2^h: a tenth of exp's documented 1e-4, and below the fixed-point rounding at 16 fractional bits (1.5e-5).
EXP_POLYNOMIAL_ERROR = 1e-5
EXP_DEGREES = range(3, 9)  # y^8 is the last power of the third level of products


def _exp_interval(lower: float, upper: float) -> tuple:
    """(h, and the interval [lower, upper] / 2^h of y on which the polynomial is fitted): public."""
    h = _exp_halvings(lower, upper)
    return h, lower / 2**h, max(upper, 0.0) / 2**h


@functools.lru_cache(maxsize=256)
def _exp_polynomial(fixed, frac: int, halvings: int, a: float, b: float) -> tuple:
    """exp's polynomial on [a, b] (y's interval): the lowest degree in EXP_DEGREES whose Chebyshev
    interpolant of e^y (near-minimax; a Taylor series of the same degree is some 1,000 times worse at
    the interval's ends) is within EXP_POLYNOMIAL_ERROR / 2^halvings of it, relative, on a fine grid of
    [a, b]. Returns (its constant term at 2 frac fractional bits, the coefficients of y .. y^degree at
    frac), read-only: every call shares the cached arrays. Public: from the interval alone."""
    grid = np.linspace(a, b, 4001)
    for degree in EXP_DEGREES:
        fit = np.polynomial.Chebyshev.interpolate(np.exp, degree, domain=[a, b]).convert(
            kind=np.polynomial.Polynomial)
        if np.max(np.abs(fit(grid) * np.exp(-grid) - 1.0)) * 2**halvings <= EXP_POLYNOMIAL_ERROR:
            break
    else:
        raise ValueError(f"no polynomial of degree {EXP_DEGREES[-1]} fits e^y on [{a}, {b}]")
    c = np.zeros(degree + 1)
    c[:len(fit.coef)] = fit.coef
    constant, coefficients = fixed.encode(c[0], 2 * frac), fixed.encode(c[1:], frac)
    coefficients.flags.writeable = False
    return constant, coefficients


@functools.lru_cache(maxsize=None)
def _power_levels(degree: int) -> tuple:
    """The powers y^2 .. y^degree, level by level, each as (k, half): y^k = y^(k - half) y^half, where
    half is the level's largest power of two (y^2; y^3 = y^2 y, y^4 = y^2 y^2; y^5 .. y^8 = y^4 y^..)."""
    levels, half = [], 1
    while half < degree:
        levels.append(tuple((k, half) for k in range(half + 1, min(2 * half, degree) + 1)))
        half *= 2
    return tuple(levels)


def _power_name(k: int) -> str:
    """The chain's name of the power y^k: y, then t2, t3, .. (truncated)."""
    return "y" if k == 1 else f"t{k}"


@functools.lru_cache(maxsize=256)
def _exp_steps(yf: int, squares: tuple, truncate_last: bool = True, degree: int = 5) -> tuple:
    """The dealer's material for _exp (material.MaskedChainRequest): y's mask, each level of powers' mask
    products and truncations (_power_levels), the truncation of the polynomial and of each square (z0 ..;
    the last one's only with truncate_last), each square's mask product."""
    steps = [("mask", "y")]
    for level in _power_levels(degree):
        steps += [("cross", _power_name(k - half), _power_name(half)) for k, half in level]
        steps += [("trunc", _power_name(k), yf) for k, _ in level]
    steps.append(("trunc", "z0", yf))
    truncated = squares if truncate_last else squares[:-1]
    steps += [("trunc", f"z{k + 1}", 2 * fin - fout) for k, (fin, fout, _) in enumerate(truncated)]
    steps += [("cross", f"z{k}", f"z{k}") for k in range(len(squares))]
    return tuple(steps)


def _exp_schedule(fixed, frac: int, lower: float, upper: float, out_frac: int) -> tuple:
    """(the polynomial's fractional bits, the squarings' (_exp_squaring_fracs)) of _exp on [lower, upper]
    at `frac` fractional bits in and out_frac out: public, from these alone."""
    halvings = _exp_halvings(lower, upper)
    yf = frac + halvings
    return yf, _exp_squaring_fracs(yf, upper, out_frac, fixed.bound_bits, halvings)


def _exp_halvings(lower: float, upper: float) -> int:
    """The fewest halvings h that bring [lower, upper] into [-0.5, 0.5] (at least 1)."""
    return max(1, math.ceil(math.log2(max(-lower, upper, 0.5) / 0.5)))


@functools.lru_cache(maxsize=256)
def _exp_squaring_fracs(yf: int, upper: float, out_frac: int, bound_bits: int, halvings: int) -> tuple:
    """(fractional bits in, out, bits above the point of the largest square) of each squaring: as many
    fractional bits as the truncation bound allows for the largest value that squaring can produce,
    the caller's at the end."""
    bound = bound_bits - 1
    fracs, current = [], yf
    for k in range(halvings):
        remaining = halvings - k - 1  # squarings left after this one
        biggest = _bits_of_exp(upper / 2**remaining)  # log2 of the largest value this squaring can produce
        nxt = out_frac if remaining == 0 else min(yf, (bound - _bits_of_exp(upper / 2**(remaining - 1))) // 2)
        if current * 2 + biggest >= bound + 1:
            raise ValueError(f"exp cannot reach {upper} with {current} fractional bits")
        fracs.append((current, nxt, biggest))
        current = nxt
    return tuple(fracs)


def _bits_of_exp(x: float) -> int:
    """ceil(log2(e^x)), at least 0: bits above the binary point of e^x."""
    return int(max(0, math.ceil(x / math.log(2))))


# -- reciprocal ---------------------------------------------------------------------------------------------
RECIPROCAL_RANGE = (1.0 / 32, 32.0)


def reciprocal(x: SharedTensor, lower: float = RECIPROCAL_RANGE[0], upper: float = RECIPROCAL_RANGE[1],
               frac: int | None = None, octaves_per_comparison: float = 2.0, tolerance: float = 1e-6) -> SharedTensor:
    """1/x for x in [lower, upper] (default [1/32, 32]), relative error below 1e-3 (about 1e-4).

    Initial guess: the servers compare x with powers of two spaced `octaves_per_comparison` apart inside
    the range, all in one comparison (3 rounds); the sum of the bits [x >= 2^j] locates x in a band
    [2^k, 2^(k+w)), and y0 = 2 / ((1 + 2^w) 2^k) is a public combination of those bits (local, exact).
    With FSS comparisons all the thresholds share one opening and one key a value (_below_thresholds: 1
    round, 792 bytes offline a value whatever their number). Then x*y0 is within e0 = (2^w - 1) / (2^w + 1)
    of 1 (0.6 for w = 2), and Newton-Raphson steps y <- y(2 - xy) square that error each time; as many
    run as `tolerance` needs (5 for w = 2), on masked values (2 rounds each, see _newton_reciprocal).
    Denser thresholds buy fewer steps: softmax, which inverts one value per row, uses w = 1/4 and 2 steps
    (1/64 and 1 step in the few-rounds profile, _softmax_by_tables). The iteration runs at as many fractional
    bits as the truncation bound allows for 1/lower, then is rounded to `frac`.
    """
    with x.server.provider.plan("reciprocal", x.shape, x.frac, lower, upper, frac, octaves_per_comparison, tolerance):
        return _reciprocal(x, lower, upper, frac, octaves_per_comparison, tolerance)


def _reciprocal(x, lower, upper, frac, width, tolerance) -> SharedTensor:
    fixed = x.server.fixed
    out_frac = fixed.frac_bits if frac is None else frac
    if not 0 < lower < upper:
        raise ValueError(f"reciprocal needs 0 < lower < upper, got [{lower}, {upper}]")
    if x.frac == 0:  # an integer tensor: give it fractional bits (a local shift), x y needs a truncation
        x = x.with_frac(fixed.frac_bits)
    lo = math.log2(lower)
    # keep x*y (near 1) and y*(2 - xy) (at most 1/lower) under 2^(bound - 1) before truncation
    reciprocal_bits = math.ceil(-lo) + 1 if lower < 1 else 1
    y_frac = min(fixed.bound_bits - 2 - x.frac, (fixed.bound_bits - 1 - reciprocal_bits) // 2)
    # bitwise, the line per band where its bound on |1 - x y0| beats the band centres' (its coefficients'
    # rounding grows with the range: _line_error); with FSS the thresholds share one key, and no product
    line = None if x.server.provider.comparisons == "fss" else _line_error(fixed, x.frac, lower, upper, width,
                                                                           reciprocal_bits)
    if line is None or line >= _centre_error(width):
        y, error = _reciprocal_guess(x, lower, upper, width, y_frac)
    else:
        y, error = _reciprocal_linear_guess(x, lower, upper, width, reciprocal_bits), line
    newton_steps = max(1, math.ceil(math.log2(math.log(tolerance) / math.log(error))))
    return _newton_reciprocal(x, y, newton_steps, reciprocal_bits, y_frac).with_frac(out_frac)


def _reciprocal_guess(x: SharedTensor, lower: float, upper: float, width: float, y_frac: int, below=None):
    """(y0 at y_frac bits, the bound e0 on |1 - x y0|): x compared with powers of two `width` octaves apart
    in [lower, upper] (one comparison round), y0 the centre of 1/x's band, a public combination of the bits.
    below(thresholds): the shares of [x < t_k] if the caller has a cheaper way (else _below_thresholds)."""
    bands = _bands(lower, upper, width)  # band k: [2^k, 2^(k+w))
    guess = lambda k: 2.0 / (1 + 2.0**width) / 2.0**k  # noqa: E731 - centres x*y0 on 1 within a band
    y = x._new(np.zeros(x.shape, dtype=U64), y_frac) + guess(bands[0])
    if len(bands) > 1:
        thresholds = np.array([2.0**k for k in bands[1:]])
        at_least = 1 - (_below_thresholds(x, thresholds, bound=upper) if below is None else below(thresholds))
        steps = x.server.fixed.encode([guess(k) - guess(k - width) for k in bands[1:]], y_frac)
        y = y + x._new((at_least.share * steps).sum(axis=-1, dtype=U64), y_frac)
    return y, _centre_error(width)


def _centre_error(width: float) -> float:
    """The bound on |1 - x y0| of the band centres `width` octaves apart: (2^w - 1) / (2^w + 1)."""
    return (2.0**width - 1) / (2.0**width + 1)


LINE_MIN_FRAC = 12  # fewer fractional bits for the line's coefficients: the band centres instead


def _bands(lower: float, upper: float, width: float) -> np.ndarray:
    """The log2 of each band's start, `width` octaves apart from lower, enough to cover upper."""
    lo, hi = math.log2(lower), math.log2(upper)
    return np.array([lo + width * i for i in range(max(1, math.ceil((hi - lo) / width)))])


def _line_coefficient_frac(fixed, frac: int, reciprocal_bits: int) -> int:
    """The fractional bits of the line's b_k beside x's `frac`: y0 < 2^reciprocal_bits at their sum stays
    under the truncation bound."""
    return fixed.bound_bits - 2 - reciprocal_bits - frac


def _line_error(fixed, frac: int, lower: float, upper: float, width: float, reciprocal_bits: int) -> float | None:
    """The bound on |1 - x y0| of _reciprocal_linear_guess: the line's own, (R - 1)^2 / (R^2 + 6R + 1)
    with R = 2^w, plus its coefficients' rounding: b_k, at coefficient_frac bits, is off by at most
    2^-(coefficient_frac + 1), which moves x y0 by that times x^2 < 4^(k + w) (in the softmax's top band,
    2^-23 4^8 = 0.008), plus a little for y0's truncation and x's own rounding. None where the
    coefficients would have fewer than LINE_MIN_FRAC fractional bits."""
    coefficient_frac = _line_coefficient_frac(fixed, frac, reciprocal_bits)
    if coefficient_frac < LINE_MIN_FRAC:
        return None
    ratio = 2.0**width
    rounding = 2.0 ** -(coefficient_frac + 1) * 4.0 ** (_bands(lower, upper, width)[-1] + width)
    return (ratio - 1.0) ** 2 / (ratio * ratio + 6.0 * ratio + 1.0) + rounding + 1e-4


def _reciprocal_linear_guess(x: SharedTensor, lower: float, upper: float, width: float, reciprocal_bits: int):
    """y0 untruncated, at more fractional bits than the Newton steps keep (its bound on |1 - x y0|:
    _line_error), with bitwise comparisons: in each band [2^k, 2^(k+w)) (w = `width` octaves) y0 = a_k - b_k x, the line
    closest to 1/x there in relative terms: with R = 2^w, x y0 = t (a - b t) for t = x / 2^k in [1, R], equal
    to 1 - e0 at both ends and 1 + e0 in the middle, so b = 8 / (R^2 + 6R + 1), a = (R + 1) b,
    e0 = (R - 1)^2 / (R^2 + 6R + 1): 1/17 for an octave (band centres: 1/3), 9/41 for two (3/5), which
    saves Newton steps (2 rounds each) for one round: the comparisons s_i = [x < t_i] with x as their
    payload (protocols.msb_select) give s_i x in the round that turns the bits into additive shares, so
        y0 = a_last - sum_i s_i (a_i - a_(i-1)) - b_last x + sum_i (s_i x) (b_i - b_(i-1))
    (band j: s_i = 1 for i > j only, which leaves a_j - b_j x) is local, public coefficients times
    shares. Its truncation is left to _newton_reciprocal, which runs it in the round that opens x."""
    srv, fixed = x.server, x.server.fixed
    bands = _bands(lower, upper, width)
    ratio = 2.0**width
    b = 8.0 / (ratio * ratio + 6.0 * ratio + 1.0)
    coefficient_frac = _line_coefficient_frac(fixed, x.frac, reciprocal_bits)
    y_bits = x.frac + coefficient_frac
    a_k = fixed.encode((ratio + 1.0) * b / 2.0**bands, y_bits)
    b_k = fixed.encode(b / 4.0**bands, coefficient_frac)
    acc = -(x.share * b_k[-1])
    if srv.index == 0:
        acc += a_k[-1]
    if len(bands) > 1:
        thresholds = 2.0**bands[1:]
        below = x.reshape(*x.shape, 1) - thresholds
        payload = np.repeat(x.share[..., None], len(thresholds), axis=-1)
        s, (sx,) = protocols.msb_select(srv, below.share, [payload], comparison_width(x.frac, upper))
        acc += (sx * np.diff(b_k)).sum(axis=-1, dtype=U64)
        acc -= (s * np.diff(a_k)).sum(axis=-1, dtype=U64)
    return x._new(acc, y_bits)


def _below_thresholds(x: SharedTensor, thresholds: np.ndarray, bound: float) -> SharedTensor:
    """[x < t_k] for each value and public threshold (shape (*x.shape, T)), given |x - t_k| <= bound. With FSS
    comparisons, one opening and one key per value for all T (thresholds.signs_against), else T signs."""
    if x.server.provider.comparisons != "fss":
        return less_than_zero(x.reshape(*x.shape, 1) - thresholds, bound=bound)
    width = comparison_width(x.frac, bound)
    bits = many.signs_against(x.server, x.share.ravel(), x.server.fixed.encode(thresholds, x.frac), width)
    return x._new(bits.reshape(*x.shape, len(thresholds)), 0)


def _newton_reciprocal(x: SharedTensor, y: SharedTensor, steps: int, reciprocal_bits: int,
                       yf: int | None = None) -> SharedTensor:
    """Newton steps y <- y (2 - x y) on masked values (protocols.Masked): x and y0 are opened against
    dealer masks once, together (or, with y0 at more fractional bits than `yf`, y0 truncated to yf in
    the round that opens x: a truncation leaves it masked); then x y and y (x y) are local products of
    masked values and each step costs its two truncations only (2 rounds instead of 4). x y stays below 2
    and y below 1/lower (2^reciprocal_bits): the truncations are told so (fewer retries)."""
    srv, f = x.server, x.frac
    bound = srv.fixed.bound_bits
    yf = y.frac if yf is None else yf
    shift = y.frac - yf
    m = srv.provider.masked_chain(x.size, _newton_steps(steps, f, yf, shift)).get()
    if shift:
        ym, xm = protocols.truncate_masked(srv, [y.share.ravel()], [shift], [m.trunc("y0")],
                                           min(y.frac + reciprocal_bits + 1, bound),
                                           open_too=[(x.share.ravel(), m.mask("x"))])
    else:
        xm, ym = protocols.open_masked(srv, [x.share.ravel(), y.share.ravel()], [m.mask("x"), m.mask("y0")])
    two = U64(2) << U64(yf)  # 2 at yf bits, times y at yf: 2y at 2 yf
    for k in range(steps):
        (xy,) = protocols.masked_products(srv, [(xm, ym)], [m.cross("x", f"y{k}")])        # at f + yf
        (p,) = protocols.truncate_masked(srv, [xy], [f], [m.trunc(f"p{k}")], min(f + yf + 1, bound))  # x y at yf
        (yp,) = protocols.masked_products(srv, [(ym, p)], [m.cross(f"y{k}", f"p{k}")])     # y x y at 2 yf
        (ym,) = protocols.truncate_masked(srv, [ym.share * two - yp], [yf], [m.trunc(f"y{k + 1}")],  # y (2 - x y) at yf
                                          min(2 * yf + reciprocal_bits + 1, bound))
    return y._new(ym.share.reshape(y.shape), yf)


def _newton_steps(steps: int, f: int, yf: int, shift: int = 0) -> tuple:
    """The dealer's material for _newton_reciprocal (material.MaskedChainRequest), in the order it is used:
    y0's mask, or with a `shift`, the truncation that brings y0 to yf bits (and masks it)."""
    out = [("mask", "x"), ("trunc", "y0", shift) if shift else ("mask", "y0")]
    for k in range(steps):
        out += [("cross", "x", f"y{k}"), ("trunc", f"p{k}", f), ("cross", f"y{k}", f"p{k}"), ("trunc", f"y{k + 1}", yf)]
    return tuple(out)


# -- softmax ------------------------------------------------------------------------------------------------
def hide_offset(x: SharedTensor, axis: int = -1) -> SharedTensor:
    """x + R, with one R for each line along `axis`, uniform on Z_2^64 and known to nobody: each server
    adds a uniform offset of its own (no communication), and the two sum to one neither knows.

    Revealed to the client (Client.reconstruct_differences) this tells exactly the differences x_i - x_j
    along `axis`. For logits that is what the softmax probabilities tell, since p_i / p_j = exp(x_i - x_j):
    the client can compute softmax(x) itself instead of the servers approximating it under MPC, and
    learns nothing it would not learn from the probabilities (at the fixed-point resolution of x).
    """
    shape = list(x.shape)
    shape[axis] = 1
    return x._new(x.share + x.server.rng.uint64(tuple(shape)))


SOFTMAX_BOUND = 2.0**13  # |logits| below this: differences of two fit the 32-bit comparisons


def softmax(x: SharedTensor, axis: int = -1, clamp: bool = True) -> SharedTensor:
    """softmax along `axis` of logits within +-8192 (SOFTMAX_BOUND), within 1e-4 absolute of float64.
    Nothing is revealed: not the maximum, not the denominator.

    m = max (exact, comparisons), d = x - m, e = exp(d) in (0, 1] at extra precision, s = sum(e) in [1, n],
    p = e * (1/s) with the reciprocal run over [1, n]. exp is only guaranteed on [-64, 0]; with `clamp`
    (the default) d is raised to clamp_below(n) (-16 for up to 177 values a row) where it is lower (one
    more comparison, 3 rounds for a row, and 2 squarings fewer in exp), which moves s by under 2e-5 of
    itself (CLAMP_SUM_ERROR) and makes any logits within the bound safe (beyond it the 32-bit
    comparisons of the maximum and the clamp are wrong). Without it, rows
    must span less than 64 (e.g. logits in [-32, 32]); the trainer, whose logits stay within that, skips it.

    Few-rounds profile (few_rounds): exp by tables (the clamp built in whatever `clamp` says), the
    reciprocal's guess from thresholds 1/64 octave apart (no round of its own), which leaves one Newton
    step, and the product, all on masked values of one chain (_softmax_by_tables): 7 rounds besides the
    maximum, against 22 with FSS and the polynomial, 23 bitwise.
    """
    with x.server.provider.plan("softmax", x.shape, x.frac, axis, clamp):
        return _softmax(x, axis, clamp)


def _softmax(x: SharedTensor, axis: int, clamp: bool) -> SharedTensor:
    x_last = x.transpose(*[d for d in range(x.ndim) if d != axis % x.ndim], axis % x.ndim)
    n = x_last.shape[-1]
    m, _ = _tournament(x_last, -1, want_min=False, with_index=False, bound=SOFTMAX_BOUND)
    if few_rounds(x_last):
        p = _softmax_by_tables(x_last - m.reshape(*m.shape, 1), x.frac)
    else:
        e = _exp_below_max(x_last, m, clamp)
        s = e.sum(axis=-1, keepdims=True)
        # one value per row: thresholds dense enough to leave two Newton steps, an octave apart for the
        # bitwise comparisons' linear guess (e0 = 1/17), a quarter octave for FSS's band centres (0.09)
        octaves = 0.25 if x.server.provider.comparisons == "fss" else 1.0
        r = reciprocal(s, lower=1.0, upper=_softmax_sum_bound(n), frac=e.frac, octaves_per_comparison=octaves,
                       tolerance=1e-4)
        (p,) = multiply_many([(e, r)], frac=x.frac)
    order = list(range(x.ndim - 1))
    order.insert(axis % x.ndim, x.ndim - 1)
    return p.transpose(*order)


SOFTMAX_OCTAVES = 1 / 64  # the few-rounds softmax's thresholds: x y0 within 0.0054 of 1, one Newton step


def _softmax_by_tables(shifted: SharedTensor, frac: int) -> SharedTensor:
    """softmax of rows already shifted by their maximum, in the few-rounds profile: 7 rounds. exp by tables
    untruncated (rounds 1-2); then on masked values (protocols.Masked), one MaskedChain for every value:
    3. truncate e (46 -> 23 bits); s = its row sums, masked by the sums of the masks (the chain's "sum"),
    so s against thresholds 1/64 octave apart is local (_chain_signs) and gives y0 (_reciprocal_guess);
    4. open y0's mask (broadcast to the row's values); s y0 is local; 5. truncate it to q;
    y0 q is local; 6. truncate y1 = y0 (2 - q) (one Newton step: |1 - s y1| <= 0.0054^2);
    e y1 is local; 7. truncate it to p at `frac` bits. Each value's row repeats s, y0, q, y1."""
    srv, tf = shifted.server, lut.TABLE_FRAC
    n, bound = shifted.shape[-1], _softmax_sum_bound(shifted.shape[-1])
    width = comparison_width(tf, bound)
    chain = srv.provider.masked_chain(shifted.size, _softmax_steps(tf, frac, n, width))
    spare = srv.provider.fss_comparison(shifted.size // n, width, "add")  # for rows a redone truncation spoils
    z = lut.exp_nonpositive(shifted, truncate=False)
    c = chain.get()
    (e,) = protocols.truncate_masked(srv, [z.share.ravel()], [tf], [c.trunc("e")], 2 * tf + 1)
    s = _row_sums(e, n)
    rows = shifted._new(s.share[::n].reshape(shifted.shape[:-1]), tf)
    signs = partial(_chain_signs, rows, s, c.sign_key("s"), spare.get(), width)
    y0, _ = _reciprocal_guess(rows, 1.0, bound, SOFTMAX_OCTAVES, tf, below=signs)
    (y0,) = protocols.open_masked(srv, [np.repeat(y0.share.ravel(), n)], [c.mask("y0")])
    (sy,) = protocols.masked_products(srv, [(s, y0)], [c.cross("s", "y0")])
    (q,) = protocols.truncate_masked(srv, [sy], [tf], [c.trunc("q")], 2 * tf + 1)
    (yq,) = protocols.masked_products(srv, [(y0, q)], [c.cross("y0", "q")])
    two = U64(2) << U64(tf)  # 2 at tf bits, times y0 at tf: 2 y0 at 2 tf
    (y1,) = protocols.truncate_masked(srv, [y0.share * two - yq], [tf], [c.trunc("y1")], 2 * tf + 2)
    (ey,) = protocols.masked_products(srv, [(e, y1)], [c.cross("e", "y1")])
    (p,) = protocols.truncate_masked(srv, [ey], [2 * tf - frac], [c.trunc("p")], 2 * tf + 1)
    return shifted._new(p.share.reshape(shifted.shape), frac)


def _softmax_steps(tf: int, frac: int, n: int, width: int) -> tuple:
    """The dealer's material for _softmax_by_tables (material.MaskedChainRequest), in the order it is used."""
    return (("trunc", "e", tf), ("sum", "s", "e", n), ("sign", "s", width, n), ("mask", "y0"), ("cross", "s", "y0"),
            ("trunc", "q", tf), ("cross", "y0", "q"), ("trunc", "y1", tf), ("cross", "e", "y1"),
            ("trunc", "p", 2 * tf - frac))


def _chain_signs(rows: SharedTensor, s: protocols.Masked, key, spare, width: int, thresholds) -> SharedTensor:
    """[s < t_k] for each row's sum (`rows`: one value a row; s: the masked sums, repeated along each row)
    and threshold, with no round: s = public + mask and the chain's key is for the mask -mask, so the key at
    public - t_k is the sign of s - t_k (thresholds.signs_at). Rows that a redone truncation left
    unmasked take one round ("retry", decided by what was opened) with `spare`, fresh keys for every row."""
    srv, n = rows.server, s.share.size // max(1, rows.size)
    t = srv.fixed.encode(thresholds, rows.frac)
    bits = many.signs_at(srv, key, s.public[::n], t, width)
    spoilt = np.unique(s.broken // n)
    if spoilt.size:
        bits[spoilt] = many.signs_against(srv, rows.share.ravel()[spoilt], t, width,
                                                  many.key_at(spare, spoilt), tag="retry")
    return rows._new(bits.reshape(*rows.shape, len(thresholds)), 0)


def _row_sums(e: protocols.Masked, n: int) -> protocols.Masked:
    """The sums of a masked e over runs of n values, repeated n times: masked by the sums of e's masks
    (which the dealer knows: the chain's "sum" step), broken wherever a value of the run is."""
    def sums(a):
        return np.repeat(a.reshape(-1, n).sum(axis=1, dtype=U64), n)
    rows = np.unique(e.broken // n)
    broken = (rows[:, None] * n + np.arange(n)).ravel() if rows.size else e.broken
    return protocols.Masked(sums(e.share), sums(e.public), sums(e.mask), broken)


# Where softmax and confident_argmax clamp x - max, the clamp may move a row's sum (whose maximum's term
# alone is 1) by at most this much of itself: n e^clamp, n terms raised to e^clamp at most.
CLAMP_SUM_ERROR = 2e-5


def clamp_below(n: int) -> float:
    """The clamp for rows of n values: -16 up to 177 values (LFW's 158 classes; e^-16 < 1.2e-7, and exp on
    [-16, 0] takes 5 squarings instead of 7: _exp_halvings), else -32 (6 squarings; up to 1.5e9 values)."""
    return -16.0 if n * math.exp(-16.0) <= CLAMP_SUM_ERROR else -32.0


def _exp_below_max(x_last: SharedTensor, m: SharedTensor, clamp: bool, truncate: bool = True) -> SharedTensor:
    """exp(x - m) along the last axis, m the rows' maximum, in (0, 1] at 7 more fractional bits. exp is
    only guaranteed on [-64, 0]: with `clamp`, x - m is first raised to clamp_below(n) (-16 for up to 177
    values a row) where it is lower (one comparison and one selection round), which moves a row's sum
    by under CLAMP_SUM_ERROR (2e-5) of itself and leaves exp 2 squarings fewer (10 rounds instead of 12).
    In the few-rounds profile, by tables (lut.exp_nonpositive), whose comparison makes any clamp moot.
    Without `truncate` (bitwise, with the clamp), exp's last square comes untruncated (_exp's truncate_last):
    one round fewer, at its own fractional bits (some 42) instead of 7 more than the input's."""
    shifted = x_last - m.reshape(*m.shape, 1)
    frac = _below_max_frac(x_last.server.fixed)
    if few_rounds(shifted):
        return lut.exp_nonpositive(shifted, frac)
    if not clamp:
        return _exp(shifted, 0.0, frac)
    # shifted = max(shifted, lower): add (lower - shifted) where shifted < lower. The sign is coarse
    # (protocols.coarse_msb_bits: 16-bit words, half the arithmetic of 32): it may also raise values less
    # than half a unit above lower to it, which moves the sum by less than the clamp itself may (each such
    # term by under e^(lower + 1/2) - e^lower < e^lower). Exact elsewhere, at any fractional bits f, since
    # |shifted - lower| <= 2 SOFTMAX_BOUND + lower < 2^14 - 1/2 units: below 2^(shift + 15) - 2^shift.
    server, lower = x_last.server, clamp_below(shifted.shape[-1])
    comparison = protocols.ask_msb(server, shifted.size, 16)
    selection = server.provider.selection(shifted.size, 1)
    below = protocols.coarse_msb_bits(server, (shifted - lower).share, protocols.coarse_shift(shifted.frac),
                                      comparison)
    (raise_by,) = protocols.select(server, below, [(lower - shifted).share], selection)
    return _exp(shifted + shifted._new(raise_by.reshape(shifted.shape)), 0.0, frac, lower=lower, truncate_last=truncate)


def confident_argmax(x: SharedTensor, thresholds) -> tuple[SharedTensor, SharedTensor]:
    """For each row of logits x (rows along the last axis, within +-8192): (label, band), both shared
    integers. band = how many of `thresholds` (ascending, in (0, 1]) the top softmax probability reaches;
    label = the index of the top class where band >= 1, else -1. Revealed, they tell the client the
    answer and a coarse confidence, and nothing else of the probabilities.

    The top probability is p = 1 / s with s = sum_j exp(x_j - max) (the tournament's maximum and index,
    the clamped exp of softmax), so p >= t is s <= 1/t: one comparison per threshold, no reciprocal.
    Rounds: the tournament (12 for 158 classes), the clamp (3), exp (9: its last square is summed
    untruncated, _sum_fits_untruncated), and the comparisons (3, on 64 bits), whose
    last round also gives the label's product (label + 1 = known * (index + 1); _label_and_band). A
    decision can differ from float64 only where p is within exp's 1e-4 relative error and the clamp's 2e-5
    (CLAMP_SUM_ERROR) of a threshold.

    Few-rounds profile (few_rounds; thresholds >= 2^-15): exp by tables left untruncated (2 rounds), the
    comparisons and the label's product in one (_confident_argmax_by_tables): 3 rounds besides the
    tournament's, and a decision differs only where p is within 3e-5 relative of a threshold."""
    thresholds = _sorted_thresholds(thresholds)
    if not thresholds or not 0 < thresholds[0] <= thresholds[-1] <= 1:
        raise ValueError(f"thresholds are probabilities in (0, 1], got {thresholds}")
    with x.server.provider.plan(*_confident_argmax_step(x.shape, x.frac, thresholds)):
        m, index = _tournament(x, -1, want_min=False, with_index=True, bound=SOFTMAX_BOUND)
        limits = 1.0 / np.array(thresholds)
        # by tables, s (at most the row's length) sits at 46 fractional bits: rows under 2^16 stay in the ring
        if few_rounds(x) and thresholds[0] >= 2.0**-15 and x.shape[-1] < 2**16:
            return _confident_argmax_by_tables(x - m.reshape(*m.shape, 1), index, limits)
        # the sum of exp's last squares untruncated (one round fewer) where the gaps stay in the ring
        s = _exp_below_max(x, m, clamp=True, truncate=not _sum_fits_untruncated(x, limits)).sum(axis=-1)
        gaps = limits - s.reshape(*s.shape, 1)                                   # rows x thresholds
        return _label_and_band(gaps, index, comparison_width(gaps.frac, x.shape[-1] + limits[0]))


def _sum_fits_untruncated(x: SharedTensor, limits: np.ndarray) -> bool:
    """Whether confident_argmax can take exp's last squares untruncated: at their fractional bits F (the
    squaring schedule's for rows of x after the clamp, public: some 42), the gaps 1/t - s lie within
    +-(n + 1/t) 2^F, which must stay under 2^62 for the comparisons (on 64 bits) to be exact; and 1/t
    must be a fixed-point value at F bits (under 2^(bound_bits - F): 64 at F = 42, so thresholds below
    1/64 take the truncated squares)."""
    fixed, n = x.server.fixed, x.shape[-1]
    _, squares = _exp_schedule(fixed, x.frac, clamp_below(n), 0.0, _below_max_frac(fixed))  # _exp_below_max's
    f, largest = 2 * squares[-1][0], float(np.max(limits))
    return f + math.log2(n + largest) < 62 and largest < 2.0 ** (fixed.bound_bits - f)


def _below_max_frac(fixed) -> int:
    """The fractional bits of _exp_below_max's exp(x - max): 7 more than the input's, for values in (0, 1]."""
    return fixed.frac_bits + 7


def _label_and_band(gaps: SharedTensor, index: SharedTensor, width: int):
    """(label, band) from gaps = 1/t - s (rows x thresholds) and the top index: with b_t = [gap_t < 0]
    (threshold t not reached), band = sum_t (1 - b_t) and label + 1 = (index + 1) - b_0 (index + 1), the
    product from the comparison's selection round (protocols.msb_select; every threshold carries
    index + 1, the first one's product is used)."""
    payload = np.broadcast_to((index + 1).share[..., None], gaps.shape)
    bits, (times_index,) = protocols.msb_select(gaps.server, gaps.share, [payload], width)
    label = index - index._new(times_index[..., 0])
    return label, (1 - gaps._new(bits, 0)).sum(axis=-1)


def prepare_confident_argmax(server, shape: tuple, frac: int, thresholds) -> bool:
    """Ask the dealer now for the material of the next confident_argmax of this shape (one that has run
    once), e.g. while the client detects and embeds the next face: that face then meets only the online
    phase (with FSS, some 4 MB of keys and tables a face are drawn off the critical path). Both servers
    call it at the same point; False if nothing could be asked yet. (provider.prepare)"""
    return server.provider.prepare(*_confident_argmax_step(shape, frac, _sorted_thresholds(thresholds)))


def _sorted_thresholds(thresholds) -> tuple:
    return tuple(sorted(float(t) for t in thresholds))


def _confident_argmax_step(shape, frac: int, thresholds: tuple) -> tuple:
    """The planned step's name and shapes: what confident_argmax plans and prepare_confident_argmax asks
    ahead for must be the same key."""
    return "confident_argmax", tuple(shape), frac, thresholds


def _confident_argmax_by_tables(shifted: SharedTensor, index: SharedTensor, limits: np.ndarray):
    """confident_argmax after the tournament, in the few-rounds profile: exp by tables untruncated (2
    rounds), then one round for all the comparisons s <= 1/t at s's 46 fractional bits (its ring elements
    as integers, below 2^54, against the limits at the same scale, below 2^61) and the label's product:
    with b = [limit_0 - s < 0] (not known), label + 1 = (index + 1) - b (index + 1), b (index + 1) from
    the comparison's key with a payload (protocols.msb_select; every threshold carries index + 1, the
    first one's product is used)."""
    e = lut.exp_nonpositive(shifted, truncate=False)
    s = e.sum(axis=-1).reinterpret(0)
    gaps = np.rint(limits * 2.0**e.frac).astype(np.int64) - s.reshape(*s.shape, 1)   # rows x thresholds
    return _label_and_band(gaps, index, 64)


def _softmax_sum_bound(n: int) -> float:
    return float(n) * 1.001 + 1e-3
