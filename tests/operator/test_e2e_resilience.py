"""Outages and crashes: the operator says what is wrong meanwhile and converges by itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster import HBase, Kafka, Pipelines, wait_for
from conftest import OperatorFactory
from kubernetes import client
from pipeline_documents import with_filters

from fink_stack import api
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


@pytest.fixture
def outage() -> Iterator[list[str]]:
    """Components a test stopped; started again whatever happens, for the tests after it."""
    stopped: list[str] = []
    yield stopped
    for component in stopped:
        api.start_component(component)


def pipeline(name: str, filters: int = 2) -> dict:
    return with_filters(name, filters, sinks={"hbase": {"table": name.replace("-", "_")}})


def owned(name: str, filters: int = 2) -> dict[str, list[str]]:
    return {
        "topics": [f"{name}.f{i}" for i in range(filters)] + [f"{name}-deadletter"],
        "tables": [name.replace("-", "_")],
    }


@pytest.mark.exclusive
def test_kafka_outage_is_reported_then_healed_without_user_action(
    stack: Endpoints,
    start_operator: OperatorFactory,
    pipelines: Pipelines,
    kafka: Kafka,
    hbase: HBase,
    unique_name: str,
    leftovers: dict,
    outage: list[str],
) -> None:
    name = unique_name
    leftovers.update(owned(name))
    start_operator()
    api.stop_component("kafka")
    outage.append("kafka")

    pipelines.create(pipeline(name))
    condition = pipelines.wait_reason(name, "TopicsReady", "KafkaUnreachable", timeout=60)
    assert condition["status"] == "False"
    assert f"Kafka at {stack.kafka_bootstrap} could not be reached" in condition["message"]
    body = pipelines.get(name) or {}
    assert body["status"]["phase"] == "Waiting"
    # HBase is up: the table does not wait for Kafka
    assert pipelines.condition(name, "TablesReady")["status"] == "True"
    assert hbase.families(name.replace("-", "_")) is not None

    api.start_component("kafka")
    outage.remove("kafka")
    pipelines.wait_ready(name, timeout=120)
    topics = kafka.topics()
    assert topics.get(f"{name}.f0") == 1 and topics.get(f"{name}.f1") == 2, topics


@pytest.mark.exclusive
def test_hbase_outage_is_reported_then_healed_without_user_action(
    stack: Endpoints,
    start_operator: OperatorFactory,
    pipelines: Pipelines,
    hbase: HBase,
    unique_name: str,
    leftovers: dict,
    outage: list[str],
) -> None:
    name = unique_name
    leftovers.update(owned(name))
    start_operator()
    api.stop_component("hbase")
    outage.append("hbase")

    pipelines.create(pipeline(name))
    condition = pipelines.wait_reason(name, "TablesReady", "HBaseUnreachable", timeout=60)
    address = f"{stack.hbase_thrift_host}:{stack.hbase_admin_port}"
    assert f"HBase at {address} (Thrift2) could not be reached" in condition["message"]
    assert pipelines.condition(name, "TopicsReady")["status"] == "True"
    assert pipelines.condition(name)["reason"] == "HBaseUnreachable"

    api.start_component("hbase")
    outage.remove("hbase")
    pipelines.wait_ready(name, timeout=120)
    assert set(hbase.families(name.replace("-", "_")) or {}) == {"i", "d"}


def test_a_wrong_thrift_address_names_the_server_until_fixed(
    stack: Endpoints,
    start_operator: OperatorFactory,
    pipelines: Pipelines,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers.update(owned(name))
    start_operator()
    body = pipeline(name)
    body["spec"]["sinks"]["hbase"]["thrift"] = {"host": "127.0.0.1", "adminPort": 1}
    pipelines.create(body)
    condition = pipelines.wait_reason(name, "TablesReady", "HBaseUnreachable")
    assert "HBase at 127.0.0.1:1 (Thrift2) could not be reached" in condition["message"]

    pipelines.patch(
        name, {"spec": {"sinks": {"hbase": {"thrift": {"adminPort": stack.hbase_admin_port}}}}}
    )
    pipelines.wait_ready(name)


def test_operator_killed_mid_reconcile_converges_after_restart(
    start_operator: OperatorFactory,
    pipelines: Pipelines,
    kafka: Kafka,
    hbase: HBase,
    unique_name: str,
    leftovers: dict,
) -> None:
    """SIGKILL while topics are being created one by one; a new operator finishes the job."""
    name = unique_name
    filters = 3
    leftovers.update(owned(name, filters))
    wanted = owned(name, filters)["topics"]
    slow = start_operator("--step-delay", "1.0")
    pipelines.create(pipeline(name, filters))

    def some_created() -> int:
        present = sum(t in kafka.topics() for t in wanted)
        return present if present >= 2 else 0

    wait_for(some_created, 60, "the first topics")
    slow.kill()
    present_at_kill = sum(t in kafka.topics() for t in wanted)
    assert present_at_kill < len(wanted), "killed too late to prove anything"

    start_operator()
    body = pipelines.wait_ready(name, timeout=90)
    topics = kafka.topics()
    # every topic exactly as declared: none missing, none grown twice
    assert {t: topics.get(t) for t in wanted} == {
        **{f"{name}.f{i}": i + 1 for i in range(filters)},
        f"{name}-deadletter": 1,
    }
    assert body["status"]["topics"] == sorted(wanted)
    assert set(hbase.families(name.replace("-", "_")) or {}) == {"i", "d"}
    created = [e.message for e in pipelines.events(name) if e.reason == "TopicCreated"]
    for topic in wanted:  # never reported twice (the killed pass reported nothing)
        assert sum(f"{topic} (" in message for message in created) <= 1, created


def test_two_replicas_with_leader_election_reconcile_once_and_fail_over(
    kube: client.ApiClient,
    start_operator: OperatorFactory,
    pipelines: Pipelines,
    namespace: str,
    unique_name: str,
    leftovers: dict,
) -> None:
    """Two operators, one Lease: only the holder acts; when it dies the other takes over."""
    flags = ("--leader-election", "--leader-election-namespace", namespace)
    first = start_operator(*flags)
    wait_for(lambda: "fink_operator_leader 1.0" in first.metrics(), 30, "the first to lead")
    second = start_operator(*flags)
    assert "fink_operator_leader 0.0" in second.metrics()

    name = f"{unique_name}-a"
    leftovers.update(owned(name, 1))
    pipelines.create(pipeline(name, 1))
    pipelines.wait_ready(name)
    passes = [
        line
        for line in second.metrics().splitlines()
        if line.startswith("controller_runtime_reconcile_total{")
    ]
    assert passes == [], f"the standby reconciled: {passes}"

    first.kill()  # no release: the standby waits for the lease to expire (15 s)
    wait_for(lambda: "fink_operator_leader 1.0" in second.metrics(), 45, "the standby to lead")
    other = f"{unique_name}-b"
    leftovers.update(owned(other, 1))
    pipelines.create(pipeline(other, 1))
    pipelines.wait_ready(other)

    # SIGTERM (a rolling upgrade, a drained node): the leader stops at once, exit code 0,
    # and gives the lease up, so a successor need not wait for it to expire
    assert second.stop(), "the leader did not stop on SIGTERM within 15 s"
    assert second.process is not None and second.process.returncode == 0
    lease = client.CoordinationV1Api(kube).read_namespaced_lease("fink-operator", namespace)
    assert not lease.spec.holder_identity, lease.spec
