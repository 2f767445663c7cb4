"""Two-server protocols on raw ring shares (uint64 arrays). `SharedTensor` puts a face on these.

Every function is executed by both servers at the same time with their own shares; `srv.index` tells
which one runs it. The only values a server ever receives are the other server's shares of values masked
by fresh, uniform dealer randomness (x - a, y - b, x + r, bits XOR a): each is uniform on its domain and
independent of the inputs, so the transcript of a server can be simulated from its own shares alone.
Material comes from the server's provider (provider.py), typed (material.py); a protocol that can ask
ahead takes a `Pending` (what `srv.provider.<kind>(...)` returns) and asks itself when given none.
"""
from __future__ import annotations

import functools
import time
from typing import NamedTuple

import numpy as np

from . import fss
from .circuits import (RADICES, bit_rows, chunk_entries, lane_constants, monomial_layout, pack_lanes, packed_rows,
                       prefix_monomials, prefix_variables, subsets, table_chunks, table_layout, unpack_bits,
                       unpack_lane_bits, variable)
from .fixedpoint import ring_matmul
from .material import TableComparisonMaterial, Triple, TruncationPair

U64 = np.uint64


# -- Beaver products ---------------------------------------------------------------------------------
def products(srv, items, material=None, tag: str = "open"):
    """Shares of x*y or x@y for each (op, x, y), op in {"mul", "matmul"}: one round for all of them.

    With a triple (a, b, c = a∘b) the servers open e = x - a and f = y - b; then
    x∘y = e∘f + e∘b + a∘f + c, where e∘f is public and added by server 0 only.
    Costs each server size(x) + size(y) ring elements. `material`: a Pending of the triples, or a list
    of Triple (spares for a repair).
    """
    if material is None:
        material = srv.provider.triples([(op, x.shape, y.shape) for op, x, y in items])
    triples = material if isinstance(material, list) else material.get()
    masked = []
    for (op, x, y), t in zip(items, triples):
        masked += [x - t.a, y - t.b]
    opened = srv.open(*masked, tag=tag)
    out = []
    for i, ((op, _, _), t) in enumerate(zip(items, triples)):
        e, f = opened[2 * i], opened[2 * i + 1]
        if op == "mul":
            z = e * t.b + t.a * f + t.c
            if srv.index == 0:
                z += e * f
        else:
            z = _beaver_matmul(srv, e, f, t)
        out.append(z)
    return out


def _beaver_matmul(srv, e, f, t):
    """This server's share of x @ y from the opened e = x - a, f = y - b and its shares t of a, b, a @ b."""
    return ring_matmul(e, t.b + f if srv.index == 0 else t.b) + ring_matmul(t.a, f) + t.c


def squares(srv, xs):
    """x*x with a pair (a, a*a): open e = x - a only, then x^2 = e^2 + 2ea + a^2. One round, size(x)."""
    pairs = srv.provider.squares([x.shape for x in xs]).get()
    opened = srv.open(*[x - p.a for x, p in zip(xs, pairs)])
    out = []
    for e, p in zip(opened, pairs):
        z = U64(2) * e * p.a + p.aa
        if srv.index == 0:
            z += e * e
        out.append(z)
    return out


# -- Truncation ---------------------------------------------------------------------------------------
def ask_truncation(srv, sizes, shifts):
    """Ask ahead for the pairs to truncate tensors of these sizes by these shifts (None: nothing to ask)."""
    segments = [(n, s) for n, s in zip(sizes, shifts) if s and n]
    return srv.provider.truncation(segments) if segments else None


def truncate(srv, xs, shifts, material=None, bound_bits: int | None = None):
    """Divide each shared x by 2^shift, exact to within one unit in the last place, never more.

    Local share truncation (SecureML, CrypTen) fails with probability ~|x|/2^64 by an error of 2^(64-f).
    Here the dealer supplies r, uniform on all of Z_2^64, with shares of r and of r >> shift. The servers
    open c = x + 2^L + r, where |x| < 2^L (L = bound_bits) so x' = x + 2^L lies in [0, 2^(L+1)).
    If c >= 2^(L+1), then x' + r did not wrap modulo 2^64 (a wrap would leave c < x' < 2^(L+1)), hence
        floor(c / 2^s) - floor(r / 2^s) - 2^(L-s) = floor(x / 2^s) + carry,   carry in {0, 1},
    an unbiased stochastic rounding of x / 2^s. If c < 2^(L+1) (probability 2^(L+1-64), 2^-15 with
    L = 48), the element is masked again with fresh randomness in one more round, taken from the spares
    that the request brought (provider.py), so that the dealer never hears of it. c is uniform and
    independent of x whatever x is, and so is the decision to retry, so privacy is perfect, not
    statistical. Cost: size(x) ring elements and one round per server, plus the rare retry. bound_bits: L,
    if the caller knows a tighter bound on every |x| than the session's (fewer retries).
    """
    if material is None:
        material = ask_truncation(srv, [x.size for x in xs], shifts)
    work = [i for i, (x, s) in enumerate(zip(xs, shifts)) if s and x.size]  # a shift of 0 costs nothing
    out = list(xs)
    if not work:
        return out
    sizes = [xs[i].size for i in work]
    flat = np.concatenate([xs[i].ravel() for i in work]) if len(work) > 1 else xs[work[0]].ravel()
    result = _truncate_flat(srv, flat, _shift_array([shifts[i] for i in work], sizes), material.get(),
                            bound_bits=bound_bits)
    start = 0
    for i, n in zip(work, sizes):
        out[i] = result[start:start + n].reshape(xs[i].shape)
        start += n
    return out


