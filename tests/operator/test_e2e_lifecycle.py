"""End to end, against the real apiserver, Kafka and HBase: a pipeline's life as a user sees it."""

from __future__ import annotations

import time

import pytest
from cluster import HBase, Kafka, Pipelines, wait_for
from conftest import OperatorProcess
from pipeline_documents import minimal

from fink_core.connections import Address
from fink_core.hbase_admin import HBaseAdmin
from fink_core.resources import FamilyState
from fink_operator.config import FINALIZER
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


MODULES = [{"name": "quality_cuts"}, {"name": "lightcurve_features"}, {"name": "solar_system"}]
FILTERS = {"early_sn": "early_sn_candidates", "sso": "new_sso_candidates"}


def pipeline(name: str, **spec: object) -> dict:
    """A pipeline with two filters and a table, all named after the test."""
    table = name.replace("-", "_")
    base = {
        "modules": MODULES,
        "filters": [{"name": "early_sn", "partitions": 2}, {"name": "sso"}],
        "sinks": {
            "kafka": {
                "topicDefaults": {"retentionMs": 3_600_000, "config": {"cleanup.policy": "delete"}}
            },
            "hbase": {"table": table},
        },
    }
    base.update(spec)
    body = minimal(name=name, **base)
    body["spec"]["filters"] = [
        {**f, "name": FILTERS[f["name"]], "topic": f"{name}.{f['name']}"}
        for f in base["filters"]  # type: ignore[attr-defined]
    ]
    return body


