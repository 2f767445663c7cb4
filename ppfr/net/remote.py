"""RemoteSession: the client's side of a session with `ppfr server` services, with the interface of
LocalSession and ProcessSession (run -> job.result(), .client, .stats(), .abort(reason), .close()).

    with RemoteSession(Parties.load("parties.yaml")) as session:
        job = session.run(program, *args)       # program: a function registered in programs.py
        session.client.share(x)
        y = session.client.reconstruct()
        results = job.result()                  # [server 0's result, server 1's]

Opening costs two TLS connections from the client (and three between the services), and a round trip
until both servers report ready; a run costs a request and a reply per server besides the protocol's
own messages, and the client does not wait for the servers to admit it: a refused run (unknown
program, budget spent, the servers asked differently) ends the session, the client's next message
fails with the reason, and job.result() raises it as the servers' error.
"""
from __future__ import annotations

import secrets
import threading

from ppfr.mpc.errors import ProtocolAborted, SessionMismatch
from ppfr.mpc.fixedpoint import FixedPoint
from ppfr.mpc.party import SERVERS, Client
from ppfr.mpc.session import Session

from . import programs, wire
from .channel import LinkChannel
from .config import Parties
from .link import dial
from .service import party_stats

# errors a server reports that are raised as themselves at the client; any other as a RuntimeError
_ERRORS = {e.__name__: e for e in (ValueError, TypeError, KeyError, RuntimeError, PermissionError,
                                   ProtocolAborted, SessionMismatch)}
_ERRORS["BudgetExceeded"] = PermissionError


def _error(kind: str, message: str) -> BaseException:
    cls = _ERRORS.get(kind)
    return cls(message) if cls else RuntimeError(f"{kind}: {message}")


class RemoteSession(Session):
    def __init__(self, parties: Parties, fixed: FixedPoint | None = None, timeout: float | None = None):
        self.fixed = fixed or FixedPoint()
        self.session_id = secrets.token_hex(8)
        self.parties = parties
        timing = parties.timing if timeout is None else type(parties.timing)(
            parties.timing.heartbeat, parties.timing.dead_after, parties.timing.connect, timeout)
        hello = {"session": self.session_id,
                 "fixed": {"frac_bits": self.fixed.frac_bits, "bound_bits": self.fixed.bound_bits}}
        me = parties.identity.party
        self._links = {}
        programs.register_wire_types()
        try:
            for server in SERVERS:
                self._links[server] = dial(parties.servers[server], me, server, parties.identity, hello, timing,
                                           parties.max_message)
            for server, link in self._links.items():
                self._expect(link, "ready", timing.connect)
        except BaseException:
            self._close_links("the client could not open the session")
            raise
        self._channel = LinkChannel("client", self._links)
        self.client = Client(self._channel, self.fixed, self.session_id)
        self._job: RemoteJob | None = None
        self._closed = False

    @staticmethod
    def _expect(link, kind: str, timeout: float | None = None):
        reply = link.recv(wire.CONTROL, timeout)
        if not isinstance(reply, tuple) or not reply:
            raise ProtocolAborted(f"{link.peer} sent a reply that is not one")
        if reply[0] == "error":
            raise _error(*reply[1:3])
        if reply[0] != kind:
            raise ProtocolAborted(f"{link.peer} answered {reply[0]!r}, expected {kind!r}")
        return reply[1] if len(reply) > 1 else None

    def run(self, program, *args, per_server=((), ()), progress=None) -> "RemoteJob":
        """As LocalSession.run, for a program registered in programs.py."""
        if self._job is not None and not self._job.done:
            raise RuntimeError("a job is still running in this session: call its result() first")
        if self._job is not None and self._job.failure:  # a failed run ends the session for every party
            raise ProtocolAborted(f"this session ended: {self._job.failure}")
        name = programs.name_of(program)
        for i, server in enumerate(SERVERS):
            sent = programs.lookup(name).client_arguments((*args, *per_server[i]))  # no path leaves the client
            self._links[server].send({"op": "run", "program": name, "args": sent,
                                      "progress": progress is not None and i == 0}, wire.CONTROL)
        self._job = RemoteJob(self, progress)
        return self._job

    def stats(self) -> dict:
        """Each party's counts, as the servers report them (between jobs)."""
        if self._job is not None and not self._job.done:
            raise RuntimeError("stats are read between jobs, not while one runs")
        out = {"client": self._channel.stats.copy()}
        for server, link in self._links.items():
            link.send({"op": "stats"}, wire.CONTROL)
            out[server] = party_stats(self._expect(link, "stats"))
        return out

    def record_views(self) -> None:
        """Only the client's view can be recorded here: each server's stays with its service."""
        self._channel.view = []

    def views(self) -> dict:
        return {"client": list(self._channel.view or ())}

    def abort(self, reason: str) -> None:
        """The client gives up: the servers' programs stop, with the reason."""
        self._close_links(reason)

    def _close_links(self, reason):
        for link in self._links.values():
            link.close(reason)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for link in self._links.values():
            try:
                link.send({"op": "close"}, wire.CONTROL)
            except ProtocolAborted:
                pass
        self._close_links("the client closed the session")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RemoteJob:
    """A program running on both servers; a thread per server waits for its reply and passes progress
    reports on meanwhile."""

    def __init__(self, session: RemoteSession, progress):
        self._results: list = [None, None]
        self._errors: list = [None, None]
        self._progress = progress
        self._threads = [threading.Thread(target=self._wait, args=(i, session._links[s]), daemon=True,
                                          name=f"ppfr-job-{s}") for i, s in enumerate(SERVERS)]
        for t in self._threads:
            t.start()

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._threads)

    @property
    def failure(self) -> str | None:
        """Why the job failed (the root cause, as result() raises it), once it is done; else None."""
        errors = sorted((e for e in self._errors if e is not None), key=lambda e: isinstance(e, ProtocolAborted))
        return f"{type(errors[0]).__name__}: {errors[0]}" if errors and self.done else None

    def _wait(self, i, link):
        try:
            while True:
                reply = link.recv(wire.CONTROL)
                if reply[0] == "progress" and self._progress is not None:
                    self._progress(*reply[1])
                elif reply[0] == "ok":
                    self._results[i] = reply[1]
                    return
                elif reply[0] == "error":
                    self._errors[i] = _error(*reply[1:3])
                    return
        except ProtocolAborted as e:
            self._errors[i] = e

    def result(self):
        from ppfr.mpc.session import _outcome

        return _outcome(self._threads, self._results, self._errors)


def open_remote(path, fixed: FixedPoint | None = None, timeout: float | None = None) -> RemoteSession:
    """A RemoteSession with the services a parties file names."""
    return RemoteSession(Parties.load(path), fixed=fixed, timeout=timeout)
