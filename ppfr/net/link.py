"""Links: framed, mutually authenticated TLS connections between two parties, with deadlines and
heartbeats.

Threads, not asyncio or gRPC: measured on this machine (benchmarks/links.py, README "Network
services"), a round trip of a small message costs about 40 us with blocking ssl sockets and a reader
thread, against about 190 us through asyncio driven from synchronous protocol code and 310 us through a
gRPC bidirectional stream, and protocols are made of many small rounds.

A thread waiting in recv() reads the next frame off the socket itself when no other thread is reading
(so a message reaches the thread waiting for it without a hand-over between threads) and files frames
of other kinds for their readers. A watcher thread per link sends an empty frame (a heartbeat)
whenever nothing was sent for `Timing.heartbeat` / 2 seconds, and reads what arrives while nobody
receives, eagerly while this side sends a large frame, so that a peer never blocks on a full buffer
when both send large messages at once. The sender encrypts and writes the frame itself (tls.TlsStream: TLS through
memory buffers, so that reading and writing in two threads is safe).

Deadlines. The socket has a timeout of `Timing.dead_after` seconds: a peer that sends nothing at all,
not even a heartbeat, for that long (stopped, hung, or cut off), or does not take our bytes for that
long, ends the link with a one-line ProtocolAborted. Waiting for a message of a live peer is bounded by
`Timing.message` (the session's timeout). Connecting and the handshakes are bounded by `Timing.connect`.
So a stopped or killed peer is noticed within dead_after (5 s by default) plus the time to one scheduling
of the reader thread; a killed one at once (the kernel closes its connections).
"""
from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass

from ppfr.mpc.errors import ProtocolAborted

from . import wire
from .tls import PeerRefused, TlsStream, check_claim, client_context


@dataclass(frozen=True)
class Timing:
    heartbeat: float = 1.0     # send an empty frame after this long without sending
    dead_after: float = 5.0    # a peer silent this long (no frame, not even a heartbeat) is gone
    connect: float = 10.0      # TCP connect, TLS handshake and hello
    message: float = 600.0     # waiting for a message from a live peer

    def __post_init__(self):
        if not 0 < self.heartbeat < self.dead_after:
            raise ValueError("heartbeats must come more often than a peer is given up on")


_JOIN_BELOW = 1 << 16  # frames smaller than this go out in one write (one TLS record, one system call)
_DRAIN_ABOVE = 1 << 18  # while sending a frame larger than this, the watcher reads what arrives


