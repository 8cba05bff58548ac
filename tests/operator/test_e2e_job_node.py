"""A BrokerPipeline becomes a running, supervised Spark job on the real node: real pods, real Spark.

The operator runs on the host with the addresses pods use (the pod network's host
address), renders and starts the driver pod from the project's image; Spark in it
starts an executor pod; alerts produced to the source topic reach every sink,
exactly once, through a driver deleted mid-stream, a spec change that rolls the
job, a suspension and a resumption, and an operator killed during a roll; and
with the checkpoint and archive on the stack's HDFS, through a deleted driver.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cluster import Pipelines, wait_for
from conftest import OperatorFactory
from job_world import JobWorld, operator_flags
from kubernetes import client

from fink_stack.endpoints import Endpoints

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py
STREAM_TIMEOUT = 300  # seconds for the job to drain what was produced (JVMs starting on 2 cores)


@pytest.fixture
def node(stack: Endpoints) -> Endpoints:
    assert stack.pods is not None, "the real node is not up (fink-stack up node)"
    return stack


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines"
    path.mkdir()
    return path


@pytest.fixture
def world(
    node: Endpoints, namespace: str, unique_name: str, volume: Path, leftovers: dict
) -> JobWorld:
    name = f"job-{unique_name[-6:]}"
    world = JobWorld(
        node, name, namespace, volume, filters=["early_sn_candidates", "fast_transients"]
    )
    leftovers["topics"] += [*world.topics(), world.filter_topic("new_sso_candidates")]
    leftovers["tables"].append(world.table)
    world.create_source()
    return world


def pods(kube: client.ApiClient, namespace: str, role: str) -> list[Any]:
    return [
        p
        for p in client.CoreV1Api(kube)
        .list_namespaced_pod(namespace, label_selector=f"spark-role={role}")
        .items
        if p.metadata.deletion_timestamp is None
    ]


def drained(world: JobWorld, filters: list[str] | None = None) -> None:
    wait_for(
        lambda: world.holds_everything(filters), STREAM_TIMEOUT, "every sink to hold every alert"
    )


def delete_driver_and_wait_for_its_restart(
    kube: client.ApiClient, namespace: str, pipelines: Pipelines, world: JobWorld, driver: Any
) -> None:
    """The driver pod deleted with no grace, as a node loss would; the operator records it."""
    client.CoreV1Api(kube).delete_namespaced_pod(
        driver.metadata.name, namespace, grace_period_seconds=0
    )
    wait_for(
        lambda: (pipelines.get(world.name) or {})["status"]["job"].get("restarts") == 1,
        60,
        "the restart to be recorded",
    )


def test_a_pipeline_streams_on_the_node_exactly_once_through_restarts_rolls_and_suspension(
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    node: Endpoints,
    world: JobWorld,
    volume: Path,
) -> None:
    operator = start_operator(*operator_flags(node, volume))
    world.produce(300, malformed=6)
    pipelines.create(world.document())
    ready = pipelines.wait_ready(world.name, timeout=STREAM_TIMEOUT)
    assert ready["status"]["job"]["state"] == "Streaming"
    (driver,) = pods(kube, namespace, "driver")
    assert driver.spec.node_name == node.pods.node_name  # type: ignore[union-attr]
    executors = wait_for(lambda: pods(kube, namespace, "executor"), 120, "an executor pod")
    assert executors[0].spec.node_name == node.pods.node_name  # type: ignore[union-attr]
    assert executors[0].metadata.owner_references[0].name == driver.metadata.name
    drained(world)

    # the driver deleted with no grace, mid-stream: a new one, still exactly once
    world.produce(300, malformed=2)
    delete_driver_and_wait_for_its_restart(kube, namespace, pipelines, world, driver)
    drained(world)
    # seen gone, or seen killed first: either way a failure, restarted after backoff
    failure = (pipelines.get(world.name) or {})["status"]["job"]["lastFailure"]
    assert failure["reason"] in ("DriverVanished", "Failed"), failure

    # a filter added: the job rolls; an operator killed meanwhile; one driver in the end
    world.add_filter("new_sso_candidates")
    pipelines.patch(world.name, {"spec": {"filters": world.document()["spec"]["filters"]}})
    wait_for(
        lambda: any(e.reason == "JobRolling" for e in pipelines.events(world.name)),
        60,
        "the roll to start",
    )
    operator.kill()
    operator = start_operator(*operator_flags(node, volume))
    world.produce(300)
    pipelines.wait_ready(world.name, timeout=STREAM_TIMEOUT)
    assert len(pods(kube, namespace, "driver")) == 1
    drained(world)  # the new topic holds what its filter selects among the new alerts

    # suspended: the driver goes, alerts wait in Kafka; resumed: they arrive, once
    pipelines.patch(world.name, {"spec": {"spark": {"suspend": True}}})
    pipelines.wait_reason(world.name, "Ready", "Suspended", timeout=120)
    wait_for(lambda: not pods(kube, namespace, "driver"), 120, "the driver to stop")
    world.produce(200, malformed=1)
    pipelines.patch(world.name, {"spec": {"spark": {"suspend": False}}})
    pipelines.wait_ready(world.name, timeout=STREAM_TIMEOUT)
    drained(world)
    job = (pipelines.get(world.name) or {})["status"]["job"]
    assert job["submissions"] == 4  # first, after the deletion, the roll, the resumption


@pytest.fixture
def hdfs_world(
    node: Endpoints, namespace: str, unique_name: str, volume: Path, leftovers: dict
) -> JobWorld:
    assert node.hdfs and node.pods and node.pods.hdfs, "HDFS (component hdfs) is not up"
    name = f"hdfs-{unique_name[-6:]}"
    world = JobWorld(
        node, name, namespace, volume, filters=["early_sn_candidates"], hdfs=node.pods.hdfs
    )
    leftovers["topics"] += world.topics()
    leftovers["tables"].append(world.table)
    world.create_source()
    return world


def test_checkpoint_and_archive_on_hdfs_carry_a_job_through_a_deleted_driver(
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    node: Endpoints,
    hdfs_world: JobWorld,
    volume: Path,
) -> None:
    """As Fink runs: the driver and executor pods keep the checkpoint and the Parquet
    archive on HDFS (the stack's, through the pod gateway); a driver deleted mid-stream
    resumes from the checkpoint there, and every sink holds every alert once."""
    world = hdfs_world
    start_operator(*operator_flags(node, volume))
    world.produce(200, malformed=3)
    pipelines.create(world.document())
    pipelines.wait_ready(world.name, timeout=STREAM_TIMEOUT)
    drained(world)
    assert world.on_hdfs("checkpoint/offsets/0") and world.on_hdfs("checkpoint/commits/0")
    on_volume = [p for p in (volume / namespace / world.name).rglob("*") if p.is_file()]
    assert on_volume == [], "nothing of the pipeline on its volume"

    (driver,) = pods(kube, namespace, "driver")
    world.produce(200, malformed=1)
    delete_driver_and_wait_for_its_restart(kube, namespace, pipelines, world, driver)
    drained(world)  # the new driver went on from the checkpoint on HDFS: nothing twice


@pytest.mark.parametrize(
    ("spark", "reason", "fragment"),
    [
        ({"image": "fink-k8s/not-built:dev"}, "ImageNotPresent", "fink-k8s/not-built:dev"),
        ({"driver": {"memory": "200g"}}, "Unschedulable", "Insufficient memory"),
    ],
    ids=["image-missing", "too-much-memory"],
)
def test_a_driver_that_cannot_start_says_why_and_is_not_restarted(
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    node: Endpoints,
    world: JobWorld,
    volume: Path,
    spark: dict[str, Any],
    reason: str,
    fragment: str,
) -> None:
    start_operator(*operator_flags(node, volume))
    pipelines.create(world.document(**spark))
    condition = pipelines.wait_reason(world.name, "DriverRunning", reason, timeout=120)
    assert fragment in condition["message"]
    time.sleep(10)  # a while longer: still the one driver pod, waiting, not restarted
    job = (pipelines.get(world.name) or {})["status"]["job"]
    assert job["submissions"] == 1 and job.get("restarts", 0) == 0  # no restart storm


def test_a_driver_crashing_at_start_is_restarted_with_growing_backoff_and_its_logs(
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    node: Endpoints,
    world: JobWorld,
    volume: Path,
) -> None:
    """A catalogue file only the driver can look for: the pipeline refuses to start (exit 2)."""
    start_operator(*operator_flags(node, volume))
    document = world.document()
    document["spec"]["modules"].append(
        {"name": "crossmatch", "parameters": {"catalogue": "/nowhere/catalogue.csv"}}
    )
    pipelines.create(document)
    failed = wait_for(
        lambda: (
            (job := ((pipelines.get(world.name) or {}).get("status") or {}).get("job"))
            and job.get("restarts", 0) >= 2
            and job
        ),
        240,
        "two failures",
    )
    message = failed["lastFailure"]["message"]
    assert "exited with code 2" in message
    assert "catalogue file '/nowhere/catalogue.csv' does not exist" in message
    # backoff 2 s, then 4 s, 8 s...: far fewer submissions than seconds elapsed
    assert failed["submissions"] <= failed["restarts"] + 1
    condition = pipelines.condition(world.name, "DriverRunning")
    assert condition["status"] == "False"
