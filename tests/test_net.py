"""The network layer (ppfr/net): the plain-data wire format, mutually authenticated TLS links with
deadlines and heartbeats, the Channel over them running the real protocol, and the delaying proxy."""
from __future__ import annotations

import datetime
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from ppfr.mpc import LocalSession
from ppfr.mpc.channel import payload_bytes
from ppfr.mpc.errors import ProtocolAborted
from ppfr.mpc.session import LINKS, Job, ServerWorkers
from ppfr.mpc.dealer import Dealer
from ppfr.mpc.fixedpoint import FixedPoint
from ppfr.mpc.party import Client, Server
from ppfr.net import wire
from ppfr.net.certs import issue, make_deployment
from ppfr.net.channel import LinkChannel
from ppfr.net.link import Listener, Timing, dial
from ppfr.net.proxy import DelayProxy
from ppfr.net.tls import Identity, PeerRefused
from mpc_util import evaluate

FAST = Timing(heartbeat=0.2, dead_after=1.5, connect=5.0, message=20.0)
ADDRESS = {"server0": "127.0.0.2", "server1": "127.0.0.3", "dealer": "127.0.0.4", "client-test": "127.0.0.5"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    make_deployment(d, clients=("test",))
    return d


def ident(certs, party):
    return Identity.from_dir(certs, party)


# -- wire format ----------------------------------------------------------------------------------------
def roundtrip(message, max_message=wire.DEFAULT_MAX_MESSAGE):
    data = b"".join(bytes(p) for p in wire.encode(message))
    stream = io.BytesIO(data)
    kind, out = wire.read_frame(lambda n: bytearray(stream.read(n)), max_message)
    assert kind == wire.MESSAGE and stream.read() == b""
    return out


def assert_same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    else:
        assert a == b


def test_plain_data_survives_the_wire_exactly():
    rng = np.random.default_rng(1)
    message = ("share", "a" * 16, 16, rng.integers(0, 2**63, (5, 7), dtype=np.uint64),
               [None, True, False, -2**63, 2**200, -3.25, b"\x00raw", "ünïcode"],
               {"r": np.arange(3, dtype=np.int8), (1, 2): [np.float32(1.5), np.uint64(2**64 - 1)]},
               np.zeros((0, 4)), np.array(7, dtype=np.int32), rng.random((6, 6))[:, ::2],  # empty, 0-d, strided
               np.array([True, False]), np.arange(5, dtype=">i4"))
    out = roundtrip(message)
    expected = list(message)
    expected[-3] = np.ascontiguousarray(message[-3])
    expected[-1] = message[-1].astype("<i4")
    assert_same(tuple(expected), out)
    assert out[3].flags.writeable and out[3].ctypes.data % 8 == 0


def test_every_message_of_real_protocols_survives_the_wire():
    """What softmax, argmin and a matrix product send (shares, openings, every kind of dealer request
    and material) comes out of the wire format exactly, with the same byte count."""
    from ppfr.mpc import functions
    from ppfr.mpc.tensor import multiply_many
    rng = np.random.default_rng(2)

    def program(srv):
        x, y, z = srv.receive(), srv.receive(), srv.receive()
        srv.reveal_to(functions.softmax(x))
        srv.reveal_to(functions.argmin(x, axis=1)[1])
        srv.reveal_to(multiply_many([(x, y)], op="matmul")[0])
        srv.reveal_to(functions.less_than_zero(z))  # enough values for the circuit rather than tables
    with LocalSession() as session:
        session.record_views()
        job = session.run(program)
        session.client.share(rng.normal(size=(3, 5)))
        session.client.share(rng.normal(size=(5, 2)))
        session.client.share(rng.normal(size=600))
        for _ in range(4):
            session.client.reconstruct()
        job.result()
        views = session.views()
    kinds = set()
    for party, view in views.items():
        for _, _, message in view:
            out = roundtrip(message)
            assert_same(message, out)
            assert payload_bytes(out) == payload_bytes(message)
            if isinstance(message, tuple) and message and message[0] in ("ask", "material"):
                kinds.update(part[0] for part in message[2])  # a run of requests, or of their answers
    assert {"triples", "comparison", "table_comparison", "masked"} <= kinds


@wire.register
@dataclass(frozen=True)
class Material:
    a: np.ndarray
    shift: int


def test_only_registered_dataclasses_cross():
    out = roundtrip([Material(np.arange(4, dtype=np.uint64), 3)])
    assert isinstance(out[0], Material) and out[0].shift == 3

    @dataclass
    class Unregistered:
        x: int
    with pytest.raises(wire.WireError, match="cannot be sent"):
        wire.encode(Unregistered(1))
    with pytest.raises(wire.WireError, match="cannot be sent"):
        wire.encode(object())
    with pytest.raises(wire.WireError, match="cannot be sent"):
        wire.encode(np.array(["text"], dtype=object))


def frame(kind, structure: bytes, payload: bytes = b"", magic=wire.MAGIC, version=wire.VERSION):
    return wire.HEADER.pack(magic, version, kind, 0, len(structure), len(payload)) + structure + payload


@pytest.mark.parametrize("data, error", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a ppfr frame"),
    (pickle.dumps(("message", [], b"x")), "not a ppfr frame"),
    (frame(wire.MESSAGE, b"N", version=9), "version 9"),
    (frame(77, b"N"), "unknown frame kind"),
    (frame(wire.MESSAGE, b"Z"), "unknown tag"),
    (frame(wire.MESSAGE, b"s\xff\x00\x00\x00ab"), "ends early"),
    (frame(wire.MESSAGE, b"l\xff\xff\xff\x7fN"), "container of"),
    (frame(wire.MESSAGE, b"a\x08\x01" + (10).to_bytes(8, "little"), bytes(16)), "runs past"),
    (frame(wire.MESSAGE, b"a\x63\x00"), "dtype code"),
    (frame(wire.MESSAGE, b"NN"), "after the frame's message"),
    (frame(wire.MESSAGE, b"N", bytes(8)), "beyond its arrays"),
    (frame(wire.MESSAGE, b"cs\x03\x00\x00\x00os.d\x00\x00\x00\x00"), "not a type that may be sent"),
    (frame(wire.MESSAGE, b"l\x01\x00\x00\x00" * 40 + b"N"), "nests deeper"),
    (frame(wire.MESSAGE, b"d\x01\x00\x00\x00l\x00\x00\x00\x00N"), "dict key"),
])
def test_garbage_is_refused_with_a_clear_error(data, error):
    stream = io.BytesIO(data)

    def read_exact(n):
        chunk = stream.read(n)
        if len(chunk) < n:
            raise EOFError
        return bytearray(chunk)
    with pytest.raises(wire.WireError, match=error):
        wire.read_frame(read_exact)


