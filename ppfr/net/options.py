"""The `--parties FILE` option of the client commands: run against `ppfr server`/`ppfr dealer` services
named in a parties file (ppfr/net/config.py) instead of embedded parties."""
from __future__ import annotations

import os

import click

from ppfr.mpc.session import PARTIES_ENV

HELP = ("Run against the network services named in this parties file (YAML: each server's HOST:PORT, the "
        "CA and this client's certificate and key; see README, 'Network services'). Without it the servers "
        "and the dealer run inside this command, as the config's mpc.parties says.")


def _use(ctx, param, value):
    if value:
        before = os.environ.get(PARTIES_ENV)
        os.environ[PARTIES_ENV] = str(value)  # open_session reads it, wherever the command opens one
        ctx.call_on_close(lambda: _restore(before))  # for the command's run only
    return value


def _restore(value):
    if value is None:
        os.environ.pop(PARTIES_ENV, None)
    else:
        os.environ[PARTIES_ENV] = value


def parties_option(command):
    return click.option("--parties", "parties_file", type=click.Path(dir_okay=False, exists=True), default=None,
                        expose_value=False, callback=_use, help=HELP)(command)
