"""kopf handlers: thin wrappers that run a reconcile pass and write its outcome back.

Create, update and resume all run the same idempotent pass; a timer runs it
again every `drift_interval` seconds to undo changes made behind the operator's
back. The delete handler only exists for deletionPolicy Delete, so only those
pipelines carry a finalizer (see `_timer_without_finalizer` for the timer).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._core.intents.handlers import TimerHandler

from fink_pipeline.spec import SpecError

from . import crd, kube, metrics
from .conditions import (
    READY,
    TABLES_READY,
    TOPICS_READY,
    Condition,
    merge,
    now_rfc3339,
    overall,
    phase,
)
from .config import CONFIG, FINALIZER, GROUP, backoff
from .connections import MissingReference, resolve
from .desired import DesiredState, desired_state
from .errors import ServerUnreachable
from .hbase_admin import HBaseAdmin
from .kafka_admin import KafkaAdmin
from .reconcile import Event, Outcome, cleanup, reconcile

RESOURCE = (crd.GROUP, crd.VERSION, crd.PLURAL)

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(uid: str) -> threading.Lock:
    """One pass at a time per pipeline: the timer and a change handler may fire together."""
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # The API server ends a watch after server_timeout; kopf then re-lists. Without
    # these, a watch silently stalled by a proxy or load balancer is never noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 15
    # Only our explicit events and kopf's warnings become Kubernetes events.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8


def _status_lists(status: Mapping[str, Any]) -> dict[str, list[str]]:
    return {"topics": list(status.get("topics") or []), "tables": list(status.get("tables") or [])}


def _write_status(
    patch: kopf.Patch,
    body: kopf.Body,
    parts: list[Condition],
    owned: Mapping[str, list[str]],
    waiting: bool,
) -> Condition:
    ready = overall(parts)
    generation = body.metadata.get("generation")
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = merge(
        body.status.get("conditions"), [*parts, ready], generation, now_rfc3339()
    )
    patch.status["topics"] = sorted(owned.get("topics", []))
    patch.status["topicCount"] = len(owned.get("topics", []))
    patch.status["tables"] = sorted(owned.get("tables", []))
    patch.status["phase"] = phase(ready, waiting)
    return ready


def _post(body: kopf.Body, events: list[Event]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def _admins(desired: DesiredState, body: kopf.Body) -> tuple[KafkaAdmin, HBaseAdmin | None]:
    namespace = body.metadata.namespace or "default"
    connections = resolve(
        body.spec,
        CONFIG.defaults,
        kube.configmap_reader(namespace),
        kube.secret_reader(namespace),
    )
    kafka = KafkaAdmin(
        connections.kafka_bootstrap,
        connections.kafka_settings,
        timeout=CONFIG.server_timeout,
        step_delay=CONFIG.step_delay,
    )
    hbase = None
    if desired.table is not None:
        hbase = HBaseAdmin(
            connections.hbase_host, connections.hbase_port, timeout=CONFIG.server_timeout
        )
    return kafka, hbase


def run_pass(
    kind: str, body: kopf.Body, patch: kopf.Patch, logger: logging.Logger
) -> Outcome | None:
    """One reconcile pass with status, events and metrics. Raises nothing for user errors."""
    started = time.monotonic()
    uid = body.metadata.uid or f"{body.metadata.namespace}/{body.metadata.name}"
    with _lock(uid):
        try:
            desired = desired_state(body)
        except SpecError as error:
            message = f"the spec cannot be run: {error}"
            parts = [
                Condition(TOPICS_READY, False, "InvalidSpec", message),
                Condition(TABLES_READY, False, "InvalidSpec", message),
            ]
            _write_status(patch, body, parts, _status_lists(body.status), waiting=False)
            _post(body, [Event("Warning", "InvalidSpec", message)])
            metrics.record_error("InvalidSpec")
            metrics.observe_pass(kind, "requeue", time.monotonic() - started)
            return None
        try:
            kafka, hbase = _admins(desired, body)
        except MissingReference as error:
            message = f"{error}: create it, or remove the reference from the spec"
            parts = [
                Condition(TOPICS_READY, False, "ReferenceNotFound", message),
                Condition(TABLES_READY, False, "ReferenceNotFound", message),
            ]
            _write_status(patch, body, parts, _status_lists(body.status), waiting=True)
            metrics.record_error("ReferenceNotFound")
            metrics.observe_pass(kind, "error", time.monotonic() - started)
            raise kopf.TemporaryError(message, delay=CONFIG.max_backoff / 2) from error
        try:
            outcome = reconcile(desired, kafka, hbase, _status_lists(body.status))
        finally:
            if hbase is not None:
                hbase.close()
        if desired.table is None:
            outcome.owned_tables = []
        ready = _write_status(
            patch,
            body,
            [outcome.topics, outcome.tables],
            {"topics": outcome.owned_topics, "tables": outcome.owned_tables},
            waiting=bool(outcome.unreachable),
        )
        _post(body, outcome.events)
        metrics.set_owned(uid, len(outcome.owned_topics), len(outcome.owned_tables))
        for problem in [outcome.topics, outcome.tables]:
            if problem.status is False:
                metrics.record_error(problem.reason)
        result = "error" if outcome.unreachable else ("success" if ready.status else "requeue")
        metrics.observe_pass(kind, result, time.monotonic() - started)
        logger.info(f"{kind} pass: {ready.reason}: {ready.message}")
        return outcome


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def on_change(
    body: kopf.Body,
    patch: kopf.Patch,
    reason: str,
    retry: int,
    logger: logging.Logger,
    **_: Any,
) -> None:
    outcome = run_pass(str(reason), body, patch, logger)
    if outcome is not None and outcome.unreachable:
        # Status already says which server is down; kopf retries with backoff.
        raise kopf.TemporaryError(
            "; ".join(str(e) for e in outcome.unreachable),
            delay=backoff(retry, CONFIG.max_backoff),
        )


def drift_check(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, **_: Any) -> None:
    """Re-run the pass: recreates deleted topics/tables, re-sets drifted configs."""
    run_pass("drift", body, patch, logger)


def _deletes_data(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy", "Retain") == "Delete"


@kopf.on.delete(*RESOURCE, when=_deletes_data)
def on_delete(
    body: kopf.Body,
    patch: kopf.Patch,
    retry: int,
    runtime: Any,
    logger: logging.Logger,
    **_: Any,
) -> None:
    """deletionPolicy Delete: delete the topics, disable and drop the table, then release."""
    started = time.monotonic()
    uid = body.metadata.uid or ""
    try:
        desired = desired_state(body)
    except SpecError:
        logger.warning("invalid spec at deletion: deleting only what status lists")
        desired = DesiredState(body.metadata.name or "", "", (), None, "Delete")
    with _lock(uid):
        try:
            kafka, hbase = _admins(desired, body)
            if hbase is None and body.status.get("tables"):
                connections = resolve(body.spec, CONFIG.defaults, lambda _: {}, lambda _: {})
                hbase = HBaseAdmin(connections.hbase_host, connections.hbase_port)
            try:
                done = cleanup(desired, kafka, hbase, _status_lists(body.status))
            finally:
                if hbase is not None:
                    hbase.close()
        except (ServerUnreachable, MissingReference) as error:
            metrics.record_error(getattr(error, "reason", "ReferenceNotFound"))
            metrics.observe_pass("delete", "error", time.monotonic() - started)
            if runtime.total_seconds() > CONFIG.cleanup_timeout:
                message = (
                    f"gave up deleting the pipeline's data after {CONFIG.cleanup_timeout:.0f}s "
                    f"({error}); topics and table may remain"
                )
                kopf.warn(body, reason="CleanupAbandoned", message=message)
                return
            raise kopf.TemporaryError(
                str(error), delay=backoff(retry, CONFIG.max_backoff)
            ) from error
        events = [
            Event("Normal", "TopicDeleted", f"deleted topic {t}") for t in done.deleted_topics
        ]
        events += [
            Event("Normal", "TableDeleted", f"dropped table {t}") for t in done.dropped_tables
        ]
        _post(body, events)
        metrics.forget(uid)
        metrics.observe_pass("delete", "success", time.monotonic() - started)


@kopf.on.event(*RESOURCE)
def on_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    """Forget a pipeline's gauges once it is gone (Retain pipelines get no delete handler)."""
    if type == "DELETED":
        metrics.forget(body.metadata.uid or "")


def register_drift_timer(interval: float, registry: kopf.OperatorRegistry | None = None) -> None:
    """Register the drift timer, then strip the finalizer kopf would force on every resource.

    kopf marks every timer as needing a finalizer, which would make Retain
    pipelines (whose deletion needs no cleanup) block namespace deletion while
    the operator is down. The timer only corrects drift, so it is safe to stop it
    without ceremony when the resource disappears.
    """
    registry = registry or kopf.get_default_registry()
    kopf.timer(*RESOURCE, id="drift", interval=interval, initial_delay=interval, registry=registry)(
        drift_check
    )
    _timer_without_finalizer(registry)


def _timer_without_finalizer(registry: kopf.OperatorRegistry) -> None:
    spawning = registry._spawning
    spawning._handlers = [
        dataclasses.replace(h, requires_finalizer=False) if isinstance(h, TimerHandler) else h
        for h in spawning._handlers
    ]


__all__ = ["READY", "on_change", "on_delete", "register_drift_timer", "run_pass"]
