"""Thin adapter over happybase (HBase's Thrift gateway): observe, create and drop tables.

A connection lives for one reconcile pass only: Thrift connections do not
survive an HBase restart, and a pass is rare enough that reconnecting is cheap.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

import happybase
from thriftpy2.thrift import TException
from thriftpy2.transport import TTransportException

from .desired import FamilyState, TableState, family_from_hbase
from .errors import ServerRejected, ServerUnreachable

_NOT_FOUND = "TableNotFoundException"


class HBaseAdmin:
    """The tables of one HBase cluster, reached through its Thrift gateway."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.address = f"{host}:{port}"
        self._host = host
        self._port = port
        self._timeout_ms = int(timeout * 1000)
        self._connection: happybase.Connection | None = None

    def __enter__(self) -> HBaseAdmin:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(TException, OSError):
                self._connection.close()
            self._connection = None

    def _unreachable(self, error: object) -> ServerUnreachable:
        return ServerUnreachable("HBase", self.address, str(error) or type(error).__name__)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one Thrift call, translating transport failures into ServerUnreachable."""
        try:
            if self._connection is None:
                self._connection = happybase.Connection(
                    self._host, self._port, timeout=self._timeout_ms, autoconnect=True
                )
            return fn(self._connection, *args, **kwargs)
        except (TTransportException, OSError, EOFError) as error:
            self.close()
            raise self._unreachable(error) from error
        except TException as error:
            message = _message(error)
            if _NOT_FOUND in message:
                raise
            if "AlreadyExists" in type(error).__name__:
                raise
            # the gateway answers but HBase behind it does not (master or region server down)
            if any(s in message for s in ("ConnectException", "RetriesExhausted", "Master")):
                raise self._unreachable(message.splitlines()[0]) from error
            raise ServerRejected("HBase", what, message.splitlines()[0]) from error

    def families(self, table: str) -> dict[str, FamilyState] | None:
        """The column families of a table, or None when it does not exist."""
        try:
            descriptors = self._call(table, lambda c: c.table(table).families())
        except TException as error:
            if _NOT_FOUND in _message(error):
                return None
            raise
        return {_text(name): family_from_hbase(_text(name), d) for name, d in descriptors.items()}

    def exists(self, table: str) -> bool:
        names = self._call(table, lambda c: c.tables())
        return table.encode() in names

    def create(self, table: TableState) -> bool:
        """Create the table; False if it already existed (another pass created it)."""
        families = {
            f.name: {
                "max_versions": f.max_versions,
                **({"time_to_live": f.ttl_seconds} if f.ttl_seconds is not None else {}),
            }
            for f in table.families
        }
        try:
            self._call(table.name, lambda c: c.create_table(table.name, families))
        except TException as error:
            if "AlreadyExists" in type(error).__name__:
                return False
            raise
        return True

    def drop(self, table: str) -> bool:
        """Disable then delete the table; False if it was already gone."""
        if not self.exists(table):
            return False

        def disable_and_delete(connection: happybase.Connection) -> None:
            if connection.is_table_enabled(table):
                connection.disable_table(table)
            connection.delete_table(table)

        try:
            self._call(table, disable_and_delete)
        except TException as error:
            if _NOT_FOUND in _message(error):
                return False
            raise
        return True


def _message(error: TException) -> str:
    message = getattr(error, "message", None) or str(error)
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def _text(name: bytes | str) -> str:
    text = name.decode() if isinstance(name, bytes) else name
    return text.rstrip(":")
