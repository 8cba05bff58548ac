"""Fit a nested record to any version of a schema: what the generator writes with.

Rubin's schemas differ from version to version (fields added, removed,
renamed, made nullable, records replaced). The synthetic sky knows a few dozen
quantities of each detection; `fit` lays them out in whatever version is asked
for: a field found in the record (under its name, or under a name it had in
another version) keeps its value, any other field gets its default, null when
it may be null, or the zero of its type. The result is a valid record of that
schema, so the official schemas themselves decide what an alert holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRIMITIVE_ZERO: Mapping[str, Any] = {
    "null": None,
    "boolean": False,
    "int": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "bytes": b"",
    "string": "",
}


def fit(
    record: Mapping[str, Any],
    schema: Mapping[str, Any],
    aliases: Mapping[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """`record` laid out as a valid record of `schema` (a record schema, names resolved).

    `aliases` maps a field name to the other names the same quantity may carry
    in `record` (in either direction, so old and new layouts both fit).
    """
    known = _symmetric(aliases or {})
    names: dict[str, Any] = {}
    _collect_names(schema, names)
    result = _fit(record, schema, names, known)
    assert isinstance(result, dict)
    return result


def _symmetric(aliases: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    both: dict[str, list[str]] = {}
    for name, others in aliases.items():
        for other in others:
            both.setdefault(name, []).append(other)
            both.setdefault(other, []).append(name)
    return {name: tuple(others) for name, others in both.items()}


def _collect_names(schema: Any, names: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_names(branch, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed"):
            names[str(schema["name"])] = schema
        if kind == "record":
            for field in schema["fields"]:
                _collect_names(field["type"], names)
        elif kind == "array":
            _collect_names(schema["items"], names)
        elif kind == "map":
            _collect_names(schema["values"], names)


def _resolve(schema: Any, names: Mapping[str, Any]) -> Any:
    if isinstance(schema, str) and schema not in PRIMITIVE_ZERO:
        return names[schema]
    if isinstance(schema, dict) and schema.get("type") in PRIMITIVE_ZERO:
        return schema["type"]  # {"type": "long"} and its logical types
    return schema


def _fit(value: Any, schema: Any, names: Mapping[str, Any], known: Mapping[str, Any]) -> Any:
    schema = _resolve(schema, names)
    if isinstance(schema, list):
        if value is None and "null" in schema:
            return None
        branch = next((b for b in schema if _accepts(_resolve(b, names), value)), None)
        if branch is None:  # nothing fits: the branch's zero (null when allowed)
            return None if "null" in schema else _zero(schema[0], names, known)
        return _fit(value, branch, names, known)
    if isinstance(schema, str):
        if value is None:
            return PRIMITIVE_ZERO[schema]
        return _cast(value, schema)
    kind = schema["type"]
    if kind == "record":
        source = value if isinstance(value, Mapping) else {}
        out = {}
        for field in schema["fields"]:
            found = _lookup(source, field["name"], known)
            if found is None:
                out[field["name"]] = _field_default(field, names, known)
            else:
                out[field["name"]] = _fit(found, field["type"], names, known)
        return out
    if kind == "array":
        return [_fit(item, schema["items"], names, known) for item in value or ()]
    if kind == "map":
        return {k: _fit(v, schema["values"], names, known) for k, v in (value or {}).items()}
    if kind == "enum":
        return value if value in schema["symbols"] else schema["symbols"][0]
    if kind == "fixed":
        data = bytes(value or b"")
        return data[: schema["size"]].ljust(schema["size"], b"\0")
    raise ValueError(f"unsupported Avro type {kind!r}")


def _lookup(source: Mapping[str, Any], name: str, known: Mapping[str, Any]) -> Any:
    if source.get(name) is not None:
        return source[name]
    for other in known.get(name, ()):
        if source.get(other) is not None:
            return source[other]
    return None


def _field_default(field: Mapping[str, Any], names: Mapping[str, Any], known: Any) -> Any:
    if "default" in field:
        default = field["default"]
        kind = _resolve(field["type"], names)
        if isinstance(kind, list):
            kind = _resolve(kind[0], names)
        return (
            default.encode("latin-1") if kind == "bytes" and isinstance(default, str) else default
        )
    return _zero(field["type"], names, known)


def _zero(schema: Any, names: Mapping[str, Any], known: Mapping[str, Any]) -> Any:
    schema = _resolve(schema, names)
    if isinstance(schema, list):
        return None if "null" in schema else _zero(schema[0], names, known)
    if isinstance(schema, str):
        return PRIMITIVE_ZERO[schema]
    return _fit(None, schema, names, known) if schema["type"] != "array" else []


def _accepts(schema: Any, value: Any) -> bool:
    if isinstance(schema, str):
        return {
            "null": value is None,
            "boolean": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "long": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "double": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bytes": isinstance(value, (bytes, bytearray)),
            "string": isinstance(value, str),
        }[schema]
    kind = schema["type"]
    if kind == "record" or kind == "map":
        return isinstance(value, Mapping)
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "enum":
        return isinstance(value, str)
    return isinstance(value, (bytes, bytearray))


def _cast(value: Any, kind: str) -> Any:
    if kind in ("int", "long") and isinstance(value, float):
        return int(value)
    if kind in ("float", "double") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "string" and not isinstance(value, str):
        return str(value)
    return value
