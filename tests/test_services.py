"""`ppfr server` and `ppfr dealer` as separate processes on 127.0.0.2, .3 and .4, with a RemoteSession
client: the same programs and results as embedded mode, accounting, refusals and failures."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ppfr.models.protocols import predict_program
from ppfr.models.reference import TrainConfig, softmax_rows
from ppfr.models.service import predict_mpc, reveal_model, train_mpc
from ppfr.mpc import LocalSession
from ppfr.mpc.errors import ProtocolAborted
from ppfr.net.certs import make_deployment
from ppfr.net.config import Parties
from ppfr.net.deploy import LocalDeployment, wait_until
from ppfr.net.remote import RemoteJob, RemoteSession
from ppfr.net.tls import PeerRefused
from test_train_mpc import clusters

NET = {"heartbeat": 0.3, "dead_after": 2.0, "connect": 5.0, "message": 60.0}
SERVER = {"allow_revealing": True, "budget": {"default": None, "clients": {"client-limited": 50}}}
CLIENTS = ("test", "limited", "second", "third")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    d = LocalDeployment(tmp_path_factory.mktemp("deploy"), net=NET, server=SERVER, clients=CLIENTS)
    d.start()
    yield d
    d.stop()


def parties(d, client="client-test"):
    return Parties.load(d.parties_file_for({s: d.address(s) for s in ("server0", "server1")}, client))


def train_predict_reveal(session, x, labels, classes, config):
    reports = []
    trained = train_mpc(session, [(x, labels)], classes, config, progress=lambda *p: reports.append(p))
    probs = predict_mpc(session, x, reveal="probabilities").probabilities
    return trained, probs, reveal_model(session), reports


def test_training_and_prediction_across_the_services_match_embedded_mode(deployment):
    x, labels = clusters(classes=5, per_class=12)
    config = TrainConfig(epochs=2, batch_size=16)
    with RemoteSession(parties(deployment)) as session:
        remote, p_remote, (w, b), reports = train_predict_reveal(session, x, labels, 5, config)
        stats = session.stats()
    with LocalSession() as local:
        embedded, p_local, (w_local, b_local), _ = train_predict_reveal(local, x, labels, 5, config)
    assert len(reports) == remote.batches == embedded.batches == 8 and reports[-1] == (1, 3, 4)
    # the same computation on other random shares: equal up to the fixed-point truncations' last bits
    assert np.abs(w - w_local).max() < 2e-3 and np.abs(b - b_local).max() < 2e-3
    assert (p_remote.argmax(1) == p_local.argmax(1)).all()
    assert np.abs(p_remote - softmax_rows(x @ w + b)).max() < 1e-3
    assert stats["server0"].bytes_sent > 0 and stats["server0"].offline_bytes > 0
    assert stats["server0"].bytes_sent == pytest.approx(stats["server1"].bytes_sent, rel=0.01)
    for name in ("server0", "server1"):
        assert wait_until(lambda: any("client=client-test runs=3 queries=60" in line and "outcome=closed" in line
                                      for line in deployment.services[name].lines))


def test_each_client_is_charged_by_its_certificate_against_its_budget(deployment):
    x, labels = clusters(classes=3, per_class=10)
    with RemoteSession(parties(deployment, "client-limited")) as session:
        train_mpc(session, [(x, labels)], 3, TrainConfig(epochs=1, batch_size=16))
        predict_mpc(session, x[:20])
        predict_mpc(session, x[:20])
        job = session.run(predict_program, [20], "logits")
        with pytest.raises(PermissionError, match="client-limited has used 40 of its 50 queries; this run needs 20"):
            job.result()
        with pytest.raises(ProtocolAborted, match="client-limited has used 40 of its 50 queries"):
            predict_mpc(session, x[:20])  # the session ended with the reason
    with RemoteSession(parties(deployment, "client-second")) as other:  # another certificate, its own count
        with pytest.raises(ValueError, match="not a program the servers run"):
            other.run(_no_program_registered)
    accounting = deployment.data / "data-server0" / "accounting.json"
    assert (accounting.stat().st_mode & 0o777) == 0o600
    assert (accounting.parent.stat().st_mode & 0o777) == 0o700
    assert '"client-limited": 40' in accounting.read_text()


def _no_program_registered(srv):
    return srv.index


def concurrently(function, n: int, seconds: float = 120.0) -> list:
    """Run function(0), ..., function(n - 1) in n threads at once; the errors they raised."""
    errors = []

    def run(i):
        try:
            function(i)
        except Exception as e:  # noqa: BLE001 - returned to the test
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"
    return errors


def test_concurrent_sessions_of_several_clients(deployment):
    x, labels = clusters(classes=4, per_class=10)
    results = {}

    def client(i):
        with RemoteSession(parties(deployment, "client-second" if i % 2 else "client-test")) as s:
            train_mpc(s, [(x, labels)], 4, TrainConfig(epochs=1, batch_size=20))
            results[i] = predict_mpc(s, x[i:i + 8]).labels
    assert concurrently(client, 4) == [] and len(results) == 4
    for i, predicted in results.items():
        assert (predicted == labels[i:i + 8]).all()


def test_refused_peers_leave_the_services_serving(deployment, tmp_path):
    other = tmp_path / "other"
    make_deployment(other, clients=("test",))
    stranger = Parties.load(deployment.parties_file_for({s: deployment.address(s) for s in ("server0", "server1")}))
    stranger = Parties(type(stranger.identity)("client-test", other / "client-test.pem", other / "client-test.key",
                                               stranger.identity.ca), stranger.servers, stranger.timing)
    with pytest.raises(PeerRefused, match="did not accept client-test"):
        RemoteSession(stranger)
    host, port = deployment.address("server0").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:  # garbage instead of TLS
        s.sendall(b"\x16\x03\x01 not really a client hello" * 50)
    dealer = Parties(parties(deployment).identity, {"server0": deployment.address("dealer"),
                                                    "server1": deployment.address("server1")}, stranger.timing)
    with pytest.raises(PeerRefused, match="refused server0 at .*not valid here|Hostname mismatch"):
        RemoteSession(dealer)
    x, labels = clusters(classes=3, per_class=6)
    with RemoteSession(parties(deployment)) as session:  # still serving
        train_mpc(session, [(x, labels)], 3, TrainConfig(epochs=1, batch_size=18))
    assert any("refused a peer" in line for line in deployment.services["server0"].lines)


def test_a_second_server_on_the_same_directory_is_refused(deployment):
    argv = deployment.services["server1"].argv
    listen = argv.index("--listen") + 1
    argv = argv[:listen] + ["127.0.0.3:0"] + argv[listen + 1:]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "is in use by another service" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.fixture
def own_deployment(tmp_path):
    d = LocalDeployment(tmp_path, net=NET, server=SERVER, clients=("test",))
    d.start()
    yield d
    for service in d.services.values():
        if service.process.poll() is None:
            try:
                service.signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
    d.stop()


def test_a_stopped_server_gives_the_client_a_clear_error_within_the_bound(own_deployment):
    x, labels = clusters(classes=3, per_class=6)
    with RemoteSession(parties(own_deployment)) as session:
        train_mpc(session, [(x, labels)], 3, TrainConfig(epochs=1, batch_size=18))
        own_deployment.services["server1"].signal(signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(ProtocolAborted, match="no sign of life from server1 for 2 s|server1 took none"):
            predict_mpc(session, x)
        assert time.monotonic() - start < NET["dead_after"] + 2.0
        own_deployment.services["server1"].signal(signal.SIGCONT)


def test_sigterm_stops_a_server_cleanly_and_it_restarts_with_its_counts(own_deployment):
    x, labels = clusters(classes=3, per_class=6)
    session = RemoteSession(parties(own_deployment))
    train_mpc(session, [(x, labels)], 3, TrainConfig(epochs=1, batch_size=18))
    predict_mpc(session, x)
    own_deployment.services["server0"].signal(signal.SIGTERM)
    assert own_deployment.services["server0"].process.wait(20) == 0
    with pytest.raises(ProtocolAborted, match="server0 is shutting down"):
        predict_mpc(session, x)
    session.abort("done")
    lines = own_deployment.services["server0"].lines
    assert any("client=client-test runs=2 queries=18" in line and "server0 is shutting down" in line
               for line in lines)
    assert lines[-1] == "server0 stopped"
    own_deployment.start("server0")
    with RemoteSession(parties(own_deployment)) as again:
        train_mpc(again, [(x, labels)], 3, TrainConfig(epochs=1, batch_size=18))
    accounting = own_deployment.data / "data-server0" / "accounting.json"
    assert '"client-test": 18' in accounting.read_text()


def test_the_services_commands_explain_themselves():
    for command in ("server", "dealer"):
        out = subprocess.run([sys.executable, "-m", "ppfr.cli", command, "--help"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and "SIGTERM" in out.stdout and "--listen" in out.stdout


# -- stored shares: models and galleries on the servers' own disks ------------------------------------------
def test_a_model_trained_remotely_is_saved_by_each_server_and_loaded_in_a_later_session(deployment, tmp_path):
    from ppfr.models.store import load_model, model_paths, save_model
    from test_train_mpc import PREP
    x, labels = clusters(classes=4, per_class=8)
    root = tmp_path / "weights"
    with RemoteSession(parties(deployment)) as session:
        train_mpc(session, [(x, labels)], 4, TrainConfig(epochs=1, batch_size=16))
        p_trained = predict_mpc(session, x, reveal="probabilities").probabilities
        record = save_model(session, root, [f"c{i}" for i in range(4)], PREP.as_dict())
    assert model_paths(root)["client"].exists()
    assert not (root / "server0").exists() and not (root / "server1").exists()  # no share on the client's disk
    for server in ("server0", "server1"):
        assert_private_store(deployment, server, "client-test", root)
    with RemoteSession(parties(deployment)) as later:
        assert load_model(later, root)["id"] == record["id"]
        p_loaded = predict_mpc(later, x, reveal="probabilities").probabilities
    assert np.abs(p_loaded - p_trained).max() < 1e-3


def assert_private_store(deployment, server, client, root):
    """The client's store for `root` in the server's data directory: one SQLite file, 0600, in 0700
    directories."""
    from ppfr.net.programs import root_name
    from ppfr.storage import DB_NAME
    directory = deployment.data / f"data-{server}" / "clients" / client / root_name(root)
    assert (directory / DB_NAME).stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700 and directory.parent.parent.stat().st_mode & 0o777 == 0o700


def gallery_run(session, root, names, vecs, queries):
    from ppfr.gallery.service import Gallery, pair_distances
    g = Gallery(root, session=session)
    for name in dict.fromkeys(names):
        g.enroll(name, vecs[[i for i, n in enumerate(names) if n == name]])
    before = [(r.name, r.distance) for r in g.identify(queries)]
    removed = g.remove(names[0])
    after = [r.name for r in g.identify(queries)]
    pairs = pair_distances(vecs[:3], queries[:3], session=session)
    return before, removed, after, pairs, g.names()


def test_the_gallery_across_the_services_answers_as_embedded(deployment, tmp_path):
    from test_gallery import unit_like
    centres = unit_like(4)
    names = [f"person{i}" for i in range(4) for _ in range(2)]
    vecs = np.array([centres[i // 2] + np.random.default_rng(i).normal(size=128) * 0.02 for i in range(8)])
    queries = np.concatenate([centres + 0.01, unit_like(2)])
    with RemoteSession(parties(deployment)) as session:
        remote = gallery_run(session, tmp_path / "remote", names, vecs, queries)
    with LocalSession() as local:
        embedded = gallery_run(local, tmp_path / "embedded", names, vecs, queries)
    assert [n for n, _ in remote[0]] == [n for n, _ in embedded[0]] == ["person0", "person1", "person2", "person3",
                                                                        None, None]
    assert np.allclose([d for _, d in remote[0]], [d for _, d in embedded[0]], atol=1e-4)
    assert remote[1] == embedded[1] == 2 and remote[2] == embedded[2] and remote[2][0] is None
    assert np.allclose(remote[3], embedded[3], atol=1e-4) and remote[4] == embedded[4]
    assert_private_store(deployment, "server1", "client-test", tmp_path / "remote")
    assert not (tmp_path / "remote" / "server1").exists()


def test_a_server_killed_during_an_enrolment_restarts_with_a_consistent_gallery(own_deployment, tmp_path,
                                                                                monkeypatch):
    from ppfr.gallery import protocols
    from ppfr.gallery.service import Gallery
    from test_gallery import unit_like
    people = unit_like(4)
    root = tmp_path / "gallery"
    with RemoteSession(parties(own_deployment)) as session:
        g = Gallery(root, session=session)
        for i in range(3):
            g.enroll(f"person{i}", people[i:i + 1])
        run = RemoteSession.run

        def kill_during_append(self, program, *args, **kw):
            job = run(self, program, *args, **kw)
            if program is protocols.append_rows:
                own_deployment.services["server1"].process.kill()
            return job
        monkeypatch.setattr(RemoteSession, "run", kill_during_append)
        with pytest.raises(ProtocolAborted):
            g.enroll("person3", people[3:4])
        monkeypatch.undo()
    own_deployment.services["server1"].process.wait(10)
    own_deployment.start("server1")
    with RemoteSession(parties(own_deployment)) as session:
        g = Gallery(root, session=session)
        assert g.names() == ["person0", "person1", "person2"]
        assert [r.name for r in g.identify(people[:3])] == ["person0", "person1", "person2"]
        g.enroll("person3", people[3:4])
        assert [r.name for r in g.identify(people)] == ["person0", "person1", "person2", "person3"]


# -- the client commands with --parties FILE ---------------------------------------------------------------
def cli_json(command, args):
    from click.testing import CliRunner
    result = CliRunner().invoke(command, [*map(str, args), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    import json
    try:
        return json.loads(result.stdout)
    except ValueError:  # progress or log lines before the JSON line
        return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_mpc_command_against_the_services(deployment, tmp_path):
    from ppfr.models.cli import train_mpc as command
    from test_train_mpc import write_npz
    x, labels = clusters(classes=4, per_class=10)
    data = write_npz(tmp_path / "e.npz", x, labels)
    remote = cli_json(command, [data, "-o", tmp_path / "w", "--epochs", 2, "--quiet", "--parties",
                                parties_file(deployment)])
    embedded = cli_json(command, [data, "-o", tmp_path / "w2", "--epochs", 2, "--quiet", "--parties", "threads"])
    assert remote["parties"].endswith(".yaml") and remote["mpc"]["batches"] == embedded["mpc"]["batches"]
    assert remote["mpc"]["test_accuracy"] == embedded["mpc"]["test_accuracy"]
    assert_private_store(deployment, "server0", "client-test", tmp_path / "w")
    assert not (tmp_path / "w" / "server0").exists()


def parties_file(d, client="client-test"):
    return d.parties_file_for({s: d.address(s) for s in ("server0", "server1")}, client)


def test_gallery_commands_against_the_services_answer_as_embedded(deployment, tmp_path, lfw_image):
    from ppfr.gallery import cli
    enrol = {"George_W_Bush": [1, 2], "Colin_Powell": [1, 2]}
    probes = [lfw_image("George_W_Bush", 3), lfw_image("Colin_Powell", 3), lfw_image("Aaron_Eckhart", 1)]
    answers = {}
    for mode, extra in (("remote", ["--parties", parties_file(deployment, "client-second")]), ("embedded", [])):
        gallery = tmp_path / mode
        for person, numbers in enrol.items():
            cli_json(cli.enroll, [person, *[lfw_image(person, k) for k in numbers], "--gallery", gallery, *extra])
        found = cli_json(cli.identify, [*probes, "--gallery", gallery, *extra])["results"]
        same = cli_json(cli.verify, [probes[0], lfw_image("George_W_Bush", 1), *extra])
        removed = cli_json(cli.remove, ["Colin_Powell", "--gallery", gallery, *extra])
        after = cli_json(cli.identify, [probes[1], "--gallery", gallery, *extra])["results"][0]
        answers[mode] = ([r["name"] for r in found], [r["squared_distance"] for r in found], same["same"],
                         same["squared_distance"], removed["removed"], after["name"])
    remote, embedded = answers["remote"], answers["embedded"]
    assert remote[0] == embedded[0] == ["George_W_Bush", "Colin_Powell", None]
    assert np.allclose(remote[1], embedded[1], atol=1e-5) and abs(remote[3] - embedded[3]) < 1e-5
    assert remote[2] is embedded[2] is True and remote[4] == embedded[4] == 2 and remote[5] == embedded[5]
    assert not (tmp_path / "remote" / "server0").exists()  # the halves are on the servers, not here


def test_the_servers_refuse_a_run_they_were_asked_for_differently(deployment):
    from ppfr.net import wire
    with RemoteSession(parties(deployment)) as session:
        for server, rows in (("server0", 4), ("server1", 5)):  # as a client would that cheats on one server
            session._links[server].send({"op": "run", "program": "softmax.predict", "args": [[rows], "client"]},
                                        wire.CONTROL)
        job = RemoteJob(session, None)
        with pytest.raises(PermissionError, match="asked for different runs"):
            job.result()


def test_concurrent_enrolments_into_one_gallery_lose_no_update(deployment, tmp_path):
    from ppfr.gallery.service import Gallery
    from test_gallery import unit_like
    people = unit_like(6)
    root = tmp_path / "shared-gallery"

    def enrol(i):
        with RemoteSession(parties(deployment, "client-third")) as session:
            g = Gallery(root, session=session)
            for k in (i, i + 3):
                g.enroll(f"person{k}", people[k:k + 1])
    assert concurrently(enrol, 3) == []
    with RemoteSession(parties(deployment, "client-third")) as session:
        g = Gallery(root, session=session)
        assert g.names() == [f"person{k}" for k in range(6)] and g.record.version == 6
        assert [r.name for r in g.identify(people)] == [f"person{k}" for k in range(6)]


def test_recognize_command_against_the_services(deployment, tmp_path, lfw_image):
    """A model trained and saved through the services (on 3 LFW people) names their held-out faces with
    `ppfr recognize --parties FILE`, as the same command names them with a model trained embedded."""
    from ppfr.embed.detect import FaceDetector, read_rgb
    from ppfr.embed.embedders import make_embedder
    from ppfr.embed.pipeline import embed_image
    from ppfr.models.store import save_model
    from ppfr.recognition.cli import recognize
    from test_train_mpc import PREP
    people = ["George_W_Bush", "Colin_Powell", "Tony_Blair"]
    detector, embedder = FaceDetector("hog"), make_embedder("dlib")
    x = np.array([embed_image(read_rgb(lfw_image(p, k)), detector, embedder)[0] for p in people
                  for k in range(1, 6)], dtype=np.float64)
    labels = np.repeat(np.arange(3), 5)
    config = TrainConfig(epochs=20, batch_size=15)
    probes = [lfw_image(p, 8) for p in people]
    names = {}
    for mode, open_session in (("remote", lambda: RemoteSession(parties(deployment, "client-second"))),
                               ("embedded", LocalSession)):
        with open_session() as session:
            train_mpc(session, [(PREP.apply(x), labels)], 3, config)
            save_model(session, tmp_path / mode, people, PREP.as_dict(), config.as_dict())
        extra = ["--parties", parties_file(deployment, "client-second")] if mode == "remote" else []
        from click.testing import CliRunner
        result = CliRunner().invoke(recognize, ["-m", str(tmp_path / mode), *map(str, probes), "--json", "--quiet",
                                                "--threshold", "0.4", *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        names[mode] = [__import__("json").loads(line)["name"] for line in result.stdout.splitlines()]
    assert names["remote"] == names["embedded"] == people
    assert not (tmp_path / "remote" / "server0").exists()


def test_auto_comparisons_take_fss_across_a_slow_link_and_answer_as_embedded(tmp_path):
    """mpc.comparisons: auto, with every link through a proxy that adds a 30 ms round trip: the servers'
    round is timed when the session opens and FSS chosen, so one face costs a handful of rounds instead of
    about fifty; the labels are those of the same model in embedded mode."""
    from ppfr.mpc.protocols import round_seconds
    from ppfr.mpc.session import open_session

    x, labels = clusters(classes=3, per_class=6)
    with LocalDeployment(tmp_path, net=NET, server=SERVER, rtt=0.03) as d:
        with open_session(str(d.parties_file), comparisons="auto", timeout=60) as session:
            assert min(session.run(round_seconds).result()) >= 0.01
            train_mpc(session, [(x, labels)], 3, TrainConfig(epochs=1, batch_size=18))
            before = session.stats()
            remote = predict_mpc(session, x[:1])
            rounds = (session.stats()["server0"] - before["server0"]).rounds
            w, b = reveal_model(session)
    with LocalSession() as embedded:
        train_mpc(embedded, [(x, labels)], 3, TrainConfig(epochs=1, batch_size=18))
        local = predict_mpc(embedded, x[:1])
    assert rounds <= 12                      # the label with FSS: 9 rounds for 158 classes; bitwise ~50
    assert remote.labels.tolist() == local.labels.tolist() == [int(np.argmax(x[:1] @ w + b))]
