"""What to do about a pipeline's driver, and what to say about it. Pure: no I/O.

The adapter observes the driver pod (with its last log lines when it ended, and
its metrics when it runs); `supervise` turns that, the job record kept in the
pipeline's status and the current spec into one action (create, delete, wait),
the job's three conditions and the new record:

- SparkSubmitted: a driver pod exists for the current spec;
- DriverRunning: it runs (else why not: image not on the node, unschedulable and
  which resource, OOMKilled, crashed with its last log lines, restarting when);
- Streaming: its query runs and reads the source. The driver serves its metrics
  only once its query has started, and the pod's readiness probe asks for them,
  so the pod's Ready condition says it (the operator never needs to reach pods).

A failed driver is deleted and started again after a backoff that doubles with
each failure in a row; a spec change stops the running driver (it gets its grace
period to finish its micro-batch) and starts the new one only once the old one
is gone, on the same checkpoint; suspend stops it and starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fink_core.spec import RestartPolicy
from fink_operator.conditions import Condition
from fink_operator.reconcile import Event

SUBMITTED = "SparkSubmitted"
RUNNING = "DriverRunning"
STREAMING = "Streaming"
JOB_CONDITIONS = (SUBMITTED, RUNNING, STREAMING)

IMAGE_PROBLEMS = {"ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
CRASH_LOOP_AFTER = 3  # failures in a row before a crash is called a crash loop
LOG_LINES = 20


class SubmitFailed(Exception):
    """The API server refused or failed to write one of the job's objects (it says why)."""


@dataclass(frozen=True)
class DriverPod:
    """The driver pod as the adapter saw it."""

    name: str
    spec_hash: str | None
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    terminating: bool = False
    unschedulable: str | None = None  # the scheduler's message
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated_reason: str | None = None
    exit_code: int | None = None
    ip: str | None = None
    ready: bool = False  # its readiness probe (the metrics, served once the query runs) passes
    logs: str = ""  # last lines, when it ended

    @property
    def ended(self) -> bool:
        return self.phase in ("Succeeded", "Failed") or self.terminated_reason is not None


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    time: str


@dataclass(frozen=True)
class JobRecord:
    """What the operator remembers of the job, in status.job (survives operator restarts)."""

    state: str = ""
    driver_pod: str = ""
    spec_hash: str = ""
    submissions: int = 0
    restarts: int = 0
    consecutive_failures: int = 0
    last_failure: Failure | None = None
    next_start: str | None = None
    metrics_endpoint: str = ""

    def to_status(self) -> dict[str, Any]:
        """Every field, absent ones as None: status is merge-patched, and a None removes
        what an earlier pass wrote (a stale nextStartTime would hide the next failure)."""
        failure = self.last_failure
        return {
            "state": self.state,
            "driverPod": self.driver_pod,
            "specHash": self.spec_hash,
            "submissions": self.submissions,
            "restarts": self.restarts,
            "consecutiveFailures": self.consecutive_failures,
            "lastFailure": {
                "reason": failure.reason,
                "message": failure.message,
                "time": failure.time,
            }
            if failure
            else None,
            "nextStartTime": self.next_start,
            "metricsEndpoint": self.metrics_endpoint or None,
        }

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> JobRecord:
        status = status or {}
        failure = status.get("lastFailure")
        return cls(
            state=status.get("state", ""),
            driver_pod=status.get("driverPod", ""),
            spec_hash=status.get("specHash", ""),
            submissions=int(status.get("submissions", 0)),
            restarts=int(status.get("restarts", 0)),
            consecutive_failures=int(status.get("consecutiveFailures", 0)),
            last_failure=Failure(failure["reason"], failure.get("message", ""), failure["time"])
            if failure
            else None,
            next_start=status.get("nextStartTime"),
            metrics_endpoint=status.get("metricsEndpoint") or "",
        )


@dataclass
class Decision:
    action: str  # "create", "delete", "none"
    record: JobRecord
    conditions: list[Condition]
    grace_seconds: int = 0
    requeue: float | None = None  # look again in this many seconds
    events: list[Event] = field(default_factory=list)


