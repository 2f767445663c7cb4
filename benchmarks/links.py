"""Round-trip cost of the candidate link layers on loopback, with mutual TLS 1.3 (the choice in README,
"Network services"):

  threads   ppfr/net/link.py as used: the caller encrypts and writes, a reader thread per link decrypts
            and hands frames over a queue (TLS through memory BIOs, tls.TlsStream), heartbeats on; the
            message is a uint8 array in a ppfr frame
  direct    a blocking ssl socket, the caller reads and writes itself (a lower bound: one thread only)
  asyncio   asyncio streams with ssl, driven from a synchronous caller (protocol code is synchronous)
  grpc      grpcio bidirectional stream of bytes messages (if grpcio is installed)

Each echoes a message of SIZE bytes N times; figures are the median round trip in microseconds.

    python benchmarks/links.py [--repeats 2000] [--sizes 64,1048576]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import queue
import socket
import struct
import sys
import tempfile
import threading

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ppfr.net.certs import make_deployment  # noqa: E402
from publish import median_seconds, publish  # noqa: E402
from ppfr.net.tls import Identity, client_context, server_context  # noqa: E402

HOST = "127.0.0.1"
LENGTH = struct.Struct("<Q")


def recv_exact(sock, n):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise EOFError
        got += k
    return buf


def send_framed(sock, data):
    if len(data) < 65536:
        sock.sendall(LENGTH.pack(len(data)) + data)
    else:
        sock.sendall(LENGTH.pack(len(data)))
        sock.sendall(data)


def recv_framed(sock):
    return recv_exact(sock, LENGTH.unpack(recv_exact(sock, 8))[0])


def echo_server(ids):
    """A blocking TLS echo server in a thread; returns its port."""
    listener = socket.create_server((HOST, 0))
    context = server_context(ids["server0"])

    def serve():
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(conn, server_side=True) as tls:
            try:
                while True:
                    send_framed(tls, recv_framed(tls))
            except (EOFError, OSError):
                pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def dial(ids, port):
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client_context(ids["client-bench"]).wrap_socket(sock, server_hostname="server0")


def timed(round_trip, repeats):
    """Median round trip in microseconds."""
    return median_seconds(round_trip, repeats) * 1e6


def bench_direct(ids, data, repeats):
    with dial(ids, echo_server(ids)) as tls:
        def rt():
            send_framed(tls, data)
            recv_framed(tls)
        return timed(rt, repeats)


def bench_threads(ids, data, repeats):
    from ppfr.net.link import Listener, dial

    accepted = queue.SimpleQueue()

    def echo(link):
        accepted.put(link)
        try:
            while True:
                link.send(link.recv())
        except Exception:  # noqa: BLE001 - the benchmark closed the link
            pass

    listener = Listener(f"{HOST}:0", "server0", ids["server0"], echo)
    link = dial(listener.address, "client-bench", "server0", ids["client-bench"])
    message = np.frombuffer(data, dtype=np.uint8)

    def rt():
        link.send(message)
        link.recv()
    result = timed(rt, repeats)
    link.close()
    accepted.get(timeout=5).close()
    listener.close()
    return result


def bench_asyncio(ids, data, repeats):
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def handle(reader, writer):
        try:
            while True:
                (n,) = LENGTH.unpack(await reader.readexactly(8))
                writer.write(LENGTH.pack(n) + await reader.readexactly(n))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    async def setup():
        server = await asyncio.start_server(handle, HOST, 0, ssl=server_context(ids["server0"]))
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_context(ids["client-bench"]),
                                                       server_hostname="server0")
        return server, reader, writer

    server, reader, writer = asyncio.run_coroutine_threadsafe(setup(), loop).result(30)

    async def round_trip():
        writer.write(LENGTH.pack(len(data)) + data)
        await writer.drain()
        (n,) = LENGTH.unpack(await reader.readexactly(8))
        return await reader.readexactly(n)

    result = timed(lambda: asyncio.run_coroutine_threadsafe(round_trip(), loop).result(30), repeats)

    async def shutdown():
        writer.close()
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    return result


def bench_grpc(ids, data, repeats):
    import grpc

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    identity = lambda name: (read(ids[name].key), read(ids[name].cert))  # noqa: E731
    ca = read(ids["server0"].ca)
    method = "/ppfr.Bench/Echo"
    handler = grpc.method_handlers_generic_handler("ppfr.Bench", {
        "Echo": grpc.stream_stream_rpc_method_handler(lambda requests, context: (r for r in requests))})
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(4),
                         options=[("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port(f"{HOST}:0", grpc.ssl_server_credentials(
        [identity("server0")], root_certificates=ca, require_client_auth=True))
    server.start()
    credentials = grpc.ssl_channel_credentials(ca, *identity("client-bench"))
    channel = grpc.secure_channel(f"{HOST}:{port}", credentials, options=[
        ("grpc.ssl_target_name_override", "server0"), ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20)])
    stream = channel.stream_stream(method)
    outbox = queue.SimpleQueue()
    responses = stream(iter(outbox.get, None))

    def rt():
        outbox.put(data)
        next(responses)
    result = timed(rt, repeats)
    outbox.put(None)
    channel.close()
    server.stop(0)
    return result


LAYERS = {"direct": bench_direct, "threads": bench_threads, "asyncio": bench_asyncio, "grpc": bench_grpc}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--sizes", default="64,1048576")
    parser.add_argument("--layers", default=",".join(LAYERS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        make_deployment(tmp, clients=("bench",))
        ids = {p: Identity.from_dir(tmp, p) for p in ("server0", "client-bench")}
        results = {}
        for size in map(int, args.sizes.split(",")):
            data = os.urandom(size)
            repeats = args.repeats if size < 65536 else max(20, args.repeats // 20)
            for layer in args.layers.split(","):
                try:
                    us = LAYERS[layer](ids, data, repeats)
                except ImportError as e:
                    print(f"{layer}: skipped ({e})", file=sys.stderr)
                    continue
                results.setdefault(layer, {})[str(size)] = round(us, 1)
                print(f"{layer:8s} {size:>8d} B  median round trip {us:9.1f} us ({repeats} repeats)",
                      file=sys.stderr)
    publish({"benchmark": "links", "repeats": args.repeats, "round_trip_us": results})


if __name__ == "__main__":
    main()
