"""A whole reconcile pass of one pipeline: from the resource to its new status and events.

kopf's handlers and the drift sweep both run passes through here, so status,
events and metrics come out the same whatever triggered them. The status is
written through the context's writer while the pipeline's lock is held, over
the status the operator wrote last: two passes of one pipeline (a kopf handler
and the sweep) can neither interleave their writes nor diff against a stale
watch body, so conditions and the job record always come from one pass. With a
context made of fakes, a test runs a complete pass in memory.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fink_core.connections import Connections, resolve
from fink_core.errors import MissingReference, NeedsUser, SpecError
from fink_core.filter_control import LiveFilter, control_topic
from fink_operator import metrics, science_filters
from fink_operator.conditions import (
    TABLES_READY,
    TOPICS_READY,
    Condition,
    merge,
    now_rfc3339,
    overall,
    phase,
    transitions,
)
from fink_operator.context import OperatorContext
from fink_operator.desired import (
    DesiredState,
    desired_state,
    pipeline_ref,
    with_science_filters,
)
from fink_operator.job.run import JobOutcome, delete_data_claim, job_part
from fink_operator.reconcile import Cleanup, Event, Outcome, cleanup, reconcile, release_all

log = logging.getLogger(__name__)


class PipelineGone(Exception):
    """The pipeline is being deleted, or is gone: no pass may run for it any more.

    A pass holds a body read earlier (the drift sweep's index, a queued request).
    Run after the deletion removed the topics, table and claims, it would create
    them again for a pipeline that no longer exists: orphans no one owns, claims
    that keep the names from every other pipeline.
    """


@dataclass
class PassResult:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    ready: Condition | None = None
    retry: bool = False  # a server or a referenced object is missing: try again later
    retry_message: str = ""
    desired: DesiredState | None = None
    connections: Connections | None = None
    requeue: float | None = None  # the job wants another look in this many seconds


def status_lists(status: Mapping[str, Any]) -> dict[str, list[str]]:
    return {"topics": list(status.get("topics") or []), "tables": list(status.get("tables") or [])}


def _status(
    body: Mapping[str, Any],
    parts: list[Condition],
    owned: Mapping[str, list[str]],
    waiting: bool,
    job: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], Condition, list[Condition]]:
    ready = overall(parts)
    generation = (body.get("metadata") or {}).get("generation")
    current = body.get("status") or {}
    previous = current.get("conditions")
    status = {
        "observedGeneration": generation,
        "conditions": merge(previous, [*parts, ready], generation, now_rfc3339()),
        "topics": sorted(owned.get("topics", [])),
        "topicCount": len(owned.get("topics", [])),
        "tables": sorted(owned.get("tables", [])),
        "phase": phase(ready, waiting),
    }
    if job is not None:
        status["job"] = dict(job)
    elif "job" in current:
        status["job"] = current["job"]
    return status, ready, transitions(previous, [*parts, ready])


def _condition_events(changed: list[Condition]) -> list[Event]:
    """One event per changed condition that is not good news (Ready=True gets one too)."""
    events = []
    for condition in changed:
        if condition.status is True and condition.type != "Ready":
            continue
        kind = "Normal" if condition.status is True else "Warning"
        events.append(Event(kind, condition.reason, f"{condition.type}: {condition.message}"))
    return events


def run_pass(context: OperatorContext, body: Mapping[str, Any], trigger: str) -> PassResult:
    """One reconcile pass with status, events and metrics. Raises nothing for user errors."""
    started = time.monotonic()
    ref = pipeline_ref(body)
    with context.locks.hold(ref.uid):
        if ref.uid in context.gone:
            raise PipelineGone(f"{ref} is being deleted: not reconciled again")
        latest = context.statuses.get(ref.uid)
        if latest is not None:
            body = {**body, "status": latest}
        result = _pass(context, body)
        _record(context, ref.uid, body, result.status)
    for event in result.events:
        context.events.post(body, event)
    ready = result.ready
    if result.retry:
        outcome = "error"
    else:
        outcome = "success" if ready is not None and ready.status else "requeue"
    metrics.observe_pass(trigger, outcome, time.monotonic() - started)
    if ready is not None and ready.status is not True:
        metrics.record_error(ready.reason)
    metrics.set_owned(ref.uid, result.status.get("topicCount", 0), len(result.status["tables"]))
    log.info(
        "%s pass of %s: %s: %s",
        trigger,
        ref,
        ready.reason if ready else "-",
        ready.message if ready else "",
    )
    return result


def _record(
    context: OperatorContext, uid: str, body: Mapping[str, Any], status: dict[str, Any]
) -> None:
    """Write `status` over the body's (the last written); remember it only if it landed."""
    if context.write_status is not None and context.write_status(body, status) is False:
        context.statuses.pop(uid, None)  # the next pass diffs against the watch body again
        return
    context.statuses[uid] = status


def mark_unreachable(
    context: OperatorContext, body: Mapping[str, Any], part: str, error: Exception
) -> tuple[dict[str, Any], list[Event]] | None:
    """unreachable_status, computed from and written over the last status, under the lock."""
    ref = pipeline_ref(body)
    with context.locks.hold(ref.uid):
        latest = context.statuses.get(ref.uid)
        if latest is not None:
            body = {**body, "status": latest}
        found = unreachable_status(body, part, error)
        if found is not None:
            _record(context, ref.uid, body, found[0])
    return found


def _pass(context: OperatorContext, body: Mapping[str, Any]) -> PassResult:
    previous = status_lists(body.get("status") or {})
    try:
        desired = desired_state(body, context.catalogue)
    except SpecError as error:
        return _refused(body, previous, "InvalidSpec", f"the spec cannot be run: {error}")
    namespace = desired.pipeline.namespace
    try:
        read_configmap, read_secret = context.readers(namespace)
        connections = resolve(desired.spec, context.config.defaults, read_configmap, read_secret)
    except MissingReference as error:
        result = _refused(body, previous, error.reason, str(error), waiting=True)
        result.retry, result.retry_message = True, str(error)
        return result
    except NeedsUser as error:
        return _refused(body, previous, error.reason, str(error))

    read_configmap = context.readers(namespace)[0]
    attached = science_filters.for_pipeline(
        desired.spec,
        context.filter_documents(namespace),
        lambda spec: science_filters.code_of(spec, read_configmap),
    )
    control = control_topic(desired.spec.name)
    wants_control = attached.attached or control in previous["topics"]
    desired = with_science_filters(desired, attached.topics, control if wants_control else None)
    topics = context.kafka_admin(connections.sink)
    tables = (
        context.hbase_admin(connections.hbase_admin)
        if desired.resources.table is not None
        else None
    )
    try:
        outcome = reconcile(desired, topics, tables, context.claims, previous)
    finally:
        if tables is not None:
            with contextlib.suppress(Exception):
                tables.close()  # type: ignore[attr-defined]
    if wants_control and outcome.topics.status is True and context.filter_channel is not None:
        _publish_filters(context, connections, control, attached.live, outcome)
    job = job_part(context, body, desired, outcome) if context.job_config.enabled else None
    return _from_outcome(body, desired, connections, outcome, job)


def _publish_filters(
    context: OperatorContext,
    connections: Connections,
    topic: str,
    live: Mapping[str, LiveFilter],
    outcome: Outcome,
) -> None:
    """Hand the running pipeline its ScienceFilters: only what changed goes to the control topic.

    A failure is reported as an event and tried again by the next pass; the pipeline
    keeps running the filters it has.
    """
    assert context.filter_channel is not None
    try:
        written = context.filter_channel(connections.sink).publish(topic, live)
    except Exception as error:
        log.warning("could not publish the science filters to %s: %s", topic, error)
        outcome.events.append(
            Event("Warning", "FiltersNotPublished", f"control topic {topic}: {error}")
        )
        return
    if written:
        outcome.events.append(
            Event("Normal", "FiltersPublished", f"science filters sent to {topic}: {written}")
        )


def _from_outcome(
    body: Mapping[str, Any],
    desired: DesiredState,
    connections: Connections,
    outcome: Outcome,
    job: JobOutcome | None,
) -> PassResult:
    parts = [outcome.topics, outcome.tables, *(job.conditions if job else [])]
    owned = {"topics": outcome.owned_topics, "tables": outcome.owned_tables}
    status, ready, changed = _status(
        body,
        parts,
        owned,
        waiting=bool(outcome.unreachable),
        job=job.record if job else None,
    )
    result = PassResult(
        status=status,
        events=[*outcome.events, *(job.events if job else []), *_condition_events(changed)],
        ready=ready,
        retry=bool(outcome.unreachable),
        retry_message="; ".join(str(e) for e in outcome.unreachable),
        desired=desired,
        connections=connections,
        requeue=job.requeue if job else None,
    )
    return result


def _refused(
    body: Mapping[str, Any],
    previous: Mapping[str, list[str]],
    reason: str,
    message: str,
    waiting: bool = False,
) -> PassResult:
    """Nothing was touched: every part says why, the owned lists stay as they were."""
    parts = [
        Condition(TOPICS_READY, False, reason, message),
        Condition(TABLES_READY, False, reason, message),
    ]
    status, ready, changed = _status(body, parts, previous, waiting)
    events = [Event("Warning", reason, message)] if any(c.type == "Ready" for c in changed) else []
    return PassResult(status=status, events=events, ready=ready)


def delete_pass(context: OperatorContext, body: Mapping[str, Any]) -> Cleanup:
    """deletionPolicy Delete: delete what the pipeline owns (claims), then release the claims.

    Raises the core's Retryable errors to be retried by the caller.
    """
    ref = pipeline_ref(body)
    try:
        desired = desired_state(body, context.catalogue)
    except SpecError:
        desired = _minimal_desired(body)
    read_configmap, read_secret = context.readers(ref.namespace)
    try:
        connections = resolve(desired.spec, context.config.defaults, read_configmap, read_secret)
    except NeedsUser:
        connections = resolve(desired.spec, context.config.defaults, lambda _: None, lambda _: None)
    with context.locks.hold(ref.uid):
        context.gone.add(ref.uid)  # from here on no pass recreates what this deletes
        topics = context.kafka_admin(connections.sink)
        tables = context.hbase_admin(connections.hbase_admin)
        try:
            done = cleanup(desired, topics, tables, context.claims)
        finally:
            with contextlib.suppress(Exception):
                tables.close()  # type: ignore[attr-defined]
        if context.job_config.enabled and delete_data_claim(context, desired):
            done.deleted_claims.append(f"{desired.spec.name} data volume")
    events = []
    if done.deleted_topics:
        events.append(
            Event("Normal", "TopicDeleted", f"deleted topic(s) {', '.join(done.deleted_topics)}")
        )
    if done.dropped_tables:
        events.append(
            Event("Normal", "TableDeleted", f"dropped table(s) {', '.join(done.dropped_tables)}")
        )
    for event in events:
        context.events.post(body, event)
    return done


def retire(context: OperatorContext, uid: str) -> None:
    """No pass runs for this pipeline from now on (it is being deleted); one running
    now finishes first, as the pipeline's lock is taken."""
    with context.locks.hold(uid):
        context.gone.add(uid)


def forget(context: OperatorContext, body: Mapping[str, Any]) -> None:
    """The pipeline is gone: release what a Retain pipeline owned, drop its lock and gauges."""
    ref = pipeline_ref(body)
    retire(context, ref.uid)
    spec = body.get("spec") or {}
    if spec.get("deletionPolicy", "Retain") != "Delete":
        try:
            released = release_all(context.claims, _minimal_desired(body))
        except Exception as error:  # best effort: a stale claim is recognised later anyway
            log.warning("could not release the claims of %s: %s", ref, error)
        else:
            if released:
                log.info(
                    "released %s's claims (data kept): %s",
                    ref,
                    ", ".join(c.name for c in released),
                )
    context.locks.forget(ref.uid)
    context.statuses.pop(ref.uid, None)
    metrics.forget(ref.uid)


def _minimal_desired(body: Mapping[str, Any]) -> DesiredState:
    """Enough of a pipeline to find its claims, for a spec that no longer parses."""
    from fink_core.resources import Resources
    from fink_core.spec import parse_pipeline

    ref = pipeline_ref(body)
    placeholder = {
        "metadata": {"name": ref.name or "gone", "namespace": ref.namespace},
        "spec": {"survey": "ztf", "source": {"kafka": {"topic": "unknown"}}},
    }
    try:
        spec = parse_pipeline(body)
    except SpecError:
        spec = parse_pipeline(placeholder)
    return DesiredState(ref, spec, Resources((), None), spec.adopt)


def unreachable_status(
    body: Mapping[str, Any], part: str, error: Exception
) -> tuple[dict[str, Any], list[Event]] | None:
    """The status a pass would write when one server is down, without running the pass.

    The drift sweep uses it when its one request to a server fails: every
    pipeline on that server is told at once, instead of each waiting for its own
    pass to time out. None when the status already says so.
    """
    current = body.get("status") or {}
    conditions = {c.get("type"): c for c in current.get("conditions") or []}
    reason = getattr(error, "reason", "ServerUnreachable")
    if conditions.get(part, {}).get("reason") == reason:
        return None
    parts = []
    for kind in (TOPICS_READY, TABLES_READY):
        if kind == part:
            parts.append(Condition(kind, False, reason, str(error)))
            continue
        old = conditions.get(kind) or {}
        status = {"True": True, "False": False}.get(old.get("status", ""))
        parts.append(Condition(kind, status, old.get("reason", "Pending"), old.get("message", "")))
    owned = status_lists(current)
    status, _, changed = _status(body, parts, owned, waiting=True)
    return status, _condition_events(changed)
