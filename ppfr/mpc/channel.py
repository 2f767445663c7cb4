"""Message passing between the parties, with byte and round counts.

Protocol code talks to a `Channel` only through `send(to, message)` and `recv(sender)`; messages are
plain data (numpy arrays, numbers, strings, tuples, lists, dicts), so a network transport can implement
the same two methods. `InProcessNetwork` is the default transport: one FIFO queue per ordered pair of
parties, each party in its own thread, arrays copied on send so that no party holds another's memory.

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
    if isinstance(message, (bytes, str)):
        return len(message)
    if isinstance(message, dict):
        return sum(payload_bytes(v) for v in message.values())
    if isinstance(message, (tuple, list)):
        return sum(payload_bytes(v) for v in message)
    if message is None:
        return 0
    return 8


def _copy(message):
    if isinstance(message, np.ndarray):
        return message.copy()
    if isinstance(message, dict):
        return {k: _copy(v) for k, v in message.items()}
    if isinstance(message, (tuple, list)):
        return type(message)(_copy(v) for v in message)
    return message


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
        """Send plain data. copy=False hands arrays over without copying them, for a sender that keeps
        no reference to them (the dealer's fresh material); a network transport copies anyway."""
        size = payload_bytes(message)
        if to in OFFLINE or self.name in OFFLINE:
            self.stats.offline_bytes += size
        else:
            if self._received_since_send:
                self.stats.rounds += 1
                self._received_since_send = False
            self.stats.bytes_sent += size
            self.stats.messages_sent += 1
            self.stats.bytes_to[to] += size
        self._put(to, message, copy)

    def recv(self, sender: str):
        message = self._get(sender)
        if sender in OFFLINE or self.name in OFFLINE:
            self.stats.offline_bytes += payload_bytes(message)
        else:
            self._received_since_send = True
        return message

    def _put(self, to, message, copy: bool = True):  # pragma: no cover - interface
        raise NotImplementedError

    def _get(self, sender):  # pragma: no cover - interface
        raise NotImplementedError


class _Closed:
    def __init__(self, reason: str):
        self.reason = reason


class InProcessNetwork:
    """Queues between parties that live in one process (one thread each)."""

    def __init__(self, parties=PARTIES, timeout: float = DEFAULT_TIMEOUT):
        self.parties = tuple(parties)
        self.timeout = timeout
        self._queues = {(a, b): queue.Queue() for a in self.parties for b in self.parties if a != b}
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
        if copy:
            message = _copy(message)
        if self._net.transcript is not None:
            self._net.transcript.append((self.name, to, message))
        self._net._queues[(self.name, to)].put(message)

    def _get(self, sender):
        try:
            message = self._net._queues[(sender, self.name)].get(timeout=self._net.timeout)
        except queue.Empty:
            raise ProtocolAborted(f"{self.name} waited {self._net.timeout:.0f} s for {sender}") from None
        if isinstance(message, _Closed):
            self._net._queues[(sender, self.name)].put(message)  # keep waking later receives
            raise ProtocolAborted(f"{self.name} stopped waiting for {sender}: {message.reason}")
        return message
