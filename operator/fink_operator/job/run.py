"""The job part of a reconcile pass: render, observe the driver, decide, act.

Runs after the topics and table are reconciled: a driver is started only once
they are ready (it would refuse to start without them), but a running driver is
never stopped because Kafka or HBase are briefly away (it waits for them itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fink_operator import metrics
from fink_operator.conditions import Condition
from fink_operator.desired import DesiredState
from fink_operator.job.render import SUBMISSION, JobNotConfigured, kubernetes_name, render
from fink_operator.job.supervise import (
    RUNNING,
    STREAMING,
    SUBMITTED,
    JobRecord,
    SubmitFailed,
    supervise,
)
from fink_operator.reconcile import Event, Outcome


@dataclass
class JobOutcome:
    conditions: list[Condition]
    record: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    requeue: float | None = None


def _all(reason: str, message: str, status: bool | None = False) -> list[Condition]:
    return [Condition(kind, status, reason, message) for kind in (SUBMITTED, RUNNING, STREAMING)]


def job_part(
    context: Any, body: Mapping[str, Any], desired: DesiredState, outcome: Outcome
) -> JobOutcome:
    record = JobRecord.from_status((body.get("status") or {}).get("job"))
    spec = desired.spec
    try:
        objects = render(body, spec, context.job_config, submission=record.submissions + 1)
    except JobNotConfigured as error:
        return JobOutcome(
            _all(error.reason, str(error)), {**record.to_status(), "state": "NotConfigured"}
        )
    namespace = spec.namespace
    driver = context.jobs.driver(namespace, objects.driver_name, spec.spark.metrics_port)
    sinks_ready = outcome.topics.status is True and outcome.tables.status is True
    if driver is None and not sinks_ready and not spec.spark.suspend:
        message = "the job starts once its topics and table are ready"
        return JobOutcome(
            _all("WaitingForSinks", message, None), {**record.to_status(), "state": "Waiting"}
        )
    decision = supervise(
        context.clock(),
        objects.spec_hash,
        spec.spark.suspend,
        driver,
        record,
        spec.spark.restart_policy,
        spec.spark.stop_grace_seconds,
        objects.driver_name,
        spec.spark.metrics_port,
    )
    if decision.record.restarts > record.restarts and decision.record.last_failure:
        metrics.record_restart(namespace, spec.name, decision.record.last_failure.reason)
    if decision.action == "create":
        pod = objects.driver_pod
        pod["metadata"]["annotations"][SUBMISSION] = str(decision.record.submissions)
        try:
            context.jobs.apply(objects.supporting)
            created = context.jobs.create_driver(pod)
        except SubmitFailed as error:  # e.g. a quota, an admission webhook, a full range
            return JobOutcome(
                _all("SubmitFailed", f"{error}; trying again in 30 s"),
                {**record.to_status(), "state": "SubmitFailed"},
                requeue=30.0,
            )
        if not created:
            # the previous driver still exists (it is being deleted): never two at once
            return JobOutcome(
                _all("Stopping", f"waiting for the previous {objects.driver_name} to go", None),
                {**record.to_status(), "state": "Stopping"},
                requeue=2.0,
            )
        metrics.record_submission(namespace, spec.name)
    elif decision.action == "delete" and driver is not None:
        context.jobs.delete_driver(namespace, driver.name, decision.grace_seconds)
    return JobOutcome(
        decision.conditions, decision.record.to_status(), decision.events, decision.requeue
    )


def delete_data_claim(context: Any, desired: DesiredState) -> bool:
    """deletionPolicy Delete: the volume the operator made for the pipeline goes too."""
    volume = context.job_config.volume
    if volume.kind != "storage-class" or desired.spec.spark.volume_claim:
        return False
    claim = kubernetes_name(desired.spec.name, "-data")
    return bool(context.jobs.delete_claim(desired.spec.namespace, claim))
