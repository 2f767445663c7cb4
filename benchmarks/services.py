"""The parties as TLS network services (`ppfr server` x2, `ppfr dealer`, separate processes on
127.0.0.2-.4) against embedded mode (threads of one process), on loopback and through a delaying proxy
that adds a round-trip time to every link (client-servers, server-server, servers-dealer).

    python benchmarks/services.py [--rtts 0.001,0.040] [--epochs 2] [--clients 4,8]

Figures, for each deployment (embedded, tls, tls+1ms, tls+40ms):
  train_s_per_epoch   softmax training on shares, 600 rows x 128 -> 20 classes, batch 64
  one_face_ms         one face classified (the default reveal: label and confidence band under MPC)
  identify_ms         one 1:N query against 200 enrolled entries ("nearest": argmin under MPC), median
  session_open_ms     opening a session (TLS links and readiness), median (services only)
and for TLS on loopback, concurrent identify throughput (queries/s) and median latency with N clients,
each with its own certificate, session and gallery. The proxies run in this (the client's) process on
asyncio, so each crossing also costs their own Python work: the "+0 ms" deployment measures that alone.
The last line is one JSON object (also in benchmarks/results/services.json).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ppfr.gallery.service import Gallery  # noqa: E402
from ppfr.models.reference import TrainConfig  # noqa: E402
from ppfr.models.service import predict_mpc, train_mpc  # noqa: E402
from ppfr.mpc import LocalSession  # noqa: E402
from ppfr.net.config import Parties  # noqa: E402
from ppfr.net.deploy import LocalDeployment  # noqa: E402
from ppfr.net.remote import RemoteSession  # noqa: E402
from publish import median_seconds, publish  # noqa: E402


def data(classes=20, per_class=30, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    x = rng.normal(size=(classes, 128))[labels] + 0.6 * rng.normal(size=(len(labels), 128))
    return 4 * x / np.linalg.norm(x, axis=1, keepdims=True), labels


def unit_vectors(n, seed):
    x = np.random.default_rng(seed).normal(size=(n, 128))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def median_ms(f, repeats):
    return round(median_seconds(f, repeats) * 1e3, 2)


def measure(open_session, epochs, repeats, workdir: Path, label: str):
    x, labels = data()
    out = {}
    with open_session() as session:
        t = time.perf_counter()
        train_mpc(session, [(x, labels)], 20, TrainConfig(epochs=epochs))
        out["train_s_per_epoch"] = round((time.perf_counter() - t) / epochs, 3)
        out["one_face_ms"] = median_ms(lambda: predict_mpc(session, x[:1]), repeats)
        gallery = Gallery(workdir / f"gallery-{label}", session=session)
        gallery.enroll_many([f"p{i}" for i in range(200)], unit_vectors(200, 1))
        query = unit_vectors(1, 2)
        gallery.identify(query)  # opens the gallery in this session
        out["identify_ms"] = median_ms(lambda: gallery.identify(query), repeats)
    print(f"{label:10s} {out}", file=sys.stderr, flush=True)
    return out


def concurrent_identify(deployment, clients: int, queries: int, workdir: Path):
    """N clients (each its own certificate, session and gallery) on the same servers, each identifying
    `queries` times, all at once."""
    latencies, errors = [], []
    ready = threading.Barrier(clients + 1)

    def client(i):
        try:
            servers = {s: deployment.address(s) for s in ("server0", "server1")}
            with RemoteSession(Parties.load(deployment.parties_file_for(servers, f"client-c{i}"))) as session:
                gallery = Gallery(workdir / f"concurrent-{i}", session=session)  # one per certificate
                if gallery.record is None:
                    gallery.enroll_many([f"p{k}" for k in range(50)], unit_vectors(50, 10 + i))
                query = unit_vectors(1, 100 + i)
                gallery.identify(query)
                ready.wait(120)
                for _ in range(queries):
                    t = time.perf_counter()
                    gallery.identify(query)
                    latencies.append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - reported in the figures
            errors.append(f"{type(e).__name__}: {e}")
            ready.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        ready.wait(300)
    except threading.BrokenBarrierError:  # a client failed before the queries: its error is reported
        pass
    start = time.perf_counter()
    for t in threads:
        t.join(600)
    seconds = time.perf_counter() - start
    return {"clients": clients, "queries": len(latencies), "queries_per_s": round(len(latencies) / seconds, 1),
            "median_ms": round(statistics.median(latencies) * 1e3, 2) if latencies else None, "errors": errors}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtts", default="0,0.001,0.040",
                        help="added round-trip times, seconds (0: the proxies alone, their own cost)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--queries", type=int, default=20, help="per client, for the concurrent figure")
    args = parser.parse_args(argv)
    results = {"benchmark": "services", "load_at_start": [round(v, 2) for v in os.getloadavg()]}
    server = {"budget": {"default": None}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results["embedded"] = measure(LocalSession, args.epochs, args.repeats, tmp, "embedded")
        clients = [int(n) for n in args.clients.split(",")]
        with LocalDeployment(tmp / "tls", server=server, clients=("local", *(f"c{i}" for i in range(max(clients)))),
                             ) as d:
            parties = Parties.load(d.parties_file)
            results["tls"] = measure(lambda: RemoteSession(parties), args.epochs, args.repeats, tmp, "tls")
            results["tls"]["session_open_ms"] = median_ms(lambda: RemoteSession(parties).close(), args.repeats)
            results["concurrent_identify"] = [concurrent_identify(d, n, args.queries, tmp) for n in clients]
            for row in results["concurrent_identify"]:
                print(f"concurrent {row}", file=sys.stderr, flush=True)
        for rtt in map(float, args.rtts.split(",")):
            label = f"tls_rtt_{rtt * 1e3:g}ms"
            epochs = 1 if rtt >= 0.01 else args.epochs
            repeats = max(3, args.repeats // 4) if rtt >= 0.01 else args.repeats
            with LocalDeployment(tmp / label, server=server, rtt=rtt) as d:
                parties = Parties.load(d.parties_file)
                results[label] = measure(lambda: RemoteSession(parties), epochs, repeats, tmp, label)
                results[label]["session_open_ms"] = median_ms(lambda: RemoteSession(parties).close(), repeats)
    publish(results)


if __name__ == "__main__":
    main()
