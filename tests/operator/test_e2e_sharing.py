"""Many teams, one cluster, one Kafka, one HBase: the operator never damages another's data.

The four situations a new user met before claims existed, replayed against the
real apiserver, Kafka and HBase, each team with its own namespace and its own
operator process:

1. a pipeline naming another team's table (and with deletionPolicy Delete) gets
   a Conflict; deleting it leaves the table and its 2,000 rows;
2. a pipeline naming an existing topic (the survey's source stream) as an output
   is refused, and the topic's config is untouched; the API server refuses a
   pipeline writing to its own source;
3. a pipeline without an HBase sink becomes Ready;
4. a pipeline the enrichment core could not run (unknown filter, bad parameter)
   creates nothing and says which field is wrong.
"""

from __future__ import annotations

import json

import happybase
import pytest
from cluster import HBase, Kafka, Pipelines, wait_for
from confluent_kafka.admin import NewTopic
from kubernetes import client
from kubernetes.client.rest import ApiException
from pipeline_documents import minimal

from fink_operator import claims
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack

SCIENCE = {
    "modules": [
        {"name": "quality_cuts"},
        {"name": "lightcurve_features"},
        {"name": "solar_system"},
    ],
}
ROWS = 2000


def team_pipeline(name: str, table: str, **spec: object) -> dict:
    body = minimal(name=name, **SCIENCE, sinks={"hbase": {"table": table}}, **spec)
    del body["metadata"]["uid"]  # the API server gives the real one
    return body


def fill(stack: Endpoints, table: str, rows: int) -> None:
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        with connection.table(table).batch(batch_size=500) as batch:
            for i in range(rows):
                batch.put(f"ZTF{i:08d}_2460000.5".encode(), {b"i:objectId": f"ZTF{i}".encode()})
    finally:
        connection.close()


def count(stack: Endpoints, table: str) -> int:
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        return sum(1 for _ in connection.table(table).scan(columns=[b"i:objectId"]))
    finally:
        connection.close()


def test_another_teams_table_and_rows_survive_a_conflicting_pipeline_and_its_deletion(
    kube: client.ApiClient,
    make_namespace,  # type: ignore[no-untyped-def]
    namespace: str,
    start_operator,  # type: ignore[no-untyped-def]
    stack: Endpoints,
    hbase: HBase,
    unique_name: str,
    leftovers: dict,
) -> None:
    team_a, team_b = namespace, make_namespace("-b")
    start_operator()  # team A's operator
    start_operator(watch=team_b)  # team B's, another process watching another namespace
    table = unique_name.replace("-", "_")
    name_a, name_b = f"a-{unique_name}", f"b-{unique_name}"
    leftovers["tables"].append(table)
    leftovers["topics"] += [f"{name_a}-deadletter", f"{name_b}-deadletter"]
    a, b = Pipelines(kube, team_a), Pipelines(kube, team_b)

    a.create(team_pipeline(name_a, table))
    a.wait_ready(name_a)
    fill(stack, table, ROWS)
    b.create(team_pipeline(name_b, table, deletionPolicy="Delete"))
    conflict = b.wait_reason(name_b, "TablesReady", "Conflict")
    assert f"table {table} belongs to pipeline {team_a}/{name_a}" in conflict["message"]
    assert b.condition(name_b)["status"] == "False"
    # kopf posts events in the background: the Warning may follow the status by a moment
    wait_for(
        lambda: "Conflict" in {e.reason for e in b.events(name_b) if e.type == "Warning"},
        30,
        "a Warning event Conflict on team B's pipeline",
    )

    b.delete(name_b)
    wait_for(lambda: b.get(name_b) is None, 60, "team B's pipeline to go")
    assert count(stack, table) == ROWS
    assert hbase.families(table) is not None
    a_body = a.wait_ready(name_a)
    assert a_body["status"]["tables"] == [table]
    owners = {
        c["spec"]["name"]: c["spec"]["owner"]["namespace"]
        for c in client.CustomObjectsApi(kube).list_cluster_custom_object(
            claims.GROUP, claims.VERSION, claims.PLURAL
        )["items"]
    }
    assert owners[table] == team_a


