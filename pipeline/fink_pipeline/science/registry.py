"""Science modules and filters, registered by name with the code that runs them.

A module adds columns to the flat alert frame; a filter turns columns into one
boolean per alert. Both declare what they read (and modules what they write
and which parameters they take, with bounds), so a pipeline can be checked
before it runs, and both are plain functions over pandas columns, so a
scientist can test one on a hand-made frame without Spark, Kafka or HBase.

The declarations are exported as the shared core's science catalogue
(`live_catalogue()`, `fink-pipeline catalogue`): the operator plans pipelines
from it without importing any science code.

One name may have one implementation per survey (ZTF and LSST alerts carry
different columns): registering the same name again for another survey adds a
variant. Variants must write the same columns, so that what a pipeline adds to
the alert does not depend on which implementation ran.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from fink_core.science.catalogue import (
    SPARK_TYPES,
    Catalogue,
    FilterDeclaration,
    ModuleDeclaration,
    Parameter,
)

ModuleFunction = Callable[..., pd.DataFrame]
FilterFunction = Callable[[pd.DataFrame], pd.Series]
# raises ValueError saying what is wrong with a set of (merged) parameters; for what
# only the machine running the pipeline can check (a file, an installed package)
RuntimeCheck = Callable[[Mapping[str, Any]], None]

__all__ = ["SPARK_TYPES", "Parameter"]


@dataclass(frozen=True)
class Module:
    """A vectorised function that adds columns to a frame of alerts.

    `function(frame, **parameters)` returns a DataFrame with exactly the `writes`
    columns and the index of `frame`; it never drops rows (a cut writes a flag).
    `parameters` holds every parameter the module accepts, keyed as users write
    them in the pipeline YAML (camelCase), with defaults and bounds.
    """

    name: str
    description: str
    surveys: tuple[str, ...]
    reads: tuple[str, ...]
    writes: Mapping[str, str]
    parameters: Mapping[str, Parameter]
    function: ModuleFunction
    check: RuntimeCheck | None = field(default=None, compare=False, repr=False)
    variants: Mapping[str, Module] = field(default_factory=dict, compare=False, repr=False)

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.parameters.items()}

    def for_survey(self, survey: str) -> Module:
        """The implementation that runs on this survey's alerts."""
        if survey in self.variants:
            return self.variants[survey]
        if survey in self.surveys:
            return self
        raise KeyError(survey)

    def declarations(self) -> list[ModuleDeclaration]:
        return [
            ModuleDeclaration(
                name=self.name,
                survey=survey,
                description=variant.description,
                reads=variant.reads,
                writes=dict(variant.writes),
                parameters=dict(variant.parameters),
            )
            for survey in self.surveys
            for variant in [self.for_survey(survey)]
        ]


@dataclass(frozen=True)
class Filter:
    """A vectorised function from alert columns to a boolean Series (same index)."""

    name: str
    description: str
    surveys: tuple[str, ...]
    reads: tuple[str, ...]
    function: FilterFunction

    def declaration(self) -> FilterDeclaration:
        return FilterDeclaration(self.name, self.surveys, self.description, self.reads)


MODULES: dict[str, Module] = {}
FILTERS: dict[str, Filter] = {}


def science_module(
    name: str,
    *,
    surveys: tuple[str, ...],
    reads: tuple[str, ...],
    writes: Mapping[str, str],
    parameters: Mapping[str, Parameter] | None = None,
    description: str | None = None,
    check: RuntimeCheck | None = None,
) -> Callable[[ModuleFunction], ModuleFunction]:
    """Register the decorated function as science module `name` for `surveys`.

    The description defaults to the first line of the function's docstring.
    Parameter bounds are checked by the shared planner (operator included);
    `check` runs only where the pipeline runs (e.g. a catalogue file is readable).
    """

    def register(function: ModuleFunction) -> ModuleFunction:
        for column, spark_type in writes.items():
            if spark_type not in SPARK_TYPES:
                raise ValueError(f"module {name}: column {column} has unknown type {spark_type}")
        module = Module(
            name=name,
            description=description or _first_line(function),
            surveys=tuple(surveys),
            reads=tuple(reads),
            writes=dict(writes),
            parameters=dict(parameters or {}),
            function=function,
            check=check,
        )
        MODULES[name] = _merge(MODULES.get(name), module)
        return function

    return register


def science_filter(
    name: str,
    *,
    surveys: tuple[str, ...],
    reads: tuple[str, ...],
    description: str | None = None,
) -> Callable[[FilterFunction], FilterFunction]:
    """Register the decorated function as science filter `name`."""

    def register(function: FilterFunction) -> FilterFunction:
        if name in FILTERS:
            raise ValueError(f"filter {name} is registered twice")
        FILTERS[name] = Filter(
            name=name,
            description=description or _first_line(function),
            surveys=tuple(surveys),
            reads=tuple(reads),
            function=function,
        )
        return function

    return register


def live_catalogue() -> Catalogue:
    """The declarations of every registered module and filter, with the alert columns."""
    from fink_pipeline.alerts.columns import columns_for
    from fink_pipeline.science import builtins  # noqa: F401  (registers the built-ins)

    return Catalogue(
        columns={survey: dict(columns_for(survey)) for survey in ("ztf", "lsst")},
        modules=tuple(d for name in sorted(MODULES) for d in MODULES[name].declarations()),
        filters=tuple(FILTERS[name].declaration() for name in sorted(FILTERS)),
    )


def _merge(existing: Module | None, added: Module) -> Module:
    """Fold a survey variant into the module already registered under its name."""
    if existing is None:
        return added
    overlap = set(existing.surveys) & set(added.surveys)
    if overlap:
        raise ValueError(f"module {added.name} is registered twice for {sorted(overlap)}")
    if dict(existing.writes) != dict(added.writes):
        raise ValueError(f"module {added.name}: every survey variant must write the same columns")
    variants = dict(existing.variants) or {s: existing for s in existing.surveys}
    variants.update({s: added for s in added.surveys})
    return replace(existing, surveys=existing.surveys + added.surveys, variants=variants)


def _first_line(function: Callable[..., Any]) -> str:
    doc = (function.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else function.__name__
