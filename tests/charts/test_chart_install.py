"""`helm install` on the local cluster: the operator runs as pods on the real node, under the
chart's RBAC and nothing more, reconciles a pipeline whose Spark job streams, upgrades without a
second active operator or a restarted job, and uninstalls leaving the data and no stuck namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from tools import CHART, helm, kubectl

from fink_core import crd
from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout
from fink_stack.scratch import Scratch

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py
STREAM_TIMEOUT = 300


def operator_tests() -> Path:
    return Path(__file__).parents[1] / "operator"


@pytest.fixture(scope="module")
def kube(stack: Endpoints) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(stack.kubeconfig))


@pytest.fixture(scope="module")
def release(
    stack: Endpoints, kube: client.ApiClient, tmp_path_factory: Any, scratch: Scratch
) -> Iterator[dict]:
    """The chart installed in its own namespace, watching one pipelines namespace."""
    assert stack.pods is not None, "the real node is not up (fink-stack up node)"
    suffix = scratch.token()
    names = {
        "release": f"fink-{suffix}",
        "operator_ns": f"fink-operator-{suffix}",
        "pipelines_ns": f"fink-pipelines-{suffix}",
        "volume": str(tmp_path_factory.mktemp("volume")),
    }
    core = client.CoreV1Api(kube)
    for namespace in (names["operator_ns"], names["pipelines_ns"]):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    pods = stack.pods
    values = {
        "image": {"repository": "fink-k8s/operator", "tag": "dev", "pullPolicy": "Never"},
        "pipelineImage": {"repository": "fink-k8s/pipeline", "tag": "dev", "pullPolicy": "Never"},
        "watchNamespaces": [names["pipelines_ns"]],
        "rbac": {"secretNames": ["kafka-creds"]},
        "connections": {
            "kafkaBootstrap": pods.kafka_bootstrap,
            "hbaseThrift": pods.hbase_thrift,
            "hbaseAdmin": pods.hbase_admin,
        },
        "pipelineVolume": f"host-path:{names['volume']}",
        "operator": {"driftIntervalSeconds": 5},
    }
    values_file = tmp_path_factory.mktemp("values") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    names["values"] = str(values_file)
    # CRDs come with the chart (crds/): helm applies them only when absent, so this test
    # installs them first from the same files, as an upgrade path would
    kubectl(stack, "apply", "-f", str(CHART / "crds"))
    helm(
        stack,
        "install",
        names["release"],
        str(CHART),
        "-n",
        names["operator_ns"],
        "-f",
        str(values_file),
        "--wait",
        "--timeout",
        "180s",
    )
    yield names
    helm(stack, "uninstall", names["release"], "-n", names["operator_ns"], check=False)
    for namespace in (names["operator_ns"], names["pipelines_ns"]):
        subprocess.run(
            [
                str(_kubectl()),
                "--kubeconfig",
                str(stack.kubeconfig),
                "delete",
                "namespace",
                namespace,
                "--wait=false",
            ],
            capture_output=True,
        )


def _kubectl() -> Path:
    from fink_stack.services import KUBERNETES

    return KUBERNETES.binary(Layout.default().cache, "kubectl")


def operator_pods(kube: client.ApiClient, release: dict) -> list[Any]:
    return [
        p
        for p in client.CoreV1Api(kube)
        .list_namespaced_pod(
            release["operator_ns"],
            label_selector=f"app.kubernetes.io/instance={release['release']}",
        )
        .items
        if p.metadata.deletion_timestamp is None
    ]


def leaders(pods: list[Any]) -> list[str]:
    """Pods whose metrics say they hold the lease (the host reaches pod IPs on the bridge)."""
    found = []
    for pod in pods:
        if not pod.status.pod_ip:
            continue
        try:
            text = (
                urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/metrics", timeout=2)
                .read()
                .decode()
            )
        except OSError:
            continue
        if "fink_operator_leader 1.0" in text:
            found.append(pod.metadata.name)
    return found


def wait_for(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def test_the_operator_runs_on_the_node_and_its_pipeline_streams(
    stack: Endpoints, kube: client.ApiClient, release: dict, scratch: Scratch
) -> None:
    import sys

    sys.path.insert(0, str(operator_tests()))
    from job_world import JobWorld

    pods = wait_for(
        lambda: len(operator_pods(kube, release)) == 2 and operator_pods(kube, release),
        120,
        "2 operator pods",
    )
    assert {p.spec.node_name for p in pods} == {stack.pods.node_name}  # type: ignore[union-attr]
    assert all(p.spec.security_context.run_as_non_root for p in pods)
    assert len(wait_for(lambda: leaders(pods), 60, "a leader")) == 1

    world = JobWorld(stack, scratch.name("chart"), release["pipelines_ns"], Path(release["volume"]))
    world.filters = ["fast_transients"]
    world.create_source()
    world.produce(200, malformed=2)
    document = world.document(executor={"instances": 0})
    custom = client.CustomObjectsApi(kube)
    custom.create_namespaced_custom_object(
        crd.GROUP, crd.VERSION, release["pipelines_ns"], crd.PLURAL, document
    )
    release["pipeline"] = world.name
    release["world"] = world

    def ready() -> bool:
        body = custom.get_namespaced_custom_object(
            crd.GROUP, crd.VERSION, release["pipelines_ns"], crd.PLURAL, world.name
        )
        conditions = {
            c["type"]: c["status"] for c in (body.get("status") or {}).get("conditions", [])
        }
        return conditions.get("Ready") == "True"

    wait_for(ready, STREAM_TIMEOUT, "the pipeline to stream")
    wait_for(world.holds_everything, STREAM_TIMEOUT, "every alert in every sink")


def can_i(stack: Endpoints, release: dict, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i` as the chart's service account; "pods:log" asks for a subresource."""
    account = f"system:serviceaccount:{release['operator_ns']}:{release['release']}-fink-operator"
    kind, _, subresource = resource.partition(":")
    args = ["auth", "can-i", verb, kind, f"--as={account}"]
    args += [f"--subresource={subresource}"] if subresource else []
    args += ["-n", namespace] if namespace else []
    return kubectl(stack, *args, check=False).stdout.strip() == "yes"


