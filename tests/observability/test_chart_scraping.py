"""An operator installed with the chart is scraped by Prometheus through the chart's own Service.

The release runs the operator image on the real node; the local Prometheus finds the
`<release>-fink-operator-metrics` Service by its prometheus.io annotations, scrapes
the pod behind it at its address on the bridge, and the dashboard's operator queries
see it. The dashboard's ConfigMap is in the cluster with its sidecar label.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from promapi import CHART, ROOT, Prometheus

from fink_stack.endpoints import Endpoints
from fink_stack.scratch import Scratch

sys.path.insert(0, str(ROOT / "tests" / "charts"))
from tools import helm, kubectl

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py


@pytest.fixture
def release(stack: Endpoints, scratch: Scratch) -> Iterator[tuple[str, str]]:
    assert stack.pods is not None, "the real node is not up (fink-stack up node)"
    suffix = scratch.token()
    name, namespace = f"obs-{suffix}", f"observability-chart-{suffix}"
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(stack.kubeconfig)))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    pods = stack.pods
    try:
        helm(
            stack,
            "install",
            name,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "image.tag=dev,image.pullPolicy=Never,pipelineImage.tag=dev,replicaCount=1,jobs=false",
            "--set",
            f"watchNamespaces={{{namespace}}}",
            "--set",
            f"connections.kafkaBootstrap={pods.kafka_bootstrap}",
            "--set",
            f"connections.hbaseThrift={pods.hbase_thrift},connections.hbaseAdmin={pods.hbase_admin}",
            "--wait",
            "--timeout",
            "180s",
        )
        yield name, namespace
    finally:
        helm(stack, "uninstall", name, "--namespace", namespace, "--wait", check=False)
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(namespace)


def test_the_charts_operator_is_scraped_through_its_metrics_service(
    stack: Endpoints, prometheus: Prometheus, release: tuple[str, str]
) -> None:
    name, namespace = release
    service = f"{name}-fink-operator-metrics"
    up = prometheus.wait(
        f'up{{job="kubernetes-service-endpoints", namespace="{namespace}", service="{service}"}}',
        lambda value: value == 1,
        120,
        "Prometheus to scrape the release's operator through its Service",
    )
    assert up == 1
    (target,) = [
        t
        for t in prometheus.targets()
        if t["labels"].get("service") == service and t["labels"].get("namespace") == namespace
    ]
    assert target["scrapeUrl"].startswith("http://10.88.0.")  # the pod, on the bridge
    assert target["labels"]["pod"].startswith(f"{name}-fink-operator-")
    leader = prometheus.wait(
        f'fink_operator_leader{{namespace="{namespace}", service="{service}"}}',
        lambda value: value == 1,
        60,
        "the operator's leader gauge",
    )
    assert leader == 1
    dashboards = kubectl(
        stack, "get", "configmaps", "-n", namespace, "-l", "grafana_dashboard=1", "-o", "name"
    ).stdout.split()
    assert dashboards == [f"configmap/{name}-fink-operator-dashboard"]
