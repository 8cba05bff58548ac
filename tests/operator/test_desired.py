"""desired_state: a resource maps to exactly the topics and table it declares."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from pipeline_documents import minimal

from fink_operator.desired import (
    HBASE_FOREVER,
    RETENTION_KEY,
    FamilyState,
    TopicState,
    desired_state,
    family_from_hbase,
)
from fink_pipeline.spec import SpecError

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "ztf-demo-pipeline.yaml"


def test_example_pipeline_maps_to_three_topics_and_one_table() -> None:
    state = desired_state(yaml.safe_load(EXAMPLE.read_text()))
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
    assert state.deletion_policy == "Retain" and not state.deletes_data


def test_minimal_pipeline_has_only_the_dead_letter_topic_and_no_table() -> None:
    state = desired_state(minimal())
    assert state.topics == (TopicState("p1-deadletter", 1, 1, {RETENTION_KEY: "604800000"}),)
    assert state.table is None


def test_filters_inherit_topic_defaults_and_may_override_them() -> None:
    state = desired_state(
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
    state = desired_state(minimal(survey="lsst", filters=[{"name": "kn"}]))
    assert "fink_kn_lsst" in state.topic_names


def test_table_families_with_versions_and_ttl() -> None:
    state = desired_state(
        minimal(
            sinks={
                "hbase": {
                    "table": "t",
                    "columnFamilies": [
                        {"name": "i"},
                        {"name": "d", "maxVersions": 3, "ttlSeconds": 60},
                    ],
                }
            },
            deletionPolicy="Delete",
        )
    )
    assert state.table is not None
    assert state.table.family("d") == FamilyState("d", 3, 60)
    assert state.table.family("i") == FamilyState("i", 1, None)
    assert state.deletes_data


def test_default_families_are_i_and_d() -> None:
    state = desired_state(minimal(sinks={"hbase": {"table": "t"}}))
    assert state.table is not None
    assert [f.name for f in state.table.families] == ["i", "d"]


def test_same_resource_same_state() -> None:
    body = yaml.safe_load(EXAMPLE.read_text())
    assert desired_state(body) == desired_state(copy.deepcopy(body))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"survey": "atlas"}, "spec.survey"),
        ({"filters": [{"name": "a"}, {"name": "a"}]}, "appears twice"),
        ({"filters": [{"name": "a", "partitions": 0}]}, "partitions"),
        ({"sinks": {"kafka": {"topicDefaults": {"retentionMs": 0}}}}, "retentionMs"),
        ({"sinks": {"hbase": {"columnFamilies": [{"name": "i"}]}}}, "table"),
        ({"deletionPolicy": "Orphan"}, "deletionPolicy"),
    ],
)
def test_invalid_documents_raise_spec_error_naming_the_field(spec: dict, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        desired_state(minimal(**spec))


def test_hbase_descriptor_without_ttl_means_forever() -> None:
    assert family_from_hbase(
        "i", {"max_versions": 1, "time_to_live": HBASE_FOREVER}
    ) == FamilyState("i", 1, None)
    assert family_from_hbase("d", {"max_versions": 2, "time_to_live": 30}) == FamilyState(
        "d", 2, 30
    )
