"""In-memory Kafka, HBase, claim store and event sink: a whole pass without any server.

The end-to-end tests prove the same behaviour against the real servers; these
fakes make the slow or awkward branches (a race for a claim, a server down in
the middle) fast to provoke.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fink_core.connections import Address, Defaults, KafkaConnection
from fink_core.errors import ServerRejected, ServerUnreachable
from fink_core.resources import FamilyState, ObservedTable, TableState, TopicState
from fink_core.spec import parse_pipeline
from fink_operator.config import OperatorConfig
from fink_operator.context import OperatorContext
from fink_operator.desired import DesiredState, PipelineRef, pipeline_ref
from fink_operator.ownership import Claim
from fink_operator.reconcile import Event


class FakeKafka:
    def __init__(self, down: bool = False, cluster: str = "kafka-1") -> None:
        self.topics: dict[str, TopicState] = {}
        self.down = down
        self.cluster = cluster
        self.calls: list[str] = []
        self.reject: str | None = None

    def _check(self) -> None:
        if self.down:
            raise ServerUnreachable("Kafka", "k:9092", "connection refused")

    def cluster_id(self) -> str:
        self._check()
        return self.cluster

    def observe(self, names: Iterable[str], config_keys: Iterable[str]) -> dict[str, TopicState]:
        self._check()
        self.calls.append("observe")
        keys, wanted = set(config_keys), set(names)
        return {
            n: TopicState(
                n,
                t.partitions,
                t.replication_factor,
                {k: v for k, v in t.config.items() if k in keys},
            )
            for n, t in self.topics.items()
            if n in wanted
        }

    def create(self, topics: Iterable[TopicState]) -> list[str]:
        self._check()
        created = []
        for t in topics:
            if self.reject:
                raise ServerRejected("Kafka", t.name, self.reject)
            if t.name not in self.topics:
                self.topics[t.name] = t
                created.append(t.name)
        if created:
            self.calls.append(f"create {created}")
        return created

    def grow(self, changes: Iterable[tuple[str, int, int]]) -> None:
        self._check()
        for name, _, wanted in changes:
            t = self.topics[name]
            self.topics[name] = TopicState(name, wanted, t.replication_factor, t.config)
            self.calls.append(f"grow {name}")

    def reconfigure(self, changes: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        self._check()
        for name, configs in changes:
            t = self.topics[name]
            self.topics[name] = TopicState(
                name, t.partitions, t.replication_factor, {**t.config, **configs}
            )
            self.calls.append(f"configure {name}")

    def delete(self, names: Iterable[str]) -> list[str]:
        self._check()
        names = list(names)
        for n in names:
            self.topics.pop(n, None)
        self.calls.append(f"delete {names}")
        return names


class FakeHBase:
    def __init__(self, down: bool = False, cluster: str = "hbase-1") -> None:
        self.tables: dict[str, dict[str, FamilyState]] = {}
        self.splits: dict[str, tuple[str, ...]] = {}
        self.layouts: dict[str, str] = {}
        self.down = down
        self.cluster = cluster
        self.calls: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise ServerUnreachable("HBase", "h:9091", "connection refused")

    def cluster_id(self) -> str:
        self._check()
        return self.cluster

    def families(self, table: str) -> dict[str, FamilyState] | None:
        self._check()
        found = self.tables.get(table)
        return dict(found) if found is not None else None

    def describe(self, tables: Iterable[str]) -> dict[str, dict[str, FamilyState] | None]:
        self._check()
        return {t: self.families(t) for t in tables}

    def observe(self, table: str) -> ObservedTable | None:
        self._check()
        found = self.tables.get(table)
        if found is None:
            return None
        return ObservedTable(dict(found), self.layouts.get(table, "columns"))

    def create(self, table: TableState, attributes: Mapping[str, str] | None = None) -> bool:
        self._check()
        if table.name in self.tables:
            return False
        self.tables[table.name] = {f.name: f for f in table.families}
        self.splits[table.name] = table.split_keys
        self.layouts[table.name] = table.layout
        self.calls.append(f"create {table.name}")
        return True

    def add_family(self, table: str, family: FamilyState) -> None:
        self._check()
        self.tables[table][family.name] = family
        self.calls.append(f"add {table}:{family.name}")

    def modify_family(self, table: str, family: FamilyState) -> None:
        self._check()
        self.tables[table][family.name] = family
        self.calls.append(f"modify {table}:{family.name}")

    def drop(self, table: str) -> bool:
        self._check()
        self.calls.append(f"drop {table}")
        return self.tables.pop(table, None) is not None

    def close(self) -> None:
        pass


class FakeClaims:
    """A claim store with the API server's semantics: create is first-wins, replace is CAS."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self.alive: dict[str, bool | None] = {}  # uid -> is the owner pipeline still there
        self._version = 0

    def _next(self) -> str:
        self._version += 1
        return str(self._version)

    def get(self, kind: str, cluster: str, name: str) -> Claim | None:
        from fink_operator.ownership import claim_object_name

        return self.claims.get(claim_object_name(kind, cluster, name))

    def create(self, claim: Claim) -> bool:
        if claim.object_name in self.claims:
            return False
        self.claims[claim.object_name] = _versioned(claim, self._next())
        return True

    def replace(self, stale: Claim, claim: Claim) -> bool:
        current = self.claims.get(claim.object_name)
        if current is None or current.version != stale.version:
            return False
        self.claims[claim.object_name] = _versioned(claim, self._next())
        return True

    def release(self, claim: Claim) -> None:
        current = self.claims.get(claim.object_name)
        if current is not None and current.owner.uid == claim.owner.uid:
            del self.claims[claim.object_name]

    def owned_by(self, owner: PipelineRef) -> list[Claim]:
        return [c for c in self.claims.values() if c.owner.uid == owner.uid]

    def owner_alive(self, owner: PipelineRef) -> bool | None:
        return self.alive.get(owner.uid, True)

    def names(self) -> dict[str, str]:
        """resource name -> owner uid."""
        return {c.name: c.owner.uid for c in self.claims.values()}


