"""Communication cost of the protocols, measured on each server's channel, on every session kind (the
`session` fixture of conftest.py)."""
import os
import threading

import numpy as np
import pytest

from ppfr.mpc import functions as F
from ppfr.mpc import protocols


def measured(srv, program, inputs: int):
    """Run by both servers: receive `inputs` tensors, run program(srv, *them); return what that cost."""
    shared = [srv.receive() for _ in range(inputs)]
    before = srv.channel.stats.copy()
    program(srv, *shared)
    return srv.channel.stats - before


def cost(session, program, *inputs):
    """Bytes and rounds each server spends between its inputs and its result (not counting either)."""
    job = session.run(measured, program, len(inputs))
    for x in inputs:
        session.client.share(x)
    return dict(enumerate(job.result()))


# -- programs: what both servers run on their shares -------------------------------------------------------
def beaver_mul(srv, x, y):
    return protocols.products(srv, [("mul", x.share, y.share)])


def beaver_matmul(srv, x, y):
    return protocols.products(srv, [("matmul", x.share, y.share)])


def squares(srv, x):
    return protocols.squares(srv, [x.share])


def fixed_point_mul(srv, x, y):
    return x * y


def exp(srv, x):
    return F.exp(x)


def test_beaver_product_of_n_elements_costs_2n_elements_and_one_round(session):
    n = 1000
    marks = cost(session, beaver_mul, np.ones(n), np.ones(n))
    for d in marks.values():
        assert d.bytes_sent == 16 * n
        assert d.rounds == 1


def test_matrix_product_costs_mk_plus_kc_elements_and_one_round(session):
    m, k, c = 64, 128, 158
    marks = cost(session, beaver_matmul, np.ones((m, k)), np.ones((k, c)))
    for d in marks.values():
        assert d.bytes_sent == 8 * (m * k + k * c)
        assert d.rounds == 1


def test_square_costs_n_elements_and_one_round(session):
    n = 500
    marks = cost(session, squares, np.ones(n))
    for d in marks.values():
        assert d.bytes_sent == 8 * n and d.rounds == 1


def test_fixed_point_product_adds_one_truncation_round(session):
    """Beaver (2n) + truncation (n), 2 rounds; a rare retry re-masks only the unlucky elements."""
    n = 2000
    marks = cost(session, fixed_point_mul, np.ones(n), np.ones(n))
    for d in marks.values():
        retries = d.rounds - 2
        assert 0 <= retries <= 2
        assert 24 * n <= d.bytes_sent <= 24 * n + 8 * 50 * retries


def test_exp_costs_thirteen_openings_of_its_input_size_in_twelve_rounds(session):
    """exp opens y - a once and then only truncations: 1 + 1 + 2 + 1 (the powers of its degree-5
    polynomial), 1 (polynomial), 7 (squares) values per input, in 12 rounds; a redone truncation (rare)
    adds a round and its repair another."""
    n = 1000
    marks = cost(session, exp, np.linspace(-60, 9, n))
    for d in marks.values():
        extra = d.rounds - 12
        assert 0 <= extra <= 4
        if extra == 0:
            assert d.bytes_sent == 8 * 13 * n
        assert 8 * 13 * n <= d.bytes_sent <= 8 * 13 * n + 8 * 50 * extra


def planned_twice(srv):
    """The same planned step twice on a received tensor; what each time took from the dealer."""
    x = srv.receive()
    received = []
    for _ in range(2):
        with srv.provider.plan("test-step", x.shape):
            srv.provider.await_material()
            before = srv.channel.stats.offline_bytes
            F.less_than_zero(x * x - 100)
            received.append(srv.channel.stats.offline_bytes - before)
    return received


def test_a_planned_step_can_wait_for_all_its_material_first(session):
    """From the second time a planned step runs, its dealer requests go out on entry; await_material then
    receives all of it, and the step itself takes nothing more from the dealer. (Integer values: no
    truncation, so no retry that would ask for more.)"""
    job = session.run(planned_twice)
    session.client.share(np.arange(-250, 250), frac=0)
    marks = job.result()
    for first, second in marks:
        assert first > 0          # the first run asks as it goes
        assert second == 0        # the second had it all in hand


def _rounds_of_products(srv, rounds: int):
    """`rounds` Beaver products one after the other, each needing the one before: `rounds` rounds."""
    x = srv.receive()
    for _ in range(rounds):
        x = x * x
    return srv.channel.stats.rounds


