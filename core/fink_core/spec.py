"""The BrokerPipeline specification, as plain typed data.

One model serves two readers: the operator (which derives the topics, tables and
Spark job a pipeline needs) and the enrichment core (which runs the pipeline,
locally from a YAML file or inside a Spark driver from a ConfigMap). Both read
the very same document, a BrokerPipeline resource. The CRD's schema
(`fink_core.crd`) is the other view of this model: a test walks every property
of the schema and fails when this parser ignores one, and another checks that
the schema's defaults are the parser's.

Defaults mirror the CRD's OpenAPI defaults, so that a document read from a file
(never seen by the API server) behaves like one read back from the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fink_core.errors import SpecError

API_GROUP = "fink.broker.dev"
API_VERSION = "v1alpha1"
KIND = "BrokerPipeline"

SURVEYS = ("ztf", "lsst")
STARTING_OFFSETS = ("earliest", "latest")
DELETION_POLICIES = ("Retain", "Delete")
# what HBase's Thrift2 gateway can set on a column family (codecs must exist on the servers)
COMPRESSIONS = ("NONE", "GZ", "SNAPPY", "LZ4", "ZSTD")
BLOOM_FILTERS = ("NONE", "ROW", "ROWCOL")
# what happens to an alert's cutouts (image stamps): kept in their own family, or not read
CUTOUT_MODES = ("store", "drop")
CUTOUTS_FAMILY = "cutouts"
# how an alert's row holds its values (docs/pipeline.md, HBase rows): `columns`, a cell
# per field, as Fink stores them; `packed`, one JSON record per family in PACKED_QUALIFIER
HBASE_LAYOUTS = ("columns", "packed")
PACKED_QUALIFIER = "record"
# how a filter topic's messages are laid out (docs/pipeline.md, Filter topics): `fink`,
# Avro single-object encoding; `fink-client`, what fink-client reads (schema in the key)
FILTER_LAYOUTS = ("fink", "fink-client")

DEFAULT_PARTITIONS = 1
DEFAULT_REPLICATION_FACTOR = 1
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
DEFAULT_FAMILIES = ("i", "d")
DEAD_LETTER_SUFFIX = "-deadletter"
PROGRESS_SUFFIX = "-progress"  # the progress topic of a pipeline whose source is elsewhere
MAX_TOPIC_NAME = 249  # Kafka's own limit

__all__ = ["SpecError"]


@dataclass(frozen=True)
class KafkaSource:
    topic: str
    bootstrap_servers: str | None = None
    starting_offsets: str = "earliest"
    credentials_secret: str | None = None
    max_offsets_per_trigger: int | None = None
    schema_registry: str | None = None  # Rubin: where the ids its alerts carry are resolved


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
    layout: str = "fink"


@dataclass(frozen=True)
class ColumnFamily:
    name: str
    max_versions: int = 1
    ttl_seconds: int | None = None  # None: cells never expire
    compression: str = "NONE"
    bloom_filter: str = "ROW"  # HBase's own default


@dataclass(frozen=True)
class HBaseSink:
    table: str
    column_families: tuple[ColumnFamily, ...]
    thrift_host: str | None = None
    thrift_port: int | None = None
    admin_port: int | None = None  # the Thrift2 gateway, through which tables are administered
    salt_digits: int = 0
    regions: int = 1  # pre-split into this many regions (split points follow the salt)
    cutouts: str = "drop"  # "store": the stamps in family CUTOUTS_FAMILY of the alert's row
    layout: str = "columns"  # "packed": one JSON record per family (HBASE_LAYOUTS)

    @property
    def stores_cutouts(self) -> bool:
        return self.cutouts == "store"


@dataclass(frozen=True)
class KafkaSink:
    bootstrap_servers: str | None
    topic_defaults: TopicSettings
    dead_letter_topic: str
    credentials_secret: str | None = None


@dataclass(frozen=True)
class Adoption:
    """Topics and tables that existed before the pipeline and that it may take over."""

    topics: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestartPolicy:
    """How the operator restarts a driver that failed: exponential backoff, capped."""

    backoff_seconds: int = 10
    max_backoff_seconds: int = 300


@dataclass(frozen=True)
class SparkSettings:
    image: str | None = None
    driver_cores: int = 1
    driver_memory: str = "1g"
    driver_core_request: str | None = None  # Kubernetes CPU request; default: the cores
    executor_instances: int = 1
    executor_cores: int = 1
    executor_memory: str = "1g"
    executor_core_request: str | None = None
    trigger_interval: str = "10 seconds"
    checkpoint_location: str | None = None
    volume_claim: str | None = None  # the pipeline's volume: checkpoint and local archive
    service_account: str | None = None  # default: one the operator makes for the driver
    metrics_port: int = 9464
    stop_grace_seconds: int = 60
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    suspend: bool = False
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
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
    connections_configmap: str | None = None
    adopt: Adoption = field(default_factory=Adoption)

    @property
    def topics(self) -> dict[str, TopicSettings]:
        """Every Kafka topic this pipeline writes to, with its settings."""
        wanted = {f.topic: f.settings for f in self.filters}
        wanted.setdefault(self.kafka_sink.dead_letter_topic, self.kafka_sink.topic_defaults)
        if self.progress_topic is not None:
            wanted.setdefault(
                self.progress_topic,
                TopicSettings(
                    partitions=1,
                    replication_factor=self.kafka_sink.topic_defaults.replication_factor,
                    retention_ms=-1,
                    config={"cleanup.policy": "compact"},
                ),
            )
        return wanted

    @property
    def source_elsewhere(self) -> bool:
        """Whether the source and the sinks name different Kafka clusters.

        Compared as written (unset means the connections' default): a source on
        another cluster cannot have its offsets committed in the sink cluster's
        transaction, so they go to the progress topic instead (docs/pipeline.md).
        """
        return self.source.bootstrap_servers != self.kafka_sink.bootstrap_servers

    @property
    def progress_topic(self) -> str | None:
        """The sink cluster's record of delivered source offsets, when the source is elsewhere."""
        return f"{self.name}{PROGRESS_SUFFIX}" if self.source_elsewhere else None


def default_filter_topic(filter_name: str, survey: str) -> str:
    """Fink's naming convention for distribution topics: fink_<filter>_<survey>."""
    return f"fink_{filter_name}_{survey}"


def default_dead_letter_topic(pipeline_name: str) -> str:
    return f"{pipeline_name}{DEAD_LETTER_SUFFIX}"


def resource_parts(document: Any, kind: str) -> tuple[str, str, Mapping[str, Any]]:
    """(name, namespace, spec) of a resource document of this kind; SpecError if it has none."""
    if not isinstance(document, Mapping):
        raise SpecError(f"a {kind} document must be a mapping")
    if document.get("kind", kind) != kind:
        raise SpecError(f"expected kind {kind}, got {document.get('kind')!r}")
    metadata = document.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        raise SpecError("metadata.name is required")
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError("spec is required")
    return name, metadata.get("namespace") or "default", spec


def parse_pipeline(document: Mapping[str, Any]) -> PipelineSpec:
    """Read a BrokerPipeline resource (as a dict) into a PipelineSpec.

    Raises SpecError naming the field at fault, for documents that bypassed the
    API server's validation (local files) or that the schema cannot fully check.
    """
    name, namespace, spec = resource_parts(document, KIND)

    survey = _choice(spec, "survey", SURVEYS, "spec.survey")
    source = _parse_source(_required_map(spec, "source", "spec.source"))
    if source.schema_registry and survey != "lsst":
        raise SpecError(
            "spec.source.kafka.schemaRegistry applies to Rubin (survey lsst) only: ZTF alerts "
            "carry their schema; remove it"
        )
    modules = tuple(
        ModuleSpec(
            name=_required_str(m, "name", f"spec.modules[{i}].name"),
            parameters=dict(m.get("parameters") or {}),
        )
        for i, m in enumerate(_list(spec, "modules", "spec.modules"))
    )
    _unique([m.name for m in modules], "spec.modules")

    sinks = _optional_map(spec, "sinks", "spec.sinks")
    kafka_sink_doc = _optional_map(sinks, "kafka", "spec.sinks.kafka")
    topic_defaults = _parse_topic_settings(
        _optional_map(kafka_sink_doc, "topicDefaults", "spec.sinks.kafka.topicDefaults"),
        "spec.sinks.kafka.topicDefaults",
        None,
    )
    kafka_sink = KafkaSink(
        bootstrap_servers=kafka_sink_doc.get("bootstrapServers"),
        topic_defaults=topic_defaults,
        dead_letter_topic=kafka_sink_doc.get("deadLetterTopic") or default_dead_letter_topic(name),
        credentials_secret=_reference(kafka_sink_doc, "credentialsSecretRef"),
    )
    filters = tuple(
        _parse_filter(f, i, survey, topic_defaults)
        for i, f in enumerate(_list(spec, "filters", "spec.filters"))
    )
    _unique([f.name for f in filters], "spec.filters")
    _unique([f.topic for f in filters], "spec.filters[].topic")
    _check_outputs(name, source, filters, kafka_sink)

    hbase_doc = sinks.get("hbase")
    hbase_sink = _parse_hbase(hbase_doc, survey) if hbase_doc else None
    archive_doc = _optional_map(sinks, "archive", "spec.sinks.archive")
    connections = _optional_map(sinks, "connectionsFrom", "spec.sinks.connectionsFrom")
    adopt_doc = _optional_map(spec, "adopt", "spec.adopt")

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
        spark=_parse_spark(_optional_map(spec, "spark", "spec.spark")),
        deletion_policy=_choice(
            spec, "deletionPolicy", DELETION_POLICIES, "spec.deletionPolicy", default="Retain"
        ),
        connections_configmap=_reference(connections, "configMapRef"),
        adopt=Adoption(
            topics=tuple(str(t) for t in _list(adopt_doc, "topics", "spec.adopt.topics")),
            tables=tuple(str(t) for t in _list(adopt_doc, "tables", "spec.adopt.tables")),
        ),
    )


