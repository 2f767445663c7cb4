"""TLS 1.3 with mutual authentication (stdlib `ssl`), and the check that a peer is the party it claims.

Both ends present a certificate from the deployment's CA (certs.py) and require one from the peer;
OpenSSL refuses a certificate of another CA, an expired one, or one not yet valid. Who the peer is:
- the connecting side knows whom it dials: it passes the party name as the TLS server name, and
  OpenSSL checks it against the DNS names of the peer's certificate (ssl's hostname check);
- the accepting side learns whom it talks to from the peer's certificate (`authenticated_party`), and
  refuses a claim (a hello naming another party) that the certificate does not back (`check_claim`).
"""
from __future__ import annotations

import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from .certs import CLIENT_PREFIX, SERVICES, peer_names


class PeerRefused(ConnectionError):
    """The peer's certificate does not name the party it has to be (or claims to be)."""


@dataclass(frozen=True)
class Identity:
    """This party's name, certificate and key, and the deployment's CA certificate."""
    party: str
    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_dir(cls, directory, party: str) -> "Identity":
        """The files `ppfr certs` writes: DIR/PARTY.pem, DIR/PARTY.key, DIR/ca.pem."""
        d = Path(directory)
        return cls(party, d / f"{party}.pem", d / f"{party}.key", d / "ca.pem")


def _context(purpose, identity: Identity) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=str(identity.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    except (OSError, ssl.SSLError) as e:
        raise PeerRefused(f"cannot load {identity.party}'s certificate {identity.cert} and key "
                          f"{identity.key}: {getattr(e, 'strerror', None) or e}") from None
    return context


def server_context(identity: Identity) -> ssl.SSLContext:
    """For accepting: requires a client certificate of the CA. Issues no session tickets (nothing
    resumes a session), so that after the handshake only application data and alerts flow."""
    context = _context(ssl.Purpose.CLIENT_AUTH, identity)
    context.num_tickets = 0
    return context


def client_context(identity: Identity) -> ssl.SSLContext:
    """For dialling: the peer's certificate must name the party passed as server_hostname."""
    context = _context(ssl.Purpose.SERVER_AUTH, identity)
    context.check_hostname = True
    return context


def authenticated_party(sock) -> str:
    """The one party the peer's (verified) certificate names."""
    names = peer_names(sock.getpeercert() or {})
    parties = sorted(n for n in names if n in SERVICES or n.startswith(CLIENT_PREFIX))
    if len(parties) != 1:
        raise PeerRefused(f"the peer's certificate names {sorted(names) or 'no party'}, not exactly one party")
    return parties[0]


def check_claim(sock, claimed: str, allowed=None) -> str:
    """Refuse a peer whose certificate does not name `claimed`, or (with allowed, a predicate on party
    names) one that may not connect here at all."""
    party = authenticated_party(sock)
    if party != claimed:
        raise PeerRefused(f"a peer with the certificate of {party} claimed to be {claimed}")
    if allowed is not None and not allowed(party):
        raise PeerRefused(f"{party} may not connect here")
    return party


_RECORDS = 1 << 20  # plaintext encrypted per turn of the lock: bounds the ciphertext held in memory


class TlsStream:
    """TLS over a connected socket through memory BIOs, so that one thread can receive while others
    send: OpenSSL's connection object is touched by one thread at a time, under a lock that is never
    held across a socket operation. (An ssl.SSLSocket read in one thread and written in another loses
    data: measured here as spurious ends of stream within seconds of full-duplex traffic.)

    The socket's timeout bounds every socket operation, the handshake included."""

    def __init__(self, raw, context: ssl.SSLContext, server_side: bool, server_hostname: str | None = None):
        self.raw = raw
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self._lock = threading.Lock()       # the TLS object
        self._send_lock = threading.Lock()  # the socket's sending side: records leave in the order made
        self._handshake()

    def _handshake(self):
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = self.raw.recv(1 << 16)
                if not data:
                    raise ConnectionError("the peer closed the connection during the TLS handshake") from None
                self._incoming.write(data)
            except ssl.SSLError:
                self._flush()  # the alert, so that the peer learns why
                raise
        self._flush()

    def _flush(self):
        data = self._outgoing.read()
        if data:
            self.raw.sendall(data)

    def getpeercert(self):
        return self._tls.getpeercert()

    def sendall(self, parts) -> None:
        """Encrypt and send buffers in order, a megabyte at a time."""
        with self._send_lock:
            for part in parts:
                view = memoryview(part).cast("B")
                for start in range(0, max(len(view), 1), _RECORDS):
                    with self._lock:
                        if len(view):
                            self._tls.write(view[start:start + _RECORDS])
                        data = self._outgoing.read()
                    self.raw.sendall(data)

    def recv_into(self, view: memoryview, n: int) -> int:
        """Decrypt at most n bytes into view; 0 at the end of the stream."""
        while True:
            with self._lock:
                try:
                    k = self._tls.read(n, view)
                except ssl.SSLWantReadError:
                    k = None
                except ssl.SSLZeroReturnError:
                    return 0
                pending = self._outgoing.pending
            if pending and self._send_lock.acquire(blocking=False):  # a post-handshake answer: rare
                try:
                    with self._lock:
                        data = self._outgoing.read()
                    self.raw.sendall(data)
                finally:
                    self._send_lock.release()
            if k is not None:
                return k
            data = self.raw.recv(1 << 18)
            if not data:
                return 0
            with self._lock:
                self._incoming.write(data)

    def readable(self) -> bool:
        """Whether a read would find data: decrypted, buffered, or waiting in the socket."""
        with self._lock:
            if self._tls.pending() or self._incoming.pending:
                return True
        try:
            poller = select.poll()  # not select(): no limit on descriptor numbers
            poller.register(self.raw, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):  # closed: a read reports it
            return True

    def settimeout(self, seconds: float) -> None:
        self.raw.settimeout(seconds)

    def close(self) -> None:
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.raw.close()
