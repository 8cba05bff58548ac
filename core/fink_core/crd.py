"""The BrokerPipeline CustomResourceDefinition: the API server's view of `fink_core.spec`.

manifests/crds/brokerpipelines.fink.broker.dev.yaml is generated from `crd()`
(`fink-operator crd`), and tests fail when the YAML is stale, when a schema
default differs from the parser's, when the parser ignores a property of the
schema, or when a schema node lacks a description (`kubectl explain` shows them).

Filter-level topic settings carry no schema default on purpose: they inherit
spec.sinks.kafka.topicDefaults, which only the parser knows how to do.
"""

from __future__ import annotations

from typing import Any

import yaml

from fink_core import spec as model

GROUP = model.API_GROUP
VERSION = model.API_VERSION
KIND = model.KIND
PLURAL = "brokerpipelines"
SINGULAR = "brokerpipeline"
SHORT_NAMES = ("bp",)
CRD_NAME = f"{PLURAL}.{GROUP}"

# Kafka's own limit on topic names (legal characters, at most 249 of them)
TOPIC_NAME_PATTERN = r"^[a-zA-Z0-9._-]+$"
# HBase table names, optionally qualified by an HBase namespace ("ns:table")
TABLE_NAME_PATTERN = r"^([a-zA-Z0-9_]+:)?[a-zA-Z0-9_][a-zA-Z0-9_.-]*$"
FAMILY_NAME_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
MEMORY_PATTERN = r"^[0-9]+[kmgtKMGT]?$"
CPU_PATTERN = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"
INTERVAL_PATTERN = r"^[0-9]+ (millisecond|second|minute|hour)s?$"
URL_PATTERN = r"^https?://\S+$"
BOOTSTRAP_PATTERN = r"^[^,:\s]+:[0-9]{1,5}(,[^,:\s]+:[0-9]{1,5})*$"
# KEP-1623 (metav1.Condition): the fields and formats every condition carries
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
MAX_PARTITIONS = 10_000
MAX_REPLICATION = 32
MAX_TOPIC = model.MAX_TOPIC_NAME


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _integer(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **extra}


def _string_map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string", "description": "A value."},
    }


def _reference(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "required": ["name"],
        "properties": {
            "name": _string(
                "Name of the object, in the pipeline's namespace.", minLength=1, maxLength=253
            )
        },
    }


def _topic_name(description: str) -> dict[str, Any]:
    return _string(description, minLength=1, maxLength=MAX_TOPIC, pattern=TOPIC_NAME_PATTERN)


def _partitions(default: int | None) -> dict[str, Any]:
    field = _integer(
        "Number of partitions of the topic. It may grow, never shrink.",
        minimum=1,
        maximum=MAX_PARTITIONS,
        **({"default": default} if default is not None else {}),
    )
    field["x-kubernetes-validations"] = [
        {
            "rule": "self >= oldSelf",
            "message": "partitions may grow but never shrink (Kafka cannot remove "
            "partitions): keep it at least at its current value",
            "reason": "FieldValueForbidden",
        }
    ]
    return field


def _retention(default: int | None) -> dict[str, Any]:
    field = _integer(
        "How long Kafka keeps messages, in milliseconds; -1 keeps them forever.",
        format="int64",
        **({"default": default} if default is not None else {}),
    )
    field["x-kubernetes-validations"] = [
        {
            "rule": "self > 0 || self == -1",
            "message": "retentionMs must be positive (milliseconds), or -1 to keep messages forever",
        }
    ]
    return field


def _topic_settings(description: str, *, with_defaults: bool) -> dict[str, Any]:
    defaults = model.TopicSettings() if with_defaults else None
    return {
        "type": "object",
        "description": description,
        "properties": {
            "partitions": _partitions(defaults.partitions if defaults else None),
            "replicationFactor": _integer(
                "Copies of each partition; at most the number of Kafka brokers. "
                "It cannot change once the topic exists.",
                minimum=1,
                maximum=MAX_REPLICATION,
                **({"default": defaults.replication_factor} if defaults else {}),
            ),
            "retentionMs": _retention(defaults.retention_ms if defaults else None),
            "config": _string_map(
                "Other Kafka topic configs (e.g. cleanup.policy, max.message.bytes), "
                "kept as declared: a value changed by hand is set back."
            ),
        },
    }


