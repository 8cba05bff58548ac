"""What a BrokerPipeline resource asks for, computed without any I/O.

`desired_state` is the pure heart of the operator: every pass starts from it,
so a resource always maps to the same external state whatever happened before
(a crash, a missed event, a manual change behind the operator's back). It
parses the resource with the shared model and plans its science with the
shared planner, so a pipeline the enrichment core would refuse to run is
refused here too, before anything is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fink_core.resources import RETENTION_KEY, Resources, TopicState, resources_of
from fink_core.science import Catalogue, plan_pipeline
from fink_core.spec import Adoption, PipelineSpec, TopicSettings, parse_pipeline


@dataclass(frozen=True)
class PipelineRef:
    """Which pipeline: what a claim records as its owner."""

    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DesiredState:
    """Everything one pipeline wants to exist in Kafka and HBase, and what it may adopt."""

    pipeline: PipelineRef
    spec: PipelineSpec
    resources: Resources
    adopt: Adoption

    @property
    def topic_names(self) -> tuple[str, ...]:
        return self.resources.topic_names

    @property
    def deletes_data(self) -> bool:
        """True when deleting the pipeline must remove its topics and table (needs a finalizer)."""
        return self.spec.deletion_policy == "Delete"


def pipeline_ref(resource: Mapping[str, Any]) -> PipelineRef:
    metadata = resource.get("metadata") or {}
    namespace = metadata.get("namespace") or "default"
    name = metadata.get("name") or ""
    return PipelineRef(namespace, name, metadata.get("uid") or f"{namespace}/{name}")


def desired_state(resource: Mapping[str, Any], catalogue: Catalogue | None = None) -> DesiredState:
    """The topics and table a BrokerPipeline resource asks for; SpecError for what to fix."""
    spec = parse_pipeline(resource)
    plan_pipeline(spec, catalogue)  # refuses unknown science, bad parameters, missing columns
    return DesiredState(
        pipeline=pipeline_ref(resource),
        spec=spec,
        resources=resources_of(spec),
        adopt=spec.adopt,
    )


def with_science_filters(
    desired: DesiredState, topics: Mapping[str, TopicSettings], control: str | None
) -> DesiredState:
    """The pipeline's own topics plus its ScienceFilters' topics and its control topic.

    A topic the pipeline already declares keeps the pipeline's settings.
    """
    wanted = {t.name: t for t in desired.resources.topics}
    extra = dict(topics)
    if control is not None:
        extra[control] = TopicSettings(
            partitions=1,
            replication_factor=desired.spec.kafka_sink.topic_defaults.replication_factor,
            retention_ms=-1,
            config={"cleanup.policy": "compact"},
        )
    for name, settings in sorted(extra.items()):
        wanted.setdefault(
            name,
            TopicState(
                name=name,
                partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                config={**settings.config, RETENTION_KEY: str(settings.retention_ms)},
            ),
        )
    if len(wanted) == len(desired.resources.topics):
        return desired
    resources = Resources(tuple(wanted.values()), desired.resources.table)
    return DesiredState(desired.pipeline, desired.spec, resources, desired.adopt)