class Link:
    """One end of an authenticated connection to `peer`. send() from any thread; recv() per kind of frame."""

    def __init__(self, sock: TlsStream, me: str, peer: str, timing: Timing = Timing(),
                 max_message: int = wire.DEFAULT_MAX_MESSAGE, hello=None):
        self.me, self.peer, self.timing, self.max_message = me, peer, timing, max_message
        self.hello = hello  # what the peer said when connecting (the accepting side)
        self._sock = sock
        sock.settimeout(timing.dead_after)
        self._cond = threading.Condition()  # guards the inboxes, _reading, _waiting and _failure
        self._inboxes = {kind: deque() for kind in (wire.MESSAGE, wire.CONTROL, wire.HELLO)}
        self._reading = False   # a thread is reading a frame off the socket
        self._waiting = 0       # threads inside recv()
        self._failure: str | None = None
        self._send_lock = threading.Lock()
        self._last_sent = time.monotonic()
        self._large_send = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name=f"ppfr-{me}~{peer}")
        self._watcher.start()

    # -- sending ------------------------------------------------------------------------------------
    def send(self, message, kind: int = wire.MESSAGE) -> None:
        """Write one frame (encoded here: the caller may change its arrays as soon as this returns)."""
        parts = wire.encode(message, kind)
        self._write(parts)

    def _write(self, parts, blocking: bool = True) -> bool:
        if self._failure is not None:
            raise ProtocolAborted(f"{self.me} cannot send to {self.peer}: {self._failure}")
        if not self._send_lock.acquire(blocking):
            return False
        size = sum(len(p) for p in parts)
        try:
            if size < _JOIN_BELOW:
                parts = [b"".join(parts)]
            elif size > _DRAIN_ABOVE:  # the peer may be sending a large frame too: keep reading meanwhile
                self._large_send = True
                self._wake.set()
            self._sock.sendall(parts)
            self._last_sent = time.monotonic()
        except socket.timeout:
            self._fail(f"{self.peer} took none of our bytes for {self.timing.dead_after:.0f} s "
                       "(stopped or unreachable)")
            raise ProtocolAborted(f"{self.me} cannot send to {self.peer}: {self._failure}") from None
        except (OSError, ValueError) as e:
            self._last_words()
            self._await_reader()
            self._fail(f"the connection to {self.peer} broke ({_reason(e)})")
            raise ProtocolAborted(f"{self.me} cannot send to {self.peer}: {self._failure}") from None
        finally:
            self._large_send = False
            self._send_lock.release()
        return True

    def _watch(self):
        """Heartbeats, and reading what arrives while nobody receives (so the peer never blocks on a
        full buffer; eagerly while this side sends a large frame)."""
        beat = wire.encode(None, wire.HEARTBEAT)
        while not self._stop.is_set():
            self._wake.wait(0.01 if self._large_send else self.timing.heartbeat / 2)
            self._wake.clear()
            if self._stop.is_set() or self._failure is not None:
                return
            if time.monotonic() - self._last_sent >= self.timing.heartbeat / 2:
                try:
                    self._write(beat, blocking=False)  # a sender holding the lock is sending anyway
                except ProtocolAborted:
                    return
            self._drain()

    def _last_words(self):
        """The peer closed on us: read what it sent before, which may say why (a closing frame)."""
        while self._failure is None:
            with self._cond:
                if self._reading or not self._sock.readable():
                    return
                self._reading = True
            self._read_one()

    def _await_reader(self):
        """Let a thread that is reading a frame finish it (bounded): a write that broke because the peer
        closed must not report "broke" while that thread is reading the peer's closing frame, which says
        why (a heartbeat's write used to win that race under load)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._reading or self._failure is not None,
                                timeout=min(1.0, self.timing.dead_after))

    def _drain(self):
        while True:
            with self._cond:
                if self._reading or self._waiting or self._failure is not None or not self._sock.readable():
                    return
                self._reading = True
            self._read_one()

    # -- receiving ----------------------------------------------------------------------------------
    def recv(self, kind: int = wire.MESSAGE, timeout: float | None = None):
        """The next frame of this kind from the peer, waiting at most timeout (Timing.message).

        Whichever waiting thread finds the socket free reads the next frame itself and hands on frames
        of other kinds, so a message costs no hand-over between threads when one thread waits for it."""
        inbox = self._inboxes[kind]
        wait = self.timing.message if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            self._waiting += 1
        try:
            while True:
                with self._cond:
                    while True:
                        if inbox:
                            return inbox.popleft()
                        if self._failure is not None:
                            raise ProtocolAborted(f"{self.me} lost {self.peer}: {self._failure}")
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise ProtocolAborted(f"{self.me} waited {wait:.0f} s for {self.peer}")
                        if not self._reading:
                            self._reading = True
                            break
                        self._cond.wait(remaining)
                self._read_one()
        finally:
            with self._cond:
                self._waiting -= 1

    def _read_exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self._sock.recv_into(view[got:], min(n - got, 1 << 20))
            if not k:
                raise EOFError
            got += k
        return buf

    def _read_one(self) -> None:
        """Read one frame (the caller has set _reading) and file it, or the link's failure."""
        kind, message, failure = None, None, None
        try:
            kind, message = wire.read_frame(self._read_exact, self.max_message)
            if kind == wire.CLOSING:
                failure = f"{self.peer} closed the connection: {message}"
        except socket.timeout:
            failure = f"no sign of life from {self.peer} for {self.timing.dead_after:.0f} s (stopped, hung or unreachable)"
        except wire.WireError as e:
            failure = f"{self.peer} sent a bad frame: {e}"
            self._close_socket()
        except (EOFError, OSError, ValueError) as e:
            failure = ("the connection closed" if isinstance(e, EOFError) or self._stop.is_set()
                       else f"the connection broke ({_reason(e)})")
        with self._cond:
            self._reading = False
            if failure is not None:
                self._fail(failure)
            elif kind != wire.HEARTBEAT:
                self._inboxes[kind].append(message)
            self._cond.notify_all()

    def _fail(self, reason: str) -> None:
        with self._cond:
            if self._failure is None:
                self._failure = reason
                self._cond.notify_all()

    @property
    def failure(self) -> str | None:
        return self._failure

    # -- closing ------------------------------------------------------------------------------------
    def close(self, reason: str = "the session ended") -> None:
        """Tell the peer why (its receives fail with that reason), then close. Safe to call from several
        threads at once (a failing party and the session may both close): the first closes."""
        with self._cond:
            if self._stop.is_set():
                return
            self._stop.set()
        if self._failure is None:
            try:
                self._sock.settimeout(min(1.0, self.timing.dead_after))
                self._write(wire.encode(str(reason), wire.CLOSING))
            except (ProtocolAborted, OSError):  # the socket went meanwhile: nothing to tell
                pass
        self._wake.set()
        self._fail(f"{self.me} closed the link: {reason}")
        self._close_socket()
        if self._watcher is not threading.current_thread():
            self._watcher.join(timeout=2)

    def _close_socket(self):
        self._sock.close()


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the peer's certificate is not valid here ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def parse_address(address: str) -> tuple[str, int]:
    """"HOST:PORT" -> (host, port), with a one-line error (port 0: any free port, for listening)."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"an address is HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


def dial(address: str, me: str, peer: str, identity, hello: dict | None = None, timing: Timing = Timing(),
         max_message: int = wire.DEFAULT_MAX_MESSAGE) -> Link:
    """Connect to `peer` at address as `me`, whose certificate and key are `identity` (tls.Identity).
    The peer's certificate must name `peer`; we send a hello {"party": me, **hello} and wait for the
    peer's welcome (a hello frame back), so a refusal on either side is a PeerRefused here, with why."""
    host, port = parse_address(address)
    try:
        raw = socket.create_connection((host, port), timeout=timing.connect)
    except OSError as e:
        raise ProtocolAborted(f"cannot reach {peer} at {address}: {_reason(e)}") from None
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.settimeout(timing.connect)
    try:
        sock = TlsStream(raw, client_context(identity), False, peer)
    except ssl.SSLCertVerificationError as e:
        raw.close()
        raise PeerRefused(f"refused {peer} at {address}: {_reason(e)}") from None
    except (OSError, ssl.SSLError) as e:
        raw.close()
        raise PeerRefused(f"TLS with {peer} at {address} failed: {_reason(e)}") from None
    link = Link(sock, me, peer, Timing(timing.heartbeat, timing.dead_after, timing.connect, timing.connect),
                max_message)
    try:
        link.send({"party": me, **(hello or {})}, wire.HELLO)
        link.hello = link.recv(wire.HELLO)
    except ProtocolAborted as e:
        link.close("refused")
        raise PeerRefused(f"{peer} at {address} did not accept {me}: {str(e).split(': ', 1)[-1]}") from None
    link.timing = timing
    return link


