"""Message passing between the parties, with byte and round counts.

Protocol code talks to a `Channel` only through `send(to, message)` and `recv(sender)`; messages are
plain data (numpy arrays, numbers, strings, tuples, lists, dicts), so a network transport can implement
the same two methods. `InProcessNetwork` is the default transport: one FIFO queue per ordered pair of
parties, each party in its own thread. Each party's endpoint holds only the queues it sends on and
receives from, and a sent array is copied (see hand_over), so no party can reach another's queues or
memory, or change what another has received, exactly as over a network.

Counting. Every party counts the bytes of the array payloads it sends (8 bytes for a scalar, the length of
a bytes object); strings are tags (a message's kind, a session id, how an opening combines), the framing
of a message rather than its payload, and are not counted. Messages to or from the dealer are preprocessing (they do not depend on any input) and are
counted apart as `offline_bytes`. A communication round is counted when a party sends an online message
after having received one since its previous send: a simultaneous exchange of shares is one round.

Latency. `InProcessNetwork(latency=rtt)` delivers every message no earlier than rtt / 2 seconds after
it was sent, as a link with that round-trip time and unlimited bandwidth would (netem is not available
here): each round of a protocol then costs rtt / 2 more, and the dealer's material, asked ahead, arrives
late only where the servers would wait for it anyway. The benchmarks use it for WAN figures.

Views. With `channel.view` set to a list, the channel records everything its party sends and receives
(("send", to, message) and ("recv", sender, message), as delivered): the party's view of the protocol,
which the privacy tests examine (tests/privacy.py).
"""
from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .errors import ProtocolAborted

PARTIES = ("client", "server0", "server1", "dealer")
OFFLINE = frozenset({"dealer"})
DEFAULT_TIMEOUT = 60.0  # seconds a party waits for a message before it gives up (config: mpc.timeout)


# The payload sizes of a message's plain parts, by type: strings are tags, not counted (module doc).
_PLAIN_SIZES = {int: 8, float: 8, bool: 8, str: 0, type(None): 0}


def payload_bytes(message) -> int:
    size = _PLAIN_SIZES.get(type(message))
    if size is not None:
        return size
    if isinstance(message, np.ndarray):
        return message.nbytes
    if isinstance(message, (tuple, list)):  # most messages: a few arrays and numbers, counted without a call each
        total = 0
        for m in message:
            size = _PLAIN_SIZES.get(type(m))
            total += size if size is not None else (m.nbytes if type(m) is np.ndarray else payload_bytes(m))
        return total
    if isinstance(message, bytes):
        return len(message)
    if isinstance(message, dict):
        return sum(payload_bytes(v) for v in message.values())
    return 8


def hand_over(message, copy: bool = True):
    """(message as the receiver gets it, its payload_bytes), in one pass over the message.

    Every array is copied, so that neither side can reach or change what the other holds. Without copy
    (a sender that keeps no reference to what it sends, such as the dealer's fresh material), an array
    that owns its memory is passed as it is and only a view of other memory is copied (the memory
    around it is the sender's). A tuple whose parts all pass as they are (numbers, tags, a request's
    shapes, arrays not copied) is passed as it is; lists and dicts are always rebuilt."""
    size = _PLAIN_SIZES.get(type(message))
    if size is not None:
        return message, size
    if isinstance(message, np.ndarray):
        if copy or message.base is not None:
            message = message.copy()
        return message, message.nbytes
    if isinstance(message, tuple):
        out, size, same = [], 0, True
        for v in message:
            n = _PLAIN_SIZES.get(type(v))
            if n is None:
                w, n = hand_over(v, copy)
                same = same and w is v  # lists and dicts, and copied arrays, come back new
                v = w
            out.append(v)
            size += n
        return (message if same else type(message)(out)), size
    if isinstance(message, dict):
        out, size = {}, 0
        for k, v in message.items():
            out[k], n = hand_over(v, copy)
            size += n
        return out, size
    if isinstance(message, list):
        out, size = [], 0
        for v in message:
            v, n = hand_over(v, copy)
            out.append(v)
            size += n
        return out, size
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
    """One party's connection to the others. Transports implement `_put`, `_get` and `close`."""

    def __init__(self, name: str):
        self.name = name
        self.stats = PartyStats()
        self.view: list | None = None  # set to [] to record this party's view (module doc)
        self._received_since_send = True

    def send(self, to: str, message, copy: bool = True) -> None:
        """Send plain data. copy=False is for a sender that keeps no reference to what it sends (the
        dealer's fresh material): see hand_over."""
        delivered, size = self._put(to, message, copy)
        if self.view is not None:
            self.view.append(("send", to, delivered))
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
        if self.view is not None:
            self.view.append(("recv", sender, message))
        return message

    def close(self, reason: str = "the session closed") -> None:  # pragma: no cover - interface
        """This party stops: every party waiting for a message from it stops waiting, with `reason`."""
        raise NotImplementedError

    def _put(self, to, message, copy: bool = True):  # pragma: no cover - interface
        """Deliver, or queue for delivery; return (the message as delivered, payload_bytes)."""
        raise NotImplementedError

    def _get(self, sender):  # pragma: no cover - interface
        """The next message from sender, and its payload_bytes."""
        raise NotImplementedError


