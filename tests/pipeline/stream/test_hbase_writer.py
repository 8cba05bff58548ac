"""HBaseWriter against the real Thrift server, through a proxy that can drop connections.

docs/pipeline.md: each Python worker keeps one Thrift connection, "reconnected
once if it drops". A restarted Thrift server, an idle timeout or a load
balancer drop a connection under a long-lived writer; the proxy does exactly
that, without stopping the server every other test uses.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator

import happybase
import Hbase_thrift
import pytest

from fink_pipeline.stream.sinks import HBaseWriter
from fink_pipeline.stream.thrift_mutations import ThriftMutations
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


class DroppingProxy:
    """Forwards TCP to a server; `drop()` cuts every open connection, `close()` stops listening."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.accepted = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for s in (source, target):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self.sockets.clear()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accepting thread; new connections refused
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.drop()


@pytest.fixture
def table(stack: Endpoints, unique_name: str) -> Iterator[str]:
    name = unique_name.replace("-", "_")
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    connection.create_table(name, {"d": {}})
    try:
        yield name
    finally:
        connection.delete_table(name, disable=True)
        connection.close()


def rows_of(stack: Endpoints, table: str) -> dict[bytes, dict[bytes, bytes]]:
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        return dict(connection.table(table).scan())
    finally:
        connection.close()


def test_a_dropped_connection_is_reopened_once_and_the_rows_written(
    stack: Endpoints, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = DroppingProxy(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        writer = HBaseWriter("127.0.0.1", proxy.port, table)
        writer.put([b"a"], [(b"d:x", [b"1"])])
        proxy.drop()  # the server side goes away under the open connection
        with caplog.at_level(logging.WARNING, logger="fink_pipeline.stream.sinks"):
            writer.put([b"b", b"c"], [(b"d:x", [b"2", b"3"])], batch_id=4)
        assert proxy.accepted == 2  # one reconnection
        assert "HBase connection lost" in caplog.text and "reconnecting once" in caplog.text
        assert rows_of(stack, table) == {
            b"a": {b"d:x": b"1"},
            b"b": {b"d:x": b"2"},
            b"c": {b"d:x": b"3"},
        }
        writer.close()
    finally:
        proxy.close()


def test_an_unreachable_server_fails_after_one_reconnection_naming_it(
    stack: Endpoints, table: str
) -> None:
    proxy = DroppingProxy(stack.hbase_thrift_host, stack.hbase_thrift_port)
    writer = HBaseWriter("127.0.0.1", proxy.port, table)
    writer.put([b"a"], [(b"d:x", [b"1"])])
    proxy.close()  # the server is gone: the connection drops and reconnecting is refused
    with pytest.raises(ConnectionError) as raised:
        writer.put([b"b"], [(b"d:x", [b"2"])], batch_id=7)
    assert str(raised.value).startswith(
        f"HBase Thrift server 127.0.0.1:{proxy.port} failed while writing table {table} "
        "(micro-batch 7): "
    )
    assert proxy.accepted == 1
    assert rows_of(stack, table) == {b"a": {b"d:x": b"1"}}


def test_rows_go_in_requests_of_about_twenty_thousand_cells(
    stack: Endpoints, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 alerts of 40 cells are 2 requests, not 40 (nor 1,000)."""
    sent: list[int] = []  # cells per request
    original = ThriftMutations.send

    def counting_send(connection: ThriftMutations, message: bytes) -> None:
        # each Mutation ends with writeToWAL = true and its struct's stop; the
        # values here are digits, so these bytes occur nowhere else
        sent.append(message.count(b"\x02\x00\x04\x01\x00"))
        original(connection, message)

    monkeypatch.setattr(ThriftMutations, "send", counting_send)
    writer = HBaseWriter(stack.hbase_thrift_host, stack.hbase_thrift_port, table)
    keys = [f"row{i:04d}".encode() for i in range(1000)]
    columns = [
        (f"d:c{j}".encode(), [str(i * j).encode() if i % 10 or j else None for i in range(1000)])
        for j in range(40)
    ]
    writer.put(keys, columns)
    writer.close()
    # rows of 40 cells, 39 for every tenth: a request closes with the row that
    # takes it to 20,000 cells (502 rows, 20,029 cells); the rest is the second
    assert sent == [20_029, 39_900 - 20_029]
    stored = rows_of(stack, table)
    assert len(stored) == 1000 and stored[b"row0999"][b"d:c39"] == str(999 * 39).encode()
    assert stored[b"row0010"] == {f"d:c{j}".encode(): str(10 * j).encode() for j in range(1, 40)}


def test_a_refusal_of_the_server_is_raised_not_lost(stack: Endpoints, unique_name: str) -> None:
    """The calls are written by hand: the server's answer must still be read and raised."""
    missing = unique_name.replace("-", "_")
    writer = HBaseWriter(stack.hbase_thrift_host, stack.hbase_thrift_port, missing)
    with pytest.raises(Hbase_thrift.IOError, match=missing):
        writer.put([b"a"], [(b"d:x", [b"1"])])
    # the connection is still in step: the next call on it is answered as its own
    with pytest.raises(Hbase_thrift.IOError, match=missing):
        writer.put([b"b"], [(b"d:x", [b"2"])])
    writer.close()
