"""The parties: the client and the two servers. (The dealer is in dealer.py.)

Each is an object holding only its own state and its `Channel`. The servers execute the same program
side by side (each in its own thread in-process, or its own process over a network), so whatever one
server asks the dealer for, the other receives in the same order.
"""
from __future__ import annotations

import contextlib
from collections import deque

import numpy as np

from .errors import SessionMismatch
from .fixedpoint import FixedPoint
from .prg import SecureRandom

SERVERS = ("server0", "server1")


class Server:
    def __init__(self, index: int, channel, fixed: FixedPoint, session_id: str):
        if index not in (0, 1):
            raise ValueError("a server index is 0 or 1")
        self.index = index
        self.name = SERVERS[index]
        self.peer = SERVERS[1 - index]
        self.channel = channel
        self.fixed = fixed
        self.session_id = session_id
        self.state: dict = {}  # what this server keeps between programs (model shares, gallery, ...)
        self.rng = SecureRandom()  # this server's own randomness (see functions.hide_offset)
        self._next_ticket = 0
        self._stash: dict = {}   # dealer material that arrived before it was needed
        self._plans: dict = {}   # what a planned step asked the dealer for, by step and shapes
        self._recording: list | None = None
        self._prefetched: deque | None = None
        self.on_progress = None  # set by the session for a job that reports progress (see report_progress)

    # -- communication -----------------------------------------------------------------------------
    def exchange(self, message):
        """Send to the other server and receive its message of the same step: one round."""
        self.channel.send(self.peer, message)
        return self.channel.recv(self.peer)

    def open(self, *shares: np.ndarray):
        """Reconstruct values between the two servers. Only ever called on values masked by dealer
        randomness that this server does not know."""
        theirs = self.exchange(list(shares))
        return [mine + other for mine, other in zip(shares, theirs)]

    def open_xor(self, *shares: np.ndarray):
        theirs = self.exchange(list(shares))
        return [mine ^ other for mine, other in zip(shares, theirs)]

    def ask(self, kind: str, planned: bool = True, **params) -> int:
        """Ask the dealer for material now, take it later: the dealer draws it while the servers work.
        Both servers number their asks the same way (they run the same program); only server 0 sends.
        Inside `plan`, an ask that was sent ahead is matched instead of sent again."""
        if self._prefetched and self._prefetched[0][0] == _signature(kind, params):
            return self._prefetched.popleft()[1]
        if planned and self._recording is not None:
            self._recording.append((kind, params))
        return self._send_ask(kind, params)

    def _send_ask(self, kind, params) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        if self.index == 0:
            # plain numbers and shapes, which nobody changes: handed over as they are
            self.channel.send("dealer", (ticket, kind, params), copy=False)
        return ticket

    @contextlib.contextmanager
    def plan(self, step: str, *shapes):
        """Run a step whose dealer requests depend only on its shapes: the first time, record them;
        afterwards, send them all on entry, so the dealer works ahead instead of on the critical path.
        (Requests that depend on opened values, the rare truncation retries, are never recorded.)"""
        if self._recording is not None or self._prefetched is not None:
            yield  # already inside a planned step
            return
        key = (step, shapes)
        recorded = self._plans.get(key)
        if recorded is None:
            self._recording = []
            try:
                yield
                self._plans[key] = self._recording
            finally:
                self._recording = None
            return
        self._prefetched = deque((_signature(kind, params), self._send_ask(kind, params)) for kind, params in recorded)
        try:
            yield
            for _, ticket in self._prefetched:  # both servers drain what went unused, in the same order
                self.take(ticket)
        finally:
            self._prefetched = None

    def await_material(self) -> None:
        """Inside a planned step, wait until the dealer has delivered all that the step asked for ahead:
        what follows is then the online phase alone (as with a dealer that works ahead on a machine of
        its own). Outside a planned step, or the first time a step runs, there is nothing to wait for."""
        for _, ticket in self._prefetched or ():
            while ticket not in self._stash:
                number, material = self.channel.recv("dealer")
                self._stash[number] = material

    def take(self, ticket: int):
        while ticket not in self._stash:
            number, material = self.channel.recv("dealer")
            self._stash[number] = material
        return self._stash.pop(ticket)

    def dealer(self, kind: str, **params):
        return self.take(self.ask(kind, **params))

    def report_progress(self, *progress) -> None:
        """Tell whoever started the job how far it has come (the session passes it on; not a protocol
        message, and nothing of the data)."""
        if self.on_progress is not None:
            self.on_progress(*progress)

    # -- input and output --------------------------------------------------------------------------
    def receive(self, sender: str = "client"):
        """A shared tensor sent by the client (see Client.share)."""
        from .tensor import SharedTensor

        tag, session_id, frac, share = self.channel.recv(sender)
        if tag != "share":
            raise SessionMismatch(f"{self.name} expected a share from {sender}, got {tag!r}")
        if session_id != self.session_id:
            raise SessionMismatch(f"{self.name} received a share of session {session_id}, not {self.session_id}")
        return SharedTensor(self, np.asarray(share, dtype=np.uint64), frac)

    def reveal_to(self, tensor, receiver: str = "client") -> None:
        """Send this server's share to the party that may reconstruct it (normally the client)."""
        tensor._check_owner(self)
        self.channel.send(receiver, ("result", self.session_id, tensor.frac, tensor.share))

    def local(self, raw: np.ndarray, frac: int | None = None):
        """Wrap a share this server already holds (for example loaded from its own disk)."""
        from .tensor import SharedTensor

        return SharedTensor(self, np.asarray(raw, dtype=np.uint64), self.fixed.frac_bits if frac is None else frac)