def _check_outputs(
    name: str, source: KafkaSource, filters: tuple[FilterSpec, ...], sink: KafkaSink
) -> None:
    """The source topic is never an output, and every output name fits Kafka's limit."""
    outputs = [(f"spec.filters[{i}].topic", f.topic) for i, f in enumerate(filters)]
    outputs.append(("spec.sinks.kafka.deadLetterTopic", sink.dead_letter_topic))
    for where, topic in outputs:
        if topic == source.topic:
            raise SpecError(
                f"{where}: {topic} is the source topic (spec.source.kafka.topic); a pipeline "
                "never writes to its source: choose another topic name"
            )
        if len(topic) > MAX_TOPIC_NAME:
            raise SpecError(
                f"{where}: topic name {topic[:40]}... has {len(topic)} characters, more than "
                f"Kafka's {MAX_TOPIC_NAME}: set a shorter name"
            )
    dead_letter = sink.dead_letter_topic
    for index, science_filter in enumerate(filters):
        if science_filter.topic == dead_letter:
            raise SpecError(
                f"spec.filters[{index}].topic: {dead_letter} is also the dead-letter topic; "
                "give the filter or spec.sinks.kafka.deadLetterTopic another name"
            )


def _parse_source(doc: Mapping[str, Any]) -> KafkaSource:
    kafka = _required_map(doc, "kafka", "spec.source.kafka")
    max_offsets = kafka.get("maxOffsetsPerTrigger")
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
        credentials_secret=_reference(kafka, "credentialsSecretRef"),
        max_offsets_per_trigger=_int(max_offsets, "spec.source.kafka.maxOffsetsPerTrigger", 1)
        if max_offsets is not None
        else None,
        schema_registry=_registry_url(kafka.get("schemaRegistry")),
    )


