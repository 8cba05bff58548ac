"""Thin adapter over HBase's Thrift2 gateway: observe, create, alter and drop tables.

The Thrift2 protocol (served by the same hbase-thrift jar as Thrift1, started
as `org.apache.hadoop.hbase.thrift2.ThriftServer`) has the table-admin calls
Thrift1 lacks: a column family's versions, TTL, compression or bloom filter is
changed in place, families are added, and tables are created pre-split.
happybase keeps serving the data path (Thrift1).

A connection lasts as long as its HBaseAdmin (one reconcile pass, or one drift
sweep): Thrift connections do not survive an HBase restart, and reconnecting
is cheap. Transport failures become ServerUnreachable, refusals ServerRejected.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import thriftpy2
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TException
from thriftpy2.transport import TBufferedTransportFactory, TTransportException

from fink_core.calls import count
from fink_core.connections import Address
from fink_core.errors import ServerRejected, ServerUnreachable
from fink_core.resources import (
    DEFAULT_LAYOUT,
    HBASE_FOREVER,
    LAYOUT_ATTRIBUTE,
    FamilyState,
    ObservedTable,
    TableState,
)

_IDL = Path(__file__).with_name("hbase_admin.thrift")
# HBase's messages when the master or a region server cannot serve yet: worth retrying
_TRANSIENT = (
    "ConnectException",
    "RetriesExhausted",
    "MasterNotRunning",
    "PleaseHoldException",
    "ServerNotRunningYet",
    "NotServingRegion",
    "CallQueueTooBig",
)


@functools.cache
def _protocol() -> ModuleType:
    return thriftpy2.load(str(_IDL), module_name="fink_hbase_admin_thrift")


def table_name(name: str) -> Any:
    """'ns:table' or 'table' (namespace default) as a TTableName."""
    hb = _protocol()
    namespace, _, qualifier = name.rpartition(":")
    return hb.TTableName(ns=namespace.encode() if namespace else None, qualifier=qualifier.encode())


def _family_descriptor(family: FamilyState) -> Any:
    hb = _protocol()
    return hb.TColumnFamilyDescriptor(
        name=family.name.encode(),
        maxVersions=family.max_versions,
        timeToLive=family.ttl_seconds if family.ttl_seconds is not None else HBASE_FOREVER,
        compressionType=getattr(hb.TCompressionAlgorithm, family.compression),
        bloomnFilterType=getattr(hb.TBloomFilterType, family.bloom_filter),
    )


def _observed(descriptor: Any) -> ObservedTable:
    """A TTableDescriptor's families and the layout recorded on it."""
    recorded = (descriptor.attributes or {}).get(LAYOUT_ATTRIBUTE.encode())
    return ObservedTable(
        families={f.name: f for f in (family_state(c) for c in descriptor.columns or [])},
        layout=_text(recorded) if recorded else DEFAULT_LAYOUT,
    )


def family_state(descriptor: Any) -> FamilyState:
    """A Thrift2 column family descriptor in the operator's terms."""
    hb = _protocol()
    ttl = descriptor.timeToLive
    compression = hb.TCompressionAlgorithm._VALUES_TO_NAMES.get(descriptor.compressionType, "NONE")
    bloom = hb.TBloomFilterType._VALUES_TO_NAMES.get(descriptor.bloomnFilterType, "ROW")
    return FamilyState(
        name=_text(descriptor.name),
        max_versions=int(descriptor.maxVersions or 1),
        ttl_seconds=None if ttl is None or ttl >= HBASE_FOREVER or ttl <= 0 else int(ttl),
        compression=compression,
        bloom_filter=bloom,
    )


