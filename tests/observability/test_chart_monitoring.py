"""The chart ships the dashboard and the rules from their one source files, as values say.

`helm template` renders the dashboard's ConfigMap (with the label Grafana's sidecar
looks for) and, only where prometheus-operator serves PrometheusRule, the rules.
"""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from promapi import CHART, DASHBOARD, ROOT, RULES

from fink_core.spec import parse_pipeline
from fink_operator.job.render import JobConfig, PipelineVolume, render
from fink_stack.endpoints import Endpoints

sys.path.insert(0, str(ROOT / "tests" / "charts"))
from tools import KUBE_VERSION, helm, kubectl

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py
RULE_API = "monitoring.coreos.com/v1/PrometheusRule"


def rendered(stack: Endpoints, *args: str) -> dict[str, dict]:
    """The chart's objects, by kind."""
    text = helm(
        stack,
        "template",
        "fink",
        str(CHART),
        "--namespace",
        "fink",
        "--kube-version",
        KUBE_VERSION,
        *args,
    ).stdout
    documents = [d for d in yaml.safe_load_all(text) if d]
    return {d["kind"] + "/" + d["metadata"]["name"]: d for d in documents}


def test_the_dashboard_configmap_holds_the_dashboard_file_with_the_sidecar_label(
    stack: Endpoints,
) -> None:
    objects = rendered(stack)
    configmap = objects["ConfigMap/fink-fink-operator-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["fink.json"]) == json.loads(DASHBOARD.read_text())
    # the API server takes it as it is (1 MiB at most for a ConfigMap)
    kubectl(
        stack,
        "create",
        "--dry-run=server",
        "-n",
        "default",
        "-f",
        "-",
        stdin=yaml.safe_dump(
            {**configmap, "metadata": {**configmap["metadata"], "namespace": "default"}}
        ),
    )


def test_the_dashboard_label_comes_from_values_and_can_be_turned_off(stack: Endpoints) -> None:
    objects = rendered(
        stack, "--set", "dashboard.label=dashboards", "--set-string", "dashboard.labelValue=fink"
    )
    labels = objects["ConfigMap/fink-fink-operator-dashboard"]["metadata"]["labels"]
    assert labels["dashboards"] == "fink" and "grafana_dashboard" not in labels
    assert "ConfigMap/fink-fink-operator-dashboard" not in rendered(
        stack, "--set", "dashboard.enabled=false"
    )


def test_the_prometheusrule_is_the_rule_file_where_prometheus_operator_is(
    stack: Endpoints,
) -> None:
    assert not [k for k in rendered(stack) if k.startswith("PrometheusRule/")]
    objects = rendered(
        stack, "--api-versions", RULE_API, "--set", "metrics.prometheusRule.labels.release=kps"
    )
    rule = objects["PrometheusRule/fink-fink-operator"]
    assert rule["metadata"]["namespace"] == "fink"
    assert rule["metadata"]["labels"]["release"] == "kps"  # what a Prometheus selects on
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    off = rendered(
        stack, "--api-versions", RULE_API, "--set", "metrics.prometheusRule.enabled=false"
    )
    assert not [k for k in off if k.startswith("PrometheusRule/")]


def test_the_monitors_render_where_prometheus_operator_is_and_keep_the_pipeline_namespace(
    stack: Endpoints,
) -> None:
    assert not [k for k in rendered(stack) if "Monitor/" in k]
    objects = rendered(
        stack,
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions",
        "monitoring.coreos.com/v1/PodMonitor",
        "--set",
        "watchNamespaces={alerts}",
    )
    service = objects["ServiceMonitor/fink-fink-operator"]["spec"]
    # without honorLabels the operator's `namespace` label (the pipeline's) would be
    # renamed exported_namespace and the dashboard's operator panels would lose it
    assert service["endpoints"] == [{"port": "metrics", "interval": "30s", "honorLabels": True}]
    pods = objects["PodMonitor/fink-fink-operator-drivers"]["spec"]
    assert pods["namespaceSelector"] == {"matchNames": ["alerts"]}
    # the PodMonitor finds the driver pods the operator renders, by their labels and port
    example = yaml.safe_load((ROOT / "manifests/examples/ztf-demo-pipeline.yaml").read_text())
    example["metadata"].update(namespace="alerts", uid="uid-1")
    config = JobConfig(image="fink-k8s/pipeline:dev", volume=PipelineVolume.parse("host-path:/v"))
    driver = render(example, parse_pipeline(example), config).driver_pod
    selector = pods["selector"]["matchLabels"]
    assert selector.items() <= driver["metadata"]["labels"].items(), selector
    ports = {p["name"] for c in driver["spec"]["containers"] for p in c.get("ports", [])}
    assert pods["podMetricsEndpoints"][0]["port"] in ports