def test_an_existing_topic_is_never_adopted_implicitly_and_its_config_is_untouched(
    pipelines: Pipelines,
    running_operator,  # type: ignore[no-untyped-def]
    kafka: Kafka,
    unique_name: str,
    leftovers: dict,
) -> None:
    survey_stream = f"{unique_name}-survey"
    name = f"p-{unique_name}"
    leftovers["topics"] += [survey_stream, f"{name}-deadletter"]
    created = kafka.admin.create_topics(
        [NewTopic(survey_stream, 2, 1, config={"retention.ms": "86400000"})]
    )
    created[survey_stream].result(timeout=10)
    wait_for(lambda: survey_stream in kafka.topics(), 10, "the survey topic")

    body = minimal(
        name,
        **SCIENCE,
        filters=[{"name": "early_sn_candidates", "topic": survey_stream, "retentionMs": 1000}],
        deletionPolicy="Delete",
    )
    del body["metadata"]["uid"]
    pipelines.create(body)
    refused = pipelines.wait_reason(name, "TopicsReady", "AdoptionRequired")
    assert f"topic {survey_stream} already exists and no pipeline owns it" in refused["message"]
    assert "spec.adopt.topics" in refused["message"]
    assert kafka.config(survey_stream, "retention.ms") == "86400000"

    pipelines.delete(name)
    wait_for(lambda: pipelines.get(name) is None, 60, "the pipeline to go")
    assert survey_stream in kafka.topics()
    assert kafka.config(survey_stream, "retention.ms") == "86400000"


@pytest.mark.parametrize(
    "outputs",
    [
        {"sinks": {"kafka": {"deadLetterTopic": "ztf-alerts"}}},
        {"filters": [{"name": "early_sn_candidates", "topic": "ztf-alerts"}]},
        {"adopt": {"topics": ["ztf-alerts"]}},
    ],
    ids=["dead-letters", "filter", "adopt"],
)
def test_the_api_server_refuses_a_pipeline_writing_to_its_source(
    pipelines: Pipelines, outputs: dict
) -> None:
    body = minimal("p", source={"kafka": {"topic": "ztf-alerts"}}, **SCIENCE, **outputs)
    del body["metadata"]["uid"]
    with pytest.raises(ApiException) as refused:
        pipelines.create(body)
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert "never writes to its source" in message


def test_a_pipeline_without_hbase_becomes_ready(
    pipelines: Pipelines,
    running_operator,  # type: ignore[no-untyped-def]
    unique_name: str,
    leftovers: dict,
) -> None:
    name = f"nohbase-{unique_name}"
    leftovers["topics"].append(f"{name}-deadletter")
    body = minimal(name)
    del body["metadata"]["uid"]
    pipelines.create(body)
    ready = pipelines.wait_ready(name)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in ready["status"]["conditions"]}
    assert conditions["TablesReady"] == ("True", "NoTable")
    assert ready["status"]["tables"] == []


@pytest.mark.parametrize(
    ("science", "expected"),
    [
        (
            {"filters": [{"name": "early_sn"}]},
            "spec.filters[0].name: unknown science filter 'early_sn'",
        ),
        (
            {"modules": [{"name": "solar_system", "parameters": {"maxDistanceArcsec": -1}}]},
            "spec.modules[0].parameters: maxDistanceArcsec must be positive, got -1",
        ),
        (
            {"modules": [], "filters": [{"name": "new_sso_candidates"}]},
            "filter new_sso_candidates reads quality_ok, written by module quality_cuts",
        ),
    ],
    ids=["unknown-filter", "bad-parameter", "missing-module"],
)
def test_an_invalid_plan_creates_nothing_and_says_why(
    pipelines: Pipelines,
    running_operator,  # type: ignore[no-untyped-def]
    kafka: Kafka,
    kube: client.ApiClient,
    unique_name: str,
    science: dict,
    expected: str,
) -> None:
    name = f"bad-{unique_name[-6:]}"
    body = minimal(
        name, **{**SCIENCE, **science}, sinks={"hbase": {"table": name.replace("-", "_")}}
    )
    del body["metadata"]["uid"]
    pipelines.create(body)
    invalid = pipelines.wait_reason(name, "Ready", "InvalidSpec")
    assert expected in invalid["message"]
    assert f"{name}-deadletter" not in kafka.topics()
    custom = client.CustomObjectsApi(kube)
    mine = [
        c
        for c in custom.list_cluster_custom_object(claims.GROUP, claims.VERSION, claims.PLURAL)[
            "items"
        ]
        if c["spec"]["owner"]["name"] == name
    ]
    assert mine == []
    assert (pipelines.get(name) or {})["status"]["observedGeneration"] == 1
