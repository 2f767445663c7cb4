"""A deployment's certificates: one CA, one certificate per party, made with the `cryptography` package.

Every party (server0, server1, dealer, and each client) has a key pair and a certificate signed by the
deployment's CA. The certificate names the party twice, as its subject common name and as a DNS name
in its subject alternative names; a link checks the DNS name against the party the peer claims to be
(see tls.py), so a certificate of server 1 cannot be used to pose as server 0, nor a client's as a
server. Client party names start with "client-" (`client_party`), so that no client can be named like
a server. Keys are ECDSA P-256 (fast TLS handshakes), written 0600; certificates are public.
"""
from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICES = ("server0", "server1", "dealer")
CLIENT_PREFIX = "client-"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEFAULT_DAYS = 365


class CertificateError(ValueError):
    """A certificate or key that cannot be made or used (one line, for the command line)."""


def client_party(name: str) -> str:
    """The party name of a client called `name` ("alice" -> "client-alice")."""
    return name if name.startswith(CLIENT_PREFIX) else CLIENT_PREFIX + name


def check_party(name: str) -> str:
    """A party name is a service's name or client-<name>: lower-case letters, digits and dashes."""
    if not _NAME.match(name) or not (name in SERVICES or (name.startswith(CLIENT_PREFIX) and len(name) > 7)):
        raise CertificateError(f"{name!r} is not a party name: one of {', '.join(SERVICES)} or "
                               f"{CLIENT_PREFIX}<name> (lower-case letters, digits, dashes)")
    return name


@dataclass(frozen=True)
class Issued:
    party: str
    cert: Path
    key: Path


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ppfr deployment"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(days: float, not_before: datetime.datetime | None):
    start = not_before or datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    return start, start + datetime.timedelta(days=days)


def make_ca(directory, name: str = "ppfr CA", days: float = 10 * DEFAULT_DAYS) -> Issued:
    """A new CA in DIRECTORY (ca.pem, ca.key 0600). Refuses to replace an existing CA key."""
    directory = Path(directory)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if key_path.exists():
        raise CertificateError(f"{key_path} exists: a deployment has one CA (remove it to start over)")
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, None)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return Issued("ca", cert_path, key_path)


def load_ca(directory):
    directory = Path(directory)
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    except FileNotFoundError as e:
        raise CertificateError(f"no CA in {directory} ({e.filename} is missing): run `ppfr certs` first") from None
    except ValueError as e:
        raise CertificateError(f"the CA in {directory} cannot be read: {e}") from None
    return cert, key


def issue(ca_directory, party: str, out_directory=None, days: float = DEFAULT_DAYS,
          not_before: datetime.datetime | None = None) -> Issued:
    """A key and a certificate for PARTY signed by the CA in ca_directory: OUT/PARTY.pem, OUT/PARTY.key."""
    check_party(party)
    ca_cert, ca_key = load_ca(ca_directory)
    out = Path(out_directory or ca_directory)
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before)
    cert = (x509.CertificateBuilder().subject_name(_name(party)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(party)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = out / f"{party}.pem", out / f"{party}.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return Issued(party, cert_path, key_path)


def make_deployment(directory, clients=("client-local",), days: float = DEFAULT_DAYS) -> list[Issued]:
    """A CA (made if absent) and certificates for the three services and the named clients."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    made = [] if (directory / "ca.key").exists() else [make_ca(directory)]
    return made + [issue(directory, party, directory, days) for party in (*SERVICES, *map(client_party, clients))]


def peer_names(cert: dict) -> set[str]:
    """The DNS names of a certificate as ssl.SSLSocket.getpeercert() gives it."""
    return {value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}
