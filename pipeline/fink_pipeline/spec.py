"""The BrokerPipeline specification, as plain typed data.

One model serves two readers: the operator (which derives the topics, tables and
Spark job a pipeline needs) and the enrichment core (which runs the pipeline,
locally from a YAML file or inside a Spark driver from a ConfigMap). Both read
the very same document, a BrokerPipeline resource, so the parser lives here, in
the package that has no Kubernetes dependency.

Defaults mirror the CRD's OpenAPI defaults, so that a document read from a file
(never seen by the API server) behaves like one read back from the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

API_GROUP = "fink.broker.dev"
API_VERSION = "v1alpha1"
KIND = "BrokerPipeline"

SURVEYS = ("ztf", "lsst")
STARTING_OFFSETS = ("earliest", "latest")
DELETION_POLICIES = ("Retain", "Delete")

DEFAULT_PARTITIONS = 1
DEFAULT_REPLICATION_FACTOR = 1
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
DEFAULT_FAMILIES = ("i", "d")


class SpecError(ValueError):
    """A pipeline document that cannot be run; the message says what to fix."""


@dataclass(frozen=True)
class KafkaSource:
    topic: str
    bootstrap_servers: str | None = None
    starting_offsets: str = "earliest"
    credentials_secret: str | None = None
    max_offsets_per_trigger: int | None = None


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicSettings:
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = DEFAULT_REPLICATION_FACTOR
    retention_ms: int = DEFAULT_RETENTION_MS
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FilterSpec:
    """A science filter enabled in this pipeline; its passing alerts get a topic."""

    name: str
    topic: str
    settings: TopicSettings


@dataclass(frozen=True)
class ColumnFamily:
    name: str
    max_versions: int = 1
    ttl_seconds: int | None = None  # None: cells never expire


@dataclass(frozen=True)
class HBaseSink:
    table: str
    column_families: tuple[ColumnFamily, ...]
    thrift_host: str | None = None
    thrift_port: int | None = None
    salt_digits: int = 0


@dataclass(frozen=True)
class KafkaSink:
    bootstrap_servers: str | None
    topic_defaults: TopicSettings
    dead_letter_topic: str


@dataclass(frozen=True)
class SparkSettings:
    image: str | None = None
    driver_cores: int = 1
    driver_memory: str = "1g"
    executor_instances: int = 1
    executor_cores: int = 1
    executor_memory: str = "1g"
    trigger_interval: str = "10 seconds"
    checkpoint_location: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    namespace: str
    survey: str
    source: KafkaSource
    modules: tuple[ModuleSpec, ...]
    filters: tuple[FilterSpec, ...]
    kafka_sink: KafkaSink
    hbase_sink: HBaseSink | None
    archive_path: str | None
    spark: SparkSettings
    deletion_policy: str = "Retain"

    @property
    def topics(self) -> dict[str, TopicSettings]:
        """Every Kafka topic this pipeline writes to, with its settings."""
        wanted = {f.topic: f.settings for f in self.filters}
        wanted.setdefault(self.kafka_sink.dead_letter_topic, self.kafka_sink.topic_defaults)
        return wanted


def default_filter_topic(filter_name: str, survey: str) -> str:
    """Fink's naming convention for distribution topics: fink_<filter>_<survey>."""
    return f"fink_{filter_name}_{survey}"


def parse_pipeline(document: Mapping[str, Any]) -> PipelineSpec:
    """Read a BrokerPipeline resource (as a dict) into a PipelineSpec.

    Raises SpecError naming the field at fault, for documents that bypassed the
    API server's validation (local files) or that the schema cannot fully check.
    """
    if document.get("kind", KIND) != KIND:
        raise SpecError(f"expected kind {KIND}, got {document.get('kind')!r}")
    metadata = document.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        raise SpecError("metadata.name is required")
    namespace = metadata.get("namespace") or "default"
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError("spec is required")

    survey = _choice(spec, "survey", SURVEYS, "spec.survey")
    source = _parse_source(_required_map(spec, "source", "spec.source"))
    modules = tuple(
        ModuleSpec(
            name=_required_str(m, "name", f"spec.modules[{i}].name"),
            parameters=dict(m.get("parameters") or {}),
        )
        for i, m in enumerate(spec.get("modules") or [])
    )
    _unique([m.name for m in modules], "spec.modules")

    sinks = spec.get("sinks") or {}
    kafka_sink_doc = sinks.get("kafka") or {}
    topic_defaults = _parse_topic_settings(
        kafka_sink_doc.get("topicDefaults") or {}, "spec.sinks.kafka.topicDefaults", None
    )
    kafka_sink = KafkaSink(
        bootstrap_servers=kafka_sink_doc.get("bootstrapServers"),
        topic_defaults=topic_defaults,
        dead_letter_topic=kafka_sink_doc.get("deadLetterTopic") or f"{name}-deadletter",
    )
    filters = tuple(
        _parse_filter(f, i, survey, topic_defaults) for i, f in enumerate(spec.get("filters") or [])
    )
    _unique([f.name for f in filters], "spec.filters")
    _unique([f.topic for f in filters], "spec.filters[].topic")

    hbase_doc = sinks.get("hbase")
    hbase_sink = _parse_hbase(hbase_doc) if hbase_doc else None
    archive_doc = sinks.get("archive") or {}

    return PipelineSpec(
        name=name,
        namespace=namespace,
        survey=survey,
        source=source,
        modules=modules,
        filters=filters,
        kafka_sink=kafka_sink,
        hbase_sink=hbase_sink,
        archive_path=archive_doc.get("path"),
        spark=_parse_spark(spec.get("spark") or {}),
        deletion_policy=_choice(
            spec, "deletionPolicy", DELETION_POLICIES, "spec.deletionPolicy", default="Retain"
        ),
    )


