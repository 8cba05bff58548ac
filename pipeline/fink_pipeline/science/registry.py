"""Science modules and filters, registered by name.

A module adds columns to the flat alert frame; a filter turns columns into one
boolean per alert. Both declare what they read, so a pipeline can be checked
before it runs (see plan.py), and both are plain functions over pandas columns,
so a scientist can test one on a hand-made frame without Spark, Kafka or HBase.

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

SPARK_TYPES = ("string", "long", "int", "double", "boolean")

ModuleFunction = Callable[..., pd.DataFrame]
FilterFunction = Callable[[pd.DataFrame], pd.Series]
# raises ValueError saying what is wrong with a set of (merged) parameters
ParameterCheck = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Module:
    """A vectorised function that adds columns to a frame of alerts.

    `function(frame, **parameters)` returns a DataFrame with exactly the `writes`
    columns and the index of `frame`; it never drops rows (a cut writes a flag).
    `defaults` holds every parameter the module accepts, keyed as users write
    them in the pipeline YAML (camelCase).
    """

    name: str
    description: str
    surveys: tuple[str, ...]
    reads: tuple[str, ...]
    writes: Mapping[str, str]
    defaults: Mapping[str, Any]
    function: ModuleFunction
    check: ParameterCheck | None = field(default=None, compare=False, repr=False)
    variants: Mapping[str, Module] = field(default_factory=dict, compare=False, repr=False)

    def for_survey(self, survey: str) -> Module:
        """The implementation that runs on this survey's alerts."""
        if survey in self.variants:
            return self.variants[survey]
        if survey in self.surveys:
            return self
        raise KeyError(survey)


@dataclass(frozen=True)
class Filter:
    """A vectorised function from alert columns to a boolean Series (same index)."""

    name: str
    description: str
    surveys: tuple[str, ...]
    reads: tuple[str, ...]
    function: FilterFunction


MODULES: dict[str, Module] = {}
FILTERS: dict[str, Filter] = {}


def science_module(
    name: str,
    *,
    surveys: tuple[str, ...],
    reads: tuple[str, ...],
    writes: Mapping[str, str],
    defaults: Mapping[str, Any] | None = None,
    description: str | None = None,
    check: ParameterCheck | None = None,
) -> Callable[[ModuleFunction], ModuleFunction]:
    """Register the decorated function as science module `name` for `surveys`.

    The description defaults to the first line of the function's docstring;
    `check` validates parameter values when a pipeline is planned, long before
    the first alert arrives.
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
            defaults=dict(defaults or {}),
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
