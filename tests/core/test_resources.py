"""resources_of: a pipeline maps to exactly the topics and table it declares."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fink_core.errors import SpecError
from fink_core.resources import (
    RETENTION_KEY,
    FamilyState,
    TableState,
    TopicState,
    resources_of,
    split_keys,
)
from fink_core.spec import parse_pipeline

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "ztf-demo-pipeline.yaml"


def minimal(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "BrokerPipeline",
        "metadata": {"name": "p1", "namespace": "ns"},
        "spec": {"survey": "ztf", "source": {"kafka": {"topic": "alerts"}}},
    }
    body["spec"].update(spec)
    return body


def resources(document: dict[str, Any]) -> Any:
    return resources_of(parse_pipeline(document))


def test_example_pipeline_maps_to_three_topics_and_one_table() -> None:
    state = resources(yaml.safe_load(EXAMPLE.read_text()))
    assert state.topic_names == (
        "fink_early_sn_candidates_ztf",
        "fink_new_sso_candidates_ztf",
        "ztf-demo-deadletter",
    )
    early = state.topics[0]
    assert early.partitions == 2 and early.replication_factor == 1
    assert early.config == {RETENTION_KEY: "604800000"}
    assert state.table is not None and state.table.name == "ztf_demo_alerts"
    assert [f.name for f in state.table.families] == ["i", "d"]


def test_minimal_pipeline_has_only_the_dead_letter_topic_and_no_table() -> None:
    state = resources(minimal())
    assert state.topics == (TopicState("p1-deadletter", 1, 1, {RETENTION_KEY: "604800000"}),)
    assert state.table is None


def test_filters_inherit_topic_defaults_and_may_override_them() -> None:
    state = resources(
        minimal(
            filters=[
                {"name": "a"},
                {"name": "b", "topic": "custom", "partitions": 5, "config": {"x": "1"}},
            ],
            sinks={
                "kafka": {
                    "topicDefaults": {"partitions": 3, "retentionMs": 1000, "config": {"y": "2"}},
                    "deadLetterTopic": "dlq",
                }
            },
        )
    )
    by_name = {t.name: t for t in state.topics}
    assert set(by_name) == {"fink_a_ztf", "custom", "dlq"}
    assert by_name["fink_a_ztf"].partitions == 3
    assert by_name["fink_a_ztf"].config == {"y": "2", RETENTION_KEY: "1000"}
    assert by_name["custom"].partitions == 5
    assert by_name["custom"].config == {"y": "2", "x": "1", RETENTION_KEY: "1000"}


def test_lsst_topics_follow_the_survey() -> None:
    state = resources(minimal(survey="lsst", filters=[{"name": "kn"}]))
    assert "fink_kn_lsst" in state.topic_names


def test_table_families_with_versions_ttl_compression_and_bloom_filter() -> None:
    state = resources(
        minimal(
            sinks={
                "hbase": {
                    "table": "t",
                    "columnFamilies": [
                        {"name": "i"},
                        {
                            "name": "d",
                            "maxVersions": 3,
                            "ttlSeconds": 60,
                            "compression": "GZ",
                            "bloomFilter": "ROWCOL",
                        },
                    ],
                }
            },
        )
    )
    assert state.table is not None
    assert state.table.family("d") == FamilyState("d", 3, 60, "GZ", "ROWCOL")
    assert state.table.family("i") == FamilyState("i", 1, None, "NONE", "ROW")


def test_default_families_are_i_and_d() -> None:
    state = resources(minimal(sinks={"hbase": {"table": "t"}}))
    assert state.table is not None
    assert [f.name for f in state.table.families] == ["i", "d"]


def test_stored_cutouts_get_their_own_family_after_the_declared_ones() -> None:
    stored = resources(minimal(sinks={"hbase": {"table": "t", "cutouts": "store"}}))
    assert stored.table is not None
    assert [f.name for f in stored.table.families] == ["i", "d", "cutouts"]
    assert stored.table.family("cutouts") == FamilyState("cutouts", 1, None, "NONE", "ROW")
    for dropped in ({"table": "t"}, {"table": "t", "cutouts": "drop"}):
        state = resources(minimal(sinks={"hbase": dropped}))
        assert state.table is not None and state.table.family("cutouts") is None


def test_only_a_table_recorded_in_the_other_layout_is_a_mismatch() -> None:
    packed = TableState("t", (FamilyState("i"),), layout="packed")
    assert packed.layout_mismatch(None) is None  # no table yet: it is made packed
    assert packed.layout_mismatch("packed") is None
    assert packed.layout_mismatch("columns") == (
        "HBase table t holds its rows in the 'columns' layout and the spec asks for 'packed': "
        "rows of both in one table would mislead every reader, so nothing is written; set "
        "spec.sinks.hbase.layout to columns, or name a new table"
    )
    assert TableState("t", (FamilyState("i"),)).layout_mismatch("columns") is None


def test_pre_split_points_follow_the_salt() -> None:
    assert split_keys(1, 2) == () and split_keys(4, 0) == ()
    assert split_keys(4, 2) == ("25", "50", "75")
    assert split_keys(3, 1) == ("3", "6")
    state = resources(minimal(sinks={"hbase": {"table": "t", "saltDigits": 1, "regions": 10}}))
    assert state.table is not None and len(state.table.split_keys) == 9


def test_same_resource_same_state() -> None:
    body = yaml.safe_load(EXAMPLE.read_text())
    assert resources(body) == resources(copy.deepcopy(body))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"survey": "atlas"}, "spec.survey"),
        ({"filters": [{"name": "a"}, {"name": "a"}]}, "appears twice"),
        ({"filters": [{"name": "a", "partitions": 0}]}, "partitions"),
        ({"sinks": {"kafka": {"topicDefaults": {"retentionMs": 0}}}}, "retentionMs"),
        ({"sinks": {"hbase": {"columnFamilies": [{"name": "i"}]}}}, "table"),
        ({"deletionPolicy": "Orphan"}, "deletionPolicy"),
        ({"filters": [{"name": "a", "topic": "alerts"}]}, "is the source topic"),
        ({"sinks": {"kafka": {"deadLetterTopic": "alerts"}}}, "is the source topic"),
        ({"filters": [{"name": "a", "topic": "p1-deadletter"}]}, "also the dead-letter topic"),
        ({"sinks": {"hbase": {"table": "t", "regions": 20, "saltDigits": 1}}}, "saltDigits"),
        ({"sinks": {"hbase": {"table": "t", "saltDigits": "x"}}}, "whole number"),
        ({"modules": "quality_cuts"}, "spec.modules must be a list"),
        ({"sinks": {"hbase": {"table": "t", "cutouts": "keep"}}}, "cutouts must be one of"),
        (
            {
                "sinks": {
                    "hbase": {
                        "table": "t",
                        "cutouts": "store",
                        "columnFamilies": [{"name": "i"}, {"name": "cutouts"}],
                    }
                }
            },
            "'cutouts' is the family the pipeline stores cutouts in",
        ),
    ],
)
def test_invalid_documents_raise_spec_error_naming_the_field(spec: dict, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        resources(minimal(**spec))


def test_a_derived_dead_letter_name_beyond_kafkas_limit_is_refused() -> None:
    document = minimal()
    document["metadata"]["name"] = "p" * 245
    with pytest.raises(SpecError, match="more than Kafka's 249"):
        resources(document)
