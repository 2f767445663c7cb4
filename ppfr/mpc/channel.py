"""Message passing between the parties, with byte and round counts.

Protocol code talks to a `Channel` only through `send(to, message)` and `recv(sender)`; messages are
plain data (numpy arrays, numbers, strings, tuples, lists, dicts), so a network transport can implement
the same two methods. `InProcessNetwork` is the default transport: one FIFO queue per ordered pair of
parties, each party in its own thread. A sent array is handed over (see hand_over): the receiver gets
it read-only, and the sender can no longer change it, so no party can write into another's memory or
change what another has received, exactly as if it had been copied; a network transport copies anyway.

Counting. Every party counts the bytes of the array payloads it sends (8 bytes for a scalar, the length of
a string). Messages to or from the dealer are preprocessing (they do not depend on any input) and are
counted apart as `offline_bytes`. A communication round is counted when a party sends an online message
after having received one since its previous send: a simultaneous exchange of shares is one round.
"""
from __future__ import annotations

import queue
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .errors import ProtocolAborted

PARTIES = ("client", "server0", "server1", "dealer")
OFFLINE = frozenset({"dealer"})
DEFAULT_TIMEOUT = 600.0


def payload_bytes(message) -> int:
    if isinstance(message, np.ndarray):
        return message.nbytes
    if isinstance(message, (tuple, list)):  # most messages: a few arrays, counted without a call each
        return sum(m.nbytes if type(m) is np.ndarray else payload_bytes(m) for m in message)
    if isinstance(message, (bytes, str)):
        return len(message)
    if isinstance(message, dict):
        return sum(payload_bytes(v) for v in message.values())
    if message is None:
        return 0
    return 8


def hand_over(message, copy: bool = True):
    """(message as the receiver gets it, its payload_bytes), in one pass over the message.

    With copy, an array that owns its memory is frozen (made read-only, which its owner then is too) and
    passed as it is, an array that is a view of other memory is copied and frozen: either way neither
    side can change what the other holds, at the price of a flag instead of a copy for the fresh arrays
    that protocols send. Without copy (a sender that keeps no reference, such as the dealer), arrays are
    passed as they are."""
    if not copy:
        return message, payload_bytes(message)
    if isinstance(message, np.ndarray):
        if message.base is not None:  # a view: the memory it shows may change through another name
            message = message.copy()
        message.flags.writeable = False
        return message, message.nbytes
    if isinstance(message, dict):
        out, size = {}, 0
        for k, v in message.items():
            out[k], n = hand_over(v)
            size += n
        return out, size
    if isinstance(message, (tuple, list)):
        out, size = [], 0
        for v in message:
            v, n = hand_over(v)
            out.append(v)
            size += n
        return type(message)(out), size
    return message, payload_bytes(message)


@dataclass
class PartyStats:
    bytes_sent: int = 0          # online: to the other server or the client
    messages_sent: int = 0
    rounds: int = 0
    offline_bytes: int = 0       # to or from the dealer
    bytes_to: dict = field(default_factory=lambda: defaultdict(int))

    def copy(self) -> "PartyStats":
        return PartyStats(self.bytes_sent, self.messages_sent, self.rounds, self.offline_bytes, defaultdict(int, self.bytes_to))

    def __sub__(self, other: "PartyStats") -> "PartyStats":
        keys = set(self.bytes_to) | set(other.bytes_to)
        return PartyStats(
            self.bytes_sent - other.bytes_sent,
            self.messages_sent - other.messages_sent,
            self.rounds - other.rounds,
            self.offline_bytes - other.offline_bytes,
            defaultdict(int, {k: self.bytes_to[k] - other.bytes_to[k] for k in keys}),
        )

    def as_dict(self) -> dict:
        return {"bytes_sent": self.bytes_sent, "messages_sent": self.messages_sent,
                "rounds": self.rounds, "offline_bytes": self.offline_bytes}


class Channel:
    """One party's connection to the others. Transports implement `_put` and `_get`."""

    def __init__(self, name: str):
        self.name = name
        self.stats = PartyStats()
        self._received_since_send = True

    def send(self, to: str, message, copy: bool = True) -> None:
        """Send plain data. copy=False hands arrays over as they are, for a sender that keeps no
        reference to them (the dealer's fresh material); a network transport copies anyway."""
        size = self._put(to, message, copy)
        if to in OFFLINE or self.name in OFFLINE:
            self.stats.offline_bytes += size
        else:
            if self._received_since_send:
                self.stats.rounds += 1
                self._received_since_send = False
            self.stats.bytes_sent += size
            self.stats.messages_sent += 1
            self.stats.bytes_to[to] += size

    def recv(self, sender: str):
        message, size = self._get(sender)
        if sender in OFFLINE or self.name in OFFLINE:
            self.stats.offline_bytes += size
        else:
            self._received_since_send = True
        return message

    def _put(self, to, message, copy: bool = True) -> int:  # pragma: no cover - interface
        """Deliver, or queue for delivery; return payload_bytes(message)."""
        raise NotImplementedError

    def _get(self, sender):  # pragma: no cover - interface
        """The next message from sender, and its payload_bytes."""
        raise NotImplementedError


class _Closed:
    def __init__(self, reason: str):
        self.reason = reason


class InProcessNetwork:
    """Queues between parties that live in one process (one thread each)."""

    def __init__(self, parties=PARTIES, timeout: float = DEFAULT_TIMEOUT):
        self.parties = tuple(parties)
        self.timeout = timeout
        self._queues = {(a, b): queue.SimpleQueue() for a in self.parties for b in self.parties if a != b}
        self._closed: _Closed | None = None
        self._lock = threading.Lock()
        self.transcript: list | None = None  # set to [] to record (sender, receiver, message) for audits
        self._endpoints = {name: _InProcessChannel(self, name) for name in self.parties}

    def channel(self, name: str) -> "Channel":
        return self._endpoints[name]

    def close(self, reason: str = "session closed") -> None:
        """Wake every party that is waiting: their recv raises ProtocolAborted."""
        with self._lock:
            if self._closed is None:
                self._closed = _Closed(reason)
                for q in self._queues.values():
                    q.put(self._closed)


class _InProcessChannel(Channel):
    def __init__(self, network: InProcessNetwork, name: str):
        super().__init__(name)
        self._net = network

    def _put(self, to, message, copy: bool = True):
        if to not in self._net.parties:
            raise ValueError(f"unknown party {to!r}")
        if self._net._closed is not None:
            raise ProtocolAborted(f"{self.name} cannot send to {to}: {self._net._closed.reason}")
        message, size = hand_over(message, copy)
        if self._net.transcript is not None:
            self._net.transcript.append((self.name, to, message))
        self._net._queues[(self.name, to)].put((message, size))
        return size

    def _get(self, sender):
        try:
            message = self._net._queues[(sender, self.name)].get(timeout=self._net.timeout)
        except queue.Empty:
            raise ProtocolAborted(f"{self.name} waited {self._net.timeout:.0f} s for {sender}") from None
        if isinstance(message, _Closed):
            self._net._queues[(sender, self.name)].put(message)  # keep waking later receives
            raise ProtocolAborted(f"{self.name} stopped waiting for {sender}: {message.reason}")
        return message  # (message, size) as _put queued it