def _signature(kind: str, params: dict) -> tuple:
    """What makes two dealer requests interchangeable: same kind, same shapes."""
    return kind, repr(params)


class Client:
    """Encodes and shares inputs, and reconstructs outputs. The only party that sees plaintext."""

    def __init__(self, channel, fixed: FixedPoint, session_id: str, rng: SecureRandom | None = None):
        self.name = "client"
        self.channel = channel
        self.fixed = fixed
        self.session_id = session_id
        self.rng = rng or SecureRandom()

    def split(self, x, frac: int | None = None):
        """Encode a float array (or take ring integers when frac == 0) and split into two uniform shares."""
        frac = self.fixed.frac_bits if frac is None else frac
        raw = self.fixed.encode(x, frac) if frac else _integers(x)
        share0 = self.rng.uint64(raw.shape)
        return share0, raw - share0, frac

    def share(self, x, frac: int | None = None) -> None:
        share0, share1, frac = self.split(x, frac)
        self.channel.send("server0", ("share", self.session_id, frac, share0))
        self.channel.send("server1", ("share", self.session_id, frac, share1))

    def reconstruct(self) -> np.ndarray:
        raw, frac = self.reconstruct_raw()
        return self.fixed.decode(raw, frac) if frac else raw.view(np.int64)

    def reconstruct_differences(self, axis: int = -1) -> np.ndarray:
        """A result the servers hid behind an offset (functions.hide_offset): each value minus the first
        along `axis`, the only thing such a result tells. The subtraction happens in the ring, where the
        offset cancels exactly."""
        raw, frac = self.reconstruct_raw()
        first = np.take(raw, [0], axis=axis) if raw.shape[axis] else raw
        return self.fixed.decode(raw - first, frac) if frac else (raw - first).view(np.int64)

    def reconstruct_raw(self) -> tuple[np.ndarray, int]:
        """The ring elements of the next result and their fractional bits."""
        parts = []
        for server in SERVERS:
            tag, session_id, frac, share = self.channel.recv(server)
            if tag != "result" or session_id != self.session_id:
                raise SessionMismatch(f"client expected a result of session {self.session_id} from {server}")
            parts.append((frac, np.asarray(share, dtype=np.uint64)))
        (f0, s0), (f1, s1) = parts
        if f0 != f1 or s0.shape != s1.shape:
            raise SessionMismatch(f"the servers' result shares disagree (shape {s0.shape} vs {s1.shape})")
        return s0 + s1, f0


def _integers(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"integer shares (frac=0) need an integer array, got {arr.dtype}")
    return arr.astype(np.int64).view(np.uint64)
