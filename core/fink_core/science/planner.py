"""From a pipeline's module and filter names to a checked plan, against the catalogue.

Everything a user can get wrong in the `modules` and `filters` of a pipeline is
caught here, before anything is created or started: unknown names, parameters
and values, a module or filter that does not support the survey, a column read
before any module writes it. Each error is a SpecError naming the field at fault
and the fix. The operator and `fink-pipeline validate` both call this planner.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fink_core.errors import SpecError
from fink_core.science.catalogue import (
    Catalogue,
    FilterDeclaration,
    ModuleDeclaration,
    Parameter,
    shipped_catalogue,
)
from fink_core.spec import FilterSpec, ModuleSpec, PipelineSpec


@dataclass(frozen=True)
class Plan:
    """The modules (in order, with merged parameters) and filters (with topics) of a pipeline."""

    survey: str
    modules: tuple[tuple[ModuleDeclaration, Mapping[str, Any]], ...]
    filters: tuple[tuple[FilterDeclaration, str], ...]

    def added_columns(self) -> dict[str, str]:
        """Columns the modules add to each alert, name -> Spark SQL type, in order."""
        added: dict[str, str] = {}
        for module, _ in self.modules:
            added.update(module.writes)
        return added

    def filter_topics(self) -> dict[str, str]:
        """Filter name -> the Kafka topic its passing alerts go to."""
        return {f.name: topic for f, topic in self.filters}


def plan_pipeline(spec: PipelineSpec, catalogue: Catalogue | None = None) -> Plan:
    """Check the science of a pipeline spec against the catalogue (the shipped one by default)."""
    return plan_science(spec.survey, spec.modules, spec.filters, catalogue)


def plan_science(
    survey: str,
    modules: Sequence[ModuleSpec],
    filters: Sequence[FilterSpec],
    catalogue: Catalogue | None = None,
    extra_filters: Iterable[FilterDeclaration] = (),
) -> Plan:
    """Plan the named modules and filters; `extra_filters` declares filters from elsewhere."""
    catalogue = catalogue or shipped_catalogue()
    if survey not in catalogue.surveys:
        raise SpecError(
            f"spec.survey must be one of {', '.join(catalogue.surveys)}; got {survey!r}"
        )
    known_filters = {f.name: f for f in catalogue.filters}
    known_filters.update({f.name: f for f in extra_filters})
    available = dict(catalogue.columns[survey])
    in_spec = {m.name for m in modules}
    planned: list[tuple[ModuleDeclaration, Mapping[str, Any]]] = []
    for index, module_spec in enumerate(modules):
        where = f"spec.modules[{index}]"
        module = _resolve_module(catalogue, module_spec.name, survey, where)
        parameters = _merge_parameters(module, module_spec.parameters, where)
        for column in module.reads:
            if column not in available:
                raise SpecError(
                    _missing_column(
                        catalogue, f"module {module.name}", column, survey, in_spec, where
                    )
                )
        for column, spark_type in module.writes.items():
            if column in available:
                raise SpecError(
                    f"{where}: module {module.name} writes column {column}, which the alert "
                    "or an earlier module already has; remove one of them from spec.modules"
                )
            available[column] = spark_type
        planned.append((module, parameters))

    selected: list[tuple[FilterDeclaration, str]] = []
    for index, filter_spec in enumerate(filters):
        where = f"spec.filters[{index}]"
        science_filter = _resolve_filter(known_filters, filter_spec.name, survey, where)
        for column in science_filter.reads:
            if column not in available:
                raise SpecError(
                    _missing_column(
                        catalogue,
                        f"filter {science_filter.name}",
                        column,
                        survey,
                        in_spec,
                        where,
                    )
                )
        selected.append((science_filter, filter_spec.topic))
    return Plan(survey=survey, modules=tuple(planned), filters=tuple(selected))


def _resolve_module(catalogue: Catalogue, name: str, survey: str, where: str) -> ModuleDeclaration:
    supported = catalogue.module_surveys(name)
    if not supported:
        raise SpecError(
            f"{where}.name: unknown science module {name!r}; known modules: "
            f"{', '.join(catalogue.module_names())}"
        )
    module = catalogue.module(name, survey)
    if module is None:
        raise SpecError(
            f"{where}.name: module {name} does not support survey {survey} "
            f"(it supports {', '.join(supported)}); remove it or change spec.survey"
        )
    return module


def _resolve_filter(
    known: Mapping[str, FilterDeclaration], name: str, survey: str, where: str
) -> FilterDeclaration:
    science_filter = known.get(name)
    if science_filter is None:
        raise SpecError(
            f"{where}.name: unknown science filter {name!r}; known filters: "
            f"{', '.join(sorted(known))}"
        )
    if survey not in science_filter.surveys:
        raise SpecError(
            f"{where}.name: filter {name} does not support survey {survey} "
            f"(it supports {', '.join(science_filter.surveys)}); remove it or change spec.survey"
        )
    return science_filter


def _merge_parameters(
    module: ModuleDeclaration, given: Mapping[str, Any], where: str
) -> dict[str, Any]:
    merged = dict(module.defaults)
    for key, value in given.items():
        declared = module.parameters.get(key)
        if declared is None:
            known = ", ".join(f"{k} (default {v!r})" for k, v in module.defaults.items())
            raise SpecError(
                f"{where}.parameters: module {module.name} has no parameter {key!r}; "
                + (f"its parameters are: {known}" if known else "it takes no parameters")
            )
        merged[key] = _checked_value(declared, key, value, f"{where}.parameters")
    return merged


def _checked_value(declared: Parameter, key: str, value: Any, where: str) -> Any:
    """The value, if it has the kind of its default (a number for a number, ...) and its bounds."""
    default = declared.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{where}: {key} must be a number, got {value!r}")
        if isinstance(default, int) and not float(value).is_integer():
            raise SpecError(f"{where}: {key} must be a whole number, got {value!r}")
        if not math.isfinite(value):
            raise SpecError(f"{where}: {key} must be a finite number, got {value!r}")
        problem = declared.violation(key, value)
        if problem:
            raise SpecError(f"{where}: {problem}")
        return type(default)(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise SpecError(f"{where}: {key} must be a string, got {value!r}")
        return value
    return value


def _missing_column(
    catalogue: Catalogue, reader: str, column: str, survey: str, in_spec: set[str], where: str
) -> str:
    writer = next(
        (m.name for m in catalogue.modules if column in m.writes and m.survey == survey), None
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