def _shift_array(shifts, sizes):
    """The shift of every element, as one scalar when they are all the same (a faster numpy shift)."""
    if len(set(shifts)) == 1:
        return U64(shifts[0])
    return np.repeat(np.array(shifts, dtype=U64), sizes)


def _truncate_flat(srv, x, shifts, material, keep_public: bool = False, bound_bits: int | None = None,
                   tag: str = "open", also=()):
    """The truncation above on a flat array; with keep_public, also what the opening shows (see
    truncate_masked) and the positions that were redone. bound_bits: L, if the caller knows a tighter
    bound on |x| than the session's (fewer retries). `also`: masked values to open in the same round,
    whose openings come last: (result, those openings)."""
    L = srv.fixed.bound_bits if bound_bits is None else bound_bits
    r, r_high = material.r, material.r_high
    masked = x + r
    if srv.index == 0:
        masked += U64(2**L)
    c, *opened = srv.open(masked, *also, tag=tag)
    public = None
    if srv.index == 0 or keep_public:
        public = c >> shifts
        public -= U64(1) << (U64(L) - shifts)
    out = public - r_high if srv.index == 0 else -r_high
    limit = U64(2 ** (L + 1))
    retry = np.flatnonzero(c < limit) if c.size and np.minimum.reduce(c) < limit else _NOWHERE
    if retry.size:
        shifts = np.broadcast_to(shifts, x.shape)
        again = srv.provider.spare_truncation(shifts[retry])
        out[retry] = _truncate_flat(srv, x[retry], shifts[retry], again, bound_bits=bound_bits, tag="retry")
    result = (out, public, retry) if keep_public else out
    return (result, opened) if also else result


class NextProduct(NamedTuple):
    """A Beaver product x @ W prepared ahead (truncate_with_next_product): e = x - a opened, f = W - b
    known (None: to be opened, with b the fallback mask), this server's shares of a, b, a @ b; and of
    y's mask and a^T @ it for the product x^T @ y that follows (next_transposed_matmul)."""
    e: np.ndarray
    f: np.ndarray | None
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    b_grad: np.ndarray
    c_grad: np.ndarray


def truncate_with_next_product(srv, u, shift: int, w, x_next, material, bound_bits: int | None = None):
    """Truncate the flat update u by `shift`, whose first w.size values update W to W' = W - U, and
    prepare the next product x_next @ W' in the same round, so that it needs no round of its own.

    1. One round: open c = u + 2^L + r (truncate), W - b' and x_next - a (fresh masks b', a).
    2. U = E - (r >> shift) with E public (truncate_masked), so with b = b' + (r >> shift) on W's entries
       W' - b = (W - b') - E: public, and the dealer's c = a @ b completes the triple (a, b, c).
    Every opened value is masked by fresh randomness, used once. Where the truncation was redone in W
    (probability 2^(L+1-64) a value: its result is not E - (r >> shift)), W' - b_fallback will be opened
    by next_matmul instead, one round (decided by what was opened, uniform: no data). Returns (U, NextProduct)."""
    m = material.get()
    shape = w.shape
    (out, public, retry), (f_open, e) = _truncate_flat(srv, u, U64(shift), m.pair, keep_public=True,
                                                       bound_bits=bound_bits, also=(w - m.b_open, x_next - m.a))
    if np.any(retry < w.size):
        return out, NextProduct(e, None, m.a, m.b_fallback, m.c_fallback, m.b_grad, m.c_grad)
    b = m.b_open + m.pair.r_high[:w.size].reshape(shape)
    return out, NextProduct(e, f_open - public[:w.size].reshape(shape), m.a, b, m.c, m.b_grad, m.c_grad)


def next_matmul(srv, prepared: NextProduct, w):
    """This server's share of x @ W for a product prepared by truncate_with_next_product, W the updated
    matrix: no round, or one ("repair") if it must open W - b after all."""
    f = prepared.f
    if f is None:
        (f,) = srv.open(w - prepared.b, tag="repair")
    return _beaver_matmul(srv, prepared.e, f, prepared)


def next_transposed_matmul(srv, prepared: NextProduct, y):
    """This server's share of x^T @ y, x the left operand of a prepared product: x^T is masked by a^T,
    already opened (e^T), so only y - b_grad is opened: one round, size(y) ring elements."""
    (f,) = srv.open(y - prepared.b_grad)
    return _beaver_matmul(srv, prepared.e.T, f, Triple(prepared.a.T, prepared.b_grad, prepared.c_grad))


# -- Products of masked values ---------------------------------------------------------------------------
class Masked(NamedTuple):
    """A shared value x that both servers also see as x = public + mask: `public` known to both, `mask` a
    dealer mask (this server's share of it), except at the positions `broken`. A Beaver opening leaves
    its operand masked (e = x - a); so does a truncation, for free (truncate_masked). All arrays flat."""
    share: np.ndarray
    public: np.ndarray
    mask: np.ndarray
    broken: np.ndarray


