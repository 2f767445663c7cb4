"""The parties: the client and the two servers. (The dealer is in dealer.py.)

Each is an object holding only its own state and its `Channel`. The servers execute the same program
side by side (each in its own thread in-process, or its own process over a network) and ask their
providers (provider.py) for the same material in the same order.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .errors import SessionMismatch
from .fixedpoint import FixedPoint
from .prg import SecureRandom
from .provider import Provider

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
        self.provider = Provider(channel, fixed.bound_bits)  # its correlated randomness, from the dealer
        self.on_progress = None  # set by the session for a job that reports progress (see report_progress)
        # What this server opened for its programs and closes when its session ends (its store): closed
        # then, not whenever the collector gets to it, so that nothing of it is written after the session
        # has closed (a store's connection, closed late, would fold its log into a file replaced meanwhile)
        self.resources = contextlib.ExitStack()

    def close(self) -> None:
        """Release what this server's programs opened (its session calls this once no job runs)."""
        self.resources.close()

    # -- communication -----------------------------------------------------------------------------
    def exchange(self, ops: tuple, arrays, tag: str = "open") -> list:
        """Send arrays to the other server and receive its arrays of the same step: one round. `ops`
        says, per array, how the two sides combine ("+" in the ring, "^" bitwise, "bits" bits packed 8
        to a byte); `tag` is "open", or "retry"/"repair" for the rare rounds that redo a truncation
        (both servers decide them from what was opened). Both are public, part of the message, and what
        a view of the protocol is read by (tests/privacy.py)."""
        self.channel.send(self.peer, (tag, tuple(ops), list(arrays)))
        their_tag, their_ops, theirs = self.channel.recv(self.peer)
        if their_tag != tag or tuple(their_ops) != tuple(ops):
            raise SessionMismatch(f"{self.name} and {self.peer} are not at the same step ({ops} vs {their_ops})")
        return theirs

    def open(self, *shares: np.ndarray, tag: str = "open"):
        """Reconstruct values between the two servers. Only ever called on values masked by dealer
        randomness that this server does not know."""
        theirs = self.exchange(("+",) * len(shares), shares, tag)
        return [mine + other for mine, other in zip(shares, theirs)]

    def open_xor(self, *shares: np.ndarray):
        theirs = self.exchange(("^",) * len(shares), shares)
        return [mine ^ other for mine, other in zip(shares, theirs)]

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

    def receive_public(self, tag: str):
        """A public value the client sent (Client.tell) under `tag`: a decision, never data."""
        got, session_id, value = self.channel.recv("client")
        if got != tag or session_id != self.session_id:
            raise SessionMismatch(f"{self.name} expected {tag!r} from the client, got {got!r}")
        return value

    def reveal_to(self, tensor, receiver: str = "client") -> None:
        """Send this server's share to the party that may reconstruct it (normally the client)."""
        tensor._check_owner(self)
        self.channel.send(receiver, ("result", self.session_id, tensor.frac, tensor.share))

    def local(self, raw: np.ndarray, frac: int | None = None):
        """Wrap a share this server already holds (for example loaded from its own disk)."""
        from .tensor import SharedTensor

        return SharedTensor(self, np.asarray(raw, dtype=np.uint64), self.fixed.frac_bits if frac is None else frac)


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

    def tell(self, tag: str, value) -> None:
        """Send both servers the same public value (Server.receive_public): a decision, never data."""
        for server in SERVERS:
            self.channel.send(server, (tag, self.session_id, value))

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