def test_an_oversize_frame_is_refused_before_anything_is_allocated():
    asked = []
    header = wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.MESSAGE, 0, 10, 1 << 40)

    def read_exact(n):
        asked.append(n)
        return bytearray(header)
    with pytest.raises(wire.WireError, match="exceeds the maximum message size"):
        wire.read_frame(read_exact)
    assert asked == [wire.HEADER.size]
    with pytest.raises(wire.WireError, match="exceeds"):
        roundtrip(np.zeros(1000), max_message=4000)


def eventually(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


# -- links ----------------------------------------------------------------------------------------------
class Accepted:
    """A listener that keeps the links it accepts."""

    def __init__(self, certs, party, host="127.0.0.2", timing=FAST, **kw):
        self.links, self.refusals = [], []
        self.arrived = threading.Event()

        def keep(link):
            self.links.append(link)
            self.arrived.set()
        self.listener = Listener(f"{host}:0", party, ident(certs, party), keep, timing=timing,
                                 on_refused=self.refusals.append, **kw)
        self.address = self.listener.address

    def link(self):
        assert self.arrived.wait(10)
        return self.links[-1]

    def close(self):
        for link in self.links:
            link.close()
        self.listener.close()


def test_a_link_carries_messages_both_ways_and_names_the_authenticated_peer(certs):
    server = Accepted(certs, "server0")
    try:
        link = dial(server.address, "client-test", "server0", ident(certs, "client-test"), {"session": "s1"}, FAST)
        theirs = server.link()
        assert theirs.peer == "client-test" and theirs.hello == {"party": "client-test", "session": "s1"}
        big = np.arange(3 << 17, dtype=np.uint64)  # 3 MB: larger than any socket buffer, both ways at once
        link.send(("x", big))
        theirs.send(("y", big + 1))
        tag, got = theirs.recv()
        assert tag == "x"
        np.testing.assert_array_equal(got, big)
        np.testing.assert_array_equal(link.recv()[1], big + 1)
        time.sleep(3 * FAST.heartbeat)  # heartbeats flow, and are never delivered as messages
        link.send("after")
        assert theirs.recv(timeout=5) == "after"
        link.close("done here")
        with pytest.raises(ProtocolAborted, match="closed the connection: done here"):
            theirs.recv(timeout=5)
    finally:
        server.close()


def test_a_peer_whose_certificate_names_another_party_is_refused(certs):
    server = Accepted(certs, "server1")  # listening with server 1's certificate
    try:
        with pytest.raises(PeerRefused, match="refused server0 at .*[Hh]ostname mismatch"):
            dial(server.address, "client-test", "server0", ident(certs, "client-test"), timing=FAST)
        # a client that claims to be server 0 with its own certificate
        with pytest.raises(PeerRefused, match="did not accept server0.*certificate of client-test claimed "
                                              "to be server0"):
            dial(server.address, "server0", "server1", ident(certs, "client-test"), timing=FAST)
        assert eventually(lambda: any("claimed to be server0" in r for r in server.refusals))
    finally:
        server.close()


def test_a_listener_can_refuse_a_party_it_does_not_serve(certs):
    dealer = Accepted(certs, "dealer", allowed=lambda party: party in ("server0", "server1"))
    try:
        with pytest.raises(PeerRefused, match="client-test may not connect here"):
            dial(dealer.address, "client-test", "dealer", ident(certs, "client-test"), timing=FAST)
        dial(dealer.address, "server0", "dealer", ident(certs, "server0"), timing=FAST).close()
    finally:
        dealer.close()


def test_certificates_of_another_ca_or_expired_ones_are_refused(certs, tmp_path):
    other = tmp_path / "other"
    make_deployment(other, clients=("test",))
    expired = tmp_path / "expired"
    expired.mkdir()
    for f in ("ca.pem", "ca.key"):
        (expired / f).write_bytes((certs / f).read_bytes())
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)
    for party in ("client-test", "server0"):
        issue(expired, party, expired, days=1, not_before=past)

    def trusting_our_ca(directory, party):  # a party holding a bad certificate but our CA's
        return Identity(party, directory / f"{party}.pem", directory / f"{party}.key", certs / "ca.pem")
    server = Accepted(certs, "server0")
    try:
        for directory in (other, expired):  # the connecting client's certificate is bad
            with pytest.raises(PeerRefused, match="did not accept client-test"):
                dial(server.address, "client-test", "server0", trusting_our_ca(directory, "client-test"),
                     timing=FAST)
        assert eventually(lambda: len(server.refusals) == 2)
        assert all("certificate" in r for r in server.refusals)
    finally:
        server.close()
    # the server's certificate is bad
    for directory, why in ((other, "not valid here .*(signature|issuer)"), (expired, "not valid here .*expired")):
        server = Accepted(directory, "server0")
        try:
            with pytest.raises(PeerRefused, match=why):
                dial(server.address, "client-test", "server0", ident(certs, "client-test"), timing=FAST)
        finally:
            server.close()


