"""From a pipeline's module and filter names to a checked, runnable science plan.

Everything a user can get wrong in the `modules` and `filters` of a pipeline is
caught here, before Spark starts: unknown names, parameters and values, a module
or filter that does not support the survey, a column read before any module
writes it. Each error is a SpecError naming the field at fault and the fix.

`enrich` and `select` are what the stream calls on every micro-batch (inside
Spark's mapInPandas); they are plain pandas and run the same on a laptop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fink_pipeline.science import builtins  # noqa: F401  (registers the built-in science)
from fink_pipeline.science.registry import FILTERS, MODULES, Filter, Module
from fink_pipeline.spec import (
    SURVEYS,
    FilterSpec,
    ModuleSpec,
    PipelineSpec,
    SpecError,
    default_filter_topic,
)


@dataclass(frozen=True)
class SciencePlan:
    """The modules (in order, with merged parameters) and filters a pipeline runs."""

    survey: str
    modules: tuple[tuple[Module, Mapping[str, Any]], ...]
    filters: tuple[tuple[Filter, str], ...]

    def added_columns(self) -> dict[str, str]:
        """Columns the modules add to each alert, name -> Spark SQL type, in order."""
        added: dict[str, str] = {}
        for module, _ in self.modules:
            added.update(module.writes)
        return added

    def filter_topics(self) -> dict[str, str]:
        """Filter name -> the Kafka topic its passing alerts go to."""
        return {f.name: topic for f, topic in self.filters}


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
    if survey not in SURVEYS:
        raise SpecError(f"spec.survey must be one of {', '.join(SURVEYS)}; got {survey!r}")
    from fink_pipeline.alerts.columns import columns_for

    available = dict(columns_for(survey))
    writers = {m.name: spec_index for spec_index, m in enumerate(modules)}
    planned: list[tuple[Module, Mapping[str, Any]]] = []
    for index, module_spec in enumerate(modules):
        where = f"spec.modules[{index}]"
        module = _resolve_module(module_spec.name, survey, where)
        parameters = _merge_parameters(module, module_spec.parameters, where)
        for column in module.reads:
            if column not in available:
                raise SpecError(
                    _missing_column(f"module {module.name}", column, survey, writers, where)
                )
        for column, spark_type in module.writes.items():
            if column in available:
                raise SpecError(
                    f"{where}: module {module.name} writes column {column}, which the alert "
                    "or an earlier module already has; remove one of them from spec.modules"
                )
            available[column] = spark_type
        planned.append((module, parameters))

    selected: list[tuple[Filter, str]] = []
    for index, filter_spec in enumerate(filters):
        where = f"spec.filters[{index}]"
        science_filter = _resolve_filter(filter_spec.name, survey, where)
        for column in science_filter.reads:
            if column not in available:
                raise SpecError(
                    _missing_column(f"filter {science_filter.name}", column, survey, writers, where)
                )
        selected.append((science_filter, filter_spec.topic))
    return SciencePlan(survey=survey, modules=tuple(planned), filters=tuple(selected))


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


def _resolve_module(name: str, survey: str, where: str) -> Module:
    module = MODULES.get(name)
    if module is None:
        raise SpecError(
            f"{where}.name: unknown science module {name!r}; known modules: "
            f"{', '.join(sorted(MODULES))}"
        )
    if survey not in module.surveys:
        raise SpecError(
            f"{where}.name: module {name} does not support survey {survey} "
            f"(it supports {', '.join(module.surveys)}); remove it or change spec.survey"
        )
    return module.for_survey(survey)


def _resolve_filter(name: str, survey: str, where: str) -> Filter:
    science_filter = FILTERS.get(name)
    if science_filter is None:
        raise SpecError(
            f"{where}.name: unknown science filter {name!r}; known filters: "
            f"{', '.join(sorted(FILTERS))}"
        )
    if survey not in science_filter.surveys:
        raise SpecError(
            f"{where}.name: filter {name} does not support survey {survey} "
            f"(it supports {', '.join(science_filter.surveys)}); remove it or change spec.survey"
        )
    return science_filter


def _merge_parameters(module: Module, given: Mapping[str, Any], where: str) -> dict[str, Any]:
    merged = dict(module.defaults)
    for key, value in given.items():
        if key not in module.defaults:
            known = ", ".join(f"{k} (default {v!r})" for k, v in module.defaults.items())
            raise SpecError(
                f"{where}.parameters: module {module.name} has no parameter {key!r}; "
                + (f"its parameters are: {known}" if known else "it takes no parameters")
            )
        merged[key] = _checked_value(module.defaults[key], value, f"{where}.parameters.{key}")
    if module.check is not None:
        try:
            module.check(merged)
        except ValueError as error:
            raise SpecError(f"{where}.parameters: {error}") from None
    return merged


def _checked_value(default: Any, value: Any, where: str) -> Any:
    """The value, if it has the kind of its default (a number for a number, ...)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{where} must be a number, got {value!r}")
        if isinstance(default, int) and not float(value).is_integer():
            raise SpecError(f"{where} must be a whole number, got {value!r}")
        if not np.isfinite(value):
            raise SpecError(f"{where} must be a finite number, got {value!r}")
        return type(default)(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise SpecError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _missing_column(
    reader: str, column: str, survey: str, in_spec: Mapping[str, int], where: str
) -> str:
    writer = next(
        (m.name for m in MODULES.values() if column in m.writes and survey in m.surveys), None
    )
    if writer is None:
        return (
            f"{where}: {reader} reads {column}, which {survey} alerts do not carry "
            "and no science module writes"
        )
    if writer in in_spec:
        return (
            f"{where}: {reader} reads {column}, written by module {writer}: "
            f"move {writer} before it in spec.modules"
        )
    return (
        f"{where}: {reader} reads {column}, written by module {writer}: "
        f"add it to spec.modules before {reader.split()[-1]}"
    )


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