def _registry_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise SpecError(
            "spec.source.kafka.schemaRegistry must be an http(s) URL, the registry's "
            f"Confluent API base (e.g. http://registry:8081/apis/ccompat/v7), not {value!r}"
        )
    return value


def _parse_filter(
    doc: Mapping[str, Any], index: int, survey: str, defaults: TopicSettings
) -> FilterSpec:
    where = f"spec.filters[{index}]"
    name = _required_str(doc, "name", f"{where}.name")
    layout = doc.get("layout") or "fink"
    if layout not in FILTER_LAYOUTS:
        raise SpecError(
            f"{where}.layout must be one of {', '.join(FILTER_LAYOUTS)}, not {layout!r}"
        )
    settings = _parse_topic_settings(doc, where, defaults)
    if layout == "fink-client" and "compact" in settings.config.get("cleanup.policy", ""):
        # every message of such a topic has the same key (the schema): compaction
        # would keep only the last one
        raise SpecError(
            f"{where}: layout fink-client keys every message with the alert schema, so its "
            "topic cannot be compacted; remove cleanup.policy=compact (here or in "
            "spec.sinks.kafka.topicDefaults.config) or use layout fink"
        )
    return FilterSpec(
        name=name,
        topic=doc.get("topic") or default_filter_topic(name, survey),
        settings=settings,
        layout=layout,
    )