def test_a_bad_or_oversize_frame_ends_the_link_with_a_clear_error(certs):
    server = Accepted(certs, "server0", max_message=1 << 20)
    try:
        link = dial(server.address, "client-test", "server0", ident(certs, "client-test"), timing=FAST)
        theirs = server.link()
        link._write([wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.MESSAGE, 0, 1, 1 << 40)])
        with pytest.raises(ProtocolAborted, match="client-test sent a bad frame: a frame of .* exceeds"):
            theirs.recv(timeout=5)
        server.arrived.clear()
        link2 = dial(server.address, "client-test", "server0", ident(certs, "client-test"), timing=FAST)
        theirs2 = server.link()
        link2._write([b"\x80\x04garbage that is not a frame....."])
        with pytest.raises(ProtocolAborted, match="bad frame: not a ppfr frame"):
            theirs2.recv(timeout=5)
    finally:
        server.close()


def test_plain_tcp_and_garbage_before_tls_are_refused(certs):
    server = Accepted(certs, "server0")
    try:
        host, port = server.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(pickle.dumps({"run": "anything"}) + b"\r\n" * 100)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
        assert eventually(lambda: server.refusals) and "TLS handshake failed" in server.refusals[0]
        assert not server.links
    finally:
        server.close()


PEER_SCRIPT = textwrap.dedent("""
    import sys, threading
    from ppfr.net.link import Listener, Timing
    from ppfr.net.tls import Identity
    done = threading.Event()
    def echo(link):
        while True:
            link.send(link.recv())
    lst = Listener("127.0.0.3:0", "server1", Identity.from_dir(sys.argv[1], "server1"), echo,
                   timing=Timing(heartbeat=0.2, dead_after=1.5, connect=5.0, message=60.0))
    print(lst.address, flush=True)
    done.wait(60)
""")


