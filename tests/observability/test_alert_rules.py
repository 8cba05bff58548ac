"""The chart's alerting rules: each fires when its situation is provoked, and not when all is fine.

Live: test copies of charts/fink-operator/rules/fink-rules.yaml (`for` 0, the lag
threshold lowered; conftest.py) were loaded into the local Prometheus during the
session's streaming run, which provoked each situation; Prometheus's own rule engine
wrote the ALERTS series these tests read. The rules as written are evaluated against
the same data too. Offline: promtool checks the file and unit-tests each rule's
`for` and thresholds on synthetic series.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from promapi import RULES, Prometheus, Series, rule, rules
from streamrun import StreamedRun, Window

from fink_stack import prometheus as local_prometheus
from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py
ALERTS = ["FinkPipelineLagging", "FinkDriverRestarting", "FinkDeadLettersRising"]
OPERATOR_ALERTS = ["FinkOperatorReconcileErrors"]


def _labels(run: StreamedRun, alert: str) -> dict[str, str]:
    """Which of the run's series an alert is about: its pipeline, or its operator."""
    if alert in OPERATOR_ALERTS:
        return {"instance": run.operator}
    return {"namespace": run.namespace, "pipeline": run.pipeline}


def _selector(run: StreamedRun, alert: str) -> str:
    return ", ".join(f'{k}="{v}"' for k, v in _labels(run, alert).items())


def _fired(prometheus: Prometheus, run: StreamedRun, alert: str, window: Window) -> bool:
    """Whether Prometheus's rule engine had the test copy of `alert` firing during `window`."""
    seconds = math.ceil(window.end - window.start)
    assert seconds > 0, f"{alert}: an empty window"
    expr = (
        f'count_over_time(ALERTS{{alertname="{alert}", alertstate="firing", '
        f'fink_test="{run.run_id}", {_selector(run, alert)}}}[{seconds}s])'
    )
    return bool(prometheus.query(expr, at=window.end))


@pytest.mark.parametrize("alert", ALERTS + OPERATOR_ALERTS)
def test_the_rule_fires_when_provoked_and_not_when_all_is_fine(
    streamed: StreamedRun, prometheus: Prometheus, alert: str
) -> None:
    assert not _fired(prometheus, streamed, alert, streamed.fine[alert]), (
        f"{alert} fired while all was fine"
    )
    assert _fired(prometheus, streamed, alert, streamed.provoked[alert]), (
        f"{alert} did not fire when provoked"
    )


@pytest.mark.parametrize("alert", ALERTS + OPERATOR_ALERTS)
def test_the_rule_as_written_evaluates_on_the_live_data(
    streamed: StreamedRun, prometheus: Prometheus, alert: str
) -> None:
    """The shipped expression (its own thresholds) over the run: true exactly as expected.

    The restarts, dead-letter and reconcile-error thresholds are the shipped ones, so the
    provoked windows must show the expression true (only `for` was shortened in the
    live copies). The burst of the run is far below the shipped lag threshold: the
    shipped lag expression must stay empty.
    """
    expr = rule(alert)["expr"]
    labels = _labels(streamed, alert)

    def ours(window: Window) -> list[Series]:
        result = prometheus.query_range(expr, window.start, window.end, step=5)
        return [s for s in result if labels.items() <= s.labels.items() and s.has_data()]

    if alert == "FinkPipelineLagging":
        assert not ours(streamed.provoked[alert]), "a burst of 1,000 alerts is no lag to alert"
    else:
        assert ours(streamed.provoked[alert]), f"{alert}: {expr} never true when provoked"
    assert not ours(streamed.fine[alert]), f"{alert}: {expr} true while all was fine"


def test_every_rule_says_how_bad_for_how_long_and_what_to_do() -> None:
    names = [r["alert"] for r in rules()]
    assert sorted(names) == sorted(ALERTS + OPERATOR_ALERTS)
    for each in rules():
        assert each.get("for"), f"{each['alert']}: no `for`"
        assert each["labels"]["severity"] in {"warning", "critical"}
        annotations = each["annotations"]
        assert annotations["summary"] and annotations["description"]
        assert "docs/" in annotations["description"], f"{each['alert']}: link the docs"
        assert annotations["runbook_url"].startswith("docs/observability.md#")