def supervise(
    now: datetime,
    wanted_hash: str,
    suspend: bool,
    driver: DriverPod | None,
    record: JobRecord,
    policy: RestartPolicy,
    stop_grace: int,
    driver_name: str,
    metrics_port: int,
) -> Decision:
    if suspend:
        return _suspended(driver, record, stop_grace)
    if driver is None:
        return _absent(now, wanted_hash, record, policy, driver_name)
    if driver.terminating:
        # the operator's own stop keeps state Stopping; a deletion by anyone else keeps the
        # state it interrupts, so that the driver's disappearance counts as a failure
        ours = record.state in ("Stopping", "Restarting")
        what = "is stopping" if ours else "is being deleted (not by the operator)"
        return Decision(
            "none",
            record,
            _conditions(
                (SUBMITTED, None, "Stopping", f"driver {driver.name} {what}"),
                (
                    RUNNING,
                    False,
                    "Stopping" if ours else "Terminating",
                    f"driver {driver.name} {what}",
                ),
                (STREAMING, False, "Stopping", "the job is stopping"),
            ),
            requeue=2.0,
        )
    if driver.spec_hash != wanted_hash:
        message = (
            f"the spec changed: stopping driver {driver.name} at a micro-batch boundary "
            f"(grace {stop_grace} s), then starting the new one on the same checkpoint"
        )
        return Decision(
            "delete",
            replace(record, state="Stopping", consecutive_failures=0, next_start=None),
            _conditions(
                (SUBMITTED, None, "Rolling", message),
                (RUNNING, False, "Rolling", message),
                (STREAMING, False, "Rolling", message),
            ),
            grace_seconds=stop_grace,
            requeue=2.0,
            events=[Event("Normal", "JobRolling", message)],
        )
    if driver.ended:
        return _ended(now, driver, record, policy)
    if driver.phase == "Pending":
        return _pending(driver, record)
    return _running(driver, record, metrics_port)


def _suspended(driver: DriverPod | None, record: JobRecord, stop_grace: int) -> Decision:
    message = "spec.spark.suspend is true: the job is stopped; set it to false to resume"
    conditions = _conditions(
        (SUBMITTED, False, "Suspended", message),
        (RUNNING, False, "Suspended", message),
        (STREAMING, False, "Suspended", message),
    )
    if driver is not None and not driver.terminating:
        return Decision(
            "delete",
            replace(record, state="Stopping", next_start=None),
            conditions,
            grace_seconds=stop_grace,
            requeue=2.0,
            events=[Event("Normal", "JobSuspended", f"stopping driver {driver.name}: {message}")],
        )
    if driver is not None:
        return Decision("none", replace(record, state="Stopping"), conditions, requeue=2.0)
    return Decision("none", replace(record, state="Suspended", next_start=None), conditions)


def _absent(
    now: datetime, wanted_hash: str, record: JobRecord, policy: RestartPolicy, driver_name: str
) -> Decision:
    # it was started and the operator did not stop it: its disappearance is a failure
    stopped_by_us = ("", "Stopping", "Restarting", "Suspended", "Waiting", "NotConfigured")
    vanished = record.submissions > 0 and record.state not in stopped_by_us
    if vanished and record.next_start is None:
        # it ran and is gone without the operator deleting it: a failure like any other
        failure = Failure(
            "DriverVanished",
            f"driver pod {record.driver_pod} disappeared (deleted, or its node was lost)",
            _rfc3339(now),
        )
        record = _failed(now, record, failure, policy)
    if record.next_start and _parse(record.next_start) > now:
        wait = (_parse(record.next_start) - now).total_seconds()
        failure = record.last_failure
        reason = failure.reason if failure else "Restarting"
        message = (
            f"{failure.message if failure else 'the driver stopped'}; starting it again at "
            f"{record.next_start} (failure {record.consecutive_failures} in a row)"
        )
        return Decision(
            "none",
            replace(record, state="Restarting"),
            _conditions(
                (SUBMITTED, False, "Restarting", message),
                (RUNNING, False, reason, message),
                (STREAMING, False, "Restarting", message),
            ),
            requeue=wait,
        )
    record = replace(
        record,
        state="Submitted",
        driver_pod=driver_name,
        spec_hash=wanted_hash,
        submissions=record.submissions + 1,
        next_start=None,
    )
    return Decision(
        "create",
        record,
        _conditions(
            (SUBMITTED, True, "Submitted", f"driver pod {driver_name} created"),
            (RUNNING, None, "Starting", f"driver pod {driver_name} is starting"),
            (STREAMING, None, "Starting", "the job is starting"),
        ),
        requeue=3.0,
        events=[Event("Normal", "DriverCreated", f"created driver pod {driver_name}")],
    )