def test_a_stopped_peer_is_noticed_within_the_bound(certs):
    peer = subprocess.Popen([sys.executable, "-c", PEER_SCRIPT, str(certs)], stdout=subprocess.PIPE, text=True)
    try:
        address = peer.stdout.readline().strip()
        link = dial(address, "server0", "server1", ident(certs, "server0"), timing=FAST)
        link.send(np.arange(4))
        np.testing.assert_array_equal(link.recv(timeout=10), np.arange(4))
        os.kill(peer.pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(ProtocolAborted, match="no sign of life from server1 for 2 s"):
            link.recv(timeout=30)
        assert time.monotonic() - start < FAST.dead_after + 1.0
    finally:
        os.kill(peer.pid, signal.SIGKILL)
        peer.wait(10)


def test_a_killed_peer_is_noticed_at_once(certs):
    peer = subprocess.Popen([sys.executable, "-c", PEER_SCRIPT, str(certs)], stdout=subprocess.PIPE, text=True)
    try:
        link = dial(peer.stdout.readline().strip(), "server0", "server1", ident(certs, "server0"), timing=FAST)
        peer.kill()
        start = time.monotonic()
        with pytest.raises(ProtocolAborted, match="lost server1: the connection"):
            link.recv(timeout=30)
        assert time.monotonic() - start < 1.0
    finally:
        peer.kill()
        peer.wait(10)


# -- the protocol over TLS links ------------------------------------------------------------------------
class LinkedParties:
    """The four parties in threads of this process, each pair of LINKS connected by a TLS link on its
    own loopback address: the engine's Job runs on it as on a LocalSession."""

    def __init__(self, certs):
        names = {"client": "client-test"}
        party = lambda n: names.get(n, n)  # noqa: E731
        listeners, links = {}, {n: {} for n in ("client", "server0", "server1", "dealer")}
        lock = threading.Lock()
        arrived = threading.Semaphore(0)

        def keeper(me):
            def keep(link):
                with lock:
                    links[me]["client" if link.peer.startswith("client-") else link.peer] = link
                arrived.release()
            return keep
        for me in ("server1", "dealer", "server0"):
            listeners[me] = Listener(f"{ADDRESS[me]}:0", me, ident(certs, me), keeper(me), timing=FAST)
        for a, b in LINKS:
            links[a][b] = dial(listeners[b].address, party(a), b, ident(certs, party(a)), timing=FAST)
        for _ in LINKS:
            assert arrived.acquire(timeout=10)
        for lst in listeners.values():
            lst.close()
        self.channels = {n: LinkChannel(n, links[n]) for n in links}
        fixed = FixedPoint()
        self.client = Client(self.channels["client"], fixed, "s" * 16)
        self.servers = [Server(i, self.channels[f"server{i}"], fixed, "s" * 16) for i in (0, 1)]
        self.dealer = Dealer(self.channels["dealer"])
        threading.Thread(target=self.dealer.serve, daemon=True).start()
        self.workers = ServerWorkers()

    def run(self, program, *args, per_server=((), ()), progress=None):
        return Job(self, program, args, per_server, progress)

    def abort(self, reason="the session ended"):
        for channel in self.channels.values():
            channel.close(reason)

    def close(self):
        self.abort()
        self.workers.close()

    def stats(self):
        return {n: c.stats.copy() for n, c in self.channels.items()}


def test_the_protocol_runs_unchanged_over_tls_links_with_the_same_results_and_counts(certs):
    """Softmax over TLS links as in one process (to its accuracy); and integer products, whose rounds and
    bytes do not depend on random retries, with exactly the same results and counts."""
    from ppfr.mpc import functions
    from ppfr.mpc.tensor import multiply_many
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 10))
    a, b = rng.integers(-2**20, 2**20, (7, 9)), rng.integers(-2**20, 2**20, (9, 5))

    def products(t, u):
        return multiply_many([(t, u)], op="matmul")[0]

    def run(session):
        soft = evaluate(session, functions.softmax, x)
        before = {n: session.stats()[n].copy() for n in ("server0", "server1")}
        exact = evaluate(session, products, a, b, fracs=[0, 0])
        after = session.stats()
        return soft, exact, {n: (after[n] - before[n]).as_dict() for n in before}
    parties = LinkedParties(certs)
    try:
        remote = run(parties)
    finally:
        parties.close()
    with LocalSession() as local:
        embedded = run(local)
    expected = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    assert np.abs(remote[0] - expected).max() < 1e-3 and np.abs(embedded[0] - expected).max() < 1e-3
    np.testing.assert_array_equal(remote[1], a @ b)
    np.testing.assert_array_equal(embedded[1], a @ b)
    assert remote[2] == embedded[2] and remote[2]["server0"]["rounds"] == 2