# ------------------------------------------------------------------------------ promtool


def _promtool() -> Path:
    return local_prometheus.promtool(Layout.default())


def test_promtool_accepts_the_rule_file(stack: Endpoints) -> None:
    result = subprocess.run(
        [str(_promtool()), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _alerts(alert: str, at: str, *pipelines: dict[str, str]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": {"severity": "warning", **p}} for p in pipelines],
    }


def unit_tests() -> dict[str, Any]:
    """Synthetic series, one minute apart: what each rule must say, and when (its `for`)."""
    late = {"namespace": "ns", "pipeline": "late"}
    crashing = {"namespace": "ns", "pipeline": "crashing"}
    dirty = {"namespace": "ns", "pipeline": "dirty"}
    failing = {"namespace": "fink", "job": "operator", "instance": "10.88.0.9:8080"}
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # lag: 20,000 on one partition of `late`; `keeping-up` at 500
                    _series("fink_pipeline_input_lag_messages", "20000x40", **late, partition="0"),
                    _series("fink_pipeline_input_lag_messages", "0x40", **late, partition="1"),
                    _series(
                        "fink_pipeline_input_lag_messages",
                        "500x40",
                        namespace="ns",
                        pipeline="keeping-up",
                        partition="0",
                    ),
                    # restarts: `crashing` at 10 and 20 min, `drained` once only
                    _series(
                        "fink_operator_job_restarts_total",
                        "_x9 1x10 2x50",
                        **crashing,
                        reason="Failed",
                    ),
                    _series(
                        "fink_operator_job_restarts_total",
                        "_x9 1x50",
                        namespace="ns",
                        pipeline="drained",
                        reason="DriverVanished",
                    ),
                    # dead letters: 5% of `dirty`'s alerts, 0.5% of `clean`'s
                    _series("fink_pipeline_alerts_read_total", "0+100x40", **dirty),
                    _series(
                        "fink_pipeline_alerts_written_total", "0+5x40", **dirty, sink="dead_letter"
                    ),
                    _series(
                        "fink_pipeline_alerts_read_total",
                        "0+100x40",
                        namespace="ns",
                        pipeline="clean",
                    ),
                    _series(
                        "fink_pipeline_alerts_written_total",
                        "0+0.5x40",
                        namespace="ns",
                        pipeline="clean",
                        sink="dead_letter",
                    ),
                    # reconcile errors: 3 a minute from one operator; another had 5 long ago
                    _series(
                        "controller_runtime_reconcile_errors_total",
                        "0+3x40",
                        controller="brokerpipeline",
                        **failing,
                    ),
                    _series(
                        "controller_runtime_reconcile_errors_total",
                        "5x40",
                        controller="brokerpipeline",
                        namespace="fink",
                        job="operator",
                        instance="10.88.0.8:8080",
                    ),
                ],
                "alert_rule_test": [
                    _alerts("FinkPipelineLagging", "10m"),  # pending: for 15m
                    _alerts("FinkPipelineLagging", "20m", late),
                    _alerts("FinkDriverRestarting", "15m"),  # one restart is no alarm
                    _alerts("FinkDriverRestarting", "22m", crashing),
                    _alerts("FinkDriverRestarting", "55m"),  # 30 min without a restart
                    _alerts("FinkDeadLettersRising", "5m"),
                    _alerts("FinkDeadLettersRising", "25m", dirty),
                    _alerts("FinkOperatorReconcileErrors", "10m"),
                    _alerts("FinkOperatorReconcileErrors", "25m", failing),
                ],
            }
        ],
    }


def test_promtool_unit_tests_each_rules_thresholds_and_for(
    stack: Endpoints, tmp_path: Path
) -> None:
    """The rule file with its annotations left out (promtool would compare their rendered
    text; their templates are checked by `promtool check rules` above)."""
    groups = yaml.safe_load(RULES.read_text())
    for group in groups["groups"]:
        for each in group["rules"]:
            each.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(unit_tests(), sort_keys=False))
    result = subprocess.run(
        [str(_promtool()), "test", "rules", "tests.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