class HBaseAdmin:
    """The tables of one HBase cluster, reached through its Thrift2 gateway."""

    def __init__(self, address: Address, *, timeout: float = 5.0) -> None:
        self.address = address
        self._timeout_ms = int(timeout * 1000)
        self._client: Any = None

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
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def _unreachable(self, error: object) -> ServerUnreachable:
        detail = str(error) or type(error).__name__
        return ServerUnreachable("HBase", f"{self.address} (Thrift2)", detail)

    def _call(self, subject: str, method: str, *args: Any) -> Any:
        """One Thrift2 call; transport failures and a busy HBase become ServerUnreachable."""
        hb = _protocol()
        try:
            if self._client is None:
                self._client = make_client(
                    hb.THBaseService,
                    self.address.host,
                    self.address.port,
                    timeout=self._timeout_ms,
                    trans_factory=TBufferedTransportFactory(),
                    proto_factory=TBinaryProtocolFactory(),
                )
            count("hbase", method)
            return getattr(self._client, method)(*args)
        except (TimeoutError, TTransportException, OSError, EOFError) as error:
            self.close()
            raise self._unreachable(error) from error
        except (hb.TIOError, hb.TIllegalArgument) as error:
            message = (error.message or type(error).__name__).strip()
            if any(marker in message for marker in _TRANSIENT) or getattr(error, "canRetry", False):
                raise self._unreachable(_first_line(message)) from error
            raise _Refused(subject, message) from error
        except TException as error:
            self.close()
            raise self._unreachable(error) from error

    def cluster_id(self) -> str:
        """HBase's own id of the cluster (the same through any of its gateways)."""
        return str(self._call("cluster", "getClusterId"))

    def families(self, table: str) -> dict[str, FamilyState] | None:
        """The column families of a table, or None when it does not exist."""
        return self.describe([table])[table]

    def describe(self, tables: Iterable[str]) -> dict[str, dict[str, FamilyState] | None]:
        """Families of many tables in one request; None for those that do not exist."""
        wanted = sorted(set(tables))
        if not wanted:
            return {}
        try:  # HBase answers with the descriptors of the tables that exist
            descriptors = self._call(
                "tables", "getTableDescriptors", [table_name(t) for t in wanted]
            )
        except _Refused as refused:
            raise refused.rejected() from None
        found: dict[str, dict[str, FamilyState] | None] = dict.fromkeys(wanted)
        for descriptor in descriptors or []:
            name = _qualified(descriptor.tableName)
            found[name] = _observed(descriptor).families
        return found

    def exists(self, table: str) -> bool:
        try:
            return bool(self._call(table, "tableExists", table_name(table)))
        except _Refused as refused:
            raise refused.rejected() from None

    def observe(self, table: str) -> ObservedTable | None:
        """The table's families and recorded layout from one descriptor, or None when it
        does not exist (what a reconcile pass reads of a table it may change)."""
        try:
            descriptors = self._call(table, "getTableDescriptors", [table_name(table)])
        except _Refused as refused:
            raise refused.rejected() from None
        for descriptor in descriptors or []:
            return _observed(descriptor)
        return None

    def layout(self, table: str) -> str | None:
        """The layout recorded on the table, or None when it does not exist."""
        observed = self.observe(table)
        return observed.layout if observed is not None else None

    def create(self, table: TableState, attributes: Mapping[str, str] | None = None) -> bool:
        """Create the table (pre-split, in its namespace, its layout recorded on it);
        False if it already existed."""
        hb = _protocol()
        namespace = table.name.rpartition(":")[0]
        if namespace:
            self._ensure_namespace(namespace)
        attributes = {**(attributes or {}), LAYOUT_ATTRIBUTE: table.layout}
        descriptor = hb.TTableDescriptor(
            tableName=table_name(table.name),
            columns=[_family_descriptor(f) for f in table.families],
            attributes={k.encode(): v.encode() for k, v in attributes.items()},
        )
        splits = [k.encode() for k in table.split_keys] or None
        try:
            self._call(table.name, "createTable", descriptor, splits)
        except _Refused as refused:
            if "TableExistsException" in refused.message:
                return False
            raise refused.rejected() from None
        return True

    def _ensure_namespace(self, namespace: str) -> None:
        hb = _protocol()
        try:
            self._call(namespace, "getNamespaceDescriptor", namespace)
            return
        except _Refused as refused:
            if "NamespaceNotFoundException" not in refused.message:
                raise refused.rejected() from None
        try:
            self._call(namespace, "createNamespace", hb.TNamespaceDescriptor(name=namespace))
        except _Refused as refused:
            if "NamespaceExistException" not in refused.message:
                raise refused.rejected() from None

    def add_family(self, table: str, family: FamilyState) -> None:
        try:
            self._call(table, "addColumnFamily", table_name(table), _family_descriptor(family))
        except _Refused as refused:
            if "already exists" in refused.message or "InvalidFamilyOperation" in refused.message:
                current = (self.families(table) or {}).get(family.name)
                if current is not None:  # another pass added it
                    return
            raise refused.rejected() from None

    def modify_family(self, table: str, family: FamilyState) -> None:
        try:
            self._call(table, "modifyColumnFamily", table_name(table), _family_descriptor(family))
        except _Refused as refused:
            raise refused.rejected() from None

    def drop(self, table: str) -> bool:
        """Disable then delete the table; False if it was already gone."""
        name = table_name(table)
        if not self.exists(table):
            return False
        try:
            if self._call(table, "isTableEnabled", name):
                self._call(table, "disableTable", name)
            self._call(table, "deleteTable", name)
        except _Refused as refused:
            if refused.not_found:
                return False
            raise refused.rejected() from None
        return True


class _Refused(Exception):
    """HBase answered with an error; the caller decides whether it means 'not found'."""

    def __init__(self, subject: str, message: str) -> None:
        super().__init__(message)
        self.subject = subject
        self.message = message

    @property
    def not_found(self) -> bool:
        # HBase's TableNotFoundException carries the bare table name as its message
        return "TableNotFoundException" in self.message or self.message == self.subject

    def rejected(self) -> ServerRejected:
        return ServerRejected("HBase", self.subject, _first_line(self.message))


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def _qualified(name: Any) -> str:
    qualifier = _text(name.qualifier)
    namespace = _text(name.ns) if name.ns else ""
    return qualifier if namespace in ("", "default") else f"{namespace}:{qualifier}"


def _text(value: bytes | str) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    return text.rstrip(":")
