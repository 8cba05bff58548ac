"""What a BrokerPipeline needs outside Kubernetes: its topics and its table. No I/O here.

`desired_state` is the pure heart of the operator: every handler starts from it,
so a resource always maps to the same external state whatever happened before
(a crash, a missed event, a manual change behind the operator's back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fink_pipeline.spec import PipelineSpec, parse_pipeline

RETENTION_KEY = "retention.ms"
# what HBase's Thrift gateway reports for a family whose cells never expire
HBASE_FOREVER = 2_147_483_647


@dataclass(frozen=True)
class TopicState:
    """A Kafka topic as the operator manages it: partitions, replicas and the configs it sets."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilyState:
    name: str
    max_versions: int = 1
    ttl_seconds: int | None = None  # None: cells never expire


@dataclass(frozen=True)
class TableState:
    name: str
    families: tuple[FamilyState, ...]

    def family(self, name: str) -> FamilyState | None:
        return next((f for f in self.families if f.name == name), None)


@dataclass(frozen=True)
class DesiredState:
    """Everything one pipeline wants to exist in Kafka and HBase."""

    pipeline: str
    namespace: str
    topics: tuple[TopicState, ...]
    table: TableState | None
    deletion_policy: str

    @property
    def topic_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics)

    @property
    def deletes_data(self) -> bool:
        """True when deleting the pipeline must remove its topics and table (needs a finalizer)."""
        return self.deletion_policy == "Delete"


def desired_state(resource: Mapping[str, Any]) -> DesiredState:
    """Compute the topics and table a BrokerPipeline resource asks for.

    Raises fink_pipeline.spec.SpecError for a document the user must fix.
    """
    return from_spec(parse_pipeline(resource))


def from_spec(spec: PipelineSpec) -> DesiredState:
    topics = tuple(
        TopicState(
            name=name,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config={**settings.config, RETENTION_KEY: str(settings.retention_ms)},
        )
        for name, settings in sorted(spec.topics.items())
    )
    table = None
    if spec.hbase_sink is not None:
        table = TableState(
            name=spec.hbase_sink.table,
            families=tuple(
                FamilyState(
                    name=f.name,
                    max_versions=f.max_versions,
                    ttl_seconds=int(f.ttl_seconds) if f.ttl_seconds is not None else None,
                )
                for f in spec.hbase_sink.column_families
            ),
        )
    return DesiredState(
        pipeline=spec.name,
        namespace=spec.namespace,
        topics=topics,
        table=table,
        deletion_policy=spec.deletion_policy,
    )


def family_from_hbase(name: str, descriptor: Mapping[str, Any]) -> FamilyState:
    """Read a family descriptor as happybase returns it into the operator's model."""
    ttl = int(descriptor.get("time_to_live", HBASE_FOREVER))
    return FamilyState(
        name=name,
        max_versions=int(descriptor.get("max_versions", 1)),
        ttl_seconds=None if ttl >= HBASE_FOREVER or ttl <= 0 else ttl,
    )
