"""Privacy of the engine, tested on what each party can compute from its view (tests/privacy.py).

Each program runs on two input sets of the same sizes (constant, structured values — the worst case for
a leak — and random ones) and once more on the first; every server's view must pass every property,
and the dealer's must be the same for both inputs. The same checks catch each planted leak
(tests/test_privacy_mutants.py)."""
from functools import partial

import numpy as np
import pytest

import privacy
from ppfr.mpc import FixedPoint, LocalSession, ProcessSession, concatenate, protocols
from ppfr.mpc import functions as F
from ppfr.mpc import lut

RNG = np.random.default_rng(7)
CONSTANT = np.ones((32, 40))
RANDOM = RNG.normal(size=(32, 40))


def mul(x, y):
    return x * y


def matmul(x, y):
    return x @ y.T


def square(x, y):
    return x.square()


def scale(x, y):
    return x * 0.3  # a public factor: one truncation


def compare(x, y):
    return F.less_than(x, y)


def argmax(x, y):
    return F.argmax(x, axis=-1)[1]


def argmin_row(x, y):
    """One row of 1,280 values: with FSS, a tournament by rank of pairs then groups of 10 and 64
    (functions.rank_levels), so loss counts and narrow comparisons with payloads are opened."""
    value, index = F.argmin(x.reshape(1, -1), axis=-1)
    return value + index


def argmin_every_level(x, y):
    """One row of 1,280 values by rank through every kind of level: pairs by selection (public positions,
    then shared), pairs with payloads, groups of 5 and of 32."""
    value, index = F._tournament_by_rank(x.reshape(1, -1), True, True, 64, levels=(F.BY_SELECTION, 2, F.BY_SELECTION, 5, 32))
    return value + index


def argmax_row_of_160(x, y):
    """One row of 160 values: a bitwise tournament in groups of 4, 5 and 8 (functions.circuit_levels), whose
    winners are ANDs of up to seven comparison bits."""
    return F.argmax(x[:4].reshape(1, -1), axis=-1)[1]


def exp(x, y):
    return F.exp(x - 2)


def reciprocal(x, y):
    return F.reciprocal(x * x + 1)


def softmax(x, y):
    return F.softmax(x)


def softmax_of_rows_of_80(x, y):
    """Rows of 80: the clamp's 2,560 values take its coarse 16-bit sign by the circuit (640 words, over
    the tables' 512), the tournament's first level the 32-bit circuit."""
    return F.softmax(concatenate([x, y], axis=-1))


def exp_by_tables(x, y):
    """exp of x - 8 <= 0 by tables (lut.py): one opening for both lookups and the clamp's comparison."""
    return lut.exp_nonpositive(x - 8)


def label(x, y):
    """Recognition's default reveal (label and band): bitwise, the polynomial exp and the comparisons whose
    selection round gives the label's product; with FSS comparisons, by exp tables untruncated."""
    return F.confident_argmax(x, (0.5, 0.9))


def fss_session(**kwargs):
    """A LocalSession whose servers compare by function secret sharing (protocols.use_comparisons)."""
    session = LocalSession(**kwargs)
    session.run(protocols.use_comparisons, "fss").result()
    return session


def fss_polynomial_session(**kwargs):
    """fss_session with exp by tables off: the label's polynomial path, whose comparisons carry the index as
    a payload (protocols.msb_select)."""
    session = fss_session(**kwargs)
    session.run(lut.use_exp_tables, False).result()
    return session


PROGRAMS = [mul, matmul, square, scale, compare, argmax, argmax_row_of_160, exp, reciprocal, softmax,
            softmax_of_rows_of_80, exp_by_tables, label]
COMPARING = [compare, argmax, argmin_row, argmin_every_level, reciprocal, softmax, softmax_of_rows_of_80, label]
SESSIONS = {
    "threads": LocalSession,
    # redone truncations forced: with |x| < 2^60 assumed, one in eight is redone (instead of 2^-15)
    "threads-retries": partial(LocalSession, fixed=FixedPoint(bound_bits=60)),
}


