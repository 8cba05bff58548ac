"""The Avro schemas of the alerts each survey sends, loaded once per process.

The .avsc files next to this module (schemas/) are shaped after the surveys'
own schemas (ZTF's alert schema 3.3, Rubin's lsst.v7_x); docs/alerts.md says
what they keep and what they leave out. Parsing a schema costs far more than
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

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMA_FILES = {"ztf": "ztf_alert.avsc", "lsst": "lsst_alert.avsc"}
# The full name of each survey's top-level record: a message whose record has
# another name is not an alert of that survey.
RECORD_NAMES = {"ztf": "ztf.alert", "lsst": "lsst.alert"}


def _check_survey(survey: str) -> str:
    if survey not in SCHEMA_FILES:
        raise ValueError(f"unknown survey {survey!r}; known surveys: {', '.join(SCHEMA_FILES)}")
    return survey


@cache
def schema_text(survey: str) -> str:
    """The survey's schema exactly as written in its .avsc file."""
    return (SCHEMA_DIR / SCHEMA_FILES[_check_survey(survey)]).read_text()


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
