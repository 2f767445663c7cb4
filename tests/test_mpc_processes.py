"""Parties in separate processes (ProcessSession over transport.ConnectionChannel): the same protocol
code, the same results and counts as in one process, and failures that stop every party."""
from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

from ppfr.models.reference import TrainConfig, softmax_rows
from ppfr.models.service import predict_mpc, reveal_model, train_mpc
from ppfr.mpc import LocalSession, multiply_many
from ppfr.mpc.errors import ProtocolAborted
from ppfr.mpc.session import ProcessSession
from ppfr.mpc.transport import recv_message, send_message
from test_train_mpc import clusters


def integer_products(srv):
    """Elementwise and matrix products of integer shares (frac 0: no truncation, exact in the ring)."""
    x, y = srv.receive(), srv.receive()
    before = srv.channel.stats.copy()
    (elementwise,) = multiply_many([(x, y)])
    (matrix,) = multiply_many([(x, y.T)], op="matmul")
    srv.reveal_to(elementwise)
    srv.reveal_to(matrix)
    return (srv.channel.stats - before).as_dict()


def wait_for_client(srv):
    return srv.receive()


def run_products(session, x, y):
    job = session.run(integer_products)
    session.client.share(x, frac=0)
    session.client.share(y, frac=0)
    out = session.client.reconstruct(), session.client.reconstruct()
    return out, job.result()


def test_processes_give_the_same_results_and_counts_as_threads():
    rng = np.random.default_rng(0)
    x, y = rng.integers(-2**20, 2**20, (7, 9)), rng.integers(-2**20, 2**20, (7, 9))
    with LocalSession() as local:
        (p_local, m_local), stats_local = run_products(local, x, y)
    with ProcessSession() as session:
        (p, m), stats = run_products(session, x, y)
        totals = session.stats()
    np.testing.assert_array_equal(p, x * y)
    np.testing.assert_array_equal(m, x @ y.T)
    np.testing.assert_array_equal(p_local, p)
    assert stats == stats_local
    # a round for each product, which opens both operands (63 + 63 elements), and one for the results
    # (63 + 49 elements, each with its frac; the tags "result" and the session id are framing, not counted)
    assert stats[0]["rounds"] == 3
    assert stats[0]["bytes_sent"] == 8 * (126 + 126) + 8 * (63 + 49) + 2 * 8
    assert totals["server0"].bytes_sent == totals["server1"].bytes_sent >= stats[0]["bytes_sent"]
    assert totals["dealer"].offline_bytes > 0


def test_training_and_prediction_in_processes_match_float64():
    x, labels = clusters(classes=5, per_class=12)
    config = TrainConfig(epochs=2, batch_size=16)
    reports = []
    with ProcessSession() as session:
        trained = train_mpc(session, [(x, labels)], 5, config, progress=lambda *p: reports.append(p))
        probs = predict_mpc(session, x, reveal="probabilities").probabilities
        w, b = reveal_model(session)
    assert len(reports) == trained.batches == 2 * 4
    assert reports[-1] == (1, 3, 4)
    assert np.abs(probs - softmax_rows(x @ w + b)).max() < 1e-3
    assert (probs.argmax(1) == labels).mean() >= 0.99


def test_a_failing_server_stops_the_others_and_reports_its_error():
    with ProcessSession(timeout=60) as session:
        with pytest.raises(RuntimeError, match="holds no classifier"):
            predict_mpc(session, np.zeros((2, 128)))


def test_the_client_can_abort_a_job_that_waits_for_it():
    with ProcessSession(timeout=60) as session:
        job = session.run(wait_for_client)
        session.abort("the client gave up")
        with pytest.raises(ProtocolAborted):
            job.result()


def test_messages_carry_plain_data_only():
    a, b = multiprocessing.Pipe()
    message = {"share": np.arange(6, dtype=np.uint64).reshape(2, 3).T, "tag": ("result", 3, None, 2.5),
               "empty": np.zeros((0, 4), dtype=np.uint64), "scalar": np.uint64(7), "bits": np.ones(9, np.uint8)}
    send_message(a, message)
    got = recv_message(b)
    assert got.keys() == message.keys() and got["tag"] == message["tag"] and got["scalar"] == 7
    for key in ("share", "empty", "bits"):
        np.testing.assert_array_equal(got[key], message[key])
        assert got[key].dtype == message[key].dtype and got[key].flags.writeable
    # a peer that sends a pickled callable does not get it called
    a.send_bytes(pickle.dumps(("message", [], pickle.dumps(print, protocol=5)), protocol=5))
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        recv_message(b)