def test_apply_creates_topics_and_table_and_reaches_ready(
    pipelines: Pipelines,
    running_operator: OperatorProcess,
    kafka: Kafka,
    hbase: HBase,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    table = name.replace("-", "_")
    leftovers["topics"] += [f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"]
    leftovers["tables"].append(table)
    pipelines.create(pipeline(name))

    body = pipelines.wait_ready(name)
    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["topics"] == sorted([f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"])
    assert status["tables"] == [table] and status["topicCount"] == 3 and status["phase"] == "Ready"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "TopicsReady": "True",
        "TablesReady": "True",
        "Ready": "True",
    }
    topics = kafka.topics()
    assert topics[f"{name}.early_sn"] == 2 and topics[f"{name}.sso"] == 1
    assert kafka.config(f"{name}.sso", "retention.ms") == "3600000"
    assert kafka.config(f"{name}.sso", "cleanup.policy") == "delete"
    assert hbase.families(table) == {"i": FamilyState("i"), "d": FamilyState("d")}
    # Retain: nothing to clean up at deletion, so no finalizer blocks the resource
    assert FINALIZER not in (body["metadata"].get("finalizers") or [])
    events = wait_for(
        lambda: (
            {e.reason: e.message for e in pipelines.events(name)}
            if {"TopicCreated", "TableCreated", "Reconciled"}
            <= {e.reason for e in pipelines.events(name)}
            else None
        ),
        what="creation events",
    )
    for topic in status["topics"]:  # one event names every topic created by the pass
        assert topic in events["TopicCreated"]
    assert len(pipelines.events(name)) == 3  # and nothing else, not even on later drift sweeps


def test_partitions_grow_and_retention_changes_are_applied(
    pipelines: Pipelines,
    running_operator: OperatorProcess,
    kafka: Kafka,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"]
    leftovers["tables"].append(name.replace("-", "_"))
    body = pipeline(name)
    pipelines.create(body)
    pipelines.wait_ready(name)

    filters = body["spec"]["filters"]
    filters[0] = {**filters[0], "partitions": 4, "retentionMs": 120_000}
    pipelines.patch(name, {"spec": {"filters": filters}})
    pipelines.wait_ready(name)
    assert kafka.topics()[f"{name}.early_sn"] == 4
    assert kafka.config(f"{name}.early_sn", "retention.ms") == "120000"
    assert kafka.config(f"{name}.sso", "retention.ms") == "3600000"
    assert "TopicChanged" in {e.reason for e in pipelines.events(name)}


def test_shrink_behind_admission_is_refused_and_family_changes_are_applied(
    pipelines: Pipelines,
    running_operator: OperatorProcess,
    kafka: Kafka,
    hbase: HBase,
    unique_name: str,
    leftovers: dict,
) -> None:
    """What CEL cannot see (a filter dropping its own partitions for a smaller default)
    ends in a condition that says what to do; a family's settings change in place; a
    family's removal is refused."""
    name = unique_name
    table = name.replace("-", "_")
    leftovers["topics"] += [f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"]
    leftovers["tables"].append(table)
    body = pipeline(name)
    pipelines.create(body)
    pipelines.wait_ready(name)

    filters = [
        {"name": "early_sn_candidates", "topic": f"{name}.early_sn"},
        body["spec"]["filters"][1],
    ]
    pipelines.patch(name, {"spec": {"filters": filters}})
    refused = pipelines.wait_reason(name, "TopicsReady", "PartitionDecreaseNotSupported")
    assert refused["status"] == "False"
    assert "Kafka cannot remove partitions" in refused["message"]
    assert "at least 2" in refused["message"]
    assert kafka.topics()[f"{name}.early_sn"] == 2
    ready = pipelines.condition(name)
    assert ready["status"] == "False" and ready["reason"] == "PartitionDecreaseNotSupported"

    families = [
        {"name": "i"},
        {"name": "d", "maxVersions": 3, "ttlSeconds": 86400, "compression": "GZ"},
        {"name": "c", "bloomFilter": "ROWCOL"},
    ]
    pipelines.patch(
        name,
        {
            "spec": {
                "filters": body["spec"]["filters"],
                "sinks": {"hbase": {"columnFamilies": families}},
            }
        },
    )
    pipelines.wait_ready(name)
    assert hbase.families(table) == {
        "i": FamilyState("i"),
        "d": FamilyState("d", 3, 86400, "GZ"),
        "c": FamilyState("c", bloom_filter="ROWCOL"),
    }
    changed = wait_for(
        lambda: [e.message for e in pipelines.events(name) if e.reason == "TableChanged"],
        what="a TableChanged event",
    )
    assert "added family c" in changed[0] and "family d: maxVersions 1" in changed[0]
    warnings = {e.reason for e in pipelines.events(name) if e.type == "Warning"}
    assert "PartitionDecreaseNotSupported" in warnings

    pipelines.patch(name, {"spec": {"sinks": {"hbase": {"columnFamilies": [{"name": "i"}]}}}})
    removal = pipelines.wait_reason(name, "TablesReady", "ColumnFamilyRemovalRefused")
    assert "destroy its data" in removal["message"]
    assert set(hbase.families(table) or {}) == {"i", "d", "c"}


def test_delete_with_retain_keeps_topics_and_table(
    pipelines: Pipelines,
    running_operator: OperatorProcess,
    kafka: Kafka,
    hbase: HBase,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    table = name.replace("-", "_")
    owned = [f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"]
    leftovers["topics"] += owned
    leftovers["tables"].append(table)
    pipelines.create(pipeline(name))
    pipelines.wait_ready(name)

    pipelines.delete(name)
    wait_for(lambda: pipelines.get(name) is None, 30, "the resource to go")
    assert set(owned) <= set(kafka.topics())
    assert hbase.families(table) is not None


def test_a_table_keeps_the_layout_it_was_made_with(
    stack: Endpoints,
    pipelines: Pipelines,
    running_operator: OperatorProcess,
    unique_name: str,
    leftovers: dict,
) -> None:
    """layout: packed is recorded on the table the operator creates; a later pipeline
    taking that table over with the other layout is refused, and the table is untouched."""
    name = unique_name
    table = name.replace("-", "_")
    leftovers["topics"] += [f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"]
    leftovers["topics"] += [f"{name}-2.early_sn", f"{name}-2.sso", f"{name}-2-deadletter"]
    leftovers["tables"].append(table)
    pipelines.create(pipeline(name, sinks={"hbase": {"table": table, "layout": "packed"}}))
    pipelines.wait_ready(name)
    admin_address = Address(stack.hbase_thrift_host, stack.hbase_admin_port)
    with HBaseAdmin(admin_address, timeout=10) as admin:
        assert admin.layout(table) == "packed"
    pipelines.delete(name)  # Retain: the table stays, released
    wait_for(lambda: pipelines.get(name) is None, 30, "the resource to go")

    columns = pipeline(f"{name}-2", sinks={"hbase": {"table": table}}, adopt={"tables": [table]})
    pipelines.create(columns)
    refused = pipelines.wait_reason(f"{name}-2", "TablesReady", "LayoutMismatch")
    assert refused["message"] == (
        f"HBase table {table} holds its rows in the 'packed' layout and the spec asks for 'columns': "
        "rows of both in one table would mislead every reader, so nothing is written; set "
        "spec.sinks.hbase.layout to packed, or name a new table"
    )
    assert pipelines.condition(f"{name}-2")["status"] == "False"
    with HBaseAdmin(admin_address, timeout=10) as admin:
        observed = admin.observe(table)  # what the operator's pass reads, in one request
        assert observed is not None and observed.layout == "packed"
        assert set(observed.families) == {"i", "d"}
        assert admin.observe(f"{table}_never_made") is None


def test_delete_with_delete_removes_topics_and_table(
    pipelines: Pipelines,
    running_operator: OperatorProcess,
    kafka: Kafka,
    hbase: HBase,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    table = name.replace("-", "_")
    owned = [f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"]
    leftovers["topics"] += owned
    leftovers["tables"].append(table)
    pipelines.create(pipeline(name, deletionPolicy="Delete"))
    body = pipelines.wait_ready(name)
    wait_for(
        lambda: (
            FINALIZER in ((pipelines.get(name) or {}).get("metadata", {}).get("finalizers") or [])
        ),
        what="the cleanup finalizer",
    )
    assert body

    pipelines.delete(name)
    wait_for(lambda: pipelines.get(name) is None, 60, "the resource to go")
    wait_for(
        lambda: not set(owned) & set(kafka.topics()), 30, "the deleted topics to leave metadata"
    )
    assert hbase.families(table) is None
    # and they stay gone: a drift pass (every 2 s here) holding a body read before the
    # deletion once created them again (passes.PipelineGone)
    time.sleep(5)
    assert not set(owned) & set(kafka.topics())
    assert hbase.families(table) is None


def test_switching_to_retain_releases_the_finalizer(
    pipelines: Pipelines, running_operator: OperatorProcess, unique_name: str, leftovers: dict
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"]
    leftovers["tables"].append(name.replace("-", "_"))
    pipelines.create(pipeline(name, deletionPolicy="Delete"))
    pipelines.wait_ready(name)

    def finalizers() -> list[str]:
        return (pipelines.get(name) or {}).get("metadata", {}).get("finalizers") or []

    wait_for(lambda: FINALIZER in finalizers(), what="the finalizer")
    pipelines.patch(name, {"spec": {"deletionPolicy": "Retain"}})
    wait_for(lambda: FINALIZER not in finalizers(), what="the finalizer to be removed")


def test_drift_check_recreates_a_deleted_topic_and_resets_config(
    pipelines: Pipelines,
    running_operator: OperatorProcess,
    kafka: Kafka,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.early_sn", f"{name}.sso", f"{name}-deadletter"]
    leftovers["tables"].append(name.replace("-", "_"))
    pipelines.create(pipeline(name))
    pipelines.wait_ready(name)

    kafka.delete(f"{name}.early_sn")
    kafka.set_config(f"{name}.sso", "retention.ms", "1000")
    wait_for(lambda: kafka.topics().get(f"{name}.early_sn") == 2, 60, "the topic to come back")
    wait_for(
        lambda: kafka.config(f"{name}.sso", "retention.ms") == "3600000", 30, "retention reset"
    )
    # once at creation, once more by the drift sweep
    wait_for(
        lambda: (
            sum(
                e.reason == "TopicCreated" and f"{name}.early_sn" in e.message
                for e in pipelines.events(name)
            )
            >= 2
        ),
        10,
        "a second TopicCreated event for the recreated topic",
    )
