"""A pass over one ScienceFilter: validate it, hand it to its pipelines, report what they say.

Validation (parse, imports, columns, a sandboxed dry run) runs only when
something it depends on changed: the generation, the code (a ConfigMap may
change under an unchanged resource), or the columns the pipelines produce. Its
key is kept in status.validationKey, so a timer can call this every few
seconds for free. Live comes from the pipelines' own reports in their control
topics (fink_core.filter_control): it is True only when every attached
pipeline runs this very generation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fink_core.connections import resolve
from fink_core.errors import FinkError, SpecError
from fink_core.filter_control import FAILED, FilterReport, control_topic
from fink_core.science_filter import parse_science_filter
from fink_core.spec import parse_pipeline
from fink_operator.conditions import Condition, merge, now_rfc3339, transitions
from fink_operator.context import OperatorContext
from fink_operator.reconcile import Event
from fink_operator.science_filters import (
    LIVE,
    VALIDATED,
    DryRun,
    SourceCheck,
    code_of,
    pipeline_columns,
    validate,
)

log = logging.getLogger(__name__)


@dataclass
class FilterPassResult:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    # the pipelines to reconcile again: the filter's validation or enablement changed
    pipelines_to_pass: list[Mapping[str, Any]] = field(default_factory=list)


def filter_pass(
    context: OperatorContext,
    body: Mapping[str, Any],
    read_pipeline: Callable[[str, str], Mapping[str, Any] | None],
    check_source: SourceCheck,
    dry_run: DryRun,
) -> FilterPassResult:
    metadata = body.get("metadata") or {}
    namespace = metadata.get("namespace") or "default"
    generation = metadata.get("generation")
    current = dict(body.get("status") or {})
    read_configmap = context.readers(namespace)[0]
    spec_doc = body.get("spec") or {}
    names = [p for p in spec_doc.get("pipelines") or [] if isinstance(p, str)]
    pipelines = {name: read_pipeline(namespace, name) for name in names}
    try:
        spec = parse_science_filter(body)
        code = code_of(spec, read_configmap)
    except (SpecError, FinkError):
        spec, code = None, None

    key = _validation_key(generation, code, pipelines, context)
    previous = next(
        (c for c in current.get("conditions") or () if c.get("type") == VALIDATED), None
    )
    status = dict(current)
    if current.get("validationKey") == key and previous is not None:
        validated = Condition(
            VALIDATED, previous["status"] == "True", previous["reason"], previous["message"]
        )
    else:
        validation = validate(body, code, pipelines, context.catalogue, check_source, dry_run)
        validated = validation.condition
        status.update(
            validationKey=key,
            codeHash=validation.code_hash,
            entrypoint=validation.entrypoint or "",
            reads=list(validation.reads),
            dryRun=validation.dry_run,
        )
    topic = spec.topic_name() if spec is not None else None
    if topic is not None:
        status["topic"] = topic

    live, passed, last_ms = _live(context, body, spec, validated, pipelines, generation)
    if passed is not None:
        status["alertsPassed"] = passed
    if last_ms is not None:
        status["lastPassedTime"] = (
            datetime.fromtimestamp(last_ms / 1000, UTC)
            .replace(microsecond=0)
            .isoformat()
            .replace("+00:00", "Z")
        )
    previous_conditions = current.get("conditions")
    status["observedGeneration"] = generation
    status["conditions"] = merge(previous_conditions, [validated, live], generation, now_rfc3339())
    changed = transitions(previous_conditions, [validated, live])
    events = [
        Event(
            "Normal" if c.status else "Warning",
            c.reason,
            f"{c.type}: {c.message}",
        )
        for c in changed
        if c.status is not None
    ]
    again = [
        doc
        for doc in pipelines.values()
        if doc is not None
        and (
            live.reason == "Publishing"  # not handed over yet: try again (heals a failed try)
            or current.get("validationKey") != status.get("validationKey")
            or any(c.type == VALIDATED for c in changed)
            or _enabled(current) != _enabled({"enabled": spec.enabled if spec else True})
        )
    ]
    status["enabled"] = spec.enabled if spec is not None else True
    return FilterPassResult(status, events, again)


def _enabled(status: Mapping[str, Any]) -> bool:
    return bool(status.get("enabled", True))


def _validation_key(
    generation: Any,
    code: str | None,
    pipelines: Mapping[str, Mapping[str, Any] | None],
    context: OperatorContext,
) -> str:
    """What validation depends on; validation runs again when this changes."""
    columns: dict[str, Any] = {}
    for name, document in sorted(pipelines.items()):
        if document is None:
            columns[name] = None
            continue
        try:
            columns[name] = pipeline_columns(parse_pipeline(document), context.catalogue)
        except SpecError as error:
            columns[name] = f"invalid: {error}"
    text = json.dumps([generation, code, columns], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _live(
    context: OperatorContext,
    body: Mapping[str, Any],
    spec: Any,
    validated: Condition,
    pipelines: Mapping[str, Mapping[str, Any] | None],
    generation: Any,
) -> tuple[Condition, int | None, int | None]:
    """Live, and the alerts passed (all pipelines) and when one last passed."""
    if spec is None or validated.status is not True:
        return Condition(LIVE, False, "NotValidated", "fix what Validated says first"), None, None
    reports: dict[str, FilterReport | None] = {}
    published: dict[str, int | None] = {}  # pipeline -> generation in its control topic
    for name, document in pipelines.items():
        if document is None:
            continue
        published[name], reports[name] = _report(context, document, spec.name)
    known = [r for r in reports.values() if r is not None]
    passed = sum(r.alerts_passed for r in known) if known else None
    stamps = [r.last_passed_ms for r in known if r.last_passed_ms is not None]
    last = max(stamps) if stamps else None
    if not spec.enabled:
        return (
            Condition(LIVE, False, "Disabled", "spec.enabled is false: nothing is published"),
            passed,
            last,
        )
    failed = [
        (n, r)
        for n, r in reports.items()
        if r is not None and r.state == FAILED and r.generation == generation
    ]
    if failed:
        name, report = failed[0]
        return (
            Condition(
                LIVE,
                False,
                report.reason or "FilterFailed",
                f"stopped in pipeline {name}: {report.message}",
            ),
            passed,
            last,
        )
    unpublished = [n for n, g in published.items() if g != generation]
    if unpublished:
        return (
            Condition(
                LIVE,
                False,
                "Publishing",
                f"handing generation {generation} to pipeline(s) "
                f"{', '.join(sorted(unpublished))} (its topic, then their control topic)",
            ),
            passed,
            last,
        )
    waiting = [n for n, r in reports.items() if r is None or r.generation != generation]
    if waiting:
        return (
            Condition(
                LIVE,
                False,
                "Loading",
                f"waiting for pipeline(s) {', '.join(sorted(waiting))} to load generation "
                f"{generation} (at their next micro-batch; a pipeline that is not running "
                "loads it when it starts)",
            ),
            passed,
            last,
        )
    return (
        Condition(LIVE, True, "Live", f"running in pipeline(s) {', '.join(sorted(reports))}"),
        passed,
        last,
    )


def _report(
    context: OperatorContext, pipeline: Mapping[str, Any], name: str
) -> tuple[int | None, FilterReport | None]:
    """The generation of the filter the pipeline's control topic holds, and its report."""
    if context.filter_channel is None:
        return None, None
    try:
        spec = parse_pipeline(pipeline)
        read_configmap, read_secret = context.readers(spec.namespace)
        connections = resolve(spec, context.config.defaults, read_configmap, read_secret)
        state = context.filter_channel(connections.sink).read(control_topic(spec.name))
    except Exception as error:  # no control topic yet, Kafka down: not live (yet)
        log.debug("no report on %s from pipeline %s: %s", name, pipeline.get("metadata"), error)
        return None, None
    handed = state.filters.get(name)
    return (handed.generation if handed else None), state.reports.get(name)
