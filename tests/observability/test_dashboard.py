"""The chart's Grafana dashboard: every panel's query returns data while a pipeline streams.

The queries are read from charts/fink-operator/dashboards/fink.json (what Grafana
gets), with the template variables filled as Grafana fills them, and run against the
local Prometheus, which scraped a real driver on the real node and a real operator
during the session's streaming run (conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from promapi import ROOT, Prometheus, dashboard, panel_queries, panels, substitute
from streamrun import StreamedRun

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py

# what the dashboard must show (docs/observability.md describes each panel)
REQUIRED = {
    "Alerts in and out per stage": ["fink_pipeline_alerts_read_total", "alerts_written_total"],
    "Alerts per filter": ["fink_pipeline_filter_passed_total"],
    "Input lag": ["fink_pipeline_input_lag_messages"],
    "Micro-batch duration": ["histogram_quantile", "fink_pipeline_batch_duration_seconds_bucket"],
    "Time per science module": ["fink_pipeline_module_seconds_total"],
    "Dead letters by reason": ["fink_pipeline_alerts_rejected_total"],
    "Reconcile passes by result": ["controller_runtime_reconcile_total"],
    "Reconcile errors": ["controller_runtime_reconcile_errors_total"],
    "Driver submissions and restarts": [
        "fink_operator_job_submissions_total",
        "fink_operator_job_restarts_total",
    ],
}


def test_the_dashboard_has_the_panels_and_variables_it_promises() -> None:
    board = dashboard()
    by_title = {p["title"]: p for p in panels(board)}
    for title, fragments in REQUIRED.items():
        assert title in by_title, f"no panel {title!r}"
        text = " ".join(t["expr"] for t in by_title[title]["targets"])
        for fragment in fragments:
            assert fragment in text, f"{title}: no {fragment}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "pipeline"} <= set(variables)
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what it shows"


def test_every_panel_query_returns_data_while_a_pipeline_streams(
    streamed: StreamedRun, prometheus: Prometheus
) -> None:
    empty = []
    queries = panel_queries(dashboard())
    for query in queries:
        expr = substitute(query.expr, streamed.variables())
        result = prometheus.query_range(expr, streamed.started, streamed.ended, step=5)
        if not any(series.has_data() for series in result):
            empty.append(f"{query.panel} [{query.ref}]: {expr}")
    assert not empty, f"{len(empty)} of {len(queries)} queries returned no data:\n" + "\n".join(
        empty
    )


def test_the_key_panels_show_what_the_run_did(
    streamed: StreamedRun, prometheus: Prometheus
) -> None:
    """Beyond "some data": the run's own events are visible in the panels' series."""
    variables = streamed.variables()

    def peak(title: str, ref: str = "A", **labels: str) -> float:
        (query,) = [q for q in panel_queries(dashboard()) if q.panel == title and q.ref == ref]
        result = prometheus.query_range(
            substitute(query.expr, variables), streamed.started, streamed.ended, step=5
        )
        values = [
            v
            for s in result
            if all(s.labels.get(k) == v for k, v in labels.items())
            for _, v in s.values
            if v == v  # not NaN
        ]
        return max(values, default=0.0)

    assert peak("Input lag") > 0  # the burst, seen while the job caught up
    assert peak("Alerts in and out per stage", "B", sink="hbase") > 0
    assert peak("Alerts per filter") > 0
    assert peak("Dead letters by reason") > 0  # the second round of malformed messages
    assert peak("Time per science module", module="lightcurve_features") > 0
    assert peak("Driver submissions and restarts", "B") == 2  # Failed, or CrashLoop
    assert peak("Driver submissions and restarts", "A") == 3


def test_the_dashboard_variables_find_the_streaming_pipeline(
    streamed: StreamedRun, prometheus: Prometheus
) -> None:
    """label_values(fink_pipeline_running, ...) is Grafana's; the series API answers the same."""
    found = prometheus.series("fink_pipeline_running", streamed.started, streamed.ended)
    assert {"namespace": streamed.namespace, "pipeline": streamed.pipeline}.items() <= {
        k: v
        for series in found
        if series.get("pipeline") == streamed.pipeline
        for k, v in series.items()
    }.items()


def test_prometheus_found_the_driver_and_the_operator_itself(
    streamed: StreamedRun, prometheus: Prometheus
) -> None:
    """The driver through its pod's prometheus.io annotations, at its address on the bridge."""
    drivers = prometheus.query_range(
        f'up{{job="kubernetes-pods", namespace="{streamed.namespace}"}}',
        streamed.started,
        streamed.ended,
    )
    # one pod name (a driver restarted keeps it), each at its own address on the bridge
    assert {s.labels["pod"] for s in drivers} == {f"{streamed.pipeline}-driver"}
    for driver in drivers:
        assert driver.labels["instance"].startswith("10.88.0.")
        assert driver.labels["instance"].endswith(":9464")
    assert any(v == 1 for driver in drivers for _, v in driver.values)
    operator = prometheus.query(
        f'up{{job="fink-host", instance="{streamed.operator}"}}', at=streamed.ended
    )
    assert [s.values[0][1] for s in operator] == [1]


def test_the_picture_is_drawn_from_the_dashboards_queries(
    streamed: StreamedRun, prometheus: Prometheus, tmp_path: Path
) -> None:
    """scripts/render_dashboard.py on this run; FINK_DASHBOARD_PNG=docs/images/dashboard.png
    writes the documentation's figure from it."""
    out = Path(os.environ.get("FINK_DASHBOARD_PNG") or tmp_path / "dashboard.png")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "render_dashboard.py"),
            "--prometheus",
            prometheus.url,
            "--namespace",
            streamed.namespace,
            "--pipeline",
            streamed.pipeline,
            "--start",
            f"{streamed.started:.0f}",
            "--end",
            f"{streamed.ended:.0f}",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no data" not in result.stdout, result.stdout
