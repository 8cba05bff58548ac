"""ScienceFilters, the pure part: is a filter fit to run in a pipeline, and what should each pipeline run.

Validation answers with a `Validated` condition a scientist can act on: which
pipeline is missing, which line and column of the code is refused and why,
what the dry run on sample alerts hit. The code checks and the dry run are
injected (fink_core.filters.source and .sandbox in production), so the rules
here are tested without subprocesses.

A pipeline runs a filter when its status says Validated for its current
generation and code (status.codeHash), and it is enabled: a filter changed
since its last validation keeps its previous version off the air until the
new one passes, rather than running unchecked code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fink_core.errors import SpecError
from fink_core.filter_control import LiveFilter
from fink_core.filters.source import public_functions
from fink_core.science import Catalogue, plan_pipeline
from fink_core.science_filter import ScienceFilterSpec, parse_science_filter
from fink_core.spec import PipelineSpec, TopicSettings, parse_pipeline
from fink_operator.conditions import Condition

VALIDATED = "Validated"
LIVE = "Live"

# (code, entrypoint, columns) -> (entrypoint, reads); raises an error with line/column
SourceCheck = Callable[[str, str, Mapping[str, str]], tuple[str, tuple[str, ...]]]
# (code, entrypoint, survey, columns) -> one line on what the dry run found; raises on failure
DryRun = Callable[[str, str, str, Mapping[str, str]], str]


class FilterRefused(Exception):
    """The filter cannot run as written: `reason` for the condition, the message says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Validation:
    condition: Condition
    entrypoint: str | None = None
    reads: tuple[str, ...] = ()
    topic: str | None = None
    dry_run: str = ""
    code_hash: str = ""


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def pipeline_columns(pipeline: PipelineSpec, catalogue: Catalogue) -> dict[str, str]:
    """Every column an alert has once the pipeline's modules ran: what a filter may read."""
    plan = plan_pipeline(pipeline, catalogue)
    return {**catalogue.columns[pipeline.survey], **plan.added_columns()}


def default_entrypoint(code: str) -> str:
    """The code's only public module-level function; FilterRefused when there is not exactly one."""
    names = public_functions(code)
    if names is None:
        return "filter"  # the source check reports the syntax error with its position
    if len(names) == 1:
        return names[0]
    found = ", ".join(names) if names else "none"
    raise FilterRefused(
        "EntrypointUnclear",
        f"the code defines {len(names)} public functions ({found}): name the one to call "
        "in spec.entrypoint",
    )


def validate(
    document: Mapping[str, Any],
    code: str | None,
    pipelines: Mapping[str, Mapping[str, Any] | None],
    catalogue: Catalogue,
    check_source: SourceCheck,
    dry_run: DryRun,
) -> Validation:
    """Every check a filter must pass before a pipeline runs it, the cheap ones first."""
    try:
        spec = parse_science_filter(document)
    except SpecError as error:
        return _refused("InvalidSpec", f"the spec cannot be read: {error}")
    if code is None:
        return _refused("CodeNotFound", f"{spec.code.describe()} does not exist or holds no code")
    digest = code_hash(code)
    try:
        columns = _common_columns(spec, pipelines, catalogue)
        entrypoint = spec.entrypoint or default_entrypoint(code)
        try:
            entrypoint, reads = check_source(code, entrypoint, columns)
        except Exception as error:  # the source check's error carries line and column
            raise FilterRefused("CodeRefused", f"your filter's code: {error}") from None
        try:
            found = dry_run(code, entrypoint, spec.survey, columns)
        except Exception as error:
            raise FilterRefused(
                "DryRunFailed", f"the dry run on sample {spec.survey} alerts failed: {error}"
            ) from None
    except FilterRefused as refusal:
        return _refused(refusal.reason, str(refusal), digest)
    message = (
        f"reads {', '.join(reads)}; dry run on sample alerts: {found}; "
        f"publishes to {spec.topic_name()}"
    )
    return Validation(
        Condition(VALIDATED, True, "Validated", message),
        entrypoint=entrypoint,
        reads=reads,
        topic=spec.topic_name(),
        dry_run=found,
        code_hash=digest,
    )