def test_a_network_with_latency_makes_each_round_wait_half_its_round_trip():
    """LocalSession(latency=rtt) is the benchmarks' WAN: every message arrives rtt/2 after it is sent,
    so k dependent rounds take at least k * rtt/2 (and the same session without latency is far quicker),
    while bytes and rounds stay what they are."""
    import time

    from ppfr.mpc.session import LocalSession

    rounds, rtt = 6, 0.2
    timings, counts = {}, {}
    for latency in (0.0, rtt):
        with LocalSession(timeout=20, latency=latency) as session:
            start = time.perf_counter()
            job = session.run(_rounds_of_products, rounds)
            session.client.share(np.full(4, 0.5))
            counts[latency] = job.result()
            timings[latency] = time.perf_counter() - start
    assert counts[0.0] == counts[rtt]
    assert timings[rtt] >= rounds * rtt / 2          # a product and its truncation: at least `rounds` rounds
    assert timings[0.0] < rounds * rtt / 2 / 2


def _comparison_method(srv):
    return srv.provider.comparisons


def test_auto_comparisons_choose_fss_where_a_round_costs_a_wan_round_trip():
    """mpc.comparisons: auto times a round between the servers when a session opens: FSS (fewer rounds,
    more arithmetic) across a 20 ms round trip, the bitwise circuit inside one process."""
    from ppfr.mpc.protocols import FSS_FROM_ROUND_SECONDS, choose_comparisons, round_seconds
    from ppfr.mpc.session import LocalSession, open_session

    with LocalSession(timeout=20, latency=0.02) as far:
        cost = max(far.run(round_seconds).result())
    assert cost >= 0.01 and choose_comparisons(cost) == "fss"
    with LocalSession(timeout=20) as near:
        cost = max(near.run(round_seconds).result())
    assert cost < FSS_FROM_ROUND_SECONDS and choose_comparisons(cost) == "bitwise"
    with open_session("threads", comparisons="auto", timeout=20) as session:
        assert session.run(_comparison_method).result() == ["bitwise", "bitwise"]


def _hold_model(srv):
    from ppfr.models.protocols import STATE_KEY

    srv.state[STATE_KEY] = {"weight": srv.receive(), "bias": srv.receive()}


@pytest.mark.parametrize("comparisons", ["bitwise", "fss"])
def test_a_face_meets_only_the_online_phase_once_one_has_been_recognised(comparisons):
    """predict_mpc (reveal="label") asks, as it ends, for the next call's confident_argmax material of the
    same shape: the next face's comparison keys and tables are drawn while the client detects and embeds
    it. In the second call the only request a server sends the dealer before its last opening is the
    logits' truncation pair (the rest come after: they are for the third call), and the labels are
    float64's."""
    from ppfr.models.service import predict_mpc
    from ppfr.mpc.protocols import use_comparisons
    from ppfr.mpc.session import LocalSession

    rng = np.random.default_rng(5)
    w, b = rng.normal(size=(128, 20)) * 0.5, rng.normal(size=20) * 0.1
    faces = rng.normal(size=(2, 1, 128))
    with LocalSession(timeout=30) as session:
        session.run(use_comparisons, comparisons).result()
        job = session.run(_hold_model)
        session.client.share(w)
        session.client.share(b)
        job.result()
        first = predict_mpc(session, faces[0])
        session.record_views()
        second = predict_mpc(session, faces[1])
        view = session.views()["server0"]
    sends = [(peer, message) for direction, peer, message in view if direction == "send"]
    last_opening = max(i for i, (peer, _) in enumerate(sends) if peer == "server1")
    # an ask is a run of requests, each (kind, fields)
    early = [kind for peer, message in sends[:last_opening] if peer == "dealer" for kind, _ in message[2]]
    late = [kind for peer, message in sends[last_opening:] if peer == "dealer" for kind, _ in message[2]]
    assert early == ["truncation"] and len(late) > 1
    assert [first.labels[0], second.labels[0]] == [int(np.argmax(f @ w + b)) for f in faces]


def _thread_of(srv):
    import threading

    return threading.get_ident()


def test_a_local_session_runs_its_jobs_one_after_another_on_two_server_threads():
    """Jobs go to a long-lived thread per server (session.ServerWorkers), in the order they were started;
    a failed job leaves the threads serving; a job after close() is refused at once instead of waiting
    for ever for threads that have ended."""
    import threading

    from ppfr.mpc import LocalSession
    from ppfr.mpc.errors import ProtocolAborted

    with LocalSession() as session:
        first, second = session.run(_thread_of).result(), session.run(_thread_of).result()
        assert first == second and first[0] != first[1] != threading.get_ident()
        jobs = [session.run(_share_plus, k) for k in range(3)]   # queued behind each other
        for k in range(3):
            session.client.share(np.full(4, float(k)))
        for k, job in enumerate(jobs):
            np.testing.assert_allclose(session.client.reconstruct(), np.full(4, 2.0 * k))
            job.result()
    with pytest.raises(ProtocolAborted, match="closed"):
        session.run(_thread_of)


