"""What a pipeline needs outside Kubernetes: its topics and its table. Pure: no I/O.

The operator reconciles these; `fink-pipeline run --create-missing` creates the
same ones with the same adapters, so both paths agree on every setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fink_core.spec import CUTOUTS_FAMILY, PipelineSpec

RETENTION_KEY = "retention.ms"
# what HBase reports for a family whose cells never expire (Integer.MAX_VALUE)
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
    compression: str = "NONE"
    bloom_filter: str = "ROW"

    def describe(self) -> str:
        ttl = "no TTL" if self.ttl_seconds is None else f"TTL {self.ttl_seconds}s"
        return (
            f"maxVersions {self.max_versions}, {ttl}, compression {self.compression}, "
            f"bloom filter {self.bloom_filter}"
        )


# where the cutouts go with spec.sinks.hbase.cutouts: store. The stamps are gzipped
# FITS already (compressing them again gains nothing); one version, kept as long as
# the alert's row.
CUTOUTS_FAMILY_STATE = FamilyState(name=CUTOUTS_FAMILY)


# the table attribute naming the layout its rows were written in (spec.sinks.hbase.layout);
# a table without it was made before layouts existed, so it holds columns
LAYOUT_ATTRIBUTE = "fink.broker.dev/layout"
DEFAULT_LAYOUT = "columns"


@dataclass(frozen=True)
class TableState:
    name: str
    families: tuple[FamilyState, ...]
    split_keys: tuple[str, ...] = ()  # only used at creation: regions are never merged back
    layout: str = DEFAULT_LAYOUT  # recorded on the table at creation, never changed

    def family(self, name: str) -> FamilyState | None:
        return next((f for f in self.families if f.name == name), None)

    def layout_mismatch(self, recorded: str | None) -> str | None:
        """Why this table's rows cannot go into the existing table whose rows are in the
        `recorded` layout (None: they can, or nothing is recorded because it does not
        exist). The operator's refusal and `fink-pipeline run`'s say the same."""
        if recorded is None or recorded == self.layout:
            return None
        return (
            f"HBase table {self.name} holds its rows in the {recorded!r} layout and the spec "
            f"asks for {self.layout!r}: rows of both in one table would mislead every reader, "
            f"so nothing is written; set spec.sinks.hbase.layout to {recorded}, or name a new "
            "table"
        )


@dataclass(frozen=True)
class ObservedTable:
    """An existing table as HBase describes it, read in one request: its families and the
    layout recorded on it (DEFAULT_LAYOUT for a table made before layouts were recorded)."""

    families: dict[str, FamilyState]
    layout: str


@dataclass(frozen=True)
class Resources:
    """Everything one pipeline wants to exist in Kafka and HBase."""

    topics: tuple[TopicState, ...]
    table: TableState | None

    @property
    def topic_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics)


def resources_of(spec: PipelineSpec) -> Resources:
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
    sink = spec.hbase_sink
    if sink is not None:
        families = tuple(
            FamilyState(
                name=f.name,
                max_versions=f.max_versions,
                ttl_seconds=int(f.ttl_seconds) if f.ttl_seconds is not None else None,
                compression=f.compression,
                bloom_filter=f.bloom_filter,
            )
            for f in sink.column_families
        )
        if sink.stores_cutouts:
            families += (CUTOUTS_FAMILY_STATE,)
        table = TableState(
            name=sink.table,
            families=families,
            split_keys=split_keys(sink.regions, sink.salt_digits),
            layout=sink.layout,
        )
    return Resources(topics=topics, table=table)


def split_keys(regions: int, salt_digits: int) -> tuple[str, ...]:
    """Region boundaries spreading salted row keys evenly: salt values are 0 .. 10**digits - 1.

    Salted keys start with the salt written on `salt_digits` digits, so the
    boundary between region i-1 and i is the first salt of region i.
    """
    if regions <= 1 or salt_digits <= 0:
        return ()
    space = 10**salt_digits
    return tuple(f"{(i * space) // regions:0{salt_digits}d}" for i in range(1, regions))
