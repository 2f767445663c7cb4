"""`ppfr certs`: the deployment's CA and one certificate per party."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .certs import DEFAULT_DAYS, SERVICES, CertificateError, client_party, issue, make_deployment


@click.command()
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