def _bootstrap(description: str) -> dict[str, Any]:
    return _string(description, maxLength=1024, pattern=BOOTSTRAP_PATTERN)


def _source() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Where the survey's alerts come from.",
        "required": ["kafka"],
        "properties": {
            "kafka": {
                "type": "object",
                "description": "The Kafka topic the survey publishes its alerts to.",
                "required": ["topic"],
                "properties": {
                    "topic": _topic_name(
                        "Kafka topic carrying the survey's Avro alerts. The pipeline only "
                        "reads it: it is never one of its outputs."
                    ),
                    "bootstrapServers": _bootstrap(
                        "host:port[,host:port] of the survey's Kafka; defaults to the "
                        "connections ConfigMap, then to the operator's Kafka."
                    ),
                    "startingOffsets": _string(
                        "Where a new pipeline starts reading (a restarted one resumes "
                        "from its checkpoint).",
                        enum=list(model.STARTING_OFFSETS),
                        default="earliest",
                    ),
                    "credentialsSecretRef": _reference(
                        "Secret with the librdkafka security settings to read the source "
                        "(security.protocol, sasl.mechanism, sasl.username, sasl.password, "
                        "ssl.ca.pem); other keys are refused."
                    ),
                    "maxOffsetsPerTrigger": _integer(
                        "Upper bound of alerts read per micro-batch.", minimum=1, format="int64"
                    ),
                    "schemaRegistry": _string(
                        "Rubin only: base URL of the schema registry (Confluent API) that "
                        "holds the writer schemas whose ids Rubin's alerts carry. Without "
                        "it, ids are Rubin's official ones from lsst-alert-packet "
                        "(MAJOR*100+MINOR).",
                        maxLength=2048,
                        pattern=URL_PATTERN,
                    ),
                },
            }
        },
    }


