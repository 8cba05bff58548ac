"""Alerts to the bytes a survey sends, for a stream that may mix Rubin schema versions.

Rubin writes every alert with the schema version of its pipeline's release and
the id its schema registry gave that schema. To test a broker against that, a
stream here can cycle through several official versions (`versions`), and with
a registry each version is registered first and written under the id the
registry returns, exactly as a consumer of Rubin's stream will find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fink_pipeline.alerts import rubin_schemas
from fink_pipeline.alerts.codec import encode
from fink_pipeline.alerts.lsst_records import in_version
from fink_pipeline.alerts.registry import RUBIN_SUBJECT, registry_at


class SurveyEncoder:
    """Encode alert after alert; Rubin alerts cycle through `versions` (default: latest)."""

    def __init__(
        self,
        survey: str,
        versions: Sequence[str] = (),
        registry: str | None = None,
        subject: str = RUBIN_SUBJECT,
    ) -> None:
        self.survey = survey
        if survey != "lsst" and (versions or registry):
            raise ValueError("schema versions and a schema registry apply to Rubin (lsst) only")
        parsed = [rubin_schemas.parse_version(v) for v in versions]
        self.versions = parsed or ([rubin_schemas.latest()] if survey == "lsst" else [])
        self.registry = registry
        self.subject = subject
        self.ids: dict[tuple[int, int], int] = {}
        for version in self.versions:
            self._id(version)
        self._count = 0

    def _id(self, version: tuple[int, int]) -> int:
        if version not in self.ids:
            if self.registry:
                text = rubin_schemas.writer_schema_text(version)
                self.ids[version] = registry_at(self.registry).register(text, self.subject)
            else:
                self.ids[version] = rubin_schemas.official_id(version)
        return self.ids[version]

    def encode(self, alert: dict[str, Any]) -> bytes:
        """The next alert's bytes (the generator lays Rubin alerts out in the latest schema)."""
        if self.survey != "lsst":
            return encode(alert, self.survey)
        version = self.versions[self._count % len(self.versions)]
        self._count += 1
        return self.encode_as(alert, version)

    def encode_latest(self, alert: dict[str, Any]) -> bytes:
        """The alert in the latest schema whatever the cycle (nulls stay null, as written)."""
        if self.survey != "lsst":
            return encode(alert, self.survey)
        return self.encode_as(alert, rubin_schemas.latest())

    def encode_as(self, alert: dict[str, Any], version: tuple[int, int]) -> bytes:
        """A Rubin alert in official schema `version`, under the id it has here."""
        record = alert if version == rubin_schemas.latest() else in_version(alert, version)
        return encode(record, "lsst", schema_version=version, schema_id=self._id(version))
