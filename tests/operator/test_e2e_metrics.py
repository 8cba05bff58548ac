"""/metrics serves controller-runtime-style counters that move when reconciles happen."""

from __future__ import annotations

import re

import pytest
from cluster import Pipelines, wait_for
from conftest import OperatorProcess
from pipeline_documents import with_filters

pytestmark = pytest.mark.stack


def sample(text: str, name: str, **labels: str) -> float:
    """Value of one series in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


def test_metrics_move_with_reconciles(
    running_operator: OperatorProcess, pipelines: Pipelines, unique_name: str, leftovers: dict
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.a", f"{name}-deadletter"]
    leftovers["tables"].append(name.replace("-", "_"))
    before = running_operator.metrics()
    for series in [
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_time_seconds",
        "fink_operator_managed_topics",
        "fink_operator_managed_tables",
    ]:
        assert f"# TYPE {series} " in before, series
    assert sample(before, "fink_operator_managed_topics") == 0

    body = with_filters(name, 1, sinks={"hbase": {"table": name.replace("-", "_")}})
    body["spec"]["filters"][0]["topic"] = f"{name}.a"
    pipelines.create(body)
    pipelines.wait_ready(name)
    after = wait_for(
        lambda: (
            (m := running_operator.metrics())
            and sample(m, "fink_operator_managed_topics") == 2
            and m
        ),
        what="managed topics gauge at 2",
    )
    success = dict(controller="brokerpipeline", result="success")
    assert sample(after, "controller_runtime_reconcile_total", **success) > sample(
        before, "controller_runtime_reconcile_total", **success
    )
    assert sample(after, "fink_operator_reconciles_total", kind="create", result="success") == 1
    assert (
        sample(
            after, "controller_runtime_reconcile_time_seconds_count", controller="brokerpipeline"
        )
        >= 1
    )
    assert sample(after, "fink_operator_managed_tables") == 1

    # a refused change is counted by reason, and as a requeue (it waits on the user)
    pipelines.patch(
        name, {"spec": {"sinks": {"hbase": {"columnFamilies": [{"name": "i"}, {"name": "x"}]}}}}
    )
    refused = wait_for(
        lambda: (
            (m := running_operator.metrics())
            and sample(m, "fink_operator_errors_total", reason="ColumnFamilyRemovalRefused") >= 1
            and m
        ),
        what="errors_total{reason=ColumnFamilyRemovalRefused}",
    )
    assert (
        sample(
            refused,
            "controller_runtime_reconcile_total",
            controller="brokerpipeline",
            result="requeue",
        )
        >= 1
    )
    # drift passes are reconciles too
    assert (
        sample(refused, "fink_operator_reconciles_total", kind="drift", result="requeue")
        + sample(refused, "fink_operator_reconciles_total", kind="update", result="requeue")
        >= 1
    )

    pipelines.delete(name)
    wait_for(
        lambda: sample(running_operator.metrics(), "fink_operator_managed_topics") == 0,
        what="managed topics back to 0",
    )