def _modules() -> dict[str, Any]:
    return {
        "type": "array",
        "description": "Science modules run on every alert, in this order; each adds columns. "
        "`fink-pipeline validate` lists the known ones and their parameters.",
        "maxItems": 64,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {
            "type": "object",
            "description": "One science module.",
            "required": ["name"],
            "properties": {
                "name": _string(
                    "Module name, e.g. lightcurve_features.", maxLength=100, pattern=NAME_PATTERN
                ),
                "parameters": {
                    "type": "object",
                    "description": "Module parameters (camelCase, as the module documents "
                    "them); checked by the operator before anything is created.",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        },
    }


def _filters() -> dict[str, Any]:
    item = _topic_settings(
        "A science filter; the alerts it selects go to its own topic. Topic settings "
        "left unset inherit spec.sinks.kafka.topicDefaults.",
        with_defaults=False,
    )
    item["required"] = ["name"]
    item["properties"] = {
        "name": _string(
            "Filter name, e.g. early_sn_candidates.", maxLength=100, pattern=NAME_PATTERN
        ),
        "topic": _topic_name("Output topic; defaults to fink_<name>_<survey>."),
        "layout": _string(
            "How the topic's messages are laid out. fink: Avro single-object encoding "
            "(marker, schema fingerprint, record), keyed by the object's id. fink-client: "
            "what fink-client's AlertConsumer reads unchanged: the Avro schema as JSON in "
            "every key, the record as bare Avro, nested as Fink distributes alerts; "
            "the partition still follows the object's id. Such a topic cannot be compacted.",
            enum=list(model.FILTER_LAYOUTS),
            default="fink",
        ),
        **item["properties"],
    }
    return {
        "type": "array",
        "description": "Science filters; each publishes the alerts it selects to a topic.",
        "maxItems": 256,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": item,
    }


def _family() -> dict[str, Any]:
    defaults = model.ColumnFamily(name="_")
    return {
        "type": "object",
        "description": "One column family. A change of its settings is applied to the "
        "live table; removing a family is refused (it would destroy its data).",
        "required": ["name"],
        "properties": {
            "name": _string("Family name.", maxLength=64, pattern=FAMILY_NAME_PATTERN),
            "maxVersions": _integer(
                "Cell versions kept.", minimum=1, maximum=1000, default=defaults.max_versions
            ),
            "ttlSeconds": _integer(
                "Cells expire after this many seconds; unset: never.",
                minimum=1,
                maximum=2_147_483_646,
            ),
            "compression": _string(
                "Compression of the family's files (the codec must be available to HBase).",
                enum=list(model.COMPRESSIONS),
                default=defaults.compression,
            ),
            "bloomFilter": _string(
                "Bloom filter of the family's files.",
                enum=list(model.BLOOM_FILTERS),
                default=defaults.bloom_filter,
            ),
        },
    }


def _hbase() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "HBase table receiving every enriched alert (row key objectId_jd, "
        "optionally salted). Without it the pipeline writes no table.",
        "required": ["table"],
        "properties": {
            "table": _string(
                "Table name, optionally ns:table (the HBase namespace is created if "
                "missing). It cannot be renamed.",
                maxLength=200,
                pattern=TABLE_NAME_PATTERN,
                **{
                    "x-kubernetes-validations": [
                        {
                            "rule": "self == oldSelf",
                            "message": "the HBase table of a pipeline cannot be renamed; "
                            "create a new pipeline for a new table",
                        }
                    ]
                },
            ),
            "columnFamilies": {
                "type": "array",
                "description": "Column families: the first holds the alert's fields, the "
                "second the values modules and filters add.",
                "minItems": 1,
                "maxItems": 16,
                "default": [{"name": n} for n in model.DEFAULT_FAMILIES],
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": _family(),
            },
            "thrift": {
                "type": "object",
                "description": "HBase's Thrift gateways; default to the connections "
                "ConfigMap, then to the operator's.",
                "properties": {
                    "host": _string("Host name or address of the gateways.", maxLength=253),
                    "port": _integer(
                        "Port of the Thrift gateway alerts are written through.",
                        minimum=1,
                        maximum=65535,
                    ),
                    "adminPort": _integer(
                        "Port of the Thrift2 gateway tables are created and altered through.",
                        minimum=1,
                        maximum=65535,
                    ),
                },
            },
            "saltDigits": _integer(
                "Leading digits (a hash of the object id) put first in row keys, to spread "
                "writes over regions.",
                minimum=0,
                maximum=8,
                default=0,
            ),
            "regions": _integer(
                "Regions the table is pre-split into at creation (split points follow the "
                "salt, so it needs saltDigits); ignored for an existing table.",
                minimum=1,
                maximum=1000,
                default=1,
            ),
            "cutouts": _string(
                "What happens to each alert's cutouts (its science, template and difference "
                f"image stamps, gzipped FITS): store puts them in a column family "
                f"'{model.CUTOUTS_FAMILY}' of the alert's row (qualifiers science, template, "
                "difference; the operator adds the family to the table); drop never reads "
                "them. Only ZTF's cutouts are decoded yet: store is refused for lsst.",
                enum=list(model.CUTOUT_MODES),
                default="drop",
            ),
            "layout": _string(
                "How an alert's row holds its values: columns, one cell per field (as Fink "
                "stores them: hbase shell and server-side filters see each field); packed, "
                f"one cell per family, '<family>:{model.PACKED_QUALIFIER}', holding the "
                "family's fields as one JSON object (about 5x cheaper for HBase to write; "
                "read it with json.loads). It is recorded on the table at creation and "
                "cannot change: rows of two layouts in one table would mislead readers.",
                enum=list(model.HBASE_LAYOUTS),
                default="columns",
                **{
                    "x-kubernetes-validations": [
                        {
                            "rule": "self == oldSelf",
                            "message": "the HBase layout of a pipeline cannot change: its "
                            "table holds rows in this layout; create a new pipeline with a "
                            "new table for the other one",
                        }
                    ]
                },
            ),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"!has(self.cutouts) || self.cutouts != 'store' || "
                f"!has(self.columnFamilies) || "
                f"!self.columnFamilies.exists(f, f.name == '{model.CUTOUTS_FAMILY}')",
                "message": f"column family '{model.CUTOUTS_FAMILY}' is where the pipeline "
                "stores cutouts (cutouts: store): give your family another name",
                "fieldPath": ".columnFamilies",
                "reason": "FieldValueInvalid",
            }
        ],
    }


