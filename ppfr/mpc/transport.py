"""A Channel over operating-system connections, for parties in separate processes (or machines).

`ConnectionChannel` carries the same plain-data messages as the in-process transport over
`multiprocessing.connection.Connection` objects: pipes between local processes, or the Unix and TCP
sockets that `multiprocessing.connection.Listener`/`Client` open (which authenticate the peer with an
HMAC challenge but do not encrypt: across machines, run them inside TLS or a VPN).

Wire format: a message is pickled (protocol 5) with its arrays taken out of band, so that an array
goes from the sender's memory to the socket and from the socket into a fresh buffer of the receiver,
with no intermediate copies. A header (the pickle and the sizes of the arrays) precedes the array
buffers. Only numpy arrays and plain Python values ever travel, never code: protocol messages are
loaded with a restricted unpickler.

Sends go through a writer thread per peer (see ConnectionChannel).
"""
from __future__ import annotations

import io
import os
import pickle
import queue
import socket
import threading

from .channel import DEFAULT_TIMEOUT, Channel, hand_over, payload_bytes
from .errors import ProtocolAborted


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads numpy arrays and builtin values only: a peer cannot make this process run code."""

    ALLOWED = {("numpy", "dtype"), ("numpy", "ndarray")} | {
        (f"numpy.{core}.{module}", name) for core in ("core", "_core")
        for module, name in (("numeric", "_frombuffer"), ("multiarray", "_reconstruct"), ("multiarray", "scalar"))}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a protocol message may not contain {module}.{name}")


class PeerClosed(EOFError):
    """The peer closed the connection, saying why."""


def send_message(conn, message) -> None:
    buffers = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    conn.send_bytes(pickle.dumps(("message", [v.nbytes for v in views], data), protocol=5))
    for view in views:
        conn.send_bytes(view)


def send_closing(conn, reason: str) -> None:
    """The last thing sent on a connection: why it closes (a failure's cause, for the peer's error)."""
    conn.send_bytes(pickle.dumps(("closed", str(reason)), protocol=5))


def recv_message(conn):
    header = _PlainDataUnpickler(io.BytesIO(conn.recv_bytes())).load()
    if isinstance(header, tuple) and len(header) == 2 and header[0] == "closed":
        raise PeerClosed(header[1])
    if not (isinstance(header, tuple) and len(header) == 3 and header[0] == "message"):
        raise pickle.UnpicklingError("not a ppfr message header")
    _, sizes, data = header
    buffers = []
    for size in sizes:
        buffer = bytearray(size)  # writable: received arrays are ordinary arrays
        if size:
            conn.recv_bytes_into(buffer)
        else:
            conn.recv_bytes()
        buffers.append(buffer)
    return _PlainDataUnpickler(io.BytesIO(data), buffers=buffers).load()


class ConnectionChannel(Channel):
    """One party's end of a connection to each peer it talks to: {peer name: Connection}.

    Receiving reads the connection directly. Sending hands the message to a writer thread per peer, so
    that two parties that both send a large message before receiving (an exchange of shares) never
    block each other on full OS buffers, and the dealer can work ahead of a server that is busy."""

    def __init__(self, name: str, connections: dict, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(name)
        self._connections = dict(connections)
        self._timeout = timeout
        self._closed = False
        self._outbox = {peer: queue.SimpleQueue() for peer in self._connections}
        self._send_error: dict = {}
        self._writers = [threading.Thread(target=self._write, args=(peer, conn), daemon=True,
                                          name=f"ppfr-{name}->{peer}") for peer, conn in self._connections.items()]
        for t in self._writers:
            t.start()

    def _write(self, peer, conn):
        outbox = self._outbox[peer]
        while True:
            message = outbox.get()
            try:
                if isinstance(message, _Closing):
                    send_closing(conn, message.reason)
                    return
                send_message(conn, message)
            except (OSError, ValueError) as e:  # ValueError: the connection was closed here
                self._send_error[peer] = e
                return

    def _put(self, to, message, copy: bool = True) -> int:
        if to not in self._connections:
            raise ValueError(f"{self.name} has no connection to {to!r}")
        if self._closed or to in self._send_error:
            raise ProtocolAborted(f"{self.name} cannot send to {to}: "
                                  f"{self._send_error.get(to, 'the connection is closed')}")
        message, size = hand_over(message, copy)  # the writer serialises it later: it must not change
        self._outbox[to].put(message)
        return message, size

    def _get(self, sender):
        conn = self._connections.get(sender)
        if conn is None:
            raise ValueError(f"{self.name} has no connection to {sender!r}")
        try:
            if not conn.poll(self._timeout):
                raise ProtocolAborted(f"{self.name} waited {self._timeout:.0f} s for {sender}")
            message = recv_message(conn)
            return message, payload_bytes(message)
        except PeerClosed as e:
            raise ProtocolAborted(f"{self.name} stopped waiting for {sender}: {e}") from None
        except (EOFError, OSError, ValueError):
            raise ProtocolAborted(f"{self.name} stopped waiting for {sender}: the connection closed") from None
        except pickle.UnpicklingError as e:
            raise ProtocolAborted(f"{sender} sent {self.name} a message that is not plain data: {e}") from None

    def close(self, reason: str = "the session closed") -> None:
        """Send what is queued and the reason, then close every connection: the peers' receives raise
        ProtocolAborted with that reason."""
        if self._closed:
            return
        self._closed = True
        for outbox in self._outbox.values():
            outbox.put(_Closing(reason))
        for t in self._writers:
            t.join(timeout=5)
        for conn in self._connections.values():
            _shutdown(conn)
            conn.close()


class _Closing:
    def __init__(self, reason: str):
        self.reason = reason


def _shutdown(conn) -> None:
    """Shut a socket down before closing it: a plain close leaves it open while this process's reader
    thread is blocked reading it, and the peer would not see the end."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as s:
            s.shutdown(socket.SHUT_RDWR)
    except OSError:  # not a socket, or already closed
        pass
