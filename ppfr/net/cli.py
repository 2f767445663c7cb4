"""`ppfr certs`: the deployment's CA and one certificate per party."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ppfr.failures import command

from .certs import DEFAULT_DAYS, SERVICES, CertificateError, client_party, issue, make_deployment


@command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--client", "clients", multiple=True, metavar="NAME",
              help="Also make a certificate for the client NAME (party client-NAME); repeatable. "
                   "Default: one client, 'local'.")
@click.option("--party", "parties", multiple=True, metavar="PARTY",
              help="Only issue a certificate for PARTY (server0, server1, dealer or client-NAME) from the "
                   "CA already in DIRECTORY, e.g. for a new client or to renew one; repeatable.")
@click.option("--days", type=click.FloatRange(0, min_open=True), default=DEFAULT_DAYS, show_default=True,
              help="Validity of the party certificates.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def certs(directory, clients, parties, days, as_json):
    """Make the CA of a deployment in DIRECTORY and a key and certificate for each party.

    Writes DIRECTORY/ca.pem and ca.key (the CA: keep ca.key offline once the certificates are made),
    and PARTY.pem and PARTY.key for server0, server1, the dealer and each client. Keys are written 0600
    and DIRECTORY is made 0700. Each certificate names its party (common name and DNS name); a service
    refuses a peer whose certificate does not name the party it claims to be. Copy to each host only its
    own PARTY.pem and PARTY.key, and ca.pem.

    Example: ppfr certs deploy/certs --client alice --client bob
    """
    try:
        if parties:
            made = [issue(directory, party, directory, days) for party in parties]
        else:
            if (directory / "ca.key").exists():
                raise CertificateError(f"{directory} already holds a CA: use --party to add or renew a party")
            made = make_deployment(directory, clients or ("local",), days)
    except CertificateError as e:
        raise click.ClickException(str(e)) from None
    rows = [{"party": m.party, "cert": str(m.cert), "key": str(m.key)} for m in made]
    if as_json:
        click.echo(json.dumps({"directory": str(directory), "issued": rows}))
        return
    for row in rows:
        click.echo(f"{row['party']:>16s}  {row['cert']}  {row['key']} (0600)")
    services = ", ".join(SERVICES)
    click.echo(f"each host gets ca.pem and its own PARTY.pem/PARTY.key ({services}, "
               f"{client_party('NAME')}); keep ca.key off the service hosts", err=True)


def _serve(make_service, name):
    """Run a service until SIGTERM or SIGINT, then stop it cleanly (sessions aborted with a reason)."""
    import logging
    import signal
    import threading

    from .config import ConfigError
    from .service import ServiceError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        service = make_service()
    except (ConfigError, ServiceError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"{name} listening on {service.address}", err=True)
    while not stop.wait(1.0):
        pass
    service.stop()
    click.echo(f"{name} stopped", err=True)


@command()
@click.option("--party", type=click.Choice(["0", "1"]), required=True, help="Which server this is.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The server's own directory (made 0700, locked while it runs): its shares and counts.")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where clients (and server 0) connect.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The server's YAML config: its certificate, key and CA, the addresses of server 1 and "
                   "the dealer, per-client query budgets (see ppfr/net/config.py).")
def server(party, data, listen, config_path):
    """Run server 0 or 1 as a network service, until SIGTERM.

    Serves any number of client sessions at once, each with its own id, over TLS 1.3 with mutual
    authentication: a peer must present a certificate of the deployment's CA naming the party it claims
    to be (`ppfr certs`). A session runs named programs (training, recognition, ...) on this server's
    shares; no code crosses the wire. Each client is identified by its certificate and its queries are
    counted against its budget. One log line per session on stderr. SIGTERM aborts running sessions
    with a reason and stops.

    Example: ppfr server --party 0 --data /var/lib/ppfr/server0 --listen 0.0.0.0:7443 --config server0.yaml
    """
    import os

    os.umask(0o077)  # before anything that writes (ppfr.atomic reads the umask once): shares are 0600, dirs 0700
    from .config import ServiceConfig
    from .service import ServerService

    index = int(party)
    _serve(lambda: ServerService(index, data, listen, ServiceConfig.load(config_path, f"server{index}")),
           f"server{index}")


@command()
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where the two servers connect.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The dealer's YAML config: its certificate, key and CA (see ppfr/net/config.py).")
def dealer(listen, config_path):
    """Run the dealer (correlated randomness for the servers) as a network service, until SIGTERM.

    Accepts only server 0 and server 1 (by their certificates), matches their two links of a session by
    its id, and answers their requests; it sees no input, only the kinds and shapes of what is asked.

    Example: ppfr dealer --listen 0.0.0.0:7444 --config dealer.yaml
    """
    from .config import ServiceConfig
    from .service import DealerService

    _serve(lambda: DealerService(listen, ServiceConfig.load(config_path, "dealer")), "dealer")