@pytest.mark.parametrize(
    ("verb", "resource", "where", "allowed"),
    [
        ("watch", "brokerpipelines.fink.broker.dev", "pipelines", True),
        ("patch", "brokerpipelines.fink.broker.dev:status", "pipelines", True),
        ("watch", "sciencefilters.fink.broker.dev", "pipelines", True),
        ("patch", "sciencefilters.fink.broker.dev:status", "pipelines", True),
        ("create", "sciencefilters.fink.broker.dev", "pipelines", False),
        ("create", "pods", "pipelines", True),
        ("get", "pods:log", "pipelines", True),
        ("create", "events", "pipelines", True),
        ("get", "secrets/kafka-creds", "pipelines", True),
        ("create", "sinkclaims.fink.broker.dev", None, True),
        ("update", "leases.coordination.k8s.io", "operator", True),
        # and nothing more
        ("get", "secrets/some-other", "pipelines", False),
        ("list", "secrets", "pipelines", False),
        ("get", "secrets", "default", False),
        ("create", "pods", "default", False),
        ("watch", "brokerpipelines.fink.broker.dev", "default", False),
        ("update", "leases.coordination.k8s.io", "pipelines", False),
        ("create", "clusterroles", None, False),
        ("delete", "nodes", None, False),
        ("create", "deployments.apps", "pipelines", False),
        ("*", "*", None, False),
    ],
)
def test_the_operators_rbac_is_what_it_needs_and_nothing_more(
    stack: Endpoints, release: dict, verb: str, resource: str, where: str | None, allowed: bool
) -> None:
    namespace = {
        "pipelines": release["pipelines_ns"],
        "operator": release["operator_ns"],
        None: None,
        "default": "default",
    }[where]
    assert can_i(stack, release, verb, resource, namespace) is allowed


def test_a_secret_the_operator_may_not_read_is_reported(
    stack: Endpoints, kube: client.ApiClient, release: dict
) -> None:
    name = f"forbidden-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(kube).create_namespaced_secret(
        release["pipelines_ns"],
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="other-creds"), string_data={"sasl.username": "u"}
        ),
    )
    document = {
        "apiVersion": f"{crd.GROUP}/{crd.VERSION}",
        "kind": crd.KIND,
        "metadata": {"name": name},
        "spec": {
            "survey": "ztf",
            "source": {"kafka": {"topic": "x-alerts"}},
            "sinks": {"kafka": {"credentialsSecretRef": {"name": "other-creds"}}},
        },
    }
    custom = client.CustomObjectsApi(kube)
    custom.create_namespaced_custom_object(
        crd.GROUP, crd.VERSION, release["pipelines_ns"], crd.PLURAL, document
    )

    def reason() -> str | None:
        body = custom.get_namespaced_custom_object(
            crd.GROUP, crd.VERSION, release["pipelines_ns"], crd.PLURAL, name
        )
        for condition in (body.get("status") or {}).get("conditions", []):
            if condition["type"] == "Ready" and condition["reason"] == "ReferenceForbidden":
                return condition["message"]
        return None

    message = wait_for(reason, 60, "ReferenceForbidden")
    assert "may not read Secret 'other-creds'" in message


