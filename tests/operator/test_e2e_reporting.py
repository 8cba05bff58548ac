"""What the documentation says the operator reports, observed on the real stack.

Each test is one row of docs/operator.md: ReferenceNotFound (retried until the
Secret exists), InvalidCredentials, a credentials Secret read end to end,
TopicReleased, CleanupAbandoned, and the liveness endpoint.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from cluster import Kafka, Pipelines, wait_for
from conftest import OperatorFactory, _free_port
from kubernetes import client
from pipeline_documents import with_filters

from fink_operator.config import FINALIZER
from fink_stack import api

pytestmark = pytest.mark.stack


@pytest.fixture
def outage() -> Iterator[list[str]]:
    """Components a test stopped; started again whatever happens (even if the test fails),
    so the tests after it find the whole stack."""
    stopped: list[str] = []
    yield stopped
    for component in stopped:
        api.start_component(component)


def secret(kube: client.ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    client.CoreV1Api(kube).create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data),
    )


def test_a_missing_secret_is_reported_then_picked_up_once_created(
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    running_operator,  # type: ignore[no-untyped-def]
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter"]
    pipelines.create(
        with_filters(name, 1, sinks={"kafka": {"credentialsSecretRef": {"name": "kafka-creds"}}})
    )
    missing = pipelines.wait_reason(name, "Ready", "ReferenceNotFound")
    assert f"Secret 'kafka-creds' in namespace {namespace} not found" in missing["message"]
    assert (pipelines.get(name) or {})["status"]["phase"] == "Waiting"

    # PLAINTEXT is what the local Kafka speaks: the Secret is read and used as it is
    secret(kube, namespace, "kafka-creds", {"security.protocol": "PLAINTEXT"})
    pipelines.wait_ready(name, timeout=90)


def test_a_secret_with_a_file_path_is_refused_with_invalid_credentials(
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    running_operator,  # type: ignore[no-untyped-def]
    kafka: Kafka,
    unique_name: str,
) -> None:
    name = unique_name
    secret(kube, namespace, "bad-creds", {"ssl.ca.location": "/etc/passwd"})
    pipelines.create(
        with_filters(name, 1, sinks={"kafka": {"credentialsSecretRef": {"name": "bad-creds"}}})
    )
    refused = pipelines.wait_reason(name, "Ready", "InvalidCredentials")
    assert "ssl.ca.location not allowed" in refused["message"]
    assert "not file paths" in refused["message"]
    assert f"{name}-deadletter" not in kafka.topics()


def test_a_filter_leaving_the_spec_releases_its_topic_which_stays(
    kube: client.ApiClient,
    pipelines: Pipelines,
    running_operator,  # type: ignore[no-untyped-def]
    kafka: Kafka,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.f0", f"{name}.f1", f"{name}-deadletter"]
    body = with_filters(name, 2)
    pipelines.create(body)
    pipelines.wait_ready(name)
    pipelines.patch(name, {"spec": {"filters": body["spec"]["filters"][:1]}})
    ready = pipelines.wait_ready(name)
    assert f"{name}.f1" not in ready["status"]["topics"]
    released = wait_for(
        lambda: [e.message for e in pipelines.events(name) if e.reason == "TopicReleased"],
        what="a TopicReleased event",
    )
    assert f"{name}.f1" in released[0]
    assert f"{name}.f1" in kafka.topics()
    claimed = {
        c["spec"]["name"]
        for c in client.CustomObjectsApi(kube).list_cluster_custom_object(
            "fink.broker.dev", "v1alpha1", "sinkclaims"
        )["items"]
    }
    assert f"{name}.f1" not in claimed and f"{name}.f0" in claimed


@pytest.mark.exclusive
def test_cleanup_is_abandoned_with_a_warning_when_kafka_stays_down(
    start_operator: OperatorFactory,
    pipelines: Pipelines,
    kafka: Kafka,
    unique_name: str,
    leftovers: dict,
    outage: list[str],
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter"]
    start_operator("--cleanup-timeout", "4")
    pipelines.create(with_filters(name, 1, deletionPolicy="Delete"))
    pipelines.wait_ready(name)
    wait_for(
        lambda: FINALIZER in ((pipelines.get(name) or {})["metadata"].get("finalizers") or []),
        what="the cleanup finalizer",
    )
    api.stop_component("kafka")
    outage.append("kafka")
    pipelines.delete(name)
    events = wait_for(
        lambda: [e for e in pipelines.events(name) if e.reason == "CleanupAbandoned"],
        90,
        "a CleanupAbandoned event",
    )
    assert "gave up deleting the pipeline's data after 4s" in events[0].message
    assert events[0].type == "Warning"
    wait_for(lambda: pipelines.get(name) is None, 60, "the resource to be released")
    api.start_component("kafka")
    outage.remove("kafka")
    assert f"{name}-deadletter" in kafka.topics()  # nothing was deleted: it could not be


def test_the_liveness_endpoint_answers(start_operator: OperatorFactory) -> None:
    port = _free_port()
    start_operator("--liveness", f"http://127.0.0.1:{port}/healthz")
    body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), 30, "the liveness endpoint")
    assert body is not None


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode() if response.status == 200 else None
    except OSError:
        return None
