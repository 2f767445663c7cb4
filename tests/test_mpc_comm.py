"""Communication cost of the protocols, measured on the channel."""
import numpy as np

from ppfr.mpc import LocalSession
from ppfr.mpc import functions as F
from ppfr.mpc import protocols


def cost(program, *inputs):
    """Bytes and rounds each server spends between its inputs and its result (not counting either)."""
    with LocalSession() as session:
        marks = {}

        def run(srv):
            shared = [srv.receive() for _ in inputs]
            before = srv.channel.stats.copy()
            out = program(srv, *shared)
            marks[srv.index] = srv.channel.stats - before
            return out

        job = session.run(run)
        for x in inputs:
            session.client.share(x)
        job.result()
        return marks


def test_beaver_product_of_n_elements_costs_2n_elements_and_one_round():
    n = 1000
    marks = cost(lambda srv, x, y: protocols.products(srv, [("mul", x.share, y.share)]), np.ones(n), np.ones(n))
    for d in marks.values():
        assert d.bytes_sent == 16 * n
        assert d.rounds == 1


def test_matrix_product_costs_mk_plus_kc_elements_and_one_round():
    m, k, c = 64, 128, 158
    marks = cost(lambda srv, x, y: protocols.products(srv, [("matmul", x.share, y.share)]),
                 np.ones((m, k)), np.ones((k, c)))
    for d in marks.values():
        assert d.bytes_sent == 8 * (m * k + k * c)
        assert d.rounds == 1


def test_square_costs_n_elements_and_one_round():
    n = 500
    marks = cost(lambda srv, x: protocols.squares(srv, [x.share]), np.ones(n))
    for d in marks.values():
        assert d.bytes_sent == 8 * n and d.rounds == 1


def test_fixed_point_product_adds_one_truncation_round():
    """Beaver (2n) + truncation (n), 2 rounds; a rare retry re-masks only the unlucky elements."""
    n = 2000
    marks = cost(lambda srv, x, y: x * y, np.ones(n), np.ones(n))
    for d in marks.values():
        retries = d.rounds - 2
        assert 0 <= retries <= 2
        assert 24 * n <= d.bytes_sent <= 24 * n + 8 * 50 * retries


def test_exp_costs_twelve_openings_of_its_input_size():
    """exp opens y - a once and then only truncations: 1 + 1 + 2 + 3 (powers), 1 (polynomial), 7 (squares)
    values per input, in 12 rounds; a redone truncation (rare) adds a round and its repair another."""
    n = 1000
    marks = cost(lambda srv, x: F.exp(x), np.linspace(-60, 9, n))
    for d in marks.values():
        extra = d.rounds - 12
        assert 0 <= extra <= 4
        if extra == 0:
            assert d.bytes_sent == 8 * 15 * n
        assert 8 * 15 * n <= d.bytes_sent <= 8 * 15 * n + 8 * 50 * extra


def test_a_planned_step_can_wait_for_all_its_material_first():
    """From the second time a planned step runs, its dealer requests go out on entry; await_material then
    receives all of it, and the step itself takes nothing more from the dealer. (Integer values: no
    truncation, so no retry that would ask for more.)"""

    def program(srv, x):
        received = []
        for _ in range(2):
            with srv.provider.plan("test-step", x.shape):
                srv.provider.await_material()
                before = srv.channel.stats.offline_bytes
                F.less_than_zero(x * x - 100)
                received.append(srv.channel.stats.offline_bytes - before)
        return received

    with LocalSession() as session:
        job = session.run(lambda srv: program(srv, srv.receive()))
        session.client.share(np.arange(-250, 250), frac=0)
        marks = job.result()
    for first, second in marks:
        assert first > 0          # the first run asks as it goes
        assert second == 0        # the second had it all in hand
