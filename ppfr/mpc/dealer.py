"""The dealer: a party that hands out correlated randomness and never sees an input.

Both servers run the same program and send the dealer the same requests (kinds and shapes, no data; see
material.py), numbered by tickets. For each ticket the dealer:
1. reads server 0's request and server 1's, and aborts the session if they differ (a server that asks
   for something else than its peer is not running the same program, and could be fishing for material
   that would unmask the other's messages);
2. draws the material fresh (a row mask it also keeps, to compute products with it later: RowMaskRequest);
3. sends each server its shares, echoing the request so that each server checks what it got.
What the dealer knows (a, b, a*b, masks) is independent of every input, and so is every request it
receives, so the dealer learns nothing, provided it does not collude with a server.
"""
from __future__ import annotations

from .errors import ProtocolAborted
from .material import RequestReader
from .prg import SecureRandom

SERVERS = ("server0", "server1")


class DealerMismatch(ProtocolAborted):
    """The two servers asked for different material under one ticket."""


class Dealer:
    def __init__(self, channel, rng: SecureRandom | None = None):
        self.channel = channel
        self.rng = rng or SecureRandom()
        self.requests_served = 0
        self.stopped_because: str | None = None  # why the network closed under the dealer, if it did
        self.memory: dict = {}   # what the dealer keeps between requests: row masks (material.RowMaskRequest)
        self._request = RequestReader()

    def serve(self) -> None:
        """Answer the servers' requests until the network closes (stopped_because then says why: a
        deployment passes it on, so that the parties hear which peer was lost, not only that the dealer
        left)."""
        while True:
            try:
                asks = [self.channel.recv(server) for server in SERVERS]
            except ProtocolAborted as e:
                self.stopped_because = str(e)
                return
            try:
                ticket, kind, values = self._matching(*asks)
                request = self._request(kind, values)
                shares = (request.draw(self.rng, self.memory) if getattr(request, "uses_memory", False)
                          else request.draw(self.rng))
            except (ValueError, TypeError, DealerMismatch) as e:
                self.channel.close(f"the dealer refused a request: {e}")
                return
            try:
                for server, share in zip(SERVERS, shares):
                    # fresh arrays the dealer keeps no reference to: handed over, not copied
                    self.channel.send(server, ("material", ticket, kind, values, share), copy=False)
            except ProtocolAborted as e:  # closed meanwhile (e.g. material asked ahead that nobody waits for)
                self.stopped_because = str(e)
                return
            self.requests_served += 1

    def _matching(self, ask0, ask1):
        """The (ticket, kind, fields) both servers asked for, or DealerMismatch."""
        if not all(isinstance(a, tuple) and len(a) == 4 and a[0] == "ask" for a in (ask0, ask1)):
            raise ValueError("a request is (\"ask\", ticket, kind, fields)")
        if self._request(*ask0[2:]) != self._request(*ask1[2:]) or ask0[1] != ask1[1]:
            raise DealerMismatch(f"server0 and server1 asked for different material under ticket {ask0[1]} "
                                 f"({ask0[2]} vs {ask1[2]} #{ask1[1]})")
        return ask0[1:]
