"""A TCP relay from the pod network's host address to servers that listen on loopback only.

kube-apiserver, HBase's Thrift servers, the schema registry and HDFS's NameNode
and DataNode each bind one address. They stay on 127.0.0.1 for the host's
clients, and this relay (the node's `pod-gateway` service) listens on the
bridge's host address for the pods: the `kubernetes` Service's endpoint
(bridge address, port 6443), the Thrift ports, the registry's and HDFS's. It copies
bytes both ways and nothing else (TLS passes through end to end), so pods talk
to the very same servers. Kafka needs no relay: it has a listener of its own on
the bridge address, advertised as such.

Run as: python -m fink_stack.relay LISTEN_HOST:PORT=TARGET_HOST:PORT ...
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence


def parse_route(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    listen, _, target = text.partition("=")
    listen_host, _, listen_port = listen.rpartition(":")
    target_host, _, target_port = target.rpartition(":")
    return (listen_host, int(listen_port)), (target_host, int(target_port))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the half-close on (protocols may rely on it)."""
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _serve_connection(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _copy(client_reader, server_writer), _copy(server_reader, client_writer)
        )
    finally:
        for writer in (client_writer, server_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def serve(routes: Sequence[tuple[tuple[str, int], tuple[str, int]]]) -> None:
    servers = []
    for (host, port), target in routes:

        async def handle(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            target: tuple[str, int] = target,
        ) -> None:
            await _serve_connection(reader, writer, target)

        servers.append(await asyncio.start_server(handle, host, port, reuse_address=True))
        print(f"relaying {host}:{port} -> {target[0]}:{target[1]}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: Sequence[str] | None = None) -> int:
    routes = [parse_route(arg) for arg in (argv if argv is not None else sys.argv[1:])]
    if not routes:
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(serve(routes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