_NOWHERE = np.zeros(0, dtype=np.int64)


def open_masked(srv, xs, masks) -> list[Masked]:
    """Open e = x - a for each x and the dealer's mask a: one round, size(x) ring elements each."""
    opened = srv.open(*[x - a for x, a in zip(xs, masks)])
    return [Masked(x, e, a, _NOWHERE) for x, e, a in zip(xs, opened, masks)]


def truncate_masked(srv, xs, shifts, materials, bound_bits: int | None = None, open_too=()) -> list[Masked]:
    """truncate, keeping what its opening shows: with c = x + 2^L + r opened,
        x >> s = E - (r >> s),   E = floor(c / 2^s) - 2^(L-s)   (public),
    so the result is masked by a = -(r >> s), which the dealer knows and can multiply with other masks
    (a MaskedChain's trunc step). It reveals nothing more than c. Where c called for a retry (fresh r,
    rare), the result is right but not so masked: those positions are `broken`. bound_bits: a bound
    2^L on |x| tighter than the session's, if known (a retry happens with probability 2^(L + 1 - 64)).
    materials: a TruncationPair per x. open_too: (y, a) pairs, y opened as y - a in the same round
    (open_masked), their Masked after the truncated ones."""
    sizes = [x.size for x in xs]
    if len(xs) == 1:  # the usual case: nothing to join
        flat, pair = xs[0].ravel(), materials[0]
    else:
        flat = np.concatenate([x.ravel() for x in xs])
        pair = TruncationPair(np.concatenate([m.r for m in materials]), np.concatenate([m.r_high for m in materials]))
    also = tuple(y - a for y, a in open_too)
    out = _truncate_flat(srv, flat, _shift_array(shifts, sizes), pair, keep_public=True, bound_bits=bound_bits,
                         also=also)
    (out, public, retry), opened = out if also else (out, ())
    results, start = [], 0
    for n, m in zip(sizes, materials):
        broken = retry[(retry >= start) & (retry < start + n)] - start if retry.size else _NOWHERE
        results.append(Masked(out[start:start + n], public[start:start + n], -m.r_high, broken))
        start += n
    return results + [Masked(y, e, a, _NOWHERE) for (y, a), e in zip(open_too, opened)]


def masked_products(srv, pairs, crosses):
    """x*y for each pair of masked values, given the dealer's shares of a_x*a_y:
        x y = e_x e_y + e_x a_y + e_y a_x + a_x a_y,
    all local, no round. At positions where an operand is broken, one ordinary Beaver round for those
    positions only (triples from the spares the chain's request brought)."""
    out, repairs = [], []
    for (x, y), cross in zip(pairs, crosses):
        # e_x (a_y + e_y) + e_y a_x + a_x a_y, with e_x e_y on server 0 only; a square, e (2a + e) + a^2
        z = x.mask << U64(1) if x is y else y.mask.copy()
        if srv.index == 0:
            z += y.public
        z *= x.public
        if x is not y:
            z += y.public * x.mask
        z += cross
        broken = np.union1d(x.broken, y.broken) if x.broken.size or y.broken.size else _NOWHERE
        if broken.size:
            repairs.append((len(out), broken, x.share[broken], y.share[broken]))
        out.append(z)
    if repairs:
        items = [("mul", xb, yb) for _, _, xb, yb in repairs]
        spares = [srv.provider.spare_triple(xb.size) for _, xb, _ in items]
        for (k, broken, _, _), z in zip(repairs, products(srv, items, spares, tag="repair")):
            out[k][broken] = z
    return out


# -- Comparison -----------------------------------------------------------------------------------------
class _MonomialPlan(NamedTuple):
    """How monomials_of_opened evaluates a set of monomials over V variables (see _monomial_plan).

    Its `opened` input (opened_rows) is laid out by variable number: the public d_v of variable v in row
    v, NOT d_v in row V + v (if any literal is negated), and a row of ones last; `material` is the rows of
    circuits.monomial_layout. Index arrays are slices where they step evenly (_rows: views, not copies)."""
    variables: int
    used: object          # the variables opened
    pairs: tuple | None   # every monomial a plain 2-input AND: (rows of its dealer products, i, j)
    negated: bool         # whether any literal is a NOT
    term_rows: object     # each masked term's row of `material`
    term_literals: np.ndarray  # each term's rows of `opened` (its public literals), padded with the ones row:
                               # the masked terms monomial by monomial, then each monomial's all-public one
    starts: np.ndarray    # the first masked term of each monomial
    segments: tuple       # (first, end) of each monomial's masked terms