def _sinks() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Where enriched alerts go.",
        "default": {},
        "properties": {
            "kafka": {
                "type": "object",
                "description": "The Kafka cluster holding the filter and dead-letter topics.",
                "default": {},
                "properties": {
                    "bootstrapServers": _bootstrap(
                        "host:port[,host:port]; defaults to the connections ConfigMap, then "
                        "to the operator's Kafka."
                    ),
                    "credentialsSecretRef": _reference(
                        "Secret with the librdkafka security settings for the sink cluster "
                        "(security.protocol, sasl.mechanism, sasl.username, sasl.password, "
                        "ssl.ca.pem); other keys are refused."
                    ),
                    "deadLetterTopic": _topic_name(
                        "Topic for messages that cannot be decoded; defaults to "
                        "<pipeline>-deadletter."
                    ),
                    "topicDefaults": {
                        **_topic_settings(
                            "Settings of every topic that does not set its own.",
                            with_defaults=True,
                        ),
                        "default": {},
                    },
                },
            },
            "hbase": _hbase(),
            "archive": {
                "type": "object",
                "description": "Parquet archive of every enriched alert, by night.",
                "properties": {"path": _string("Archive location (a directory).", maxLength=4096)},
            },
            "connectionsFrom": {
                "type": "object",
                "description": "ConfigMap with keys kafka.bootstrapServers, hbase.thrift.host, "
                "hbase.thrift.port, hbase.thrift.adminPort; explicit fields take precedence.",
                "properties": {"configMapRef": _reference("The ConfigMap.")},
            },
        },
    }


def _adopt() -> dict[str, Any]:
    names = {"type": "string", "description": "A name.", "maxLength": 249}
    return {
        "type": "object",
        "description": "Topics and tables that existed before this pipeline and that it may "
        "take over (retune, and delete with deletionPolicy Delete). Nothing is adopted "
        "unless listed here; a name another pipeline owns is never taken.",
        "properties": {
            "topics": {
                "type": "array",
                "description": "Existing Kafka topics this pipeline takes over.",
                "maxItems": 256,
                "x-kubernetes-list-type": "set",
                "items": names,
            },
            "tables": {
                "type": "array",
                "description": "Existing HBase tables this pipeline takes over.",
                "maxItems": 1,
                "x-kubernetes-list-type": "set",
                "items": names,
            },
        },
    }