def _parse_topic_settings(
    doc: Mapping[str, Any], where: str, defaults: TopicSettings | None
) -> TopicSettings:
    base = defaults or TopicSettings()
    settings = TopicSettings(
        partitions=_int(doc.get("partitions", base.partitions), f"{where}.partitions", 1),
        replication_factor=_int(
            doc.get("replicationFactor", base.replication_factor), f"{where}.replicationFactor", 1
        ),
        retention_ms=_int(doc.get("retentionMs", base.retention_ms), f"{where}.retentionMs"),
        config={**base.config, **{str(k): str(v) for k, v in (doc.get("config") or {}).items()}},
    )
    if settings.retention_ms <= 0 and settings.retention_ms != -1:
        raise SpecError(f"{where}.retentionMs must be positive (or -1 to keep forever)")
    return settings


def _parse_hbase(doc: Mapping[str, Any], survey: str) -> HBaseSink:
    if not isinstance(doc, Mapping):
        raise SpecError("spec.sinks.hbase must be a mapping")
    families_doc = doc.get("columnFamilies") or [{"name": n} for n in DEFAULT_FAMILIES]
    families = tuple(_parse_family(f, i) for i, f in enumerate(families_doc))
    _unique([f.name for f in families], "spec.sinks.hbase.columnFamilies")
    thrift = _optional_map(doc, "thrift", "spec.sinks.hbase.thrift")
    salt_digits = _int(doc.get("saltDigits", 0), "spec.sinks.hbase.saltDigits", 0)
    regions = _int(doc.get("regions", 1), "spec.sinks.hbase.regions", 1)
    if regions > 1 and regions > 10**salt_digits:
        raise SpecError(
            f"spec.sinks.hbase.regions: {regions} regions need row keys salted with at least "
            f"{len(str(regions - 1))} digit(s) (the split points follow the salt); raise "
            "spec.sinks.hbase.saltDigits or lower regions"
        )
    cutouts = _choice(doc, "cutouts", CUTOUT_MODES, "spec.sinks.hbase.cutouts", default="drop")
    if cutouts == "store" and CUTOUTS_FAMILY in {f.name for f in families}:
        raise SpecError(
            f"spec.sinks.hbase.columnFamilies: {CUTOUTS_FAMILY!r} is the family the pipeline "
            "stores cutouts in (spec.sinks.hbase.cutouts: store); rename your family"
        )
    return HBaseSink(
        table=_required_str(doc, "table", "spec.sinks.hbase.table"),
        column_families=families,
        thrift_host=thrift.get("host"),
        thrift_port=_optional_int(thrift.get("port"), "spec.sinks.hbase.thrift.port"),
        admin_port=_optional_int(thrift.get("adminPort"), "spec.sinks.hbase.thrift.adminPort"),
        salt_digits=salt_digits,
        regions=regions,
        cutouts=cutouts,
        layout=_choice(doc, "layout", HBASE_LAYOUTS, "spec.sinks.hbase.layout", default="columns"),
    )


