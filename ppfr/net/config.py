"""The YAML files of a deployment: a service's config (`ppfr server|dealer --config FILE`) and a
client's parties file (`--parties FILE`). Paths in them are relative to the file's directory.

Service config (server0 shown; the dealer needs only the certificate lines and `net`):

    ca: certs/ca.pem
    cert: certs/server0.pem
    key: certs/server0.key
    peers:                      # where this server finds the others (server 0 dials server 1)
      server1: 10.0.0.3:7443
      dealer: 10.0.0.4:7443
    budget:                     # queries (rows classified or matched) per client certificate
      default: 100000           # null: no limit
      clients: {client-alice: 5000}
    allow_revealing: false      # programs that reveal more than answers (whole models), for tests only
    net: {heartbeat: 1.0, dead_after: 5.0, connect: 10.0, message: 600.0, max_message_mb: 1024}

Parties file of a client:

    ca: certs/ca.pem
    client: {party: client-alice, cert: certs/client-alice.pem, key: certs/client-alice.key}
    server0: 10.0.0.2:7443
    server1: 10.0.0.3:7443
    net: {...as above...}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import wire
from .link import Timing, parse_address
from .tls import Identity


class ConfigError(ValueError):
    """A deployment file that is missing, unreadable or incomplete (one line)."""


def _load(path) -> tuple[dict, Path]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path} cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a YAML mapping")
    return data, path.resolve().parent


def _path(data: dict, key: str, base: Path, where) -> Path:
    value = data.get(key)
    if not isinstance(value, str):
        raise ConfigError(f"{where} has no {key}: (a file path)")
    p = Path(value)
    return p if p.is_absolute() else base / p


def _address(value, name, where) -> str:
    try:
        parse_address(value)
    except ValueError:
        raise ConfigError(f"{where}: {name} is HOST:PORT, not {value!r}") from None
    return value


def _net(data: dict, where) -> tuple[Timing, int]:
    net = data.get("net") or {}
    try:
        timing = Timing(**{k: float(net[k]) for k in ("heartbeat", "dead_after", "connect", "message") if k in net})
        max_message = int(float(net.get("max_message_mb", wire.DEFAULT_MAX_MESSAGE >> 20)) * (1 << 20))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: bad net settings: {e}") from None
    return timing, max_message


@dataclass(frozen=True)
class ServiceConfig:
    identity: Identity
    peers: dict = field(default_factory=dict)
    budget_default: int | None = None
    budgets: dict = field(default_factory=dict)
    allow_revealing: bool = False
    timing: Timing = Timing()
    max_message: int = wire.DEFAULT_MAX_MESSAGE

    @classmethod
    def load(cls, path, party: str) -> "ServiceConfig":
        data, base = _load(path)
        identity = Identity(party, _path(data, "cert", base, path), _path(data, "key", base, path),
                            _path(data, "ca", base, path))
        peers = {name: _address(a, name, path) for name, a in (data.get("peers") or {}).items()}
        budget = data.get("budget") or {}
        timing, max_message = _net(data, path)
        return cls(identity, peers, budget.get("default"), dict(budget.get("clients") or {}),
                   bool(data.get("allow_revealing", False)), timing, max_message)

    def budget(self, client: str) -> int | None:
        return self.budgets.get(client, self.budget_default)

    def peer(self, name: str) -> str:
        if name not in self.peers:
            raise ConfigError(f"the config of {self.identity.party} names no address for {name} (peers: {name}:)")
        return self.peers[name]


@dataclass(frozen=True)
class Parties:
    identity: Identity
    servers: dict
    timing: Timing = Timing()
    max_message: int = wire.DEFAULT_MAX_MESSAGE

    @classmethod
    def load(cls, path) -> "Parties":
        data, base = _load(path)
        client = data.get("client")
        if not isinstance(client, dict) or not isinstance(client.get("party"), str):
            raise ConfigError(f"{path} has no client: {{party: client-NAME, cert: ..., key: ...}}")
        identity = Identity(client["party"], _path(client, "cert", base, path), _path(client, "key", base, path),
                            _path(data, "ca", base, path))
        servers = {s: _address(data.get(s), s, path) for s in ("server0", "server1")}
        timing, max_message = _net(data, path)
        return cls(identity, servers, timing, max_message)