def _spark() -> dict[str, Any]:
    defaults = model.SparkSettings()

    def role(what: str, instances: bool, cores: int, memory: str) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "cores": _integer("CPU cores Spark uses.", minimum=1, maximum=64, default=cores),
            "coreRequest": _string(
                "CPU the pod requests from Kubernetes (e.g. 250m, 2); default: the cores.",
                pattern=CPU_PATTERN,
            ),
            "memory": _string(
                "Memory of the JVM, e.g. 2g (the pod adds Spark's overhead).",
                pattern=MEMORY_PATTERN,
                default=memory,
            ),
        }
        if instances:
            properties["instances"] = _integer(
                "Executor pods (0: Spark runs inside the driver pod, in local mode).",
                minimum=0,
                maximum=1000,
                default=defaults.executor_instances,
            )
        return {"type": "object", "description": what, "default": {}, "properties": properties}

    restart = defaults.restart_policy
    return {
        "type": "object",
        "description": "The Spark structured-streaming job running the pipeline on Kubernetes.",
        "default": {},
        "properties": {
            "image": _string(
                "Container image of the driver and executors; default: the operator's.",
                maxLength=512,
            ),
            "driver": role(
                "The Spark driver.", False, defaults.driver_cores, defaults.driver_memory
            ),
            "executor": role(
                "The Spark executors.", True, defaults.executor_cores, defaults.executor_memory
            ),
            "triggerInterval": _string(
                "Micro-batch interval, e.g. '10 seconds'.",
                pattern=INTERVAL_PATTERN,
                default=defaults.trigger_interval,
            ),
            "checkpointLocation": _string(
                "Where the stream keeps its progress: a Hadoop URL (s3a://, hdfs://) or a path; "
                "default: the pipeline's volume.",
                maxLength=4096,
            ),
            "volumeClaim": _string(
                "PersistentVolumeClaim holding the checkpoint (and a local archive); default: "
                "the volume the operator gives every pipeline.",
                maxLength=253,
            ),
            "serviceAccountName": _string(
                "Service account of the driver; default: one the operator creates with the "
                "rights Spark needs to run executors.",
                maxLength=253,
            ),
            "metricsPort": _integer(
                "Port of the driver's Prometheus metrics.",
                minimum=1024,
                maximum=65535,
                default=defaults.metrics_port,
            ),
            "stopGracePeriodSeconds": _integer(
                "Time a stopping driver gets to finish its micro-batch (a spec change, suspend).",
                minimum=0,
                maximum=3600,
                default=defaults.stop_grace_seconds,
            ),
            "restartPolicy": {
                "type": "object",
                "description": "How a failed driver is restarted: after backoffSeconds, doubled "
                "at each failure in a row, at most maxBackoffSeconds.",
                "default": {},
                "properties": {
                    "backoffSeconds": _integer(
                        "First delay.", minimum=1, maximum=3600, default=restart.backoff_seconds
                    ),
                    "maxBackoffSeconds": _integer(
                        "Longest delay.",
                        minimum=1,
                        maximum=86400,
                        default=restart.max_backoff_seconds,
                    ),
                },
            },
            "suspend": {
                "type": "boolean",
                "description": "Stop the job (at a micro-batch boundary) and keep it stopped; "
                "false resumes it from its checkpoint.",
                "default": defaults.suspend,
            },
            "nodeSelector": _string_map("Labels of the nodes the driver and executors may run on."),
            "tolerations": {
                "type": "array",
                "description": "Taints of nodes the driver and executors tolerate (as in a "
                "pod's spec.tolerations).",
                "maxItems": 32,
                "items": {
                    "type": "object",
                    "description": "A toleration.",
                    "properties": {
                        "key": _string("Taint key."),
                        "operator": _string("Exists or Equal.", enum=["Exists", "Equal"]),
                        "value": _string("Taint value."),
                        "effect": _string(
                            "Taint effect.", enum=["NoSchedule", "PreferNoSchedule", "NoExecute"]
                        ),
                        "tolerationSeconds": _integer("For NoExecute.", format="int64"),
                    },
                },
            },
            "sparkConf": _string_map("Extra Spark settings."),
        },
    }


def _status() -> dict[str, Any]:
    condition = {
        "type": "object",
        "description": "One aspect of the pipeline's state (metav1.Condition).",
        "required": ["type", "status", "lastTransitionTime", "reason", "message"],
        "properties": {
            "type": _string(
                "TopicsReady, TablesReady or Ready.",
                maxLength=316,
                pattern=CONDITION_TYPE_PATTERN,
            ),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _string(
                "CamelCase cause.", minLength=1, maxLength=1024, pattern=CONDITION_REASON_PATTERN
            ),
            "message": _string("What happened and, if needed, what to change.", maxLength=32768),
            "lastTransitionTime": _string("When status last changed.", format="date-time"),
            "observedGeneration": _integer(
                "Generation this condition describes.", format="int64", minimum=0
            ),
        },
    }

    def names(description: str) -> dict[str, Any]:
        return {
            "type": "array",
            "description": description,
            "items": {"type": "string", "description": "A name."},
        }

    return {
        "type": "object",
        "description": "What the operator observed and did.",
        "properties": {
            "observedGeneration": _integer("Last generation reconciled.", format="int64"),
            "phase": _string("Pending, Ready, Degraded, Waiting or Suspended."),
            "conditions": {
                "type": "array",
                "description": "TopicsReady, TablesReady and Ready, with reason and message.",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": condition,
            },
            "topics": names("Kafka topics this pipeline owns."),
            "topicCount": _integer("Number of owned topics."),
            "tables": names("HBase tables this pipeline owns."),
            "job": _job_status(),
        },
    }