def accept(raw: socket.socket, me: str, context: ssl.SSLContext, allowed=None, timing: Timing = Timing(),
           max_message: int = wire.DEFAULT_MAX_MESSAGE, welcome=None) -> Link:
    """The accepting side of dial(): handshake, read the peer's hello, check that its certificate names
    the party it claims (and `allowed(party)`), answer with a welcome. Raises PeerRefused or
    ProtocolAborted, having told the peer why where it can."""
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.settimeout(timing.connect)
    try:
        sock = TlsStream(raw, context, True)
    except (OSError, ssl.SSLError) as e:
        raw.close()
        raise PeerRefused(f"TLS handshake failed: {_reason(e)}") from None
    link = Link(sock, me, "(connecting)", Timing(timing.heartbeat, timing.dead_after, timing.connect,
                                                  timing.connect), max_message)
    try:
        hello = link.recv(wire.HELLO)
        if not isinstance(hello, dict) or not isinstance(hello.get("party"), str):
            raise PeerRefused("the peer's hello names no party")
        link.peer = check_claim(sock, hello["party"], allowed)
        link.hello = hello
        link.send(welcome(link) if welcome else {"party": me}, wire.HELLO)
    except (PeerRefused, ProtocolAborted) as e:
        link.close(f"refused: {e}")
        raise
    link.timing = timing
    return link


class Listener:
    """Accepts links at address in a thread: each connection is authenticated (accept()) in a thread of
    its own and handed to handler(link); refusals go to on_refused(reason) (a log line)."""

    def __init__(self, address: str, me: str, identity, handler, allowed=None, timing: Timing = Timing(),
                 max_message: int = wire.DEFAULT_MAX_MESSAGE, welcome=None, on_refused=None):
        from .tls import server_context

        self.me, self.handler, self.allowed, self.timing = me, handler, allowed, timing
        self.max_message, self.welcome, self.on_refused = max_message, welcome, on_refused
        self._context = server_context(identity)
        host, port = parse_address(address)
        try:
            self._sock = socket.create_server((host, port), reuse_port=False)
        except OSError as e:
            raise ProtocolAborted(f"{me} cannot listen on {address}: {_reason(e)}") from None
        self._sock.settimeout(0.5)  # the accept loop looks at _stop this often
        host, port = self._sock.getsockname()[:2]
        self.address = f"{host}:{port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"ppfr-{me}-listen")
        self._thread.start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                raw, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._admit, args=(raw,), daemon=True, name=f"ppfr-{self.me}-admit").start()

    def _admit(self, raw):
        try:
            link = accept(raw, self.me, self._context, self.allowed, self.timing, self.max_message, self.welcome)
        except (PeerRefused, ProtocolAborted) as e:
            if self.on_refused is not None:
                self.on_refused(str(e))
            return
        self.handler(link)

    def close(self):
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