def test_a_failing_server_stops_every_party_over_links(certs):
    parties = LinkedParties(certs)

    def failing(srv):
        if srv.index == 1:
            raise RuntimeError("server 1 has no such model")
        return srv.receive()
    try:
        with pytest.raises(RuntimeError, match="no such model"):
            parties.run(failing).result()
    finally:
        parties.close()


# -- the delaying proxy -----------------------------------------------------------------------------------
def test_the_proxy_adds_its_round_trip_time_and_passes_tls_through(certs):
    server = Accepted(certs, "server0")
    host, port = server.address.rsplit(":", 1)
    try:
        with DelayProxy((host, int(port)), rtt=0.040) as proxy:
            link = dial(proxy.address, "client-test", "server0", ident(certs, "client-test"), timing=FAST)
            theirs = server.link()
            times = []
            for i in range(5):
                start = time.perf_counter()
                link.send(i)
                theirs.send(theirs.recv(timeout=5))
                assert link.recv(timeout=5) == i
                times.append(time.perf_counter() - start)
            assert 0.040 <= sorted(times)[2] < 0.2
            link.close()
        with pytest.raises(ValueError, match="loopback addresses only"):
            DelayProxy(("192.0.2.1", 80), rtt=0.001)  # refused by its address alone: nothing is sent
    finally:
        server.close()


# -- ppfr certs -----------------------------------------------------------------------------------------
def test_certs_command_makes_a_ca_and_party_certificates_with_private_keys(tmp_path):
    from click.testing import CliRunner
    from cryptography import x509

    from ppfr.cli import main
    d = tmp_path / "deploy"
    result = CliRunner().invoke(main, ["certs", str(d), "--client", "alice", "--json"])
    assert result.exit_code == 0, result.output
    issued = {row["party"] for row in __import__("json").loads(result.output)["issued"]}
    assert issued == {"ca", "server0", "server1", "dealer", "client-alice"}
    assert (d.stat().st_mode & 0o777) == 0o700
    for party in issued:
        key = d / f"{'ca' if party == 'ca' else party}.key"
        assert (key.stat().st_mode & 0o777) == 0o600
    cert = x509.load_pem_x509_certificate((d / "server1.pem").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["server1"]
    again = CliRunner().invoke(main, ["certs", str(d)])
    assert again.exit_code == 1 and "already holds a CA" in again.output
    bad = CliRunner().invoke(main, ["certs", str(d), "--party", "mallory"])
    assert bad.exit_code == 1 and "not a party name" in bad.output and "Traceback" not in bad.output
    added = CliRunner().invoke(main, ["certs", str(d), "--party", "client-bob"])
    assert added.exit_code == 0 and (d / "client-bob.pem").exists()
