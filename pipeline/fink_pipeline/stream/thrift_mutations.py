"""HBase Thrift's mutateRows call, written straight from columns of cells.

happybase makes a Mutation object per cell and a BatchMutation per row, which
thriftpy2 then serialises: about 70 µs of a task's time per alert of 40 cells,
more than the Thrift gateway spends receiving them. In Thrift's binary
protocol the call is a few fixed byte strings around each row key, qualifier
and value, so it is written here directly from the cells' columns: the same
bytes thriftpy2 writes (a test compares them), for a fifth of the client's
CPU (bench/hbase_writes.py).
The server's answer is read with thriftpy2, so its errors (IOError,
IllegalArgument, TApplicationException) are raised as happybase raised them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from happybase.connection import Hbase
from thriftpy2.protocol import TBinaryProtocol
from thriftpy2.thrift import TApplicationException, TMessageType
from thriftpy2.transport import TBufferedTransport, TSocket

# b"family:qualifier" and one value per row, None where the row stores nothing
CellColumn = tuple[bytes, Sequence[bytes | None]]

_I32 = struct.Struct(">i").pack
# Thrift binary protocol: a field is its type (1 byte) and id (i16), then its value
_BOOL, _STRING, _STRUCT, _MAP, _LIST = b"\x02", b"\x0b", b"\x0c", b"\x0d", b"\x0f"
_STOP = b"\x00"
_STRICT_CALL = _I32(-0x7FFEFFFF)  # VERSION_1 (0x80010000) | CALL (1), as a signed i32
_METHOD = b"mutateRows"
# Mutation {1: isDelete = false, 2: column, 3: value, 4: writeToWAL = true}
_MUTATION_VALUE = _STRING + b"\x00\x03"
_MUTATION_END = _BOOL + b"\x00\x04\x01" + _STOP
# mutateRows_args {..., 3: attributes = {}} (map<Text, Text> of size 0), then the struct's end
_NO_ATTRIBUTES = _MAP + b"\x00\x03" + _STRING + _STRING + _I32(0) + _STOP


def _mutation_head(qualifier: bytes) -> bytes:
    return _BOOL + b"\x00\x01\x00" + _STRING + b"\x00\x02" + _I32(len(qualifier)) + qualifier


def encoded_rows(keys: Sequence[bytes], columns: Sequence[CellColumn]) -> list[tuple[bytes, int]]:
    """Each row's BatchMutation {1: row, 2: mutations} and its cell count; rows
    without a cell are left out (a put of nothing is not a put)."""
    cells: list[list[bytes]] = [[] for _ in keys]
    for qualifier, values in columns:
        head = _mutation_head(qualifier) + _MUTATION_VALUE
        for row, value in zip(cells, values, strict=True):
            if value is not None:
                row.append(head + _I32(len(value)) + value + _MUTATION_END)
    return [
        (
            _STRING
            + b"\x00\x01"
            + _I32(len(key))
            + key
            + _LIST
            + b"\x00\x02"
            + _STRUCT
            + _I32(len(row))
            + b"".join(row)
            + _STOP,
            len(row),
        )
        for key, row in zip(keys, cells, strict=True)
        if row
    ]


def requests(
    table: bytes, rows: Sequence[tuple[bytes, int]], cells_per_request: int
) -> Iterator[bytes]:
    """mutateRows calls of whole rows, each closed once it holds `cells_per_request` cells."""
    start = 0
    while start < len(rows):
        stop, cells = start, 0
        while stop < len(rows) and cells < cells_per_request:
            cells += rows[stop][1]
            stop += 1
        yield call(table, [row for row, _ in rows[start:stop]])
        start = stop


def call(table: bytes, rows: Sequence[bytes]) -> bytes:
    """The whole message: mutateRows(tableName, rowBatches, attributes = {})."""
    return b"".join(
        [
            _STRICT_CALL,
            _I32(len(_METHOD)),
            _METHOD,
            _I32(0),  # sequence id: one call at a time on a connection
            _STRING + b"\x00\x01" + _I32(len(table)) + table,
            _LIST + b"\x00\x02" + _STRUCT + _I32(len(rows)),
            *rows,
            _NO_ATTRIBUTES,
        ]
    )


class ThriftMutations:
    """One connection to the HBase Thrift server that sends encoded mutateRows calls."""

    def __init__(self, host: str, port: int, timeout_ms: int) -> None:
        self._transport = TBufferedTransport(TSocket(host, port, socket_timeout=timeout_ms))
        self._protocol = TBinaryProtocol(self._transport, decode_response=False)
        self._transport.open()

    def send(self, message: bytes) -> None:
        """Send one call and wait for its answer; the server's refusal is raised."""
        self._transport.write(message)
        self._transport.flush()
        _, kind, _ = self._protocol.read_message_begin()
        if kind == TMessageType.EXCEPTION:
            failure = TApplicationException()
            failure.read(self._protocol)
            self._protocol.read_message_end()
            raise failure
        result = Hbase.mutateRows_result()
        result.read(self._protocol)
        self._protocol.read_message_end()
        for refusal in (result.io, result.ia):
            if refusal is not None:
                raise refusal

    def close(self) -> None:
        self._transport.close()