def _job_status() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The Spark job: its driver pod, restarts and last failure.",
        "properties": {
            "state": _string(
                "Waiting (for the topics and table), Pending (not schedulable or no image), "
                "Submitted, Running, Streaming, Stopping, Restarting, Suspended, "
                "SubmitFailed (the API server refused an object; the conditions say why) "
                "or NotConfigured (no image or no checkpoint volume)."
            ),
            "driverPod": _string("Name of the driver pod."),
            "specHash": _string("Hash of what the running driver was started with."),
            "submissions": _integer("Driver pods the operator created for this pipeline."),
            "restarts": _integer("Restarts after failures, in all."),
            "consecutiveFailures": _integer(
                "Failures in a row (the backoff doubles with each; reset once streaming)."
            ),
            "lastFailure": {
                "type": "object",
                "description": "Why the driver last failed.",
                "properties": {
                    "reason": _string("CamelCase cause (OOMKilled, Error, ...)."),
                    "message": _string("What happened, with the driver's last log lines."),
                    "time": _string("When.", format="date-time"),
                },
            },
            "nextStartTime": _string(
                "When a failed driver is started again (backoff).", format="date-time"
            ),
            "metricsEndpoint": _string("Where the driver serves its Prometheus metrics."),
        },
    }


def _root_rules() -> list[dict[str, Any]]:
    """Rules that need metadata.name or several fields at once."""
    source = "self.spec.source.kafka.topic"
    dead_letter_set = (
        "has(self.spec.sinks) && has(self.spec.sinks.kafka) && "
        "has(self.spec.sinks.kafka.deadLetterTopic)"
    )
    dead_letter = (
        f"({dead_letter_set} ? self.spec.sinks.kafka.deadLetterTopic : "
        f"self.metadata.name + '{model.DEAD_LETTER_SUFFIX}')"
    )
    filter_topic = "(has(f.topic) ? f.topic : 'fink_' + f.name + '_' + self.spec.survey)"
    # the source's cluster and the sinks' differ as written (spec.source_elsewhere)
    source_cluster = (
        "(has(self.spec.source.kafka.bootstrapServers) ? "
        "self.spec.source.kafka.bootstrapServers : '')"
    )
    sink_cluster = (
        "(has(self.spec.sinks) && has(self.spec.sinks.kafka) && "
        "has(self.spec.sinks.kafka.bootstrapServers) ? "
        "self.spec.sinks.kafka.bootstrapServers : '')"
    )
    elsewhere = f"({source_cluster} != {sink_cluster})"
    return [
        {
            "rule": f"{dead_letter} != {source}",
            "message": "the dead-letter topic (spec.sinks.kafka.deadLetterTopic, default "
            "<name>-deadletter) must differ from the source topic: a pipeline never writes "
            "to its source",
            "fieldPath": ".spec.sinks.kafka.deadLetterTopic",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": f"{dead_letter_set} || size(self.metadata.name) + "
            f"{len(model.DEAD_LETTER_SUFFIX)} <= {MAX_TOPIC}",
            "message": f"the default dead-letter topic <name>{model.DEAD_LETTER_SUFFIX} would "
            f"exceed Kafka's {MAX_TOPIC} characters: shorten metadata.name or set "
            "spec.sinks.kafka.deadLetterTopic",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": f"!{elsewhere} || size(self.metadata.name) + "
            f"{len(model.PROGRESS_SUFFIX)} <= {MAX_TOPIC}",
            "message": f"the progress topic <name>{model.PROGRESS_SUFFIX} of a pipeline whose "
            f"source is on another Kafka cluster would exceed Kafka's {MAX_TOPIC} characters: "
            "shorten metadata.name",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": f"!has(self.spec.filters) || self.spec.filters.all(f, {filter_topic} "
            f"!= {source})",
            "message": "a filter's topic (spec.filters[].topic, default fink_<name>_<survey>) "
            "must differ from the source topic: a pipeline never writes to its source",
            "fieldPath": ".spec.filters",
            "reason": "FieldValueInvalid",
        },
    ]


def _spec_rules() -> list[dict[str, Any]]:
    return [
        {
            "rule": "!has(self.source.kafka.schemaRegistry) || self.survey == 'lsst'",
            "message": "source.kafka.schemaRegistry applies to Rubin (survey lsst) only: ZTF "
            "alerts carry their schema; remove it",
            "fieldPath": ".source.kafka.schemaRegistry",
            "reason": "FieldValueForbidden",
        },
        {
            "rule": "!has(self.adopt) || !has(self.adopt.topics) || "
            "!(self.source.kafka.topic in self.adopt.topics)",
            "message": "the source topic cannot be adopted: a pipeline never writes to its "
            "source; remove it from spec.adopt.topics",
            "fieldPath": ".adopt.topics",
            "reason": "FieldValueForbidden",
        },
    ]


def schema() -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a BrokerPipeline."""
    return {
        "type": "object",
        "description": "An alert-processing pipeline: the survey stream it reads, its science "
        "modules and filters, and the topics, table and archive it writes.",
        "required": ["spec"],
        "x-kubernetes-validations": _root_rules(),
        "properties": {
            "apiVersion": _string("fink.broker.dev/v1alpha1."),
            "kind": _string("BrokerPipeline."),
            "metadata": {"type": "object"},  # the API server allows nothing more here
            "spec": {
                "type": "object",
                "description": "What the pipeline reads, computes and writes.",
                "required": ["survey", "source"],
                "x-kubernetes-validations": _spec_rules(),
                "properties": {
                    "survey": _string(
                        "Which survey's alerts the pipeline reads. It cannot change on a live "
                        "pipeline.",
                        enum=list(model.SURVEYS),
                        **{
                            "x-kubernetes-validations": [
                                {
                                    "rule": "self == oldSelf",
                                    "message": "spec.survey cannot change on a live pipeline "
                                    "(its checkpoint, topics and table hold one survey's "
                                    "alerts): create a new BrokerPipeline for the other survey",
                                }
                            ]
                        },
                    ),
                    "source": _source(),
                    "modules": _modules(),
                    "filters": _filters(),
                    "sinks": _sinks(),
                    "spark": _spark(),
                    "adopt": _adopt(),
                    "deletionPolicy": _string(
                        "Retain keeps topics and table when the pipeline is deleted; "
                        "Delete removes those it owns.",
                        enum=list(model.DELETION_POLICIES),
                        default="Retain",
                    ),
                },
            },
            "status": _status(),
        },
    }


def _printer_columns() -> list[dict[str, Any]]:
    ready = '.status.conditions[?(@.type=="Ready")]'
    return [
        {"name": "Survey", "type": "string", "jsonPath": ".spec.survey"},
        {"name": "Ready", "type": "string", "jsonPath": f"{ready}.status"},
        {"name": "Reason", "type": "string", "jsonPath": f"{ready}.reason"},
        {"name": "Topics", "type": "integer", "jsonPath": ".status.topicCount"},
        {"name": "Table", "type": "string", "jsonPath": ".spec.sinks.hbase.table"},
        {"name": "Job", "type": "string", "jsonPath": ".status.job.state"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def definition(
    *,
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    scope: str,
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
    status: bool,
) -> dict[str, Any]:
    """A CustomResourceDefinition of this API group, one served and stored version."""
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
    }
    if status:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": singular,
                "shortNames": short_names,
                "categories": ["fink"],
            },
            "versions": [version],
        },
    }


def crd() -> dict[str, Any]:
    """The BrokerPipeline CustomResourceDefinition document, ready to apply."""
    return definition(
        kind=KIND,
        plural=PLURAL,
        singular=SINGULAR,
        short_names=list(SHORT_NAMES),
        scope="Namespaced",
        schema=schema(),
        columns=_printer_columns(),
        status=True,
    )


def header(module: str) -> str:
    return (
        f"# Generated by `fink-operator crd` from {module}: edit that file,\n"
        "# then regenerate. A test fails when the two differ.\n"
    )


def render_yaml() -> str:
    return header("core/fink_core/crd.py") + yaml.safe_dump(crd(), sort_keys=False, width=100)
