"""The ScienceFilter specification: a scientist's filter as one small resource.

A ScienceFilter carries its own Python code (inline, or in a ConfigMap) and
names the pipeline(s) it attaches to; the operator validates it and hands it to
the running pipeline, which loads it at a micro-batch boundary (no image, no
release, no restart). Like `fink_core.spec`, one model serves the operator and
the command line (`fink-filter`), and the CRD (`fink_core.filter_crd`) is its
other view.

The filter's name is the resource's name: it is the name alerts carry in their
`fink_filters` field, and the default topic is Fink's `fink_<name>_<survey>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fink_core import spec as pipeline_model
from fink_core.errors import SpecError

KIND = "ScienceFilter"
PLURAL = "sciencefilters"
# a filter's name becomes a column (pass_<name>) and part of a topic name
NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"
MAX_NAME = 100
MAX_CODE_BYTES = 256 * 1024  # a filter is one small file; the API server caps objects at ~1.5 MB
LAYOUTS = ("fink", "fink-client")


@dataclass(frozen=True)
class CodeSource:
    """Where the filter's code is: inline text, or one key of a ConfigMap."""

    inline: str | None = None
    configmap: str | None = None
    key: str | None = None

    def describe(self) -> str:
        return (
            "spec.code.inline"
            if self.inline is not None
            else f"ConfigMap {self.configmap}/{self.key}"
        )


@dataclass(frozen=True)
class FilterTopic:
    """Where the selected alerts go; settings left unset inherit the pipeline's topic defaults."""

    name: str | None = None  # None: fink_<filter>_<survey>
    overrides: Mapping[str, Any] | None = None  # partitions, replicationFactor, retentionMs, config
    layout: str = "fink"

    def resolved_name(self, filter_name: str, survey: str) -> str:
        return self.name or pipeline_model.default_filter_topic(filter_name, survey)

    def settings(self, defaults: pipeline_model.TopicSettings) -> pipeline_model.TopicSettings:
        return pipeline_model._parse_topic_settings(self.overrides or {}, "spec.topic", defaults)


@dataclass(frozen=True)
class ScienceFilterSpec:
    name: str
    namespace: str
    pipelines: tuple[str, ...]
    survey: str
    code: CodeSource
    entrypoint: str | None  # None: the code's only public function
    topic: FilterTopic
    enabled: bool = True
    description: str = ""
    contact: str = ""

    def topic_name(self) -> str:
        return self.topic.resolved_name(self.name, self.survey)


def parse_science_filter(document: Mapping[str, Any]) -> ScienceFilterSpec:
    """Read a ScienceFilter resource (as a dict); SpecError naming the field at fault."""
    name, namespace, spec = pipeline_model.resource_parts(document, KIND)
    pipelines = spec.get("pipelines")
    if (
        not isinstance(pipelines, list)
        or not pipelines
        or not all(isinstance(p, str) and p for p in pipelines)
    ):
        raise SpecError("spec.pipelines must list the BrokerPipeline(s) the filter attaches to")
    pipeline_model._unique(list(pipelines), "spec.pipelines")
    survey = pipeline_model._choice(spec, "survey", pipeline_model.SURVEYS, "spec.survey")
    code = _parse_code(pipeline_model._required_map(spec, "code", "spec.code"))
    topic_doc = pipeline_model._optional_map(spec, "topic", "spec.topic")
    overrides = {k: v for k, v in topic_doc.items() if k not in ("name", "layout")}
    topic = FilterTopic(
        name=topic_doc.get("name"),
        overrides=overrides,
        layout=pipeline_model._choice(topic_doc, "layout", LAYOUTS, "spec.topic.layout", "fink"),
    )
    topic.settings(pipeline_model.TopicSettings())  # refuses bad numbers now, not at run time
    entrypoint = spec.get("entrypoint")
    if entrypoint is not None and (
        not isinstance(entrypoint, str) or not entrypoint.isidentifier()
    ):
        raise SpecError(f"spec.entrypoint must be a Python function name, got {entrypoint!r}")
    return ScienceFilterSpec(
        name=name,
        namespace=namespace,
        pipelines=tuple(pipelines),
        survey=survey,
        code=code,
        entrypoint=entrypoint,
        topic=topic,
        enabled=pipeline_model._bool(spec.get("enabled", True), "spec.enabled"),
        description=str(spec.get("description") or ""),
        contact=str(spec.get("contact") or ""),
    )


def _parse_code(doc: Mapping[str, Any]) -> CodeSource:
    inline = doc.get("inline")
    reference = doc.get("configMapRef")
    if (inline is None) == (reference is None):
        raise SpecError("spec.code needs exactly one of inline or configMapRef")
    if inline is not None:
        if not isinstance(inline, str) or not inline.strip():
            raise SpecError("spec.code.inline must be the filter's Python code")
        if len(inline.encode()) > MAX_CODE_BYTES:
            raise SpecError(f"spec.code.inline is larger than {MAX_CODE_BYTES // 1024} KiB")
        return CodeSource(inline=inline)
    if not isinstance(reference, Mapping) or not reference.get("name"):
        raise SpecError("spec.code.configMapRef needs the ConfigMap's name")
    return CodeSource(
        configmap=str(reference["name"]), key=str(reference.get("key") or "filter.py")
    )