def _share_plus(srv, k):
    x = srv.receive()
    srv.reveal_to(x + x)
    return k


def _cores_of(srv):
    return sorted(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="placing threads on cores needs Linux and two cores")
def test_a_local_sessions_two_servers_keep_to_one_core_and_sessions_take_the_cores_in_turn():
    """The servers share the interpreter lock and hand it to each other many times a round: on one core a
    hand-over is a plain switch, across two it wakes a sleeping core (session.ServerWorkers). The thread
    that starts a session is not moved, and one_core=False leaves the servers where the OS puts them."""
    from ppfr.mpc import LocalSession

    everywhere = sorted(os.sched_getaffinity(0))
    with LocalSession() as first, LocalSession() as second, LocalSession(one_core=False) as free:
        placed = [first.run(_cores_of).result(), second.run(_cores_of).result()]
        unplaced = free.run(_cores_of).result()
    for cores in placed:
        assert cores[0] == cores[1] and len(cores[0]) == 1
    assert placed[0] != placed[1]
    assert unplaced == [everywhere, everywhere]
    assert sorted(os.sched_getaffinity(0)) == everywhere




def _cores_around_bulk_work(srv):
    """The cores this server may use: outside, in a small block, in a bulk block (and one nested in it),
    and after; also after an argmin of 10^5 values and a masked gallery's product with 2^15 rows (inside
    them: the test's recorder)."""
    from ppfr.mpc import placement
    from ppfr.mpc.reuse import MaskedRows

    seen = {"outside": _cores_of(srv)}
    with placement.any_core(placement.ANY_CORE_FROM - 1):
        seen["small"] = _cores_of(srv)
    with placement.any_core(placement.ANY_CORE_FROM):
        with placement.any_core(placement.ANY_CORE_FROM):
            seen["nested"] = _cores_of(srv)
        seen["bulk"] = _cores_of(srv)
    seen["after"] = _cores_of(srv)
    F.argmin(srv.receive(), axis=1)
    seen["after argmin"] = _cores_of(srv)
    rows = MaskedRows(srv, "bulk test", 64, 64)
    rows.append(np.zeros((1 << 15, 64), dtype=np.uint64))
    rows.products(np.zeros((1, 64), dtype=np.uint64))
    seen["after products"] = _cores_of(srv)
    return seen


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="placing threads on cores needs Linux and two cores")
def test_bulk_work_outside_the_interpreter_lock_runs_on_every_core_then_the_server_is_back_on_its_own(monkeypatch):
    """On one core the two servers' numpy of a 10^6-row gallery would run one after the other
    (placement.any_core): such blocks, and only such, widen a server thread to every core, and restore it.
    The recorder notes the cores inside the bulk blocks of the tournament and of the gallery's products."""
    import contextlib

    from ppfr.mpc import LocalSession, functions, placement, reuse

    everywhere = sorted(os.sched_getaffinity(0))
    inside = {}   # (where, server thread): the cores it may use inside that bulk block
    for module in (functions, reuse):
        @contextlib.contextmanager
        def recording(operations, where=module.__name__):
            with placement.any_core(operations):
                inside.setdefault((where, threading.current_thread().name), sorted(os.sched_getaffinity(0)))
                yield
        monkeypatch.setattr(module, "any_core", recording)
    with LocalSession() as session:
        job = session.run(_cores_around_bulk_work)
        session.client.share(np.random.default_rng(3).uniform(-1, 1, size=(1, 1 << 17)))
        seen = job.result()
    for i, s in enumerate(seen):
        own = s["outside"]
        assert len(own) == 1 and s["small"] == s["after"] == s["after argmin"] == s["after products"] == own
        assert s["bulk"] == s["nested"] == everywhere
        for where in (functions.__name__, reuse.__name__):
            assert inside[where, f"ppfr-server{i}"] == everywhere, where