@pytest.mark.parametrize("kind", list(SESSIONS))
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_what_each_server_and_the_dealer_see(program, kind):
    privacy.check_program(SESSIONS[kind], program, (CONSTANT, CONSTANT), (RANDOM, RANDOM[::-1]))


@pytest.mark.parametrize("program", COMPARING, ids=lambda p: p.__name__)
def test_what_each_server_and_the_dealer_see_with_fss_comparisons(program):
    privacy.check_program(fss_session, program, (CONSTANT, CONSTANT), (RANDOM, RANDOM[::-1]))


def test_what_each_server_and_the_dealer_see_of_the_label_with_fss_and_the_polynomial():
    privacy.check_program(fss_polynomial_session, label, (CONSTANT, CONSTANT), (RANDOM, RANDOM[::-1]))


def test_views_are_the_same_with_the_parties_in_processes():
    privacy.check_program(ProcessSession, softmax, (CONSTANT, CONSTANT), (RANDOM, RANDOM))


def test_redone_truncations_happen_and_tell_the_dealer_nothing():
    """With forced retries the servers do redo truncations (tagged rounds in their views), taking
    spares: the dealer's requests are still the same for both inputs (checked in check_program)."""
    runs = privacy.check_program(SESSIONS["threads-retries"], scale, (CONSTANT, CONSTANT), (RANDOM, RANDOM))
    redone = [o for o in runs[0]["server0"].openings if o.tag == "retry"]
    assert redone, "no truncation was redone: the test does not test the spares"


def test_the_uniformity_test_can_fail():
    """What a leak looks like is refused: fixed-point encodings of data, bits, small differences."""
    data = (RANDOM.ravel() * 2**16).astype(np.int64).view(np.uint64)
    assert privacy.looks_like_data(data)
    assert privacy.looks_like_data((RANDOM.ravel() > 0).astype(np.uint64) & np.uint64(1), "bits") is False
    assert privacy.looks_like_data(np.zeros(64, dtype=np.uint64), "bits")
    assert privacy.looks_like_data(data[:5])  # five values are enough
    uniform = np.random.default_rng(1).integers(0, 2**64, 100_000, dtype=np.uint64)
    assert not privacy.looks_like_data(uniform)


def test_the_dealer_view_check_sees_how_requests_are_grouped():
    """The dealer receives a planned step's requests in one message (provider.Provider._send): the same
    requests grouped otherwise for another input would tell it something, and the check says so."""
    one = [("recv", "server0", ("ask", 0, (("and", (1,)), ("and", (2,)))))]
    two = [("recv", "server0", ("ask", 0, (("and", (1,)),))), ("recv", "server0", ("ask", 1, (("and", (2,)),)))]
    privacy.assert_dealer_views_equal(one, one)
    with pytest.raises(AssertionError, match="grouped depends on the input"):
        privacy.assert_dealer_views_equal(one, two)


def test_the_few_rounds_softmax_redoing_truncations_tells_nobody_anything(monkeypatch):
    """Exp by tables and the chain of the few-rounds softmax with one masked truncation in eight redone
    (their bound forced to 2^60): the rows whose masked sums that spoils compare again with spare keys, in
    rounds tagged "retry"; every view still passes every check, and the dealer's is the same for two inputs."""
    truncate_masked = protocols.truncate_masked
    monkeypatch.setattr(protocols, "truncate_masked",
                        lambda srv, xs, shifts, materials, bound_bits=None: truncate_masked(srv, xs, shifts, materials, 60))
    runs = privacy.check_program(partial(fss_session, fixed=FixedPoint(bound_bits=60)), softmax,
                                 (CONSTANT, CONSTANT), (RANDOM, RANDOM[::-1]))
    assert [o for o in runs[0]["server0"].openings if o.tag == "retry"], "nothing was redone"
