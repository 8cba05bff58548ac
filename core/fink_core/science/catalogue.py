"""What science exists: modules and filters as declarations, with no code attached.

The enrichment core registers the code (one module, one file: the declaration
sits on the function as a decorator) and exports the declarations with
`fink-pipeline catalogue`; the result is shipped here as catalogue.json, and a
test fails when the two differ (like the CRD and its YAML). The operator plans
pipelines from this file alone, so it needs neither pandas nor the science
packages, yet refuses exactly what `fink-pipeline validate` refuses, with the
same messages.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPARK_TYPES = ("string", "long", "int", "double", "boolean")
SHIPPED = Path(__file__).with_name("catalogue.json")


@dataclass(frozen=True)
class Parameter:
    """A module parameter: its default (whose type values must match) and its bounds."""

    default: Any
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    description: str = ""

    def violation(self, key: str, value: Any) -> str | None:
        """Why `value` is out of bounds, in words; None when it is fine."""
        if self.minimum is None and self.maximum is None:
            return None
        low_ok = self.minimum is None or (
            value > self.minimum if self.exclusive_minimum else value >= self.minimum
        )
        high_ok = self.maximum is None or value <= self.maximum
        if low_ok and high_ok:
            return None
        if self.maximum is None and self.minimum == 0 and self.exclusive_minimum:
            return f"{key} must be positive, got {value:g}"
        if self.maximum is None:
            relation = "greater than" if self.exclusive_minimum else "at least"
            return f"{key} must be {relation} {self.minimum:g}, got {value:g}"
        if self.minimum is None:
            return f"{key} must be at most {self.maximum:g}, got {value:g}"
        opening = "(" if self.exclusive_minimum else "["
        return f"{key} must be in {opening}{self.minimum:g}, {self.maximum:g}], got {value:g}"

    def to_json(self) -> dict[str, Any]:
        return {
            "default": self.default,
            **({"minimum": self.minimum} if self.minimum is not None else {}),
            **({"maximum": self.maximum} if self.maximum is not None else {}),
            **({"exclusiveMinimum": True} if self.exclusive_minimum else {}),
            **({"description": self.description} if self.description else {}),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Parameter:
        return cls(
            default=doc["default"],
            minimum=doc.get("minimum"),
            maximum=doc.get("maximum"),
            exclusive_minimum=bool(doc.get("exclusiveMinimum", False)),
            description=doc.get("description", ""),
        )


@dataclass(frozen=True)
class ModuleDeclaration:
    """One survey's variant of a science module: the columns it reads and adds."""

    name: str
    survey: str
    description: str
    reads: tuple[str, ...]
    writes: Mapping[str, str]  # column -> Spark SQL type
    parameters: Mapping[str, Parameter] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.parameters.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "survey": self.survey,
            "description": self.description,
            "reads": list(self.reads),
            "writes": dict(self.writes),
            "parameters": {k: p.to_json() for k, p in self.parameters.items()},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ModuleDeclaration:
        return cls(
            name=doc["name"],
            survey=doc["survey"],
            description=doc.get("description", ""),
            reads=tuple(doc.get("reads", ())),
            writes=dict(doc.get("writes", {})),
            parameters={k: Parameter.from_json(p) for k, p in doc.get("parameters", {}).items()},
        )


@dataclass(frozen=True)
class FilterDeclaration:
    """A science filter: the columns it reads; it selects alerts for its topic."""

    name: str
    surveys: tuple[str, ...]
    description: str
    reads: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "surveys": list(self.surveys),
            "description": self.description,
            "reads": list(self.reads),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FilterDeclaration:
        return cls(
            name=doc["name"],
            surveys=tuple(doc["surveys"]),
            description=doc.get("description", ""),
            reads=tuple(doc.get("reads", ())),
        )


@dataclass(frozen=True)
class Catalogue:
    """Every survey's alert columns, every module variant and every filter."""

    columns: Mapping[str, Mapping[str, str]]  # survey -> column -> Spark SQL type
    modules: tuple[ModuleDeclaration, ...]
    filters: tuple[FilterDeclaration, ...]

    @property
    def surveys(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def module(self, name: str, survey: str) -> ModuleDeclaration | None:
        return next((m for m in self.modules if m.name == name and m.survey == survey), None)

    def module_surveys(self, name: str) -> tuple[str, ...]:
        return tuple(m.survey for m in self.modules if m.name == name)

    def module_names(self) -> list[str]:
        return sorted({m.name for m in self.modules})

    def filter(self, name: str) -> FilterDeclaration | None:
        return next((f for f in self.filters if f.name == name), None)

    def filter_names(self) -> list[str]:
        return sorted(f.name for f in self.filters)

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": {s: dict(c) for s, c in self.columns.items()},
            "modules": [m.to_json() for m in self.modules],
            "filters": [f.to_json() for f in self.filters],
        }

    def render(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Catalogue:
        return cls(
            columns={s: dict(c) for s, c in doc["columns"].items()},
            modules=tuple(ModuleDeclaration.from_json(m) for m in doc["modules"]),
            filters=tuple(FilterDeclaration.from_json(f) for f in doc["filters"]),
        )


@functools.cache
def shipped_catalogue() -> Catalogue:
    """The catalogue generated from the enrichment core's registry (`fink-pipeline catalogue`)."""
    return Catalogue.from_json(json.loads(SHIPPED.read_text()))
