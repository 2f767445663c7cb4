"""What a server sees: its own uniform shares and values masked by dealer randomness, nothing else."""
import numpy as np
import pytest

from mpc_util import chi_square_uniform_bytes, evaluate, received_from_peer
from ppfr.mpc import LocalSession
from ppfr.mpc import functions as F


def assert_uniform(data: bytes):
    assert len(data) > 100_000, "too little traffic to test"
    stat, critical = chi_square_uniform_bytes(data)
    assert stat < critical, f"chi-square {stat:.0f} >= {critical:.0f}: not uniform"


def test_the_uniformity_test_can_fail():
    """The test rejects what a leak looks like: fixed-point encodings of real data."""
    plain = (np.random.default_rng(0).normal(size=50_000) * 2**16).astype(np.int64)
    stat, critical = chi_square_uniform_bytes(plain.tobytes())
    assert stat > critical


@pytest.mark.parametrize("program", [
    pytest.param(lambda x, y: x * y, id="mul"),
    pytest.param(lambda x, y: x @ y.T, id="matmul"),
    pytest.param(lambda x, y: x.square(), id="square"),
    pytest.param(lambda x, y: F.softmax(x), id="softmax"),
])
def test_what_a_server_receives_from_the_other_is_uniform(program):
    """Inputs are constant and structured (all 1.0), the worst case for a leak."""
    x = np.ones((64, 128))
    with LocalSession() as session:
        session.network.transcript = []
        evaluate(session, program, x, x)
        for server in ("server0", "server1"):
            assert_uniform(received_from_peer(session.network.transcript, server))


def test_each_servers_share_of_a_constant_is_uniform():
    with LocalSession() as session:
        session.network.transcript = []
        session.client.share(np.zeros(100_000))
        session.client.share(np.full(100_000, 3.5))
        for server in ("server0", "server1"):
            shares = [m[3] for sender, to, m in session.network.transcript if sender == "client" and to == server]
            assert len(shares) == 2
            for share in shares:
                assert_uniform(share.tobytes())


def test_a_server_never_receives_the_plaintext():
    x = np.arange(1, 257, dtype=np.float64)
    encoded = (x * 2**16).astype(np.int64).view(np.uint64)
    with LocalSession() as session:
        session.network.transcript = []
        evaluate(session, lambda a: F.softmax(a.reshape(16, 16)) * a.reshape(16, 16), x)
        for sender, to, message in session.network.transcript:
            if to.startswith("server"):
                data = received_from_peer([(sender, to, message)], to) if sender.startswith("server") else b""
                if data:
                    values = np.frombuffer(data[: len(data) // 8 * 8], dtype=np.uint64)
                    assert np.isin(encoded, values).sum() <= 1  # chance collisions only
