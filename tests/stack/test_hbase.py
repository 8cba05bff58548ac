"""The local HBase is real: happybase reaches it through the Thrift server."""

from __future__ import annotations

import happybase
import pytest

from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


def test_table_put_and_scan(stack: Endpoints, unique_name: str) -> None:
    table_name = unique_name.replace("-", "_")
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        connection.create_table(table_name, {"i": {"max_versions": 1}, "d": {}})
        try:
            families = connection.table(table_name).families()
            assert set(families) == {b"i", b"d"}
            assert families[b"i"]["max_versions"] == 1

            table = connection.table(table_name)
            with table.batch() as batch:
                for n in range(50):
                    batch.put(
                        f"ZTF21abc{n:03d}_2459000.{n}".encode(),
                        {b"i:ra": str(10 + n).encode(), b"d:score": b"0.5"},
                    )
            rows = dict(table.scan(row_prefix=b"ZTF21abc01"))
            assert sorted(rows) == [f"ZTF21abc{n:03d}_2459000.{n}".encode() for n in range(10, 20)]
            assert rows[b"ZTF21abc012_2459000.12"] == {b"i:ra": b"22", b"d:score": b"0.5"}
            assert sum(1 for _ in table.scan()) == 50
        finally:
            connection.delete_table(table_name, disable=True)
        assert table_name.encode() not in connection.tables()
    finally:
        connection.close()
