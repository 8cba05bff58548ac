"""The Avro schemas of the alerts each survey sends, loaded once per process.

ZTF's schema is the .avsc file next to this module (schemas/), shaped after
ZTF's alert schema 3.3 (docs/alerts.md says what it keeps and leaves out).
Rubin's is the latest official one of Rubin's own package (rubin_schemas.py);
Rubin alerts of older versions are read by the schema id they carry. Parsing a schema costs far more than
decoding one alert, so each is parsed once and the parsed form is shared by the
codec, the generator and the CLI.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from fink_pipeline.alerts import rubin_schemas

SCHEMA_DIR = Path(__file__).parent / "schemas"
SURVEYS = ("ztf", "lsst")
# The full name of ZTF's top-level record: a container whose record has
# another name is not a ZTF alert.
RECORD_NAMES = {"ztf": "ztf.alert"}


def _check_survey(survey: str) -> str:
    if survey not in SURVEYS:
        raise ValueError(f"unknown survey {survey!r}; known surveys: {', '.join(SURVEYS)}")
    return survey


@cache
def schema_text(survey: str) -> str:
    """The survey's schema as text: ZTF's .avsc file, Rubin's latest official schema."""
    if _check_survey(survey) == "lsst":
        return rubin_schemas.writer_schema_text(rubin_schemas.latest())
    return (SCHEMA_DIR / "ztf_alert.avsc").read_text()


@cache
def raw_schema(survey: str) -> dict[str, Any]:
    """The survey's schema as plain JSON data (not parsed by fastavro)."""
    schema: dict[str, Any] = json.loads(schema_text(survey))
    return schema


@cache
def parsed_schema(survey: str) -> dict[str, Any]:
    """The survey's schema parsed by fastavro, ready for its readers and writers."""
    parsed: dict[str, Any] = parse_schema(raw_schema(survey))
    return parsed


@cache
def canonical_form(survey: str) -> str:
    """Avro's Parsing Canonical Form of the schema: equal forms decode alike."""
    return str(to_parsing_canonical_form(raw_schema(survey)))
