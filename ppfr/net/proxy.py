"""A delaying TCP proxy for tests and benchmarks: latency without `tc netem`, on loopback only.

Every byte that enters in either direction leaves rtt/2 seconds later, in order (bandwidth is not
limited), so a request and its answer cross in one RTT more than without the proxy. TLS passes through
untouched: the parties check certificates against party names, not addresses.

    with DelayProxy(("127.0.0.3", 7001), rtt=0.040) as proxy:   # proxy.address: "127.0.0.1:PORT"
        ...dial proxy.address instead of 127.0.0.3:7001...

    python -m ppfr.net.proxy --listen 127.0.0.1:9001 --target 127.0.0.3:7001 --rtt-ms 40
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import threading
import time

CHUNK = 1 << 16


def _loopback(host: str) -> str:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"the delaying proxy works on loopback addresses only, not {host}")
    return host


class DelayProxy:
    """Listens on `listen` (a free port of 127.0.0.1 by default) and forwards to `target`, delaying
    each direction by rtt / 2. Runs its own event loop in a thread."""

    def __init__(self, target, rtt: float, listen=("127.0.0.1", 0)):
        self.target = (_loopback(target[0]), int(target[1]))
        self.listen = (_loopback(listen[0]), int(listen[1]))
        self.delay = rtt / 2
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ppfr-delay-proxy")
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError(f"the proxy could not listen on {self.listen}")
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"

    def _run(self):
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(self._connect, *self.listen))
        finally:
            self._ready.set()
        self._loop.run_forever()

    async def _connect(self, client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        with contextlib.suppress(asyncio.CancelledError):  # cancelled: the proxy is closing
            await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer),
                                 return_exceptions=True)

    async def _pipe(self, reader, writer):
        """Forward reader to writer, each chunk `delay` after it arrived; the end (EOF) too."""
        pending: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await pending.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    break
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(CHUNK):
                pending.put_nowait((time.monotonic() + self.delay, data))
        except ConnectionError:
            pass
        pending.put_nowait((time.monotonic() + self.delay, None))
        with contextlib.suppress(ConnectionError):
            await sender
        writer.close()

    def close(self):
        async def stop():
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None):
    from .link import parse_address

    parser = argparse.ArgumentParser(description="Forward TCP with an added round-trip time (loopback only).")
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round-trip time to add, milliseconds")
    args = parser.parse_args(argv)
    proxy = DelayProxy(parse_address(args.target), args.rtt_ms / 1e3, parse_address(args.listen))
    print(f"forwarding {proxy.address} -> {args.target} with {args.rtt_ms:g} ms added RTT", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    proxy.close()


if __name__ == "__main__":
    main()
