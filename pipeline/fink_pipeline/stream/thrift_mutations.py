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
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from happybase.connection import Hbase
from thriftpy2.protocol import TBinaryProtocol
from thriftpy2.thrift import TApplicationException, TMessageType
from thriftpy2.transport import TBufferedTransport, TSocket

# b"family:qualifier" and one value per row, None where the row stores nothing (a
# Python sequence, or an Arrow binary or string array with nulls)
CellColumn = tuple[bytes, Sequence[bytes | None] | pa.Array]

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
    without a cell are left out (a put of nothing is not a put).

    Built a column at a time in Arrow: each cell's Mutation is its column's fixed
    head, the value's length and the value, then each row's cells are joined in
    the columns' order. Cell by cell in Python this cost 12.6 µs of each light
    alert's time in a task (47 cells), against about 8. Rows go ROWS_AT_ONCE at a
    time, so the copies of a chunk of full-size alerts (60 KB of cutouts each)
    are made a block at a time.
    """
    columns = [(qualifier, _binary(values)) for qualifier, values in columns]
    encoded: list[tuple[bytes, int]] = []
    for start in range(0, len(keys), ROWS_AT_ONCE):
        stop = min(start + ROWS_AT_ONCE, len(keys))
        block = [(qualifier, values.slice(start, stop - start)) for qualifier, values in columns]
        encoded += _encoded_block(keys[start:stop], block)
    return encoded


ROWS_AT_ONCE = 2_000


def _encoded_block(
    keys: Sequence[bytes], columns: list[tuple[bytes, pa.Array]]
) -> list[tuple[bytes, int]]:
    count = len(keys)
    cells = np.zeros(count, np.int64)
    mutations = []
    for qualifier, column in columns:
        cells += column.is_valid().to_numpy(zero_copy_only=False)
        head = _mutation_head(qualifier) + _MUTATION_VALUE
        mutation = pc.binary_join_element_wise(
            _scalar(head), _lengths(column), column, _scalar(_MUTATION_END), _scalar(b"")
        )  # null where the value is null: emptied, since Arrow's null skipping while
        # joining drops the rows whose members are all null
        mutations.append(pc.fill_null(mutation, _scalar(b"")))
    joined = (
        pc.binary_join_element_wise(*mutations, _scalar(b""))
        if mutations
        else pa.array([b""] * count, pa.large_binary())
    )
    row_keys = _binary(list(keys))
    rows = pc.binary_join_element_wise(
        _scalar(_STRING + b"\x00\x01"),
        _lengths(row_keys),
        row_keys,
        _scalar(_LIST + b"\x00\x02" + _STRUCT),
        _big_endian_i32(cells),
        joined,
        _scalar(_STOP),
        _scalar(b""),
    )
    encoded = _cut(rows)
    return [(encoded[row], int(cells[row])) for row in np.flatnonzero(cells).tolist()]


def _binary(values: Sequence[bytes | None] | pa.Array) -> pa.Array:
    """Cell values as Arrow large_binary (64-bit offsets: a chunk's cutouts may pass 2 GiB)."""
    if not isinstance(values, pa.Array):
        values = pa.array(values, pa.large_binary())
    return values.cast(pa.large_binary())


def _scalar(value: bytes) -> pa.Scalar:
    return pa.scalar(value, pa.large_binary())


def _lengths(column: pa.Array) -> pa.Array:
    """Each value's length as Thrift's i32 (4 bytes, big-endian); 0 for a null."""
    lengths = pc.binary_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    return _big_endian_i32(lengths)


def _big_endian_i32(numbers: np.ndarray) -> pa.Array:
    data = pa.py_buffer(numbers.astype(">i4").tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), len(numbers), [None, data]).cast(
        pa.large_binary()
    )


def binary_values(texts: pa.Array) -> list[bytes | None]:
    """Every value's bytes, None for a null: to_pylist makes a scalar object per value
    on the way, which costs more."""
    texts = _binary(texts)
    values: list[bytes | None] = list(_cut(texts))
    if texts.null_count:
        for position in np.flatnonzero(texts.is_null().to_numpy(zero_copy_only=False)).tolist():
            values[position] = None
    return values


def _cut(texts: pa.Array) -> list[bytes]:
    """Every large_binary value's bytes (a null's are empty), cut from its one data buffer."""
    _, offsets_buffer, data = texts.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64)[texts.offset : texts.offset + len(texts) + 1]
    whole = data.to_pybytes() if data is not None else b""
    return [whole[start:end] for start, end in pairwise(offsets.tolist())]


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
