"""An in-process deployment: client, two servers and dealer as objects in one process, each server and
the dealer in its own thread, connected by an InProcessNetwork.

    with LocalSession() as session:
        job = session.run(program, *args)      # program(server, *args) runs on both servers
        session.client.share(x)                # the client talks to them meanwhile
        y = session.client.reconstruct()
        results = job.result()                 # [what server 0 returned, what server 1 returned]

A failure in any party closes the network, so the others stop waiting and the error is re-raised.
"""
from __future__ import annotations

import secrets
import threading

from .channel import InProcessNetwork
from .dealer import Dealer
from .errors import ProtocolAborted
from .fixedpoint import FixedPoint
from .party import Client, Server


class Job:
    def __init__(self, session: "LocalSession", program, args, per_server):
        self._results = [None, None]
        self._errors: list[BaseException | None] = [None, None]
        self._session = session
        self._threads = [
            threading.Thread(target=self._run, args=(i, program, (*args, *per_server[i])), daemon=True,
                             name=f"ppfr-server{i}")
            for i in (0, 1)
        ]
        for t in self._threads:
            t.start()

    def _run(self, i, program, args):
        try:
            self._results[i] = program(self._session.servers[i], *args)
        except BaseException as e:  # noqa: BLE001 - reported to the caller by result()
            self._errors[i] = e
            self._session.network.close(f"server{i} failed: {type(e).__name__}: {e}")

    def result(self):
        for t in self._threads:
            t.join()
        # the root cause, not the other party's "stopped waiting"
        errors = [e for e in self._errors if e is not None]
        errors.sort(key=lambda e: isinstance(e, ProtocolAborted))
        if errors:
            raise errors[0]
        return list(self._results)


class LocalSession:
    def __init__(self, fixed: FixedPoint | None = None, timeout: float = 600.0):
        self.fixed = fixed or FixedPoint()
        self.session_id = secrets.token_hex(8)
        self.network = InProcessNetwork(timeout=timeout)
        self.client = Client(self.network.channel("client"), self.fixed, self.session_id)
        self.servers = [Server(i, self.network.channel(f"server{i}"), self.fixed, self.session_id) for i in (0, 1)]
        self.dealer = Dealer(self.network.channel("dealer"))
        self._dealer_thread = threading.Thread(target=self.dealer.serve, daemon=True, name="ppfr-dealer")
        self._dealer_thread.start()

    def run(self, program, *args, per_server=((), ())) -> Job:
        """Start program(server, *args, *per_server[i]) on both servers; returns at once."""
        return Job(self, program, args, per_server)

    def stats(self) -> dict:
        return {name: self.network.channel(name).stats.copy() for name in self.network.parties}

    def close(self) -> None:
        self.network.close()
        self._dealer_thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