class _Closed:
    def __init__(self, reason: str):
        self.reason = reason


class InProcessNetwork:
    """Queues between parties that live in one process (one thread each). The network (the session's)
    holds every queue; each party's endpoint only its own."""

    def __init__(self, parties=PARTIES, timeout: float = DEFAULT_TIMEOUT, latency: float = 0.0):
        if latency < 0:
            raise ValueError(f"a latency is a round-trip time in seconds, >= 0, not {latency}")
        self.parties = tuple(parties)
        self.timeout = timeout
        self._queues = {(a, b): queue.SimpleQueue() for a in self.parties for b in self.parties if a != b}
        self._lock = threading.Lock()
        self._closed = False
        self._endpoints = {name: _InProcessChannel(
            name, timeout, latency / 2,
            outgoing={b: q for (a, b), q in self._queues.items() if a == name},
            incoming={a: q for (a, b), q in self._queues.items() if b == name}) for name in self.parties}

    def channel(self, name: str) -> "Channel":
        return self._endpoints[name]

    def close(self, reason: str = "session closed") -> None:
        """Wake every party that is waiting: their recv raises ProtocolAborted."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for endpoint in self._endpoints.values():
                    endpoint.close(reason)


class _InProcessChannel(Channel):
    def __init__(self, name: str, timeout: float, one_way: float, outgoing: dict, incoming: dict):
        super().__init__(name)
        self._timeout = timeout
        self._one_way = one_way  # seconds between a send and the earliest delivery (module doc: Latency)
        self._outgoing, self._incoming = outgoing, incoming
        self._closed: _Closed | None = None

    def _put(self, to, message, copy: bool = True):
        if to not in self._outgoing:
            raise ValueError(f"unknown party {to!r}")
        if self._closed is not None:
            raise ProtocolAborted(f"{self.name} cannot send to {to}: {self._closed.reason}")
        message, size = hand_over(message, copy)
        due = time.monotonic() + self._one_way if self._one_way else 0.0
        self._outgoing[to].put((message, size, due))
        return message, size

    def _get(self, sender):
        inbox = self._incoming.get(sender)
        if inbox is None:
            raise ValueError(f"unknown party {sender!r}")
        try:
            message = inbox.get(timeout=self._timeout)
        except queue.Empty:
            raise ProtocolAborted(f"{self.name} waited {self._timeout:.0f} s for {sender}") from None
        if isinstance(message, _Closed):
            inbox.put(message)  # keep waking later receives
            raise ProtocolAborted(f"{self.name} stopped waiting for {sender}: {message.reason}")
        message, size, due = message  # as _put queued it
        wait = due - time.monotonic()
        if wait > 0:  # still on the wire
            time.sleep(wait)
        return message, size

    def close(self, reason: str = "the session closed") -> None:
        """Stop this party: whoever waits for it wakes with `reason`, and it sends no more."""
        if self._closed is None:
            self._closed = _Closed(reason)
            for q in self._outgoing.values():
                q.put(self._closed)
