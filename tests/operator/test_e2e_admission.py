"""The API server itself refuses invalid pipelines, with messages that say what to fix.

No operator runs here: these prove the CRD's schema and CEL rules, which is
what a user meets first with `kubectl apply`.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest
import yaml
from cluster import Pipelines
from kubernetes.client.rest import ApiException
from pipeline_documents import minimal

from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout
from fink_stack.services import KUBERNETES

pytestmark = pytest.mark.stack


def refusal(pipelines: Pipelines, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        pipelines.create(body)
    assert caught.value.status == 422, caught.value.body
    return json.loads(caught.value.body)["message"]


def with_spec(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node = body["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("survey", _DELETE, "spec.survey: Required value"),
        ("source.kafka.topic", _DELETE, "spec.source.kafka.topic: Required value"),
        (
            "survey",
            "atlas",
            'spec.survey: Unsupported value: "atlas": supported values: "ztf", "lsst"',
        ),
        (
            "filters",
            [{"name": "a", "partitions": "two"}],
            'spec.filters[0].partitions: Invalid value: "string": spec.filters[0].partitions in body must be of type integer',
        ),
        (
            "filters",
            [{"name": "a", "partitions": 0}],
            "spec.filters[0].partitions: Invalid value: 0: spec.filters[0].partitions in body should be greater than or equal to 1",
        ),
        (
            "filters",
            [{"name": "a", "replicationFactor": 100}],
            "should be less than or equal to 32",
        ),
        (
            "filters",
            [{"name": "a", "retentionMs": 0}],
            "retentionMs must be positive (milliseconds), or -1 to keep messages forever",
        ),
        (
            "filters",
            [{"name": "a"}, {"name": "a"}],
            'spec.filters[1]: Duplicate value: {"name":"a"}',
        ),
        ("filters", [{"name": "Early SN!"}], "spec.filters[0].name in body should match"),
        (
            "deletionPolicy",
            "Orphan",
            'spec.deletionPolicy: Unsupported value: "Orphan": supported values: "Retain", "Delete"',
        ),
        (
            "sinks",
            {"hbase": {"columnFamilies": [{"name": "i"}]}},
            "spec.sinks.hbase.table: Required value",
        ),
        (
            "sinks",
            {"hbase": {"table": "t", "columnFamilies": [{"name": "d", "maxVersions": 0}]}},
            "maxVersions in body should be greater than or equal to 1",
        ),
        ("spark", {"triggerInterval": "often"}, "spec.spark.triggerInterval in body should match"),
        (
            "sinks",
            {"hbase": {"table": "t", "cutouts": "keep"}},
            'spec.sinks.hbase.cutouts: Unsupported value: "keep": supported values: "store", '
            '"drop"',
        ),
        (
            "sinks",
            {"hbase": {"table": "t", "cutouts": "store", "columnFamilies": [{"name": "cutouts"}]}},
            "spec.sinks.hbase.columnFamilies: Invalid value: column family 'cutouts' is where "
            "the pipeline stores cutouts (cutouts: store): give your family another name",
        ),
    ],
    ids=[
        "missing-survey",
        "missing-source-topic",
        "unknown-survey",
        "wrong-type",
        "zero-partitions",
        "too-many-replicas",
        "zero-retention",
        "duplicate-filter",
        "bad-filter-name",
        "unknown-deletion-policy",
        "table-without-name",
        "zero-versions",
        "bad-trigger-interval",
        "unknown-cutouts-mode",
        "family-named-cutouts",
    ],
)
def test_invalid_pipelines_are_refused_with_a_readable_message(
    pipelines: Pipelines, unique_name: str, path: str, value: Any, expected: str
) -> None:
    message = refusal(pipelines, with_spec(minimal(name=unique_name), path, value))
    assert expected in message, message


def test_cutouts_default_to_drop_and_rubins_may_be_stored(
    pipelines: Pipelines, unique_name: str
) -> None:
    body = minimal(name=unique_name, survey="lsst", sinks={"hbase": {"table": "t"}})
    created = pipelines.create(body)
    assert created["spec"]["sinks"]["hbase"]["cutouts"] == "drop"
    stored = minimal(name=f"{unique_name}-s", survey="lsst", sinks={"hbase": {"table": "t2"}})
    stored = with_spec(stored, "sinks.hbase.cutouts", "store")
    assert pipelines.create(stored)["spec"]["sinks"]["hbase"]["cutouts"] == "store"


def test_defaults_are_filled_in_by_the_api_server(pipelines: Pipelines, unique_name: str) -> None:
    created = pipelines.create(minimal(name=unique_name, sinks={"hbase": {"table": "t"}}))
    spec = created["spec"]
    assert spec["deletionPolicy"] == "Retain"
    assert spec["source"]["kafka"]["startingOffsets"] == "earliest"
    assert spec["sinks"]["kafka"]["topicDefaults"] == {
        "partitions": 1,
        "replicationFactor": 1,
        "retentionMs": 604800000,
    }
    family = {"maxVersions": 1, "compression": "NONE", "bloomFilter": "ROW"}
    assert spec["sinks"]["hbase"]["columnFamilies"] == [
        {"name": "i", **family},
        {"name": "d", **family},
    ]
    assert spec["sinks"]["hbase"]["regions"] == 1


def update_refusal(pipelines: Pipelines, name: str, patch: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        pipelines.patch(name, patch)
    assert caught.value.status == 422, caught.value.body
    return json.loads(caught.value.body)["message"]


def test_partitions_may_grow_but_never_shrink(pipelines: Pipelines, unique_name: str) -> None:
    pipelines.create(
        minimal(
            name=unique_name,
            filters=[{"name": "a", "partitions": 4}],
            sinks={"kafka": {"topicDefaults": {"partitions": 3}}, "hbase": {"table": "t"}},
        )
    )
    pipelines.patch(unique_name, {"spec": {"filters": [{"name": "a", "partitions": 6}]}})
    message = update_refusal(
        pipelines, unique_name, {"spec": {"filters": [{"name": "a", "partitions": 2}]}}
    )
    assert "spec.filters[0].partitions: Forbidden: partitions may grow but never shrink" in message
    message = update_refusal(
        pipelines, unique_name, {"spec": {"sinks": {"kafka": {"topicDefaults": {"partitions": 1}}}}}
    )
    assert "spec.sinks.kafka.topicDefaults.partitions: Forbidden: partitions may grow" in message
    message = update_refusal(
        pipelines, unique_name, {"spec": {"sinks": {"hbase": {"table": "t2"}}}}
    )
    assert "the HBase table of a pipeline cannot be renamed" in message


def test_the_survey_cannot_change_on_a_live_pipeline(
    pipelines: Pipelines, unique_name: str
) -> None:
    pipelines.create(minimal(name=unique_name))
    message = update_refusal(pipelines, unique_name, {"spec": {"survey": "lsst"}})
    assert "spec.survey cannot change on a live pipeline" in message
    assert "create a new BrokerPipeline for the other survey" in message


def test_the_hbase_layout_defaults_to_columns_and_cannot_change_on_a_live_pipeline(
    pipelines: Pipelines, unique_name: str
) -> None:
    created = pipelines.create(minimal(name=unique_name, sinks={"hbase": {"table": "t"}}))
    assert created["spec"]["sinks"]["hbase"]["layout"] == "columns"
    message = update_refusal(
        pipelines, unique_name, {"spec": {"sinks": {"hbase": {"layout": "packed"}}}}
    )
    assert "the HBase layout of a pipeline cannot change" in message
    packed = minimal(name=f"{unique_name}-p", sinks={"hbase": {"table": "t2", "layout": "packed"}})
    assert pipelines.create(packed)["spec"]["sinks"]["hbase"]["layout"] == "packed"
    wrong = minimal(name=f"{unique_name}-w", sinks={"hbase": {"table": "t3", "layout": "json"}})
    assert 'Unsupported value: "json"' in refusal(pipelines, wrong)


def test_a_derived_dead_letter_name_must_fit_kafkas_limit(
    pipelines: Pipelines, unique_name: str
) -> None:
    long_name = (unique_name + "-" + "x" * 250)[:240]
    message = refusal(pipelines, minimal(name=long_name))
    assert "would exceed Kafka's 249 characters" in message
    named = minimal(name=long_name, sinks={"kafka": {"deadLetterTopic": "short-dlq"}})
    assert pipelines.create(named)["metadata"]["name"] == long_name


def test_kubectl_apply_shows_the_message(stack: Endpoints, namespace: str, tmp_path: Any) -> None:
    """With the stack's own kubectl (same version as the apiserver), never the machine's."""
    kubectl = KUBERNETES.binary(Layout.default().cache, "kubectl")
    assert kubectl.exists(), f"the stack's kubectl is missing at {kubectl}"
    manifest = tmp_path / "bad.yaml"
    body = minimal(name="bad", namespace=namespace, survey="atlas")
    body["spec"]["filters"] = [{"name": "a", "partitions": 0}]
    manifest.write_text(yaml.safe_dump(body))
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(stack.kubeconfig), "apply", "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert 'spec.survey: Unsupported value: "atlas"' in result.stderr
    assert "spec.filters[0].partitions" in result.stderr