def _common_columns(
    spec: ScienceFilterSpec,
    pipelines: Mapping[str, Mapping[str, Any] | None],
    catalogue: Catalogue,
) -> dict[str, str]:
    """The columns every attached pipeline produces; refuses a missing or mismatched pipeline."""
    common: dict[str, str] | None = None
    for name in spec.pipelines:
        document = pipelines.get(name)
        if document is None:
            raise FilterRefused(
                "PipelineNotFound",
                f"BrokerPipeline {spec.namespace}/{name} does not exist: create it, or fix "
                "spec.pipelines",
            )
        try:
            pipeline = parse_pipeline(document)
            columns = pipeline_columns(pipeline, catalogue)
        except SpecError as error:
            raise FilterRefused(
                "PipelineInvalid", f"BrokerPipeline {name} cannot run: {error}"
            ) from None
        if pipeline.survey != spec.survey:
            raise FilterRefused(
                "SurveyMismatch",
                f"BrokerPipeline {name} reads {pipeline.survey} alerts but spec.survey is "
                f"{spec.survey}: attach the filter to a {spec.survey} pipeline",
            )
        taken = {f.name for f in pipeline.filters}
        if spec.name in taken:
            raise FilterRefused(
                "NameTaken",
                f"BrokerPipeline {name} already runs a built-in filter named {spec.name}: "
                "rename this ScienceFilter",
            )
        outputs = {pipeline.source.topic, pipeline.kafka_sink.dead_letter_topic}
        outputs |= {f.topic for f in pipeline.filters}
        if spec.topic_name() in outputs:
            raise FilterRefused(
                "TopicTaken",
                f"topic {spec.topic_name()} is already the source or an output of pipeline "
                f"{name}: set spec.topic.name to another topic",
            )
        common = columns if common is None else {k: v for k, v in common.items() if k in columns}
    return common or {}


def _refused(reason: str, message: str, digest: str = "") -> Validation:
    return Validation(Condition(VALIDATED, False, reason, message), code_hash=digest)


def runnable(document: Mapping[str, Any], code: str | None) -> bool:
    """Whether the status says this very generation and code passed validation."""
    status = document.get("status") or {}
    generation = (document.get("metadata") or {}).get("generation")
    validated = next(
        (c for c in status.get("conditions") or () if c.get("type") == VALIDATED), None
    )
    return (
        code is not None
        and validated is not None
        and validated.get("status") == "True"
        and validated.get("observedGeneration") == generation
        and status.get("codeHash") == code_hash(code)
        and bool(status.get("entrypoint"))
    )


@dataclass(frozen=True)
class PipelineFilters:
    """What one pipeline should run and publish to, from the ScienceFilters naming it."""

    attached: bool  # any ScienceFilter names the pipeline: it needs its control topic
    live: dict[str, LiveFilter]
    topics: dict[str, TopicSettings]


def for_pipeline(
    pipeline: PipelineSpec,
    documents: Sequence[Mapping[str, Any]],
    code_of: Callable[[ScienceFilterSpec], str | None],
) -> PipelineFilters:
    live: dict[str, LiveFilter] = {}
    topics: dict[str, TopicSettings] = {}
    attached = False
    for document in documents:
        try:
            spec = parse_science_filter(document)
        except SpecError:
            continue
        if pipeline.name not in spec.pipelines or spec.namespace != pipeline.namespace:
            continue
        attached = True
        if not spec.enabled:
            continue
        code = code_of(spec)
        if not runnable(document, code):
            continue
        assert code is not None
        status = document.get("status") or {}
        topic = spec.topic_name()
        live[spec.name] = LiveFilter(
            name=spec.name,
            generation=int((document.get("metadata") or {}).get("generation") or 0),
            code=code,
            entrypoint=str(status["entrypoint"]),
            reads=tuple(status.get("reads") or ()),
            topic=topic,
            layout=spec.topic.layout,
        )
        topics[topic] = spec.topic.settings(pipeline.kafka_sink.topic_defaults)
    return PipelineFilters(attached, live, topics)


def code_of(
    spec: ScienceFilterSpec, read_configmap: Callable[[str], Mapping[str, str] | None]
) -> str | None:
    """The filter's code, inline or from its ConfigMap; None when there is none to run."""
    if spec.code.inline is not None:
        return spec.code.inline
    assert spec.code.configmap is not None and spec.code.key is not None
    data = read_configmap(spec.code.configmap)
    if data is None:
        return None
    text = data.get(spec.code.key)
    return text if text and text.strip() else None
