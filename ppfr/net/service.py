"""`ppfr server` and `ppfr dealer`: the parties as long-running network services.

A session is opened by a client, which dials both servers with the same fresh session id. For it,
server 0 dials server 1 and each server dials the dealer, every link mutually authenticated (link.py);
server 1 and the dealer match the links of a session by its id and check that all name the same
client; then each server tells the client it is ready. Each client's shares live in stores of its own
in the server's data directory (DATA/clients/<client>/<name>/, ppfr.storage.PartyStore), attached to the
run of that client that names it (programs.py, "Storage"): clients cannot see or touch each other's
models and galleries, and loading a
half checks with the other server that both hold the same version of it (ppfr.storage.server.agree). The client then asks for programs
by name (programs.py) with plain-data arguments. Before a run starts, the two servers check that they
were asked for the same program with the same arguments (so the same model or gallery version: a
client cannot make them compute on halves of two versions), and each charges the run to the client's
certificate against its budget. A failure ends the session for every party, with its reason.

Messages per session beyond the protocol's own: a hello and a welcome per link, and per run a digest each way between the servers, a request, a reply
and (for server 0) progress reports.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

from ppfr.atomic import write_bytes_atomic
from ppfr.mpc.channel import PartyStats
from ppfr.mpc.dealer import Dealer
from ppfr.mpc.errors import ProtocolAborted
from ppfr.mpc.fixedpoint import FixedPoint
from ppfr.mpc.party import Server
from ppfr.storage import PartyStore
from ppfr.storage.server import attach_store

from . import programs, wire
from .channel import LinkChannel
from .config import ServiceConfig
from .link import Listener, dial
from .tls import PeerRefused

log = logging.getLogger("ppfr.service")
_SESSION_ID = re.compile(r"^[0-9a-f]{8,64}$")


class ServiceError(RuntimeError):
    """A service that cannot start (one line)."""


class BudgetExceeded(RuntimeError):
    pass


def own_directory(path) -> tuple[Path, object]:
    """Make DIR 0700 and hold an exclusive lock on it while the service runs: one service per directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    lock = open(path / ".lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise ServiceError(f"{path} is in use by another service") from None
    return path, lock


class Accounting:
    """Queries per client certificate, kept in DIR/accounting.json (rewritten atomically, 0600)."""

    def __init__(self, path: Path, config: ServiceConfig):
        self.path, self.config = path, config
        self._lock = threading.Lock()
        try:
            self.used = json.loads(path.read_text())
        except FileNotFoundError:
            self.used = {}

    def charge(self, client: str, queries: int) -> int:
        """Count `queries` for client, or raise BudgetExceeded (counting nothing)."""
        with self._lock:
            used = self.used.get(client, 0)
            budget = self.config.budget(client)
            if budget is not None and used + queries > budget:
                raise BudgetExceeded(f"{client} has used {used} of its {budget} queries; this run needs {queries}")
            if queries:
                self.used[client] = used + queries
                write_bytes_atomic(self.path, json.dumps(self.used, sort_keys=True).encode())
                os.chmod(self.path, 0o600)
            return used + queries


def _stats(stats: PartyStats) -> dict:
    return {**stats.as_dict(), "bytes_to": dict(stats.bytes_to)}


def party_stats(d: dict) -> PartyStats:
    from collections import defaultdict

    return PartyStats(d["bytes_sent"], d["messages_sent"], d["rounds"], d["offline_bytes"],
                      defaultdict(int, d.get("bytes_to", {})))


class _Rendezvous:
    """Links that arrive separately for one session, matched by session id within a deadline."""

    def __init__(self):
        self._cond = threading.Condition()
        self._links: dict = {}

    def arrive(self, session: str, link) -> None:
        with self._cond:
            self._links.setdefault(session, {})[link.peer] = link
            self._cond.notify_all()

    def wait(self, session: str, parties, timeout: float):
        """{party: link} once all `parties` have arrived for session, else None (the links that did
        arrive are closed)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: set(parties) <= set(self._links.get(session, {})), timeout)
            links = self._links.pop(session, {})
        if ok:
            return links
        for link in links.values():
            link.close(f"not every party joined session {session} within {timeout:.0f} s")
        return None

    def take(self, session: str, party: str, timeout: float):
        with self._cond:
            ok = self._cond.wait_for(lambda: party in self._links.get(session, {}), timeout)
            if not ok:
                return None
            links = self._links[session]
            link = links.pop(party)
            if not links:
                del self._links[session]
            return link


class _Service:
    """What the server and the dealer share: a listener, running sessions, a clean stop."""

    def __init__(self, name: str, listen: str, config: ServiceConfig, allowed):
        self.name, self.config = name, config
        self._sessions: dict = {}
        self._lock = threading.Lock()
        self._stopping = False
        try:
            self.listener = Listener(listen, name, config.identity, self._admit, allowed, config.timing,
                                     config.max_message, on_refused=lambda r: log.info("%s refused a peer: %s", name, r))
        except (PeerRefused, ProtocolAborted) as e:
            raise ServiceError(str(e)) from None
        self.address = self.listener.address

    def _admit(self, link):
        session = link.hello.get("session")
        if not isinstance(session, str) or not _SESSION_ID.match(session):
            link.close("refused: a session id is 8-64 lower-case hex digits")
            return
        if self._stopping:
            link.close(f"{self.name} is shutting down")
            return
        self.admit(session, link)

    def _track(self, session, channel_or_links) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._sessions[session] = channel_or_links
            return True

    def _untrack(self, session):
        with self._lock:
            self._sessions.pop(session, None)

    def stop(self, reason: str | None = None, wait: float = 10.0) -> None:
        """Accept nothing new, abort running sessions with the reason, wait for them to end."""
        reason = reason or f"{self.name} is shutting down"
        with self._lock:
            self._stopping = True
            running = list(self._sessions.values())
        self.listener.close()
        for channel in running:
            channel.close(reason)
        deadline = time.monotonic() + wait
        while self._sessions and time.monotonic() < deadline:
            time.sleep(0.05)


class ServerService(_Service):
    def __init__(self, index: int, data: Path, listen: str, config: ServiceConfig):
        self.index = index
        self.directory, self._dir_lock = own_directory(data)
        self._stores: dict = {}
        self._stores_lock = threading.Lock()
        self.accounting = Accounting(self.directory / "accounting.json", config)
        self._peers = _Rendezvous()
        programs.register_wire_types()
        super().__init__(f"server{index}", listen, config,
                         lambda p: p.startswith("client-") or (index == 1 and p == "server0"))

    def admit(self, session, link):
        if link.peer == "server0":
            self._peers.arrive(session, link)
        else:
            threading.Thread(target=self._session, args=(session, link), daemon=True,
                             name=f"ppfr-session-{session}").start()

    def _connect(self, session, client_link):
        """The session's channel: its links to the client, the other server and the dealer."""
        client, timing = client_link.peer, self.config.timing
        hello = {"session": session, "client": client}
        if self.index == 0:
            peer = dial(self.config.peer("server1"), self.name, "server1", self.config.identity, hello, timing,
                        self.config.max_message)
        else:
            peer = self._peers.take(session, "server0", timing.connect)
            if peer is None:
                raise ProtocolAborted(f"server0 did not join session {session} within {timing.connect:.0f} s")
            if peer.hello.get("client") != client:
                peer.close("refused: the session belongs to another client")
                raise ProtocolAborted(f"server0 joined session {session} for another client")
        dealer = dial(self.config.peer("dealer"), self.name, "dealer", self.config.identity, hello, timing,
                      self.config.max_message)
        channel = LinkChannel(self.name, {"client": client_link, peer.peer: peer, "dealer": dealer})
        return channel

    def _session(self, session, client_link):
        client, start, runs, outcome = client_link.peer, time.monotonic(), 0, "closed"
        queries = 0
        channel = server = None
        try:
            fixed = FixedPoint(**(client_link.hello.get("fixed") or {}))
            channel = self._connect(session, client_link)
            if not self._track(session, channel):
                raise ProtocolAborted(f"{self.name} is shutting down")
            server = Server(self.index, channel, fixed, session)
            client_link.send(("ready", {"server": self.name}), wire.CONTROL)
            while True:
                request = client_link.recv(wire.CONTROL)
                op = request.get("op") if isinstance(request, dict) else None
                if op == "close":
                    break
                if op == "stats":
                    client_link.send(("stats", _stats(channel.stats)), wire.CONTROL)
                elif op == "run":
                    runs += 1
                    queries += self._run(server, client, request, client_link, channel.links[server.peer])
                else:
                    raise ValueError(f"unknown request {op!r}")
        except Exception as e:  # noqa: BLE001 - ends the session for every party, with its reason
            outcome = f"failed: {type(e).__name__}: {e}"
            reason = f"{self.name} failed: {type(e).__name__}: {e}"
            try:
                client_link.send(("error", type(e).__name__, str(e)), wire.CONTROL)
            except ProtocolAborted:
                pass
            (channel or client_link).close(reason)
        else:
            channel.close("the session ended")
        finally:
            if server is not None:
                server.close()  # what this session's programs opened (the stores are the service's own)
            self._untrack(session)
        log.info("session %s client=%s runs=%d queries=%d seconds=%.2f outcome=%s", session, client, runs,
                 queries, time.monotonic() - start, outcome)

    def _run(self, server, client, request, client_link, peer_link) -> int:
        program = programs.lookup(request.get("program"))
        self._agree(request, peer_link)
        args, store = program.server_arguments(request.get("args") or [])
        if store is not None:
            attach_store(server, self._store_of(client, store))
        if program.revealing and not self.config.allow_revealing:
            raise PermissionError(f"{request['program']} reveals more than answers; this server does not run it")
        cost = program.queries(*args)
        self.accounting.charge(client, cost)
        server.on_progress = ((lambda *p: client_link.send(("progress", p), wire.CONTROL))
                              if request.get("progress") else None)
        result = program.function()(server, *args)
        client_link.send(("ok", result), wire.CONTROL)
        return cost

    def _store_of(self, client: str, name: str) -> PartyStore:
        """The client's store of that name here (programs.root_name), opened once and shared by the
        client's sessions (it serialises its writers)."""
        with self._stores_lock:
            if (client, name) not in self._stores:
                self._stores[client, name] = PartyStore(self.directory / "clients" / client / name, self.index)
            return self._stores[client, name]

    def _agree(self, request, peer_link) -> None:
        """Refuse a run unless the other server was asked for the same program with the same arguments
        (and so the same model or gallery version): one exchange of a digest between the servers."""
        mine = hashlib.sha256(b"".join(bytes(p) for p in wire.encode((request.get("program"), request.get("args")))))
        peer_link.send(("run", mine.hexdigest()), wire.CONTROL)
        theirs = peer_link.recv(wire.CONTROL, self.config.timing.connect)
        if theirs != ("run", mine.hexdigest()):
            raise PermissionError("server0 and server1 were asked for different runs (program, arguments or "
                                  "versions): refused")

    def stop(self, reason=None, wait: float = 10.0):
        super().stop(reason, wait)
        for store in self._stores.values():
            store.close()
        self._dir_lock.close()


class DealerService(_Service):
    def __init__(self, listen: str, config: ServiceConfig):
        self._servers = _Rendezvous()
        super().__init__("dealer", listen, config, lambda p: p in ("server0", "server1"))

    def admit(self, session, link):
        self._servers.arrive(session, link)
        if link.peer == "server0":  # server 0's arrival serves the session once server 1 is there too
            threading.Thread(target=self._session, args=(session,), daemon=True,
                             name=f"ppfr-dealer-{session}").start()

    def _session(self, session):
        start = time.monotonic()
        links = self._servers.wait(session, ("server0", "server1"), self.config.timing.connect)
        if links is None:
            log.info("session %s: server1 never joined the dealer", session)
            return
        channel = LinkChannel("dealer", links)
        client = links["server0"].hello.get("client")
        if links["server1"].hello.get("client") != client:
            channel.close("refused: the servers name different clients")
            return
        outcome, dealer = "closed", None
        if self._track(session, channel):
            dealer = Dealer(channel)
            try:
                dealer.serve()
            except Exception as e:  # noqa: BLE001 - a bad request: end the session, say why
                outcome = f"failed: {type(e).__name__}: {e}"
            else:
                if dealer.stopped_because:  # e.g. a server fell silent: the other server and the client hear it
                    outcome = f"closed ({dealer.stopped_because})"
            channel.close(f"dealer: {outcome}")
            self._untrack(session)
        log.info("session %s client=%s requests=%d seconds=%.2f outcome=%s", session, client,
                 getattr(dealer, "requests_served", 0), time.monotonic() - start, outcome)
