"""The dealer: a party that hands out correlated randomness and never sees an input.

Both servers run the same program and send the dealer the same requests (kinds and shapes, no data; see
material.py), numbered by tickets, a run of consecutive tickets a message (provider.py). For each ask the
dealer:
1. reads server 0's and server 1's, and aborts the session if they differ (a server that asks for
   something else than its peer is not running the same program, and could be fishing for material that
   would unmask the other's messages);
2. draws each request's material fresh, in order (a row mask it also keeps, to compute products with it
   later: RowMaskRequest);
3. sends each server its shares, echoing each request so that each server checks what it got: the
   answers to one ask in one message, or in several of about ANSWER_BYTES each where the material is
   larger, so that a server can start on the first before the dealer has drawn the last.
What the dealer knows (a, b, a*b, masks) is independent of every input, and so is every request it
receives, so the dealer learns nothing, provided it does not collude with a server.
"""
from __future__ import annotations

from .channel import payload_bytes
from .errors import ProtocolAborted
from .material import RequestReader
from .prg import SecureRandom

SERVERS = ("server0", "server1")
# An answer message is sent once it holds this much (module doc, step 3): a face's 15 answers in 4
# messages; 256 kB made the servers of a softmax of 64 x 158 wait on the dealer's draws, 4 ms more of 24
# with the material drawn meanwhile (inprocess.py), where 64 kB left it as fast as one message a request.
ANSWER_BYTES = 1 << 16


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
                first, requests = self._matching(*asks)
            except (ValueError, TypeError, DealerMismatch) as e:
                self.channel.close(f"the dealer refused a request: {e}")
                return
            if not self._answer(first, requests):
                return

    def _answer(self, first: int, requests: list) -> bool:
        """Draw and send the material of tickets first, first + 1, ... (step 2 and 3 of the module doc);
        False once the dealer has stopped."""
        answers, size = ([], []), 0
        for i, (request, wire) in enumerate(requests):
            try:
                shares = (request.draw(self.rng, self.memory) if getattr(request, "uses_memory", False)
                          else request.draw(self.rng))
            except (ValueError, TypeError) as e:
                self.channel.close(f"the dealer refused a request: {e}")
                return False
            for answer, share in zip(answers, shares):
                answer.append((*wire, share))
            size += payload_bytes(shares[1])
            if size >= ANSWER_BYTES or i == len(requests) - 1:
                try:
                    for server, answer in zip(SERVERS, answers):
                        # fresh arrays the dealer keeps no reference to: handed over, not copied
                        self.channel.send(server, ("material", first + i + 1 - len(answer), tuple(answer)),
                                          copy=False)
                except ProtocolAborted as e:  # closed meanwhile (e.g. material asked ahead that nobody waits for)
                    self.stopped_because = str(e)
                    return False
                answers, size = ([], []), 0
            self.requests_served += 1
        return True

    def _matching(self, ask0, ask1):
        """(first ticket, [(request, its wire form)]) of what both servers asked for, or DealerMismatch."""
        if not all(isinstance(a, tuple) and len(a) == 3 and a[0] == "ask" and isinstance(a[2], (tuple, list))
                   and a[2] for a in (ask0, ask1)):
            raise ValueError("an ask is (\"ask\", first ticket, ((kind, fields), ...))")
        if ask0[1] != ask1[1] or len(ask0[2]) != len(ask1[2]):
            raise DealerMismatch(f"server0 and server1 asked for different material: tickets {ask0[1]} and on "
                                 f"({len(ask0[2])} requests) vs {ask1[1]} and on ({len(ask1[2])})")
        requests = []
        for i, (wire0, wire1) in enumerate(zip(ask0[2], ask1[2])):
            if not all(isinstance(w, (tuple, list)) and len(w) == 2 for w in (wire0, wire1)):
                raise ValueError("a request is (kind, fields)")
            request = self._request(*wire0)
            if request != self._request(*wire1):
                raise DealerMismatch(f"server0 and server1 asked for different material under ticket "
                                     f"{ask0[1] + i} ({wire0[0]} vs {wire1[0]})")
            requests.append((request, wire0))
        return ask0[1], requests
