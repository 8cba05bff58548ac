"""The CRD: generated YAML in sync with crd.py, defaults in sync with fink_pipeline.spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fink_operator import crd
from fink_operator.cli import main
from fink_pipeline import spec as model

ROOT = Path(__file__).parents[2]
MANIFEST = ROOT / "manifests" / "crds" / f"{crd.CRD_NAME}.yaml"


def test_manifest_is_generated_from_crd_py() -> None:
    assert MANIFEST.read_text() == crd.render_yaml(), (
        "manifests/crds is stale: run `fink-operator crd > " + str(MANIFEST.relative_to(ROOT)) + "`"
    )


def test_cli_prints_the_same_yaml(capsys: Any) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd.render_yaml()


def _spec_schema() -> dict[str, Any]:
    return crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_names_and_subresources() -> None:
    document = crd.crd()
    names = document["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "BrokerPipeline",
        "brokerpipelines",
        ["bp"],
    )
    version = document["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Ready", "Topics", "Table", "Age"} <= columns


def test_defaults_match_the_shared_model() -> None:
    schema = _spec_schema()["properties"]
    topic_defaults = schema["sinks"]["properties"]["kafka"]["properties"]["topicDefaults"][
        "properties"
    ]
    settings = model.TopicSettings()
    assert topic_defaults["partitions"]["default"] == settings.partitions
    assert topic_defaults["replicationFactor"]["default"] == settings.replication_factor
    assert topic_defaults["retentionMs"]["default"] == settings.retention_ms
    hbase = schema["sinks"]["properties"]["hbase"]["properties"]
    assert [f["name"] for f in hbase["columnFamilies"]["default"]] == list(model.DEFAULT_FAMILIES)
    assert schema["survey"]["enum"] == list(model.SURVEYS)
    assert schema["deletionPolicy"]["default"] == "Retain"
    assert (
        schema["source"]["properties"]["kafka"]["properties"]["startingOffsets"]["default"]
        == "earliest"
    )
    spark = schema["spark"]["properties"]
    defaults = model.SparkSettings()
    assert spark["triggerInterval"]["default"] == defaults.trigger_interval
    assert spark["driver"]["properties"]["memory"]["default"] == defaults.driver_memory
    assert spark["executor"]["properties"]["instances"]["default"] == defaults.executor_instances


def test_filter_settings_have_no_defaults_so_they_inherit_topic_defaults() -> None:
    item = _spec_schema()["properties"]["filters"]["items"]["properties"]
    assert all("default" not in item[k] for k in ("partitions", "replicationFactor", "retentionMs"))


def _fields(schema: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for name, sub in (schema.get("properties") or {}).items():
        found.add(prefix + name)
        found |= _fields(sub, prefix + name + ".")
        if sub.get("type") == "array":
            found |= _fields(sub["items"], prefix + name + "[].")
    return found


def test_every_field_the_parser_reads_is_in_the_schema() -> None:
    fields = _fields(_spec_schema())
    for path in [
        "survey",
        "source.kafka.topic",
        "source.kafka.bootstrapServers",
        "source.kafka.startingOffsets",
        "source.kafka.credentialsSecretRef.name",
        "source.kafka.maxOffsetsPerTrigger",
        "modules[].name",
        "modules[].parameters",
        "filters[].name",
        "filters[].topic",
        "filters[].partitions",
        "filters[].replicationFactor",
        "filters[].retentionMs",
        "filters[].config",
        "sinks.kafka.bootstrapServers",
        "sinks.kafka.deadLetterTopic",
        "sinks.kafka.topicDefaults.partitions",
        "sinks.hbase.table",
        "sinks.hbase.columnFamilies[].name",
        "sinks.hbase.columnFamilies[].maxVersions",
        "sinks.hbase.columnFamilies[].ttlSeconds",
        "sinks.hbase.thrift.host",
        "sinks.hbase.thrift.port",
        "sinks.hbase.saltDigits",
        "sinks.archive.path",
        "spark.image",
        "spark.driver.cores",
        "spark.driver.memory",
        "spark.executor.instances",
        "spark.executor.cores",
        "spark.executor.memory",
        "spark.triggerInterval",
        "spark.checkpointLocation",
        "spark.sparkConf",
        "deletionPolicy",
    ]:
        assert path in fields, path


def test_example_manifests_parse_with_the_shared_model() -> None:
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == model.KIND:
                model.parse_pipeline(document)
