"""The operator's handling of a pipeline's Spark job, against the real apiserver, on kwok's node.

kwok's fake node runs no containers: its pods become Running and Ready without
a process. That proves what the operator does with Kubernetes objects (what it
renders and the API server accepts, rolls, suspends, restarts, and lets the
garbage collector remove) fast and at scale; the real node's tests
(test_e2e_job_node.py) prove the job itself streams alerts.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from cluster import Pipelines, wait_for
from conftest import OperatorFactory
from kubernetes import client
from pipeline_documents import with_filters

from fink_operator.job.render import SPEC_HASH, SUBMISSION

pytestmark = pytest.mark.stack

JOB_FLAGS = (
    "--jobs",
    "--spark-image",
    "fink-k8s/pipeline:dev",
    "--image-pull-policy",
    "IfNotPresent",
    "--pipeline-volume",
    "host-path:/var/lib/fink-test-pipelines",
)
ON_KWOK = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
    "restartPolicy": {"backoffSeconds": 1},
}


def pipeline(name: str, **spark: Any) -> dict[str, Any]:
    return with_filters(name, 1, spark={**ON_KWOK, "executor": {"instances": 0}, **spark})


def driver(kube: client.ApiClient, namespace: str, name: str) -> Any:
    try:
        return client.CoreV1Api(kube).read_namespaced_pod(f"{name}-driver", namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def job(pipelines: Pipelines, name: str) -> dict[str, Any]:
    return ((pipelines.get(name) or {}).get("status") or {}).get("job") or {}


def test_apply_runs_a_driver_rolls_it_on_change_and_suspends_it(
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter"]
    start_operator(*JOB_FLAGS)
    pipelines.create(pipeline(name))
    ready = pipelines.wait_ready(name, timeout=90)
    conditions = {c["type"]: c["reason"] for c in ready["status"]["conditions"]}
    assert conditions["SparkSubmitted"] == "Submitted"
    assert conditions["DriverRunning"] == "Running"
    assert conditions["Streaming"] == "Streaming"
    assert ready["status"]["job"]["state"] == "Streaming"
    first = driver(kube, namespace, name)
    assert first.spec.node_name == "kwok-node-0"
    assert first.metadata.owner_references[0].name == name
    container = first.spec.containers[0]
    assert container.image == "fink-k8s/pipeline:dev"
    assert container.args[:2] == ["fink-pipeline", "run"]
    core = client.CoreV1Api(kube)
    stored = core.read_namespaced_config_map(f"{name}-pipeline", namespace).data["pipeline.yaml"]
    assert yaml.safe_load(stored)["spec"]["filters"][0]["topic"] == f"{name}.f0"
    assert core.read_namespaced_service(f"{name}-metrics", namespace).spec.ports[0].port == 9464
    rbac = client.RbacAuthorizationV1Api(kube)
    assert rbac.read_namespaced_role(f"{name}-spark", namespace).rules[0].resources[0] == "pods"

    # a spec change that matters rolls the driver: the old one goes first, then a new one
    old_hash = first.metadata.annotations[SPEC_HASH]
    pipelines.patch(name, {"spec": {"spark": {"triggerInterval": "1 minute"}}})
    rolled = wait_for(
        lambda: (
            (pod := driver(kube, namespace, name)) is not None
            and pod.metadata.annotations[SPEC_HASH] != old_hash
            and pod
        ),
        90,
        "the rolled driver",
    )
    assert rolled.metadata.annotations[SUBMISSION] == "2"
    assert "JobRolling" in {e.reason for e in pipelines.events(name)}
    pipelines.wait_ready(name, timeout=60)

    # suspend: the driver goes and nothing replaces it; resume: a new one
    pipelines.patch(name, {"spec": {"spark": {"suspend": True}}})
    pipelines.wait_reason(name, "Ready", "Suspended", timeout=60)
    wait_for(lambda: driver(kube, namespace, name) is None, 60, "the driver to go")
    assert (pipelines.get(name) or {})["status"]["phase"] == "Suspended"
    pipelines.patch(name, {"spec": {"spark": {"suspend": False}}})
    pipelines.wait_ready(name, timeout=90)
    assert job(pipelines, name)["submissions"] == 3


def test_a_metrics_service_with_a_cluster_ip_is_made_again_headless(
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    unique_name: str,
    leftovers: dict,
) -> None:
    """An older operator gave each pipeline's metrics Service a cluster IP (a cluster's range
    then capped the number of pipelines); a Service's clusterIP is immutable, so the operator
    replaces it rather than failing the submission."""
    name = unique_name
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter"]
    core = client.CoreV1Api(kube)
    old = client.V1Service(
        metadata=client.V1ObjectMeta(name=f"{name}-metrics"),
        spec=client.V1ServiceSpec(
            selector={"spark-role": "driver"}, ports=[client.V1ServicePort(port=9464)]
        ),
    )
    assert core.create_namespaced_service(namespace, old).spec.cluster_ip not in (None, "None")
    start_operator(*JOB_FLAGS)
    pipelines.create(pipeline(name))
    pipelines.wait_ready(name, timeout=90)
    service = core.read_namespaced_service(f"{name}-metrics", namespace)
    assert service.spec.cluster_ip == "None"
    assert service.metadata.owner_references[0].name == name


def test_a_driver_deleted_behind_the_operators_back_is_restarted_after_backoff(
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter"]
    start_operator(*JOB_FLAGS)
    pipelines.create(pipeline(name))
    pipelines.wait_ready(name, timeout=90)
    uid = driver(kube, namespace, name).metadata.uid
    client.CoreV1Api(kube).delete_namespaced_pod(
        f"{name}-driver", namespace, grace_period_seconds=0
    )
    replaced = wait_for(
        lambda: (pod := driver(kube, namespace, name)) is not None and pod.metadata.uid != uid,
        90,
        "a new driver",
    )
    assert replaced
    record = wait_for(lambda: job(pipelines, name).get("restarts") == 1 and job(pipelines, name))
    assert record["lastFailure"]["reason"] == "DriverVanished"


def test_a_job_without_a_checkpoint_is_refused_with_what_to_set(
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter"]
    start_operator("--jobs", "--spark-image", "fink-k8s/pipeline:dev")  # no pipeline volume
    pipelines.create(pipeline(name))
    refused = pipelines.wait_reason(name, "SparkSubmitted", "NoCheckpoint")
    assert "spec.spark.volumeClaim" in refused["message"]
    assert pipelines.condition(name, "TopicsReady")["status"] == "True"


def test_deleting_the_pipeline_removes_its_job_objects(
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter"]
    start_operator(*JOB_FLAGS)
    pipelines.create(pipeline(name))
    pipelines.wait_ready(name, timeout=90)
    pipelines.delete(name)
    core = client.CoreV1Api(kube)
    wait_for(lambda: driver(kube, namespace, name) is None, 90, "the garbage collector")
    wait_for(
        lambda: (
            not core.list_namespaced_config_map(
                namespace, label_selector="app.kubernetes.io/managed-by=fink-operator"
            ).items
        ),
        60,
        "the job's config map to go",
    )