def test_an_upgrade_has_one_active_operator_and_leaves_the_job_running(
    stack: Endpoints, kube: client.ApiClient, release: dict
) -> None:
    assert "pipeline" in release, "needs the streaming pipeline of the first test"
    core = client.CoreV1Api(kube)
    driver = core.read_namespaced_pod(f"{release['pipeline']}-driver", release["pipelines_ns"])
    before = {p.metadata.name for p in operator_pods(kube, release)}
    # the same image under a new tag, as a release would bring
    environment = {**os.environ, **stack.environment()}
    ctr = subprocess.run(
        ["ctr", "-n", "k8s.io", "images", "tag", "--force",
         "docker.io/fink-k8s/operator:dev", "docker.io/fink-k8s/operator:upgrade"],
        capture_output=True, text=True, env={**environment, "PATH": _tool_path()},
    )  # fmt: skip
    assert ctr.returncode == 0, ctr.stderr
    upgrade = subprocess.Popen(
        [
            str(_helm()), "--kubeconfig", str(stack.kubeconfig), "upgrade", release["release"],
            str(CHART), "-n", release["operator_ns"], "-f", release["values"],
            "--set", "image.tag=upgrade", "--wait", "--timeout", "240s",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    most = 0
    while upgrade.poll() is None:
        pods = operator_pods(kube, release)
        # a pod counts if it leads in two scans in a row: one scan's pods are read one
        # after the other, so a handover between two reads is not an overlap
        most = max(most, len(set(leaders(pods)) & set(leaders(pods))))
        time.sleep(0.5)
    assert upgrade.returncode == 0, upgrade.stdout.read() if upgrade.stdout else ""
    after = operator_pods(kube, release)
    assert {p.metadata.name for p in after}.isdisjoint(before)
    assert {c.image for p in after for c in p.spec.containers} == {"fink-k8s/operator:upgrade"}
    assert most <= 1, "two operators led at once during the upgrade"
    assert len(wait_for(lambda: leaders(operator_pods(kube, release)), 60, "a new leader")) == 1
    still = core.read_namespaced_pod(f"{release['pipeline']}-driver", release["pipelines_ns"])
    assert still.metadata.uid == driver.metadata.uid  # the job was not restarted
    events = core.list_namespaced_event(
        release["pipelines_ns"], field_selector=f"involvedObject.name={release['pipeline']}"
    ).items
    created = [e for e in events if e.reason in ("TopicCreated", "DriverCreated", "TableCreated")]
    assert len(created) == 3, [e.message for e in created]  # once each, never again


def test_uninstall_keeps_the_data_and_leaves_nothing_stuck(
    stack: Endpoints, kube: client.ApiClient, release: dict
) -> None:
    assert "world" in release, "needs the streaming pipeline of the first test"
    world = release["world"]
    helm(stack, "uninstall", release["release"], "-n", release["operator_ns"], "--wait")
    custom = client.CustomObjectsApi(kube)
    body = custom.get_namespaced_custom_object(
        crd.GROUP, crd.VERSION, release["pipelines_ns"], crd.PLURAL, world.name
    )
    assert not body["metadata"].get("finalizers")  # Retain: nothing to wait for
    core = client.CoreV1Api(kube)
    core.delete_namespace(release["pipelines_ns"])
    wait_for(
        lambda: (
            release["pipelines_ns"] not in {n.metadata.name for n in core.list_namespace().items}
        ),
        120,
        "the pipelines' namespace to go",
    )
    assert world.hbase_rows() == len(world.produced)  # the data stays
    assert len(world.topic_ids("fast_transients")) == len(world.expected()["fast_transients"])
    assert json.dumps(body)  # the resource was readable until its namespace went


def _helm() -> Path:
    from fink_stack.services import HELM

    return HELM.binary(Layout.default().cache)


def _tool_path() -> str:
    from fink_stack.stack import tool_dirs

    return os.pathsep.join([*tool_dirs(Layout.default()), os.environ.get("PATH", "")])
