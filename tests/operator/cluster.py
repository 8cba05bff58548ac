"""Small helpers for end-to-end tests: apply and read pipelines, look at Kafka and HBase."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import happybase
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from kubernetes import client

from fink_core import crd
from fink_core.resources import FamilyState
from fink_stack.endpoints import Endpoints

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T], timeout: float = 60, what: str | Callable[[], str] = "condition"
) -> T:
    """Poll until `probe` returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    described = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout}s waiting for {described}; last: {last!r}")


def condition_of(body: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (body.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}


class Pipelines:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def _args(self) -> tuple[str, str, str, str]:
        return crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        return self.custom.create_namespaced_custom_object(*self._args(), body)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(*self._args(), name)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(*self._args(), name, patch)

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(*self._args(), name)

    def condition(self, name: str, kind: str = "Ready") -> dict[str, Any]:
        return condition_of(self.get(name) or {}, kind)

    def wait_ready(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until Ready is True for the current generation; returns the resource."""

        def ready() -> dict[str, Any] | None:
            body = self.get(name)
            if not body:
                return None
            status = body.get("status") or {}
            generation = body["metadata"]["generation"]
            if status.get("observedGeneration") != generation:
                return None
            # judged on the same read as the body returned: a second read could be newer
            ok = condition_of(body, "Ready").get("status") == "True"
            return body if ok else None

        return wait_for(
            ready, timeout, f"{name} Ready; status {(self.get(name) or {}).get('status')}"
        )

    def wait_reason(self, name: str, kind: str, reason: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (c := self.condition(name, kind)).get("reason") == reason and c,
            timeout,
            lambda: f"{kind} reason {reason} on {name}; status {self._status(name)}",
        )

    def _status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def events(self, name: str) -> list[client.CoreV1Event]:
        items = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return items


class Kafka:
    def __init__(self, stack: Endpoints) -> None:
        self.admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})

    def topics(self) -> dict[str, int]:
        metadata = self.admin.list_topics(timeout=10)
        return {name: len(t.partitions) for name, t in metadata.topics.items()}

    def config(self, topic: str, key: str) -> str:
        resource = ConfigResource(ResourceType.TOPIC, topic)
        entries = self.admin.describe_configs([resource])[resource].result(timeout=10)
        return entries[key].value

    def set_config(self, topic: str, key: str, value: str) -> None:
        entry = ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        self.admin.incremental_alter_configs([resource])[resource].result(timeout=10)

    def delete(self, topic: str) -> None:
        self.admin.delete_topics([topic])[topic].result(timeout=10)


HBASE_FOREVER = 2_147_483_647


def family_seen_by_thrift1(name: str, descriptor: dict[bytes, Any]) -> FamilyState:
    """A family as happybase (Thrift1) reports it: an independent look at what the operator made."""
    ttl = int(descriptor.get("time_to_live", HBASE_FOREVER))
    return FamilyState(
        name=name,
        max_versions=int(descriptor.get("max_versions", 1)),
        ttl_seconds=None if ttl >= HBASE_FOREVER or ttl <= 0 else ttl,
        compression=_text(descriptor.get("compression", b"NONE")).upper(),
        bloom_filter=_text(descriptor.get("bloom_filter_type", b"ROW")).upper(),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class HBase:
    def __init__(self, stack: Endpoints) -> None:
        self.host = stack.hbase_thrift_host
        self.port = stack.hbase_thrift_port

    def families(self, table: str) -> dict[str, FamilyState] | None:
        connection = happybase.Connection(self.host, self.port, timeout=10000)
        try:
            if table.encode() not in connection.tables():
                return None
            return {
                name.decode().rstrip(":"): family_seen_by_thrift1(name.decode().rstrip(":"), d)
                for name, d in connection.table(table).families().items()
            }
        finally:
            connection.close()

    def drop(self, table: str) -> None:
        connection = happybase.Connection(self.host, self.port, timeout=10000)
        try:
            if table.encode() in connection.tables():
                connection.delete_table(table, disable=True)
        finally:
            connection.close()
