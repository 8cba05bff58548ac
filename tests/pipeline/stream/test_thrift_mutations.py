"""The mutateRows calls the tasks write by hand are the bytes thriftpy2 would write.

The real server's side (rows stored, refusals raised, a dropped connection) is
in test_hbase_writer.py; here, the encoding against thriftpy2's own, which is
what happybase sent before.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from happybase.connection import Hbase
from Hbase_thrift import BatchMutation, Mutation
from thriftpy2.protocol import TBinaryProtocol
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TMemoryBuffer

from fink_pipeline.stream import thrift_mutations
from fink_pipeline.stream.rows import cells_by_row


def thriftpy2_call(table: bytes, keys: list[bytes], cells: list[dict[bytes, bytes]]) -> bytes:
    """happybase's Batch.send: a Mutation per cell, a BatchMutation per row with cells."""
    batches = [
        BatchMutation(
            row=key,
            mutations=[
                Mutation(isDelete=False, column=column, value=value, writeToWAL=True)
                for column, value in row.items()
            ],
        )
        for key, row in zip(keys, cells, strict=True)
        if row
    ]
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.write_message_begin("mutateRows", TMessageType.CALL, 0)
    Hbase.mutateRows_args(tableName=table, rowBatches=batches, attributes={}).write(protocol)
    protocol.write_message_end()
    return buffer.getvalue()


def test_a_call_is_the_bytes_thriftpy2_writes_for_the_same_rows() -> None:
    keys = [b"ZTF26aaa_2461000.5000000", b"no-cells", b"\xc3\xa9t\xc3\xa9", b""]
    columns = [
        (b"i:objectId", [b"ZTF26aaa", None, "é".encode(), b"x"]),
        (b"i:magpsf", [b"18.25", None, None, b""]),  # an empty value is a value
        (b"d:prv_magpsf", [b"[19.0, null]", None, b"[]", None]),
        (b"cutouts:science", [bytes(range(256)) * 40, None, None, None]),
    ]
    rows = thrift_mutations.encoded_rows(keys, columns)
    assert [cells for _, cells in rows] == [4, 2, 2]  # the row without a cell is left out
    message = thrift_mutations.call(b"ns_table", [row for row, _ in rows])
    assert message == thriftpy2_call(b"ns_table", keys, cells_by_row(columns, len(keys)))


def test_no_row_makes_no_call_and_an_empty_call_is_still_thriftpy2s() -> None:
    assert list(thrift_mutations.requests(b"t", [], 100)) == []
    assert thrift_mutations.call(b"t", []) == thriftpy2_call(b"t", [], [])


def test_requests_hold_whole_rows_and_close_once_they_reach_the_cell_count() -> None:
    keys = [f"r{i}".encode() for i in range(7)]
    sizes = [3, 3, 1, 5, 2, 2, 4]  # cells per row
    columns = [
        (f"d:c{c}".encode(), [b"v" if c < size else None for size in sizes]) for c in range(5)
    ]
    rows = thrift_mutations.encoded_rows(keys, columns)
    sent = list(thrift_mutations.requests(b"t", rows, cells_per_request=6))
    # 3+3 | 1+5 | 2+2+4 (the last one passes 6 with the row that reached it)
    groups = [[0, 1], [2, 3], [4, 5, 6]]
    cells = cells_by_row(columns, len(keys))
    assert sent == [
        thriftpy2_call(b"t", [keys[i] for i in group], [cells[i] for i in group])
        for group in groups
    ]


def test_rows_encoded_a_block_at_a_time_from_arrow_columns_are_thriftpy2s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Columns as Arrow arrays (texts and bytes, with nulls, sliced) or Python lists, rows
    encoded three at a time: rows without a cell at a block's edges are left out, and the
    call is still the bytes thriftpy2 writes."""
    monkeypatch.setattr(thrift_mutations, "ROWS_AT_ONCE", 3)
    keys = [f"row{i}".encode() for i in range(8)]
    texts = pa.array(["a", None, "é", None, None, "", "z", None, "cut"], pa.string()).slice(1)
    columns = [
        (b"i:text", texts),
        (b"i:raw", pa.array([b"\x00\xff", None, None, None, None, b"r", None, None], pa.binary())),
        (b"d:list", [b"[1]", None, None, None, None, None, None, b"[2]"]),
    ]
    rows = thrift_mutations.encoded_rows(keys, columns)
    assert [cells for _, cells in rows] == [2, 1, 1, 2, 2]  # rows 2, 3 and 6 have no cell
    message = thrift_mutations.call(b"t", [row for row, _ in rows])
    assert message == thriftpy2_call(b"t", keys, cells_by_row(columns, len(keys)))
