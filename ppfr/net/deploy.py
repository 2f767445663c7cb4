"""A whole deployment on one machine, for tests, benchmarks and trying it out: certificates, the three
services' configs and a client's parties file, and the services started as processes of their own on
distinct loopback addresses.

    with LocalDeployment(tmp) as d:              # server 0 on 127.0.0.2, server 1 on .3, dealer on .4
        with RemoteSession(Parties.load(d.parties_file)) as session: ...
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from ppfr.atomic import atomic_path

from .certs import make_deployment

HOSTS = {"server0": "127.0.0.2", "server1": "127.0.0.3", "dealer": "127.0.0.4"}


class Service:
    """A service's process, its address and its log lines (stderr, read by a thread)."""

    def __init__(self, name: str, argv, env=None, timeout: float = 30.0):
        self.name = name
        self.argv = list(argv)
        self.process = subprocess.Popen(self.argv, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._listening = threading.Event()
        self.address = None
        threading.Thread(target=self._read, daemon=True).start()
        if not self._listening.wait(timeout):
            self.kill()
            raise RuntimeError(f"{name} did not start: {' / '.join(self.lines[-5:])}")

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            if " listening on " in line and self.address is None:
                self.address = line.rsplit(" ", 1)[1].strip()
                self._listening.set()
        self._listening.set()

    def signal(self, sig):
        os.kill(self.process.pid, sig)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


class LocalDeployment:
    """Certificates and configs in DIR, and (start()) the dealer, server 1 and server 0 in that order, each
    told where the ones before listen. `net` (a dict) goes into every config, `server` into the servers'.
    With rtt (seconds), every party reaches every service through a DelayProxy (proxy.py) of this process
    that adds that round-trip time."""

    def __init__(self, directory, net: dict | None = None, server: dict | None = None, clients=("test",),
                 data=None, rtt: float | None = None):
        self.dir = Path(directory)
        self.certs = self.dir / "certs"
        if not (self.certs / "ca.key").exists():
            make_deployment(self.certs, clients=clients)
        self.net = dict(net or {})
        self.server_extra = dict(server or {})
        self.data = Path(data) if data else self.dir
        self.client = f"client-{clients[0]}"
        self.services: dict[str, Service] = {}
        self.ports = {name: 0 for name in HOSTS}
        self.rtt = rtt
        self.proxies: dict = {}

    def _config(self, party, peers=None) -> Path:
        config = {"ca": str(self.certs / "ca.pem"), "cert": str(self.certs / f"{party}.pem"),
                  "key": str(self.certs / f"{party}.key"), "net": self.net}
        if party != "dealer":
            config.update(peers=peers or {}, **self.server_extra)
        path = self.dir / f"{party}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _argv(self, party):
        cli = [sys.executable, "-m", "ppfr.cli"]
        listen = f"{HOSTS[party]}:{self.ports[party]}"
        if party == "dealer":
            return cli + ["dealer", "--listen", listen, "--config", str(self._config("dealer"))]
        peers = {"dealer": self.address("dealer")}
        if party == "server0":
            peers["server1"] = self.address("server1")
        return cli + ["server", "--party", party[-1], "--data", str(self.data / f"data-{party}"), "--listen", listen,
                      "--config", str(self._config(party, peers))]

    def address(self, party) -> str:
        """Where the others reach `party`: its own address, or its proxy's."""
        if party in self.proxies:
            return self.proxies[party].address
        return self.services[party].address

    def start(self, party=None):
        """Start one service (again, on the port it had), or all three."""
        for name in ([party] if party else ("dealer", "server1", "server0")):
            self.services[name] = Service(name, self._argv(name))
            self.ports[name] = int(self.services[name].address.rsplit(":", 1)[1])
            if self.rtt is not None and name not in self.proxies:
                from .proxy import DelayProxy

                self.proxies[name] = DelayProxy((HOSTS[name], self.ports[name]), self.rtt)
        return self

    @property
    def parties_file(self) -> Path:
        return self.parties_file_for({s: self.address(s) for s in ("server0", "server1")})

    def parties_file_for(self, servers: dict, client: str | None = None) -> Path:
        client = client or self.client
        path = self.dir / f"parties-{client}.yaml"
        # written beside and renamed into place: clients in other threads may be reading the file
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump({
                "ca": str(self.certs / "ca.pem"), "net": self.net,
                "client": {"party": client, "cert": str(self.certs / f"{client}.pem"),
                           "key": str(self.certs / f"{client}.key")}, **servers}))
        return path

    def stop(self):
        for service in self.services.values():
            service.stop()
        for proxy in self.proxies.values():
            proxy.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_until(condition, seconds: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(step)
    return condition()
