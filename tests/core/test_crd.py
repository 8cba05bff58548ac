"""The CRD, the API server's view of the shared model: in sync with it, and self-explaining.

- the YAML in manifests/crds is what crd.py and claims.py generate;
- the schema's defaults are the parser's;
- every property of the schema changes what the parser returns (a property the
  model ignored would be accepted by the API server and silently do nothing);
- every schema node has a description, so `kubectl explain` helps at every level.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fink_core import crd, filter_crd
from fink_core import spec as model
from fink_operator import claims
from fink_operator.cli import main, render_crds

ROOT = Path(__file__).parents[2]
MANIFESTS = {
    ROOT / "manifests" / "crds" / f"{crd.CRD_NAME}.yaml": crd.render_yaml,
    ROOT / "manifests" / "crds" / f"{claims.CRD_NAME}.yaml": claims.render_yaml,
    ROOT / "manifests" / "crds" / f"{filter_crd.CRD_NAME}.yaml": filter_crd.render_yaml,
}


@pytest.mark.parametrize("manifest", sorted(MANIFESTS), ids=lambda p: p.name)
def test_manifests_are_generated_from_the_code(manifest: Path) -> None:
    assert manifest.read_text() == MANIFESTS[manifest](), (
        f"{manifest.relative_to(ROOT)} is stale: regenerate it with `fink-operator crd`"
    )


def test_cli_prints_both_crds(capsys: Any) -> None:
    assert main(["crd"]) == 0
    printed = capsys.readouterr().out
    assert printed == render_crds()
    kinds = [d["spec"]["names"]["kind"] for d in yaml.safe_load_all(printed)]
    assert kinds == ["BrokerPipeline", "ScienceFilter", "SinkClaim"]


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
    family = hbase["columnFamilies"]["items"]["properties"]
    family_defaults = model.ColumnFamily(name="_")
    assert family["compression"]["default"] == family_defaults.compression
    assert family["bloomFilter"]["default"] == family_defaults.bloom_filter
    assert family["maxVersions"]["default"] == family_defaults.max_versions
    assert hbase["regions"]["default"] == model.HBaseSink("t", ()).regions
    spark = schema["spark"]["properties"]
    defaults = model.SparkSettings()
    assert spark["triggerInterval"]["default"] == defaults.trigger_interval
    assert spark["driver"]["properties"]["memory"]["default"] == defaults.driver_memory
    assert spark["executor"]["properties"]["instances"]["default"] == defaults.executor_instances


def test_filter_settings_have_no_defaults_so_they_inherit_topic_defaults() -> None:
    item = _spec_schema()["properties"]["filters"]["items"]["properties"]
    assert all("default" not in item[k] for k in ("partitions", "replicationFactor", "retentionMs"))


def _nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize(
    "document",
    [crd.crd(), filter_crd.crd(), claims.crd()],
    ids=["BrokerPipeline", "ScienceFilter", "SinkClaim"],
)
def test_every_schema_node_has_a_description(document: dict[str, Any]) -> None:
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [path for path, node in _nodes(schema, "") if not node.get("description")]
    assert missing == [".metadata"]  # the API server refuses anything but a type there


def test_conditions_carry_the_fields_of_kep_1623() -> None:
    status = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    condition = status["properties"]["conditions"]["items"]
    assert set(condition["required"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }
    assert condition["properties"]["reason"]["pattern"] == crd.CONDITION_REASON_PATTERN


# --- every property of the schema is read by the parser ------------------------------

# Two distinct valid values for each kind of leaf (A, B); strings with patterns get
# values their pattern accepts.
PATTERN_SAMPLES = {
    crd.TOPIC_NAME_PATTERN: ("topic-a", "topic-b"),
    crd.TABLE_NAME_PATTERN: ("table_a", "ns:table_b"),
    crd.FAMILY_NAME_PATTERN: ("fa", "fb"),
    crd.NAME_PATTERN: ("name-a", "name-b"),
    crd.MEMORY_PATTERN: ("2g", "3g"),
    crd.CPU_PATTERN: ("250m", "1.5"),
    crd.INTERVAL_PATTERN: ("5 seconds", "1 minute"),
    crd.BOOTSTRAP_PATTERN: ("a:1", "b:2"),
    crd.URL_PATTERN: ("http://a:8081/apis/ccompat/v7", "https://b"),
}
# leaves whose value needs a companion to be valid
COMPANIONS = {
    "spec.sinks.hbase.regions": {"spec.sinks.hbase.saltDigits": 3},
    "spec.source.kafka.schemaRegistry": {"spec.survey": "lsst"},
}


def _samples(node: dict[str, Any]) -> tuple[Any, Any]:
    if "enum" in node:
        values = [v for v in node["enum"] if v != node.get("default")]
        return (values[0], values[-1]) if len(values) > 1 else (node.get("default"), values[0])
    kind = node.get("type")
    if kind == "integer":
        low = int(node.get("minimum", 1))
        return (low + 2, low + 3)
    if kind == "boolean":
        return (True, False)
    if kind == "string":
        return PATTERN_SAMPLES.get(node.get("pattern", ""), ("value-a", "value-b"))
    if kind == "array":
        first, second = _samples(node["items"])
        return ([first], [second])
    if kind == "object" and node.get("x-kubernetes-preserve-unknown-fields"):
        return ({"p": 1}, {"p": 2})
    if kind == "object" and "additionalProperties" in node:
        return ({"k": "a"}, {"k": "b"})
    raise AssertionError(f"no samples for {node}")


def _leaves(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    properties = node.get("properties")
    if node.get("type") == "array" and node["items"].get("properties"):
        yield from _leaves(node["items"], f"{path}[]")
    elif properties:
        for name, sub in properties.items():
            yield from _leaves(sub, f"{path}.{name}")
    else:
        yield path, node


def _schema_at(path: str) -> dict[str, Any]:
    node = crd.schema()
    for part in path.split("."):
        node = node["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = node["items"]
    return node


def _put(document: dict[str, Any], path: str, value: Any) -> None:
    """Set path (e.g. spec.filters[].topic), creating its parents with their required fields
    (an array parent gets one element)."""
    node: Any = document
    parts = path.split(".")
    walked = ""
    for part in parts[:-1]:
        name = part.removesuffix("[]")
        walked = f"{walked}.{name}" if walked else name
        if part.endswith("[]"):
            node = node.setdefault(name, [{}])[0]
            walked += "[]"
        else:
            node = node.setdefault(name, {})
        for required in _schema_at(walked).get("required", []):
            if required not in node and f"{walked}.{required}" != path:
                node[required] = _samples(_schema_at(f"{walked}.{required}"))[0]
    node[parts[-1]] = value


def _spec_leaves() -> list[str]:
    return [p for p, _ in _leaves(crd.schema()["properties"]["spec"], "spec")]


@pytest.mark.parametrize("path", _spec_leaves())
def test_the_parser_reads_every_property_of_the_schema(path: str) -> None:
    base = {
        "apiVersion": f"{model.API_GROUP}/{model.API_VERSION}",
        "kind": model.KIND,
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"survey": "ztf", "source": {"kafka": {"topic": "alerts"}}},
    }
    parsed = []
    for value in _samples(_schema_at(path)):
        document = copy.deepcopy(base)
        for companion, companion_value in COMPANIONS.get(path, {}).items():
            _put(document, companion, companion_value)
        _put(document, path, value)
        parsed.append(model.parse_pipeline(document))
    assert parsed[0] != parsed[1], f"{path}: the parser ignores this property of the schema"


def test_example_manifests_parse_with_the_shared_model() -> None:
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == model.KIND:
                model.parse_pipeline(document)


def test_the_reference_in_docs_is_generated_from_the_schema(capsys: Any) -> None:
    from fink_core import reference

    path = ROOT / "docs" / "reference.md"
    assert path.read_text() == reference.render(), (
        "docs/reference.md is stale: run `fink-operator reference > docs/reference.md`"
    )
    assert main(["reference"]) == 0
    assert capsys.readouterr().out == reference.render()
    for leaf in _spec_leaves():  # every field of the schema has its row
        assert f"`{leaf}`" in path.read_text(), leaf