@functools.lru_cache(maxsize=None)
def _monomial_plan(variables: int, monomials: tuple) -> _MonomialPlan:
    """Index arrays that evaluate all monomials with a handful of whole-matrix operations.

    A monomial S (a tuple of literals, see circuits.variable) expands into one term per non-empty subset T
    of its literals, (the dealer's AND of T's masks) AND (the AND of the opened literals in S minus T),
    and the all-public AND of S's opened literals, which server 0 adds. Each term's public part is one
    reduction over the rows of its literals (term_literals, padded with ones to the longest). Plain
    2-input ANDs need none of this (`pairs`)."""
    layout = monomial_layout(variables, monomials)
    row = {t: i for i, t in enumerate(layout)}
    used = sorted({variable(lit) for m in monomials for lit in m})
    negated = any(lit < 0 for m in monomials for lit in m)
    ones = 2 * variables if negated else variables
    literal_row = lambda lit: lit if lit >= 0 else variables + variable(lit)  # noqa: E731
    pairs = None
    if all(len(m) == 2 for m in monomials) and not negated:
        ordered = [tuple(sorted(m)) for m in monomials]
        pairs = (_rows([row[m] for m in ordered]), _rows([i for i, _ in ordered], broadcast=True),
                 _rows([j for _, j in ordered]))
    wholes = [tuple(sorted(m)) for m in monomials]
    term_rows, term_literals, starts = [], [], []
    for m in wholes:
        starts.append(len(term_rows))
        for t in subsets(m):
            term_rows.append(row[tuple(sorted(map(variable, t)))])
            term_literals.append([literal_row(lit) for lit in m if lit not in t])
    term_literals += [[literal_row(lit) for lit in m] for m in wholes]
    width = max(map(len, term_literals))
    literals = np.array([lits + [ones] * (width - len(lits)) for lits in term_literals], dtype=np.intp)
    starts_array = np.array(starts)
    for a in (literals, starts_array):
        a.setflags(write=False)  # kept in a cache and shared
    return _MonomialPlan(variables, _rows(used), pairs, negated, _rows(term_rows), literals, starts_array,
                         tuple(zip(starts, [*starts[1:], len(term_rows)])))


def opened_rows(plan: _MonomialPlan, n: int) -> np.ndarray:
    """An `opened` buffer for monomials_of_opened, n words a row: the variables' rows to fill (monomials_of_
    opened writes their NOTs), the ones row already set."""
    out = np.empty((2 * plan.variables + 1 if plan.negated else plan.variables + 1, n), dtype=U64)
    out[-1] = ~U64(0)
    return out


def _rows(indices, broadcast: bool = False):
    """Row indices as a slice where they step evenly (a view, not a copy); with `broadcast`, the same row
    repeated as a slice of that one row, for an operand that broadcasts against the others."""
    first, step = indices[0], (indices[1] - indices[0] if len(indices) > 1 else 1)
    if broadcast and len(set(indices)) == 1:
        return slice(first, first + 1)
    if step and list(indices) == list(range(first, first + step * len(indices), step)):
        end = first + step * len(indices)
        return slice(first, end if end >= 0 else None, step)
    return np.array(indices)


WIDE_ROWS = 128  # words a row from which monomials_of_opened sums each monomial's terms by a reduction of its own


def and_monomials(srv, variables, monomials, material):
    """ANDs of literals of XOR-shared words, all in one round (multi-input Beaver, GF(2) version).

    variables: the words, one row a variable (V x W); material: the dealer's rows (monomial_layout).
    Returns one row of W words per monomial.

    With masks m_j from the dealer, the servers open d_j = v_j XOR m_j (NOT v_j is then NOT d_j under the
    same mask); for a monomial S, AND of its literals = XOR over subsets T of S of (AND of the opened
    literals in S minus T) AND M_T, with M_T = AND of the masks in T XOR-shared by the dealer and
    M_{} = 1 (server 0's share all ones, server 1's zero). For a plain 2-input AND that is Beaver's
    v_i v_j = M_ij ^ d_i m_j ^ d_j m_i (^ d_i d_j on server 0)."""
    plan = _monomial_plan(len(variables), tuple(monomials))
    (d,) = srv.open_xor(variables[plan.used] ^ material[plan.used])
    opened = opened_rows(plan, variables.shape[1])
    opened[plan.used] = d
    return monomials_of_opened(srv, plan, opened, material)


def monomials_of_opened(srv, plan: _MonomialPlan, opened: np.ndarray, material: np.ndarray) -> np.ndarray:
    """and_monomials after its opening, local: the monomials of variables v_j = d_j XOR m_j from the public
    d_j and the XOR-shared mask products, laid out as _MonomialPlan says (opened_rows). The d_j may come
    from anywhere both servers know them, e.g. from fewer opened words that the variables derive from
    (msb_by_circuit)."""
    if plan.pairs is not None:
        rows, i, j = plan.pairs
        d_j, m_j = opened[j], material[j]
        if srv.index == 0:
            m_j = m_j ^ d_j  # d_i m_j ^ d_i d_j = d_i (m_j ^ d_j)
        out = opened[i] & m_j
        out ^= d_j & material[i]
        out ^= material[rows]
        return out
    if plan.negated:
        np.invert(opened[:plan.variables], out=opened[plan.variables:2 * plan.variables])
    publics = np.bitwise_and.reduce(opened[plan.term_literals], axis=1)
    monomials = len(plan.starts)
    terms = publics[:-monomials]
    terms &= material[plan.term_rows]
    if terms.shape[1] < WIDE_ROWS:
        out = np.bitwise_xor.reduceat(terms, plan.starts, axis=0)
    else:  # reduceat along axis 0 is slow on wide rows (4x at 512 words): one reduction a monomial
        out = np.empty((monomials, terms.shape[1]), dtype=U64)
        for k, (start, end) in enumerate(plan.segments):
            np.bitwise_xor.reduce(terms[start:end], axis=0, out=out[k])
    if srv.index == 0:
        out ^= publics[-monomials:]
    return out


