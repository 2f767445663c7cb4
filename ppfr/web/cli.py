"""`ppfr web`: the client role as a local web app (gallery, identify/verify, live camera, model)."""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import click

from ppfr.config import section
from ppfr.failures import command

_web = section("web")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def serve(app, host: str, port: int, on_ready=None):
    """Run `app` with uvicorn until interrupted; `on_ready(url)` once the socket listens."""
    import uvicorn

    sock = bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}/"
    config = uvicorn.Config(app, log_level="warning", ws_max_size=16 * 2**20, lifespan="off")
    server = uvicorn.Server(config)
    if on_ready:
        on_ready(url)
    server.run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), or a one-line error."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                                   f"choose another --port (0 takes any free one)") from None
    sock.listen(64)
    return sock


@command()
@click.option("--host", default=_web.get("host", "127.0.0.1"), show_default=True,
              help="Address to listen on. The default, loopback, lets only this machine's browser in; any other "
                   "address lets anyone who can reach it enrol and query faces.")
@click.option("--port", type=click.IntRange(0, 65535), default=int(_web.get("port", 8000)), show_default=True,
              help="Port to listen on (0: any free port; the URL is printed).")
@click.option("--gallery", "gallery_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Gallery folder (server0/, server1/: the servers' shares; client/: the names).  "
                   "[default: $PPFR_GALLERY or paths.gallery]")
@click.option("-m", "--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              default=section("paths").get("weights", "weights"), show_default=True,
              help="Model folder: where the Model page writes a trained model and the Live page's recognize mode "
                   "reads it.")
def web(host, port, gallery_dir, model_dir):
    """Serve the client as a local web app: enrol people, identify and verify photos, recognise faces live
    from the browser's camera, and train the classifier on shares.

    The app is the client: it decodes and embeds each photo or camera frame in memory and sends the servers
    only secret shares (in embedded mode the servers and the dealer run in this process, as with the other
    commands). Nothing it is sent is written to disk; the servers keep only their shares. Pages: /gallery,
    /identify, /live, /model. All assets are served by the app itself: it works offline and asks no other
    host for anything.

    Example: ppfr web --port 8000, then open http://127.0.0.1:8000/
    """
    from ppfr.gallery.cli import default_gallery

    from .app import create_app
    from .client import WebClient

    if not is_loopback(host):
        click.echo(f"warning: listening on {host}, not loopback: anyone who can reach this address can use the "
                   f"gallery", err=True)
    client = WebClient(gallery_dir or default_gallery(), model_dir)
    try:
        serve(create_app(client, [host]), host, port,
              on_ready=lambda url: click.echo(f"ppfr web: open {url} (Ctrl-C stops)", err=True))
    finally:
        client.close()
