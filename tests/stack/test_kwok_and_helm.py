"""Pods progress without a kubelet (kwok), and helm installs charts into the local apiserver."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout
from fink_stack.services import HELM, KWOK_NODE, KWOK_TAINT

pytestmark = pytest.mark.stack


@pytest.fixture
def namespace(stack: Endpoints, unique_name: str):
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(stack.kubeconfig)))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique_name)))
    yield unique_name
    core.delete_namespace(unique_name)


def test_a_pod_that_tolerates_the_fake_node_runs_on_kwok(stack: Endpoints, namespace: str) -> None:
    """The kwok node is tainted (ordinary pods go to the real node); scale tests opt in."""
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(stack.kubeconfig)))
    # the default service account appears asynchronously; pods are refused until it exists
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if core.list_namespaced_service_account(namespace).items:
            break
        time.sleep(0.2)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "driver", "labels": {"spark-role": "driver"}},
        "spec": {
            "containers": [{"name": "spark", "image": "apache/spark:4.2.0"}],
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": KWOK_TAINT["key"], "operator": "Exists"}],
        },
    }
    core.create_namespaced_pod(namespace, pod)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = core.read_namespaced_pod("driver", namespace)
        if current.status.phase == "Running":
            break
        time.sleep(0.3)
    assert current.spec.node_name == KWOK_NODE
    assert current.status.phase == "Running"


def test_helm_installs_a_chart(stack: Endpoints, namespace: str, tmp_path: Path) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("survey: ztf\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n"
        "data:\n  survey: {{ .Values.survey | quote }}\n"
    )
    helm = str(HELM.binary(Layout.default().cache))
    env = {"KUBECONFIG": str(stack.kubeconfig), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [helm, "install", "probe", str(chart), "-n", namespace, "--set", "survey=lsst", "--wait"],
        check=True,
        env=env,
        capture_output=True,
    )
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(stack.kubeconfig)))
    assert core.read_namespaced_config_map("probe", namespace).data == {"survey": "lsst"}
    listed = subprocess.run(
        [helm, "list", "-n", namespace, "-q"], check=True, env=env, capture_output=True, text=True
    )
    assert listed.stdout.split() == ["probe"]