def _ended(now: datetime, driver: DriverPod, record: JobRecord, policy: RestartPolicy) -> Decision:
    if driver.terminated_reason == "OOMKilled":
        reason = "OOMKilled"
        what = f"driver {driver.name} ran out of memory (OOMKilled): raise spec.spark.driver.memory"
    else:
        code = driver.exit_code
        reason = "CrashLoop" if record.consecutive_failures + 1 >= CRASH_LOOP_AFTER else "Failed"
        what = f"driver {driver.name} exited with code {code}"
    logs = _last_lines(driver.logs)
    message = f"{what}; its last log lines:\n{logs}" if logs else what
    failure = Failure(reason, message, _rfc3339(now))
    record = _failed(now, record, failure, policy)
    decision = Decision(
        "delete",
        replace(record, state="Restarting"),
        _conditions(
            (SUBMITTED, False, "Restarting", what),
            (RUNNING, False, reason, message),
            (STREAMING, False, "Restarting", what),
        ),
        grace_seconds=0,
        requeue=2.0,
        events=[Event("Warning", reason, f"{what}; restarting at {record.next_start}")],
    )
    return decision


def _failed(now: datetime, record: JobRecord, failure: Failure, policy: RestartPolicy) -> JobRecord:
    failures = record.consecutive_failures + 1
    delay = min(policy.max_backoff_seconds, policy.backoff_seconds * 2 ** (failures - 1))
    return replace(
        record,
        restarts=record.restarts + 1,
        consecutive_failures=failures,
        last_failure=failure,
        next_start=_rfc3339(now + timedelta(seconds=delay)),
    )


def _pending(driver: DriverPod, record: JobRecord) -> Decision:
    submitted = (SUBMITTED, True, "Submitted", f"driver pod {driver.name} exists")
    if driver.unschedulable:
        message = (
            f"driver pod {driver.name} cannot be scheduled: {driver.unschedulable}; lower "
            "spec.spark.driver memory or coreRequest, check spec.spark nodeSelector and "
            "tolerations, or add capacity"
        )
        conditions = _conditions(
            submitted,
            (RUNNING, False, "Unschedulable", message),
            (STREAMING, False, "Unschedulable", message),
        )
        return Decision("none", replace(record, state="Pending"), conditions, requeue=15.0)
    if driver.waiting_reason in IMAGE_PROBLEMS:
        message = (
            f"the image of driver {driver.name} is not available ({driver.waiting_reason}: "
            f"{driver.waiting_message or ''}): build or import it, or fix spec.spark.image"
        )
        conditions = _conditions(
            submitted,
            (RUNNING, False, "ImageNotPresent", message),
            (STREAMING, False, "ImageNotPresent", message),
        )
        return Decision("none", replace(record, state="Pending"), conditions, requeue=15.0)
    starting = f"driver pod {driver.name} is starting ({driver.waiting_reason or 'Pending'})"
    return Decision(
        "none",
        replace(record, state="Submitted"),
        _conditions(
            submitted,
            (RUNNING, None, "Starting", starting),
            (STREAMING, None, "Starting", starting),
        ),
        requeue=3.0,
    )


def _running(driver: DriverPod, record: JobRecord, metrics_port: int) -> Decision:
    endpoint = f"http://{driver.ip}:{metrics_port}/metrics" if driver.ip else ""
    submitted = (SUBMITTED, True, "Submitted", f"driver pod {driver.name} exists")
    running = (RUNNING, True, "Running", f"driver pod {driver.name} runs")
    if driver.ready:
        message = f"the query reads the source; metrics at {endpoint or 'the metrics service'}"
        record = replace(record, state="Streaming", consecutive_failures=0, next_start=None)
        return Decision(
            "none",
            replace(record, metrics_endpoint=endpoint),
            _conditions(submitted, running, (STREAMING, True, "Streaming", message)),
        )
    return Decision(
        "none",
        replace(record, state="Running", metrics_endpoint=endpoint),
        _conditions(
            submitted,
            running,
            (STREAMING, None, "Starting", "the driver runs; its streaming query has not started"),
        ),
        requeue=3.0,
    )


def _conditions(*parts: tuple[str, bool | None, str, str]) -> list[Condition]:
    return [Condition(kind, status, reason, message) for kind, status, reason, message in parts]


def _last_lines(logs: str) -> str:
    return "\n".join(logs.strip().splitlines()[-LOG_LINES:])


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