def _dealer_messages_of_a_planned_softmax(srv):
    """Run by both servers: a softmax (its plan recorded), then again, with this server's view: what it
    sent the dealer and what came back, as (requests an ask, [(bytes, requests) an answer])."""
    from ppfr.mpc.channel import payload_bytes

    x = srv.receive()
    F.softmax(x)
    srv.channel.view = []
    F.softmax(x)
    view, srv.channel.view = srv.channel.view, None
    asks = [len(m[2]) for d, peer, m in view if d == "send" and peer == "dealer"]
    answers = [[payload_bytes(part[2]) for part in m[2]] for d, peer, m in view if d == "recv" and peer == "dealer"]
    return asks, answers


@pytest.mark.parametrize("rows", [1, 64])
def test_a_planned_step_asks_the_dealer_in_one_message(session, rows):
    """A planned step sends all its requests in one ask, and the dealer answers them in messages of
    about ANSWER_BYTES: a softmax row's 17 in two, a batch's 6 MB in a dozen, so that the servers can
    start on the first before the last is drawn."""
    from ppfr.mpc.dealer import ANSWER_BYTES

    job = session.run(_dealer_messages_of_a_planned_softmax)
    session.client.share(np.random.default_rng(rows).uniform(-20, 20, (rows, 158)))
    for asks, answers in job.result():
        assert len(asks) == 1 and asks[0] > 10
        assert sum(map(len, answers)) == asks[0]  # every request answered, in order
        for sizes in answers:  # an answer is sent once it holds ANSWER_BYTES
            assert sum(sizes[:-1]) < ANSWER_BYTES
        if rows == 1:
            assert len(answers) <= 3
        else:
            assert len(answers) > 3 and max(map(sum, answers)) > ANSWER_BYTES


def _softmax_rounds_and_kinds(srv, table_words):
    """Run by both servers: a softmax with comparisons by tables up to table_words words; its rounds and
    the kinds of comparison material it asked for; the result revealed."""
    protocols.use_comparison_tables(srv, table_words)
    x = srv.receive()
    before, asked = srv.channel.stats.copy(), srv.provider.requests_sent
    srv.channel.view = []
    p = F.softmax(x)
    kinds = {kind for d, peer, m in srv.channel.view if d == "send" and peer == "dealer" for kind, _ in m[2]}
    # less the rounds that redo a truncation or repair a product: rare, random, and not the plan's
    redone = sum(1 for d, peer, m in srv.channel.view if d == "send" and peer == srv.peer and m[0] in ("retry", "repair"))
    srv.channel.view = None
    rounds = (srv.channel.stats - before).rounds - redone
    srv.reveal_to(p)
    return rounds, kinds & {"comparison", "table_comparison"}, srv.provider.requests_sent - asked


def test_comparisons_run_by_tables_up_to_the_size_a_round_pays_for():
    """A round of a 1 ms round trip pays for tables on some 9,000 words: a softmax of 64 x 158 then
    compares by tables throughout, in 11 rounds fewer than in one process (where three of the tournament's
    levels compare by the 32-bit circuit, 3 rounds more each, and the clamp by the 16-bit one, 2 more;
    rounds that redo a truncation, rare and random, not counted), as exactly; inside one process a round
    pays for no more than TABLES_MAX_WORDS."""
    from ppfr.mpc.session import LocalSession

    with LocalSession(timeout=20, latency=0.001) as lan:
        lan_words = protocols.table_words_for(max(lan.run(protocols.round_seconds).result()))
    with LocalSession(timeout=20) as near:
        near_cost = max(near.run(protocols.round_seconds).result())
    assert protocols.table_words_for(near_cost) < 2 * protocols.TABLES_MAX_WORDS
    assert 64 * 158 // 2 <= lan_words <= protocols.TABLES_WORDS_CAP  # the clamp's 10,112 values of 32 bits
    x = np.random.default_rng(3).uniform(-20, 20, (64, 158))
    expected = np.exp(x - x.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = {}
    with LocalSession(timeout=20) as session:
        for words in (protocols.TABLES_MAX_WORDS, lan_words):
            job = session.run(_softmax_rounds_and_kinds, words)
            session.client.share(x)
            p = session.client.reconstruct()
            (rounds, kinds, _), _ = job.result()
            np.testing.assert_allclose(p, expected, atol=1e-4)
            got[words] = rounds, kinds
    (few_rounds, few_kinds), (many_rounds, many_kinds) = got[protocols.TABLES_MAX_WORDS], got[lan_words]
    assert few_kinds == {"comparison", "table_comparison"} and many_kinds == {"table_comparison"}
    assert many_rounds == few_rounds - 11, (few_rounds, many_rounds)
    with pytest.raises(ValueError, match="words"):
        protocols.use_comparison_tables(None, protocols.TABLES_WORDS_CAP + 1)
