"""The BrokerPipeline CustomResourceDefinition, built in Python as the one source of truth.

manifests/crds/brokerpipelines.fink.broker.dev.yaml is generated from `crd()`
(`fink-operator crd > manifests/crds/...`) and a test fails when the two differ,
so the YAML a user applies and the schema the tests exercise cannot drift apart.

Defaults here mirror those of fink_pipeline.spec (a test checks that too): a
document read from a file and one read back from the API server must parse the
same. Filter-level topic settings carry no schema default on purpose: they
inherit spec.sinks.kafka.topicDefaults, which only the parser knows how to do.
"""

from __future__ import annotations

from typing import Any

import yaml

from fink_pipeline import spec as model

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
INTERVAL_PATTERN = r"^[0-9]+ (millisecond|second|minute|hour)s?$"
MAX_PARTITIONS = 10_000
MAX_REPLICATION = 32


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _integer(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **extra}


def _string_map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }


def _reference(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "required": ["name"],
        "properties": {"name": _string("Name of the object, in the pipeline's namespace.")},
    }


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
                "Copies of each partition; at most the number of Kafka brokers.",
                minimum=1,
                maximum=MAX_REPLICATION,
                **({"default": defaults.replication_factor} if defaults else {}),
            ),
            "retentionMs": _retention(defaults.retention_ms if defaults else None),
            "config": _string_map(
                "Other Kafka topic configs (e.g. cleanup.policy, max.message.bytes)."
            ),
        },
    }


def _source() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Where the survey's alerts come from.",
        "required": ["kafka"],
        "properties": {
            "kafka": {
                "type": "object",
                "required": ["topic"],
                "properties": {
                    "topic": _string(
                        "Kafka topic carrying the survey's Avro alerts.",
                        minLength=1,
                        maxLength=249,
                        pattern=TOPIC_NAME_PATTERN,
                    ),
                    "bootstrapServers": _string(
                        "host:port[,host:port]; defaults to the operator's Kafka."
                    ),
                    "startingOffsets": _string(
                        "Where a new pipeline starts reading.",
                        enum=list(model.STARTING_OFFSETS),
                        default="earliest",
                    ),
                    "credentialsSecretRef": _reference(
                        "Secret holding librdkafka settings (sasl.username, ...)."
                    ),
                    "maxOffsetsPerTrigger": _integer(
                        "Upper bound of alerts read per micro-batch.", minimum=1
                    ),
                },
            }
        },
    }


def _modules() -> dict[str, Any]:
    return {
        "type": "array",
        "description": "Science modules run on every alert, in this order.",
        "maxItems": 64,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": _string("Module name, e.g. lightcurve_features.", pattern=NAME_PATTERN),
                "parameters": {
                    "type": "object",
                    "description": "Module parameters, passed as they are.",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        },
    }


def _filters() -> dict[str, Any]:
    item = _topic_settings(
        "A science filter; the alerts it selects go to its own topic.", with_defaults=False
    )
    item["required"] = ["name"]
    item["properties"] = {
        "name": _string(
            "Filter name, e.g. early_sn_candidates.", maxLength=100, pattern=NAME_PATTERN
        ),
        "topic": _string(
            "Output topic; defaults to fink_<name>_<survey>.",
            maxLength=249,
            pattern=TOPIC_NAME_PATTERN,
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


def _hbase() -> dict[str, Any]:
    family_defaults = model.ColumnFamily(name="_")
    return {
        "type": "object",
        "description": "HBase table receiving every enriched alert (row key objectId_jd).",
        "required": ["table"],
        "properties": {
            "table": _string(
                "Table name, optionally ns:table. It cannot be renamed.",
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
                "description": "Column families: i for alert fields, d for added values.",
                "minItems": 1,
                "maxItems": 16,
                "default": [{"name": n} for n in model.DEFAULT_FAMILIES],
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": _string("Family name.", maxLength=64, pattern=FAMILY_NAME_PATTERN),
                        "maxVersions": _integer(
                            "Cell versions kept.",
                            minimum=1,
                            maximum=1000,
                            default=family_defaults.max_versions,
                        ),
                        "ttlSeconds": _integer(
                            "Cells expire after this many seconds; unset: never.",
                            minimum=1,
                            maximum=2_147_483_646,
                        ),
                    },
                },
            },
            "thrift": {
                "type": "object",
                "description": "HBase Thrift gateway; defaults to the operator's.",
                "properties": {
                    "host": _string("Host name or address."),
                    "port": _integer("TCP port.", minimum=1, maximum=65535),
                },
            },
            "saltDigits": _integer(
                "Leading digits of the object id put first in row keys, to spread writes.",
                minimum=0,
                maximum=8,
                default=0,
            ),
        },
    }


