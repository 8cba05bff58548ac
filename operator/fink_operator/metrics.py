"""Operator metrics, named like controller-runtime's so standard dashboards work unchanged.

controller_runtime_reconcile_total{controller,result}, ..._errors_total and
..._time_seconds are what Grafana's controller-runtime dashboards read; the
fink_operator_* series add what is specific to us: passes by kind (create,
update, resume, delete, drift), errors by reason, and the topics and tables
the operator manages, events posted, drift sweeps. Calls to Kafka and HBase
are counted by the shared core (fink_backend_calls_total).
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

CONTROLLER = "brokerpipeline"

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECONCILES = Counter(
    "fink_operator_reconciles_total",
    "Reconcile passes by kind of trigger and result",
    ["kind", "result"],
)
ERRORS = Counter(
    "fink_operator_errors_total",
    "Reconcile problems by reason (server unreachable, change refused, invalid spec, ...)",
    ["reason"],
)
MANAGED_TOPICS = Gauge("fink_operator_managed_topics", "Kafka topics owned by pipelines")
MANAGED_TABLES = Gauge("fink_operator_managed_tables", "HBase tables owned by pipelines")
PIPELINES = Gauge("fink_operator_pipelines", "BrokerPipeline resources known to the operator")
LEADER = Gauge(
    "fink_operator_leader", "1 while this replica holds the leader lease (or runs without one)"
)
EVENTS = Counter(
    "fink_operator_events_total", "Kubernetes events posted, by type and reason", ["type", "reason"]
)
JOB_SUBMISSIONS = Counter(
    "fink_operator_job_submissions_total",
    "Driver pods the operator created, per pipeline",
    ["namespace", "pipeline"],
)
JOB_RESTARTS = Counter(
    "fink_operator_job_restarts_total",
    "Drivers that failed or vanished and are restarted, per pipeline and reason",
    ["namespace", "pipeline", "reason"],
)
SWEEPS = Counter("fink_operator_drift_sweeps_total", "Drift sweeps over every known pipeline")
DRIFTED = Counter(
    "fink_operator_drift_detected_total", "Pipelines a sweep found drifted (a pass followed)"
)
SWEEP_TIME = Histogram(
    "fink_operator_drift_sweep_seconds",
    "Length of one drift sweep, passes included",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)

_owned: dict[str, tuple[int, int]] = {}
_owned_lock = threading.Lock()


def observe_pass(kind: str, result: str, seconds: float) -> None:
    """Record one pass; result is success, error (retried) or requeue (refused, waits on user)."""
    RECONCILE_TOTAL.labels(CONTROLLER, result).inc()
    RECONCILE_TIME.labels(CONTROLLER).observe(seconds)
    RECONCILES.labels(kind, result).inc()
    if result == "error":
        RECONCILE_ERRORS.labels(CONTROLLER).inc()


def record_error(reason: str) -> None:
    ERRORS.labels(reason).inc()


def record_event(kind: str, reason: str) -> None:
    EVENTS.labels(kind, reason).inc()


def record_submission(namespace: str, pipeline: str) -> None:
    JOB_SUBMISSIONS.labels(namespace, pipeline).inc()


def record_restart(namespace: str, pipeline: str, reason: str) -> None:
    JOB_RESTARTS.labels(namespace, pipeline, reason).inc()


def observe_sweep(pipelines: int, drifted: int, seconds: float) -> None:
    SWEEPS.inc()
    DRIFTED.inc(drifted)
    SWEEP_TIME.observe(seconds)


def set_owned(uid: str, topics: int, tables: int) -> None:
    with _owned_lock:
        _owned[uid] = (topics, tables)
        _publish()


def forget(uid: str) -> None:
    with _owned_lock:
        _owned.pop(uid, None)
        _publish()


def _publish() -> None:
    MANAGED_TOPICS.set(sum(t for t, _ in _owned.values()))
    MANAGED_TABLES.set(sum(t for _, t in _owned.values()))
    PIPELINES.set(len(_owned))


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on a background thread (prometheus-client's own HTTP server)."""
    start_http_server(port, addr=address)