# A comparison of up to this many words (of 64 bits) is latency-bound and runs by tables (msb_by_tables: 2
# rounds, about 120 or 300 bytes a value offline); above, it is compute-bound and runs by the radix-2 circuit
# (msb_by_circuit: 5 or 6 rounds, 80 or 184 bytes a value offline). That is the crossover in one process,
# where a round costs some 30 us; on a slower link the tables pay for more (table_words_for).
TABLES_MAX_WORDS = 512
# What the tables cost more than the circuit, a word of values, both servers' arithmetic on this machine
# (softmax 64x158 online by tables throughout against the circuit above 512 words: +2 ms over 12,288 words)
TABLE_WORD_SECONDS = 1.6e-7
TABLES_WORDS_CAP = 1 << 16  # tables for at most 128k values of 32 bits (16 MB a server offline)


def by_tables(n: int, width: int = 64, max_words: int = TABLES_MAX_WORDS) -> bool:
    """Whether a bitwise comparison of n values of `width` bits runs by tables, where the server's
    comparisons run by tables up to max_words words (its provider's table_words)."""
    return -(-n * width // 64) <= max_words


def comparison_rounds(n: int, width: int = 64, max_words: int = TABLES_MAX_WORDS) -> int:
    """The rounds of a bitwise msb_bits on n values of `width` bits: 2 by tables, else the circuit's."""
    return 2 if by_tables(n, width, max_words) else len(RADICES[width])


def table_words_for(round_cost: float) -> int:
    """Up to how many words a bitwise comparison should run by tables on a link whose round costs
    round_cost seconds: there the circuit's 3 rounds more (on 32 bits; 4 on 64) cost more than the
    tables' arithmetic, TABLE_WORD_SECONDS a word; never fewer than TABLES_MAX_WORDS, never more than
    TABLES_WORDS_CAP. A 1 ms round trip (0.5 ms a round): 9,375 words, so that a softmax of 64 x 158
    or a training batch compares by tables throughout."""
    words = int((len(RADICES[32]) - 2) * round_cost / TABLE_WORD_SECONDS)
    return min(max(TABLES_MAX_WORDS, words), TABLES_WORDS_CAP)


def use_comparison_tables(srv, max_words: int) -> None:
    """A program for both servers: from now on their bitwise comparisons of up to max_words words run by
    tables, larger ones by the circuit ("auto" sets table_words_for the round it measured)."""
    if not 0 <= int(max_words) <= TABLES_WORDS_CAP:
        raise ValueError(f"comparisons by tables take 0 to {TABLES_WORDS_CAP} words, not {max_words}")
    srv.provider.table_words = int(max_words)


COMPARISONS = ("bitwise", "fss")


def use_comparisons(srv, method: str) -> None:
    """A program for both servers: from now on their comparisons (msb_bits, msb, and all that builds on
    them) run by `method`. "bitwise", the default: msb_bits by tables (2 rounds, 4 or 8 bytes and
    a few bits a value online, about 120 or 300 bytes offline) or by its radix-2 circuit for many values (5 or 6
    rounds, 5 or 11 ring elements online, 10 or 23 offline), little arithmetic. "fss": function secret sharing
    (fss.py), one round, 8 bytes a value online (4 on 32 bits), about 1 to 1.5 kB a value offline and
    some 60 AES blocks a value online: for links where a round trip costs more than that arithmetic."""
    if method not in COMPARISONS:
        raise ValueError(f"comparisons are {' or '.join(COMPARISONS)}, not {method!r}")
    srv.provider.comparisons = method


# "auto" (config mpc.comparisons) picks FSS where one round between the servers costs at least this
# (seconds; half a round trip): measured by benchmarks/wan.py, FSS is faster for every task at 40 ms RTT
# and slower for most at 1 ms, the crossover near 5 ms for identification and training.
FSS_FROM_ROUND_SECONDS = 0.0025


def round_seconds(srv, samples: int = 7) -> float:
    """A program for both servers: the median time of an exchange of one public word with the other
    server, `samples` times — what one round costs on their link (no data: a constant is sent)."""
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        srv.exchange(("public",), [np.zeros(1, dtype=U64)], tag="agree")
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def choose_comparisons(round_cost: float) -> str:
    """"fss" where a round costs FSS_FROM_ROUND_SECONDS or more, else "bitwise" (what "auto" means)."""
    return "fss" if round_cost >= FSS_FROM_ROUND_SECONDS else "bitwise"


def ask_msb(srv, n: int, width: int = 64, group: str = "xor"):
    """Ask for the material of the sign of n values, by the server's comparison method; with FSS, of
    output `group` ("xor" for msb_bits, "add" for msb)."""
    if srv.provider.comparisons == "fss":
        return srv.provider.fss_comparison(n, width, group)
    if by_tables(n, width, srv.provider.table_words):
        return srv.provider.table_comparison(n, width)
    return srv.provider.comparison(n, RADICES[width], width)


def msb_bits(srv, x, material=None, width: int = 64):
    """XOR shares (in bit 0) of the most significant bit of x, i.e. of [x < 0].

    Open c = x + r with r uniform (perfectly hiding). Then x = c - r, and
        msb(x) = msb(c) XOR msb(r) XOR borrow,   borrow = [c mod 2^(w-1) < r mod 2^(w-1)]
    (w = width), a public number compared with a shared one: by tables for few values (by_tables,
    msb_by_tables: 2 rounds), else by a prefix circuit (msb_by_circuit: 5 or 6 rounds, less material).

    width=32 is for values known to satisfy |x| < 2^31 (as ring integers): reducing both shares modulo
    2^32 is local and exact, and the sign of such an x is bit 31 of x mod 2^32. c is then opened as
    uint32, and the comparison costs about half as much.

    With FSS material (use_comparisons), the sign is one opening of x + r and a local evaluation
    (fss.less_than_zero): one round, width/8 bytes a value.
    """
    m = (ask_msb(srv, x.size, width) if material is None else material).get()
    if isinstance(m, fss.SignKey):
        return fss.less_than_zero(srv, x, m, width) & U64(1)
    if isinstance(m, TableComparisonMaterial):
        return msb_by_tables(srv, x, m, width)
    return msb_by_circuit(srv, x, m, width)


def coarse_shift(frac: int) -> int:
    """The low bits a coarse sign of values at `frac` fractional bits drops: frac - 1 (half a unit)."""
    return max(frac - 1, 0)


def coarse_msb_bits(srv, x, shift: int, material=None):
    """XOR shares of a sign that may err on one side only: 1 where x < 0, 0 where x >= 2^shift, and either
    where 0 <= x < 2^shift; for ring integers |x| < 2^(shift + 15) - 2^shift (0 <= shift <= 48). Half the
    words of a 32-bit comparison and a round fewer (a 16-bit msb_bits: circuits.RADICES[16], or 2 chunks
    by tables).

    Each server shifts its share right by `shift`, locally. Writing the shares as h_i 2^shift + l_i
    (l_i < 2^shift), their sum is x + j 2^64 (j in {0, 1}) = (h_0 + h_1 + k) 2^shift + (l_0 + l_1 -
    k 2^shift), k = [l_0 + l_1 >= 2^shift] a carry nobody knows; so modulo 2^16, where the wrap of 2^64
    (2^(64 - shift) after the shift) vanishes, h_0 + h_1 = floor(x / 2^shift) - k: exact but for that k.
    Its sign (bit 15) is that of x except where floor(x / 2^shift) = 0 and k = 1. `material`:
    ask_msb(srv, x.size, 16)."""
    if not 0 <= shift <= 48:
        raise ValueError(f"a coarse sign drops 0 to 48 bits, not {shift}")
    high = x >> U64(shift)
    return msb_bits(srv, high, material if material is not None else ask_msb(srv, x.size, 16), 16)


def msb_by_circuit(srv, x, m, width: int = 64):
    """msb_bits by a Kogge-Stone prefix circuit, for many values (ComparisonMaterial).

    1. Open c = x + r. Per bit of the low w - 1, g = r AND NOT c ("r is larger here") and p = NOT (r XOR c)
       ("equal here"); on 32 bits two values share a word, one per lane (a lane's result after five
       levels depends on its own bits only).
    2. The prefix over the bit positions, run on whole uint64 words so that all positions move at once,
       combines spans of bits level by level (circuits.PREFIX, radix 2), each level a set of ANDs of its
       variables, which are p and g shifted (circuits.prefix_variables). Their masks are correlated: the
       masks of p and g shifted alike, so a level opens p and g only, two words, and derives the rest.
       - The first level opens nothing: there p = r_bits XOR NOT c is r's bits (the dealer's, masking
         themselves) under the public NOT c, and g = r_bits AND NOT c, so each monomial with a G_k is
         (the monomial with r's bits in place of G_k) AND the public NOT c shifted alike (local).
       - A later level opens p and g under fresh masks (ComparisonRequest.draw) in one round.
    6 levels on 64 bits (6 rounds in all, 11 ring elements a value: c, then p and g five times), 5 on 32."""
    shape, n = x.shape, x.size
    top = U64(width - 1)
    lanes_low, lanes_bit0 = lane_constants(width)
    c = _open_mask(srv, x, m.r, width)
    if width != 64:
        c = pack_lanes(c, width)
    not_c = ~(c & lanes_low)
    r_low = m.r_bits & lanes_low
    radices, span = RADICES[width], 1
    for level, (radix, products_of_masks) in enumerate(zip(radices, m.levels)):
        last = level == len(radices) - 1
        variables = 2 * radix - 1
        plan = _monomial_plan(variables, prefix_monomials(radix, last))
        layout = np.empty((variables + len(products_of_masks), c.size), dtype=U64)
        layout[variables:] = products_of_masks
        opened = opened_rows(plan, c.size)
        if level == 0:  # the variables' public parts: NOT c shifted for the P, none for the G (r's bits)
            prefix_variables(r_low, r_low, radix, span, out=layout)
            prefix_variables(not_c, None, radix, span, out=opened)
            products = monomials_of_opened(srv, plan, opened, layout)
            products[:radix - 1] &= opened[1:radix]  # G_k = (r's bits) AND NOT c, both shifted by span k
            g = r_low & not_c
        else:
            masks = m.masks[level - 1]
            prefix_variables(masks[0], masks[1], radix, span, out=layout)
            (d,) = srv.open_xor(pg ^ masks)
            prefix_variables(d[0], d[1], radix, span, out=opened)
            products = monomials_of_opened(srv, plan, opened, layout)
            g = pg[1]
        # G = G_(radix-1) ^ the monomials with a G; P = the last monomial (none on the last level)
        pg = np.empty((2, c.size), dtype=U64)
        np.right_shift(g, U64(span * (radix - 1)), out=pg[1])
        pg[1] ^= products[0] if radix == 2 else np.bitwise_xor.reduce(products[:radix - 1], axis=0)
        if not last:
            pg[0] = products[-1]
        span *= radix
    bits = ((m.r_bits >> top) ^ pg[1]) & lanes_bit0
    if srv.index == 0:
        bits ^= (c >> top) & lanes_bit0
    return unpack_lane_bits(bits, n, width).reshape(shape)


def msb_by_tables(srv, x, m: TableComparisonMaterial, width: int = 64):
    """msb_bits in two rounds, for comparisons of few values (by_tables), where rounds rather than
    arithmetic are the cost.

    1. Open c = x + r (`width` bits): msb(x) = msb(c) XOR msb(r) XOR [c' < r'], c' and r' the low
       width - 1 bits (msb_bits).
    2. Split c' into K chunks c_j of 8 bits (circuits.table_chunks: 4 for 32 bits, 8 for 64). The dealer's
       thermometer of r's chunk r_j, T_j[k] = [k < r_j], holds this server's XOR shares of
       G_j = [c_j < r_j] = T_j[c_j] and of E_j = [c_j = r_j] = [c_j - 1 < r_j] XOR [c_j < r_j]
       = T_j[c_j - 1] XOR T_j[c_j], read at the public c_j and c_j - 1: local. (At c_j = 0, [c_j - 1 < r_j]
       is 1, public: server 0 adds it to the T_j entry read there instead, the last, which is 0.)
    3. The highest chunk where c' and r' differ decides: [c' < r'] = G_(K-1) ^ E_(K-1) G_(K-2) ^ ... ^
       E_(K-1) .. E_1 G_0, the last level of a radix-K prefix (circuits.PREFIX, with the E as the P). Its
       ANDs take one round on the bits packed 64 values a word (and_monomials).
    Online: c, then 2K - 2 bits a value. Offline: r, the thermometers (112 bytes a value on 32 bits, 240
    on 64: circuits.table_layout), a bit of r's msb and the ANDs' material, some 1/8 byte a value a row."""
    shape, n = x.shape, x.size
    chunks = table_chunks(width)
    c = _open_mask(srv, x, m.r, width).astype(U64, copy=False)
    shifts, columns, below, entries = _table_reads(width)
    digits = ((c & U64(2 ** (width - 1) - 1)) >> shifts) & U64(255)  # each read's chunk of c'
    at = (digits - below) & entries  # the entry read: c_j, or c_j - 1 (modulo the table's entries)
    words = m.tables.ravel().take(_row_starts(n, m.tables.shape[1]) + columns + (at >> U64(6)).astype(np.intp))
    words >>= at & U64(63)
    words &= U64(1)
    g, before = words[:chunks], words[chunks:]  # G_(K-1) .. G_0; T_j[c_j - 1] for j = K-1 .. 1
    # bit rows: the prefix's 2K - 1 variables E_(K-1) .. E_0, G_(K-2) .. G_0 (E_0 is in no monomial and
    # never opened: left 0), then G_(K-1) and msb(c)
    bits = bit_rows((2 * chunks + 1,), n)
    e = bits[:chunks - 1, :n]
    np.bitwise_xor(g[:-1], before, out=e, casting="unsafe")
    if srv.index == 0:
        e ^= digits[:chunks - 1] == 0
    bits[chunks:2 * chunks - 1, :n] = g[1:]
    bits[2 * chunks - 1, :n] = g[0]
    np.right_shift(c, U64(width - 1), out=bits[2 * chunks, :n], casting="unsafe")
    bits = packed_rows(bits)
    products = and_monomials(srv, bits[:2 * chunks - 1], prefix_monomials(chunks, True), m.products)
    borrow = bits[2 * chunks - 1] ^ np.bitwise_xor.reduce(products, axis=0)
    borrow ^= m.top
    if srv.index == 0:
        borrow ^= bits[2 * chunks]
    return unpack_bits(borrow, n).reshape(shape)


def _open_mask(srv, x, r, width: int) -> np.ndarray:
    """A comparison's first round: c = x + r, opened as `width`-bit words (shares reduced modulo 2^width
    first: local and exact; the words of fss.OPENED, as for FSS keys)."""
    return srv.open((x.ravel() + r).astype(fss.OPENED[width], copy=False))[0]


@functools.lru_cache(maxsize=256)
def _row_starts(n: int, stride: int) -> np.ndarray:
    """Where each of n rows of `stride` words starts in the flat array (read-only: cached, shared)."""
    out = np.arange(n, dtype=np.intp) * stride
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def _table_reads(width: int):
    """For msb_by_tables, the thermometer entries it reads, one row each: T_j at c_j for j = K-1 .. 0 (the
    G_j), then at c_j - 1 for j = K-1 .. 1 (for the E_j); as each read's shift to its chunk of c (8 j), the
    column where chunk j's thermometer starts (circuits.table_layout), 1 where the entry below c_j is read,
    and the table's entries - 1 (the reduction of c_j - 1 at c_j = 0)."""
    chunks = table_chunks(width)
    starts = table_layout(width)
    reads = [(j, 0) for j in reversed(range(chunks))] + [(j, 1) for j in reversed(range(1, chunks))]
    columns = np.array([[starts[j]] for j, _ in reads], dtype=np.intp)
    shifts, below, entries = (np.array([[v] for v in values], dtype=U64) for values in zip(
        *[(8 * j, b, chunk_entries(width, j) - 1) for j, b in reads]))
    for a in (shifts, columns, below, entries):
        a.setflags(write=False)  # kept in a cache and shared
    return shifts, columns, below, entries


def msb(srv, x, width: int = 64, material=None):
    """Additive shares (0 or 1) of [x < 0]: msb_bits, then one round to convert (msb_select without
    payloads); with FSS comparisons (use_comparisons), one round: keys of output group "add" give additive
    shares directly (`material`: a Pending of them, asked ahead by ask_msb(srv, x.size, width, "add"))."""
    if srv.provider.comparisons == "fss":
        return fss.less_than_zero(srv, x, (material or ask_msb(srv, x.size, width, "add")).get(), width)
    return msb_select(srv, x, [], width)[0]


def ask_msb_select(srv, n: int, payloads: int, width: int = 64):
    """Ask ahead for the material of msb_select on n values with `payloads` payloads: with FSS, one key a
    value; bitwise, a comparison and a selection."""
    if srv.provider.comparisons == "fss":
        return srv.provider.fss_comparison(n, width, "add", payloads)
    return ask_msb(srv, n, width), srv.provider.selection(n, payloads)


def msb_select(srv, x, payloads, width: int = 64, material=None):
    """Additive shares (0 or 1) of s = [x < 0] and of s v for each shared vector v (of x's size).
    With FSS comparisons (use_comparisons("fss")), in ONE round: fss.select_by_sign opens x + r and v - b
    together and gets s and s b from one key, width/8 + 8 len(payloads) bytes a value each way. Bitwise,
    the comparison's rounds (msb_bits) and one: the selection that turns s into additive shares applies it
    to the payloads in the same round (select). x must satisfy -2^(width-1) <= x < 2^(width-1).
    `material`: what ask_msb_select(srv, x.size, len(payloads), width) returned. Returns (s, [s v, ...])."""
    if material is None:
        material = ask_msb_select(srv, x.size, len(payloads), width)
    if srv.provider.comparisons == "fss":
        return fss.select_by_sign(srv, x, payloads, material.get(), width)
    comparison, selection = material
    bits = msb_bits(srv, x, comparison, width)
    s, *chosen = _open_bits(srv, bits.ravel(), selection.get(), [v.ravel() for v in payloads])
    return s.reshape(x.shape), [c.reshape(x.shape) for c in chosen]


def select(srv, bits, values, material=None):
    """bits * v for XOR-shared bits and additively shared vectors v of the same size, in one round.

    The dealer's random bit t (shared both ways) hides the bits: e = bit XOR t is opened, so
    bit = e + t - 2et. For each v, with the dealer's mask b and t*b, f = v - b is opened in the same round,
    t*v = f*t + t*b is local, and bit*v = e*v + (1 - 2e)*(t*v)."""
    if material is None:
        material = srv.provider.selection(bits.size, len(values))
    return _open_bits(srv, bits.ravel(), material.get(), [v.ravel() for v in values])[1:]


def _open_bits(srv, bits, m, values):
    """Open bits XOR t (packed 8 to a byte) and v - b for every v; return [bit, bit*v for each v]."""
    mine = bits ^ m.t_bits
    masked = [v - b for v, (b, _) in zip(values, m.masks)]
    theirs = srv.exchange(("bits",) + ("+",) * len(masked), [np.packbits(mine.astype(np.uint8))] + masked)
    e = mine ^ np.unpackbits(theirs[0], count=mine.size).astype(U64)
    bit = m.t * (U64(1) - U64(2) * e)  # bit = e + t - 2et = t (1 - 2e) + e
    if srv.index == 0:
        bit += e
    out = [bit]
    for v, mv, f_theirs, (b, tb) in zip(values, masked, theirs[1:], m.masks):
        # bit*v = e v + (1 - 2e) t v = w + e (v - 2w), with w = t v = f t + t b (f = v - b, public)
        w = mv + f_theirs
        w *= m.t
        w += tb
        z = v - w
        z -= w
        z *= e
        z += w
        out.append(z)
    return out