def _parse_family(doc: Mapping[str, Any], index: int) -> ColumnFamily:
    where = f"spec.sinks.hbase.columnFamilies[{index}]"
    defaults = ColumnFamily(name="_")
    return ColumnFamily(
        name=_required_str(doc, "name", f"{where}.name"),
        max_versions=_int(doc.get("maxVersions", defaults.max_versions), f"{where}.maxVersions", 1),
        ttl_seconds=_optional_int(doc.get("ttlSeconds"), f"{where}.ttlSeconds", 1),
        compression=_choice(
            doc, "compression", COMPRESSIONS, f"{where}.compression", default=defaults.compression
        ),
        bloom_filter=_choice(
            doc, "bloomFilter", BLOOM_FILTERS, f"{where}.bloomFilter", default=defaults.bloom_filter
        ),
    )


def _parse_spark(doc: Mapping[str, Any]) -> SparkSettings:
    driver = _optional_map(doc, "driver", "spec.spark.driver")
    executor = _optional_map(doc, "executor", "spec.spark.executor")
    restart = _optional_map(doc, "restartPolicy", "spec.spark.restartPolicy")
    defaults = SparkSettings()
    policy = RestartPolicy(
        backoff_seconds=_int(
            restart.get("backoffSeconds", defaults.restart_policy.backoff_seconds),
            "spec.spark.restartPolicy.backoffSeconds",
            1,
        ),
        max_backoff_seconds=_int(
            restart.get("maxBackoffSeconds", defaults.restart_policy.max_backoff_seconds),
            "spec.spark.restartPolicy.maxBackoffSeconds",
            1,
        ),
    )
    return SparkSettings(
        image=doc.get("image"),
        driver_cores=_int(driver.get("cores", defaults.driver_cores), "spec.spark.driver.cores", 1),
        driver_memory=str(driver.get("memory", defaults.driver_memory)),
        driver_core_request=_optional_str(driver.get("coreRequest")),
        executor_instances=_int(
            executor.get("instances", defaults.executor_instances),
            "spec.spark.executor.instances",
            0,
        ),
        executor_cores=_int(
            executor.get("cores", defaults.executor_cores), "spec.spark.executor.cores", 1
        ),
        executor_memory=str(executor.get("memory", defaults.executor_memory)),
        executor_core_request=_optional_str(executor.get("coreRequest")),
        trigger_interval=str(doc.get("triggerInterval", defaults.trigger_interval)),
        checkpoint_location=doc.get("checkpointLocation"),
        volume_claim=_optional_str(doc.get("volumeClaim")),
        service_account=_optional_str(doc.get("serviceAccountName")),
        metrics_port=_int(
            doc.get("metricsPort", defaults.metrics_port), "spec.spark.metricsPort", 1
        ),
        stop_grace_seconds=_int(
            doc.get("stopGracePeriodSeconds", defaults.stop_grace_seconds),
            "spec.spark.stopGracePeriodSeconds",
            0,
        ),
        restart_policy=policy,
        suspend=_bool(doc.get("suspend", defaults.suspend), "spec.spark.suspend"),
        node_selector={str(k): str(v) for k, v in (doc.get("nodeSelector") or {}).items()},
        tolerations=tuple(
            dict(t) for t in _list(doc, "tolerations", "spec.spark.tolerations") if t
        ),
        spark_conf={str(k): str(v) for k, v in (doc.get("sparkConf") or {}).items()},
    )


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where} must be true or false, got {value!r}")
    return value


def _reference(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value.get("name"):
        raise SpecError(f"{key} must be a mapping with a name")
    return str(value["name"])


def _int(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpecError(f"{where} must be a whole number, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise SpecError(f"{where} must be a whole number, got {value!r}") from None
    if isinstance(value, float) and value != number:
        raise SpecError(f"{where} must be a whole number, got {value!r}")
    if minimum is not None and number < minimum:
        raise SpecError(f"{where} must be at least {minimum}, got {number}")
    return number


def _optional_int(value: Any, where: str, minimum: int | None = None) -> int | None:
    return None if value is None else _int(value, where, minimum)


def _required_map(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} is required and must be a mapping")
    return value


def _optional_map(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _list(doc: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{where} must be a list, got {type(value).__name__}")
    for index, item in enumerate(value):
        if isinstance(item, Mapping) or key in ("topics", "tables"):
            continue
        raise SpecError(f"{where}[{index}] must be a mapping, got {item!r}")
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