def _parse_source(doc: Mapping[str, Any]) -> KafkaSource:
    kafka = _required_map(doc, "kafka", "spec.source.kafka")
    secret = (kafka.get("credentialsSecretRef") or {}).get("name")
    return KafkaSource(
        topic=_required_str(kafka, "topic", "spec.source.kafka.topic"),
        bootstrap_servers=kafka.get("bootstrapServers"),
        starting_offsets=_choice(
            kafka,
            "startingOffsets",
            STARTING_OFFSETS,
            "spec.source.kafka.startingOffsets",
            default="earliest",
        ),
        credentials_secret=secret,
        max_offsets_per_trigger=kafka.get("maxOffsetsPerTrigger"),
    )


def _parse_filter(
    doc: Mapping[str, Any], index: int, survey: str, defaults: TopicSettings
) -> FilterSpec:
    where = f"spec.filters[{index}]"
    name = _required_str(doc, "name", f"{where}.name")
    return FilterSpec(
        name=name,
        topic=doc.get("topic") or default_filter_topic(name, survey),
        settings=_parse_topic_settings(doc, where, defaults),
    )


def _parse_topic_settings(
    doc: Mapping[str, Any], where: str, defaults: TopicSettings | None
) -> TopicSettings:
    base = defaults or TopicSettings()
    settings = TopicSettings(
        partitions=int(doc.get("partitions", base.partitions)),
        replication_factor=int(doc.get("replicationFactor", base.replication_factor)),
        retention_ms=int(doc.get("retentionMs", base.retention_ms)),
        config={**base.config, **{str(k): str(v) for k, v in (doc.get("config") or {}).items()}},
    )
    if settings.partitions < 1:
        raise SpecError(f"{where}.partitions must be at least 1")
    if settings.replication_factor < 1:
        raise SpecError(f"{where}.replicationFactor must be at least 1")
    if settings.retention_ms <= 0 and settings.retention_ms != -1:
        raise SpecError(f"{where}.retentionMs must be positive (or -1 to keep forever)")
    return settings


def _parse_hbase(doc: Mapping[str, Any]) -> HBaseSink:
    families_doc = doc.get("columnFamilies") or [{"name": n} for n in DEFAULT_FAMILIES]
    families = tuple(
        ColumnFamily(
            name=_required_str(f, "name", f"spec.sinks.hbase.columnFamilies[{i}].name"),
            max_versions=int(f.get("maxVersions", 1)),
            ttl_seconds=f.get("ttlSeconds"),
        )
        for i, f in enumerate(families_doc)
    )
    _unique([f.name for f in families], "spec.sinks.hbase.columnFamilies")
    thrift = doc.get("thrift") or {}
    return HBaseSink(
        table=_required_str(doc, "table", "spec.sinks.hbase.table"),
        column_families=families,
        thrift_host=thrift.get("host"),
        thrift_port=thrift.get("port"),
        salt_digits=int(doc.get("saltDigits", 0)),
    )


def _parse_spark(doc: Mapping[str, Any]) -> SparkSettings:
    driver = doc.get("driver") or {}
    executor = doc.get("executor") or {}
    return SparkSettings(
        image=doc.get("image"),
        driver_cores=int(driver.get("cores", 1)),
        driver_memory=str(driver.get("memory", "1g")),
        executor_instances=int(executor.get("instances", 1)),
        executor_cores=int(executor.get("cores", 1)),
        executor_memory=str(executor.get("memory", "1g")),
        trigger_interval=str(doc.get("triggerInterval", "10 seconds")),
        checkpoint_location=doc.get("checkpointLocation"),
        spark_conf={str(k): str(v) for k, v in (doc.get("sparkConf") or {}).items()},
    )


def _required_map(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} is required and must be a mapping")
    return value


def _required_str(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where} is required and must be a non-empty string")
    return value


def _choice(
    doc: Mapping[str, Any],
    key: str,
    allowed: tuple[str, ...],
    where: str,
    default: str | None = None,
) -> str:
    value = doc.get(key, default)
    if value not in allowed:
        raise SpecError(f"{where} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _unique(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SpecError(f"{where}: {name!r} appears twice; names must be unique")
        seen.add(name)
