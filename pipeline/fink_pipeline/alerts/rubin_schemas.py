"""Rubin's official alert schemas, every version `lsst-alert-packet` ships.

Rubin publishes its alerts in the Confluent wire format with the id of the
writer schema; the schemas themselves come from Rubin's own package
(`lsst-alert-packet`, pinned in pyproject.toml), never from a copy of ours. The
package numbers a version MAJOR.MINOR with the id MAJOR*100 + MINOR (7.4 ->
704, 11.1 -> 1101): that mapping serves when no schema registry is configured.

The schema files are read straight from the package's data directory, without
importing `lsst.alert.packet` (whose dependencies every Spark worker would
otherwise load for nothing).

`projection` is what makes every version readable and cheap: from a writer
schema it builds the reader schema that keeps only the diaSource fields the
pipeline's columns need (renamed ones found under their older names by Avro
aliases), so fastavro skips everything else, cutouts included, without
building it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import load_schema

PACKAGE = "lsst.alert.packet"
# Rubin's fields of the diaSource record under the names our columns use, and
# the older names the same quantity had in earlier schema versions (3.x-4.x).
OLDER_NAMES = {
    "midpointMjdTai": ("midPointTai",),
    "dec": ("decl",),
    "band": ("filterName",),
    "psfFlux": ("psFlux",),
    "psfFluxErr": ("psFluxErr",),
}
_VERSION_DIR = re.compile(r"^\d+$")


@cache
def schema_root() -> Path:
    """The directory of the installed package's schemas (one folder per MAJOR/MINOR)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed; it is a dependency of fink-k8s")
    return Path(next(iter(spec.submodule_search_locations))) / "schema"


@cache
def versions() -> tuple[tuple[int, int], ...]:
    """Every (major, minor) the package ships, oldest first."""
    found = []
    for major in schema_root().iterdir():
        if not _VERSION_DIR.match(major.name):
            continue
        for minor in major.iterdir():
            if _VERSION_DIR.match(minor.name) and _alert_file(int(major.name), int(minor.name)):
                found.append((int(major.name), int(minor.name)))
    return tuple(sorted(found))


@cache
def latest() -> tuple[int, int]:
    """The version the package calls latest (its latest.txt)."""
    major, minor = (schema_root() / "latest.txt").read_text().strip().split(".")
    return int(major), int(minor)


def parse_version(text: str) -> tuple[int, int]:
    """'11.1' -> (11, 1); refuses a version the package does not ship, naming those it does."""
    try:
        major, minor = (int(part) for part in text.strip().split("."))
    except ValueError:
        raise ValueError(f"schema version {text!r} is not MAJOR.MINOR (e.g. 11.1)") from None
    if (major, minor) not in versions():
        shipped = ", ".join(f"{a}.{b}" for a, b in versions())
        raise ValueError(f"Rubin schema {text} is not in lsst-alert-packet; it ships {shipped}")
    return major, minor


def official_id(version: tuple[int, int]) -> int:
    """The id Rubin's package gives a version: MAJOR*100 + MINOR."""
    major, minor = version
    return major * 100 + minor


def version_of_id(schema_id: int) -> tuple[int, int] | None:
    """The version an official id names, or None when the package has no such version."""
    version = divmod(schema_id, 100)
    return version if version in versions() else None


def _alert_file(major: int, minor: int) -> Path | None:
    path = schema_root() / str(major) / str(minor) / f"lsst.v{major}_{minor}.alert.avsc"
    return path if path.exists() else None


@cache
def writer_schema(version: tuple[int, int]) -> dict[str, Any]:
    """A version's whole alert schema, its named types resolved (what a registry holds)."""
    path = _alert_file(*version)
    if path is None:
        raise ValueError(f"lsst-alert-packet has no schema {version[0]}.{version[1]}")
    schema: dict[str, Any] = load_schema(str(path), _write_hint=False)
    return schema


@cache
def writer_schema_text(version: tuple[int, int]) -> str:
    """The schema as JSON text, as it is registered with a schema registry."""
    return json.dumps(writer_schema(version))


@cache
def parsed_writer_schema(version: tuple[int, int]) -> dict[str, Any]:
    """The schema parsed by fastavro, to write alerts of this version."""
    parsed: dict[str, Any] = parse_schema(writer_schema(version))
    return parsed


def full_name(schema: Any) -> str | None:
    """A named schema's full name (namespace.name), None for anything else."""
    if not isinstance(schema, dict) or not schema.get("name"):
        return None
    name = str(schema["name"])
    if "." not in name and schema.get("namespace"):
        name = f"{schema['namespace']}.{name}"
    return name


def is_alert_schema(schema: Any) -> bool:
    """Whether a writer schema is a Rubin alert (record lsst.vM_m.alert with a diaSource)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return False
    name = full_name(schema) or ""
    fields = {f.get("name") for f in schema.get("fields", []) if isinstance(f, dict)}
    return name.startswith("lsst.") and name.endswith(".alert") and "diaSource" in fields


CUTOUT_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


def projection(
    writer: dict[str, Any], source_fields: tuple[str, ...], cutouts: bool = False
) -> dict[str, Any]:
    """The reader schema reading only `source_fields` of diaSource and prvDiaSources
    (and, with `cutouts`, the alert's cutout fields; a version without one reads null).

    Fields keep the writer's types (no promotion to get wrong); a field found
    under an older name is read under ours through an alias; a field the
    writer lacks is read as null (a `missing-field` check later decides).
    """
    source_schema = _named_record(writer, "diaSource")
    writer_fields = {f["name"]: f for f in source_schema["fields"]}
    fields = []
    for name in source_fields:
        found = next((n for n in (name, *OLDER_NAMES.get(name, ())) if n in writer_fields), None)
        if found is None:
            fields.append({"name": name, "type": "null", "default": None})
            continue
        field: dict[str, Any] = {"name": name, "type": writer_fields[found]["type"]}
        if found != name:
            field["aliases"] = [found]
        if "default" in writer_fields[found]:
            field["default"] = writer_fields[found]["default"]
        fields.append(field)
    source_name = source_schema["name"]
    reader_source = {"type": "record", "name": source_name, "fields": fields}
    alert_fields = {f["name"]: f for f in writer["fields"]}
    projected = [{"name": "diaSource", "type": reader_source}]
    if "prvDiaSources" in alert_fields:
        projected.append(
            {
                "name": "prvDiaSources",
                "type": ["null", {"type": "array", "items": source_name}],
                "default": None,
            }
        )
    if cutouts:
        for name in CUTOUT_FIELDS:  # cutoutScience came with 6.1
            kind = alert_fields[name]["type"] if name in alert_fields else "null"
            projected.append({"name": name, "type": kind, "default": None})
    return {"type": "record", "name": writer["name"], "fields": projected}


def _named_record(writer: dict[str, Any], field_name: str) -> dict[str, Any]:
    """The record type of one of the alert's fields (inlined at its first use)."""
    for field in writer["fields"]:
        if field["name"] == field_name:
            kind = field["type"]
            if isinstance(kind, list):
                kind = next(k for k in kind if k != "null")
            if isinstance(kind, dict) and kind.get("type") == "record":
                return kind
    raise ValueError(f"alert schema {writer.get('name')} has no record field {field_name!r}")