def _sinks() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Where enriched alerts go.",
        "default": {},
        "properties": {
            "kafka": {
                "type": "object",
                "default": {},
                "properties": {
                    "bootstrapServers": _string(
                        "host:port[,host:port]; defaults to the operator's Kafka."
                    ),
                    "credentialsSecretRef": _reference(
                        "Secret whose keys are librdkafka settings (security.protocol, "
                        "sasl.mechanism, sasl.username, sasl.password, ...)."
                    ),
                    "deadLetterTopic": _string(
                        "Topic for alerts that fail; defaults to <pipeline>-deadletter.",
                        maxLength=249,
                        pattern=TOPIC_NAME_PATTERN,
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
                "properties": {"path": _string("Parquet archive location.")},
            },
            "connectionsFrom": {
                "type": "object",
                "description": "ConfigMap with keys kafka.bootstrapServers, hbase.thrift.host, "
                "hbase.thrift.port; explicit fields above take precedence.",
                "properties": {"configMapRef": _reference("The ConfigMap.")},
            },
        },
    }


def _spark() -> dict[str, Any]:
    defaults = model.SparkSettings()

    def role(instances: bool, cores: int, memory: str) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "cores": _integer("CPU cores.", minimum=1, maximum=64, default=cores),
            "memory": _string("Memory, e.g. 2g.", pattern=MEMORY_PATTERN, default=memory),
        }
        if instances:
            properties["instances"] = _integer(
                "Executor count.", minimum=0, maximum=1000, default=defaults.executor_instances
            )
        return {"type": "object", "default": {}, "properties": properties}

    return {
        "type": "object",
        "description": "The Spark structured-streaming job running the pipeline.",
        "default": {},
        "properties": {
            "image": _string("Container image of the driver and executors."),
            "driver": role(False, defaults.driver_cores, defaults.driver_memory),
            "executor": role(True, defaults.executor_cores, defaults.executor_memory),
            "triggerInterval": _string(
                "Micro-batch interval, e.g. '10 seconds'.",
                pattern=INTERVAL_PATTERN,
                default=defaults.trigger_interval,
            ),
            "checkpointLocation": _string("Where the stream keeps its progress."),
            "sparkConf": _string_map("Extra Spark settings."),
        },
    }


def _status() -> dict[str, Any]:
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": _string("TopicsReady, TablesReady or Ready."),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _string("CamelCase cause."),
            "message": _string("What happened and, if needed, what to change."),
            "lastTransitionTime": _string("When status last changed.", format="date-time"),
            "observedGeneration": _integer("Generation this condition describes.", format="int64"),
        },
    }
    return {
        "type": "object",
        "properties": {
            "observedGeneration": _integer("Last generation reconciled.", format="int64"),
            "phase": _string("Pending, Ready, Degraded, Waiting or Deleting."),
            "conditions": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": condition,
            },
            "topics": {
                "type": "array",
                "description": "Kafka topics this pipeline owns.",
                "items": {"type": "string"},
            },
            "topicCount": _integer("Number of owned topics."),
            "tables": {
                "type": "array",
                "description": "HBase tables this pipeline owns.",
                "items": {"type": "string"},
            },
        },
    }


def schema() -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a BrokerPipeline."""
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["survey", "source"],
                "properties": {
                    "survey": _string(
                        "Which survey's alerts the pipeline reads.", enum=list(model.SURVEYS)
                    ),
                    "source": _source(),
                    "modules": _modules(),
                    "filters": _filters(),
                    "sinks": _sinks(),
                    "spark": _spark(),
                    "deletionPolicy": _string(
                        "Retain keeps topics and table when the pipeline is deleted; "
                        "Delete removes them.",
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
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition document, ready to apply."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["fink"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                }
            ],
        },
    }


HEADER = (
    "# Generated by `fink-operator crd` from operator/fink_operator/crd.py: edit that file,\n"
    "# then regenerate. tests/operator/test_crd.py fails when the two differ.\n"
)


def render_yaml() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)
