"""From a pipeline's modules and filters to a runnable science plan: the checked plan, bound to code.

The shared core's planner checks the names, parameters and columns against the
science catalogue (the very checks the operator makes, with the same
messages); this module then attaches the registered functions and runs the
checks only the machine running the pipeline can make (a catalogue file is
readable, a fink-* package imports). Each error is a SpecError naming the
field at fault and the fix.

`enrich` and `select` are what the stream calls on every micro-batch (inside
Spark's tasks, as pandas frames); they are plain pandas and run the same on a laptop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fink_core.errors import SpecError
from fink_core.science import planner
from fink_core.spec import FilterSpec, ModuleSpec, PipelineSpec, default_filter_topic
from fink_pipeline.science import builtins  # noqa: F401  (registers the built-in science)
from fink_pipeline.science.registry import FILTERS, MODULES, Filter, Module, live_catalogue


@dataclass(frozen=True)
class SciencePlan(planner.Plan):
    """The checked plan with code attached: the same shape, modules and filters that run."""

    modules: tuple[tuple[Module, Mapping[str, Any]], ...]  # type: ignore[assignment]
    filters: tuple[tuple[Filter, str], ...]  # type: ignore[assignment]


def plan_science(spec: PipelineSpec) -> SciencePlan:
    """Check the science of a pipeline spec and resolve it to registered code."""
    return build_plan(spec.survey, spec.modules, spec.filters)


def plan_for(
    survey: str,
    modules: Iterable[str | tuple[str, Mapping[str, Any]]] = (),
    filters: Iterable[str] = (),
) -> SciencePlan:
    """A plan from bare names, for notebooks and tests: no pipeline document needed.

    >>> plan = plan_for("ztf", ["quality_cuts", ("solar_system", {"maxDistanceArcsec": 3})])
    """
    module_specs = tuple(
        ModuleSpec(m) if isinstance(m, str) else ModuleSpec(m[0], dict(m[1])) for m in modules
    )
    filter_specs = tuple(
        FilterSpec(name=f, topic=default_filter_topic(f, survey), settings=None)  # type: ignore[arg-type]
        for f in filters
    )
    return build_plan(survey, module_specs, filter_specs)


def build_plan(
    survey: str, modules: Sequence[ModuleSpec], filters: Sequence[FilterSpec]
) -> SciencePlan:
    checked = planner.plan_science(survey, modules, filters, live_catalogue())
    bound: list[tuple[Module, Mapping[str, Any]]] = []
    for index, (declaration, parameters) in enumerate(checked.modules):
        module = MODULES[declaration.name].for_survey(survey)
        if module.check is not None:
            try:
                module.check(parameters)
            except ValueError as error:
                raise SpecError(f"spec.modules[{index}].parameters: {error}") from None
        bound.append((module, parameters))
    selected = [(FILTERS[f.name], topic) for f, topic in checked.filters]
    return SciencePlan(survey=survey, modules=tuple(bound), filters=tuple(selected))


def enrich(
    frame: pd.DataFrame, plan: SciencePlan, timings: dict[str, float] | None = None
) -> pd.DataFrame:
    """The alerts with every planned module's columns added, modules in order.

    Adds each module's wall time in seconds to `timings[module name]`.
    """
    enriched = frame.copy(deep=False)
    for module, parameters in plan.modules:
        started = time.perf_counter()
        if len(enriched) == 0:  # Spark hands over empty batches; not every module expects one
            added = pd.DataFrame({c: pd.Series(dtype=object) for c in module.writes})
        else:
            added = module.function(enriched, **parameters)
        for column, spark_type in module.writes.items():
            if column not in added:
                raise RuntimeError(f"module {module.name} did not write its column {column}")
            enriched[column] = _as_spark_type(added[column], spark_type, enriched.index)
        if timings is not None:
            timings[module.name] = timings.get(module.name, 0.0) + time.perf_counter() - started
    return enriched


def select(frame: pd.DataFrame, plan: SciencePlan) -> dict[str, pd.Series]:
    """Filter name -> boolean mask over `frame` (a null answer counts as False)."""
    masks: dict[str, pd.Series] = {}
    for science_filter, _ in plan.filters:
        mask = science_filter.function(frame)
        masks[science_filter.name] = (
            pd.Series(mask, index=frame.index).astype("boolean").fillna(False).astype(bool)
        )
    return masks


def _as_spark_type(values: pd.Series, spark_type: str, index: pd.Index) -> pd.Series:
    """Coerce a module's output to the dtype its declared Spark type maps to."""
    series = pd.Series(values, index=index) if not isinstance(values, pd.Series) else values
    if spark_type == "double":
        return series.astype("float64")
    if spark_type == "boolean":
        return series.astype("boolean").fillna(False).astype(bool)
    if spark_type == "int":
        return series.astype("int32")
    if spark_type == "long":
        return series.astype("int64")
    return series.astype(object).where(series.notna(), None)