def _versioned(claim: Claim, version: str) -> Claim:
    from dataclasses import replace

    return replace(claim, version=version)


class FakeEvents:
    def __init__(self) -> None:
        self.posted: list[tuple[str, Event]] = []

    def post(self, resource: Mapping[str, Any], event: Event) -> None:
        self.posted.append((resource["metadata"]["name"], event))

    def reasons(self) -> list[str]:
        return [e.reason for _, e in self.posted]


def fake_context(
    kafka: FakeKafka | None = None,
    hbase: FakeHBase | None = None,
    claims: FakeClaims | None = None,
    configmaps: Mapping[str, Mapping[str, str]] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> OperatorContext:
    kafka = kafka or FakeKafka()
    hbase = hbase or FakeHBase()
    configmaps, secrets = configmaps or {}, secrets or {}

    def kafka_admin(connection: KafkaConnection) -> FakeKafka:
        return kafka

    def hbase_admin(address: Address) -> FakeHBase:
        return hbase

    return OperatorContext(
        config=OperatorConfig(defaults=Defaults(), server_timeout=1.0),
        claims=claims or FakeClaims(),
        events=FakeEvents(),
        kafka_admin=kafka_admin,  # type: ignore[arg-type]
        hbase_admin=hbase_admin,  # type: ignore[arg-type]
        readers=lambda namespace: (configmaps.get, secrets.get),
    )


def desired(body: Mapping[str, Any]) -> DesiredState:
    """The desired resources of a document, without planning its science (any filter name)."""
    from fink_core.resources import resources_of

    spec = parse_pipeline(body)
    return DesiredState(pipeline_ref(body), spec, resources_of(spec), spec.adopt)


class FakeJobs:
    """The job adapter over a dict of pods: the API server's create-if-absent semantics."""

    def __init__(self) -> None:
        from fink_operator.job.supervise import DriverPod

        self.pods: dict[tuple[str, str], DriverPod] = {}
        self.applied: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, int]] = []
        self.created: list[dict[str, Any]] = []
        self._pod = DriverPod

    def apply(self, objects: Iterable[dict[str, Any]]) -> None:
        self.applied.extend(objects)

    def driver(self, namespace: str, name: str, metrics_port: int) -> Any:
        return self.pods.get((namespace, name))

    def create_driver(self, pod: dict[str, Any]) -> bool:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if key in self.pods:
            return False
        annotations = pod["metadata"]["annotations"]
        self.pods[key] = self._pod(key[1], annotations["fink.broker.dev/spec-hash"], "Pending")
        self.created.append(pod)
        return True

    def delete_driver(self, namespace: str, name: str, grace_seconds: int) -> None:
        self.deleted.append((name, grace_seconds))
        self.pods.pop((namespace, name), None)

    def delete_claim(self, namespace: str, name: str) -> bool:
        return False

    def run(self, namespace: str, name: str, streaming: bool = True) -> None:
        """The driver starts; with `streaming` its query runs (what its metrics say)."""
        from dataclasses import replace

        pod = self.pods[(namespace, name)]
        self.pods[(namespace, name)] = replace(pod, phase="Running", ip="10.0.0.9", ready=streaming)
