"""Rubin alert records built from the simulated sky's detections.

The sky gives the quantities of a detection under the names of Rubin's latest
schema; `avro_fit.fit` lays them out in the official schema of the version
asked for (lsst-alert-packet's latest by default), so every field Rubin's
schema has is there, with its default where the sky knows nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fink_pipeline.alerts import rubin_schemas
from fink_pipeline.alerts.avro_fit import fit
from fink_pipeline.alerts.sky import (
    DIA_OBJECT_BASE,
    LSST_BAND_NAMES,
    LSST_ZERO_POINT,
    Point,
    Sky,
    SkyObject,
    recent,
)
from fink_pipeline.alerts.stamps import stamps_for


def _flux(mag: float) -> float:
    return 10 ** ((LSST_ZERO_POINT - mag) / 2.5)


def _dia_source(sky: Sky, obj: SkyObject, point: Point, object_id: int) -> dict[str, Any]:
    assert point.mag is not None and point.alert_id is not None and point.sigma is not None
    mjd = point.time - 2400000.5
    flux = _flux(point.mag)
    error = flux * point.sigma / 1.0857
    if obj.quality.get("negative", 0.0) and point.alert_id % 3 == 0:
        flux = -flux  # a negative difference (bogus dipoles and subtraction residuals)
    return {
        "diaSourceId": point.alert_id,
        "visit": int(mjd * 1e4),
        "detector": obj.number % 189,
        "diaObjectId": object_id,
        "ssObjectId": obj.ss_object_id,
        "parentDiaSourceId": None,
        "midpointMjdTai": mjd,
        "ra": point.ra,
        "raErr": 1e-5,
        "dec": point.dec,
        "decErr": 1e-5,
        "ra_dec_Cov": None,
        "x": float((point.alert_id * 7) % 4000),
        "y": float((point.alert_id * 13) % 4000),
        "centroid_flag": False,
        "apFlux": flux * 1.02,
        "apFluxErr": error * 1.1,
        "snr": abs(flux) / error,
        "psfFlux": flux,
        "psfFluxErr": error,
        "psfChi2": 1.0,
        "psfNdata": 441,
        "scienceFlux": abs(flux) + 1000.0,
        "scienceFluxErr": error,
        "extendedness": obj.host.get("sgscore1") if obj.kind == "sn_like" else 0.0,
        "reliability": point.rb,
        "band": LSST_BAND_NAMES[point.band],
        "isDipole": False,
        "pixelFlags": bool(obj.quality.get("nbad", 0)),
    }


def lsst_alert(
    sky: Sky, obj: SkyObject, point: Point, stamp_seed: int | None = None
) -> dict[str, Any]:
    """The alert Rubin would send for this detection, with its previous detections; with a
    `stamp_seed`, its three cutouts (FITS stamps of that seed's pool, stamps.py)."""
    object_id = DIA_OBJECT_BASE + sky.seed_block + obj.number
    source = _dia_source(sky, obj, point, object_id)
    previous = [
        _dia_source(sky, obj, p, object_id) for p in recent(obj, point.time) if p.mag is not None
    ]
    fluxes: dict[str, list[float]] = {}
    for s in [*previous, source]:
        fluxes.setdefault(s["band"], []).append(s["psfFlux"])
    times = [s["midpointMjdTai"] for s in [*previous, source]]
    dia_object = {
        "diaObjectId": object_id,
        "ra": obj.ra,
        "raErr": 1e-5,
        "dec": obj.dec,
        "decErr": 1e-5,
        "ra_dec_Cov": None,
        "nDiaSources": len(previous) + 1,
        "firstDiaSourceMjdTai": min(times),
        "lastDiaSourceMjdTai": max(times),
    }
    for band in "gri":
        values = fluxes.get(band, [])
        dia_object[f"{band}_psfFluxMean"] = float(np.mean(values)) if values else None
        dia_object[f"{band}_psfFluxNdata"] = len(values)
    ss_object = ss_source = None
    if obj.ss_object_id is not None:
        ss_object = {  # schemas up to 7.x
            "ssObjectId": obj.ss_object_id,
            "designation": obj.solar_system.get("ssnamenr"),
            "numObs": int(50 + obj.number % 500),
            "arc": float(1 + obj.number % 3000),
            "MOIDEarth": 0.5 + (obj.number % 100) / 50.0,
        }
        ss_source = {  # schemas from 8.0
            "diaSourceId": point.alert_id,
            "ssObjectId": obj.ss_object_id,
            "designation": obj.solar_system.get("ssnamenr"),
        }
    detection = {
        "diaSourceId": point.alert_id,
        "diaSource": source,
        "prvDiaSources": previous or None,
        "diaObject": dia_object,
        "ssObject": ss_object,
        "ssSource": ss_source,
    }
    if stamp_seed is not None:
        triple = stamps_for(stamp_seed, point.mag or 20.0, point.alert_id or 0)
        detection["cutoutScience"] = triple.science
        detection["cutoutTemplate"] = triple.template
        detection["cutoutDifference"] = triple.difference
    return in_version(detection, rubin_schemas.latest())


def in_version(alert: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    """An alert laid out in Rubin's official schema `version` (fields renamed across versions
    keep their values; fields the alert lacks get their defaults)."""
    return fit(alert, rubin_schemas.writer_schema(version), ALIASES)


# The names a quantity had in other schema versions: the diaSource renames, and
# the alert's own id (alertId up to 7.x, diaSourceId from 8.0).
ALIASES = {**rubin_schemas.OLDER_NAMES, "diaSourceId": ("alertId",)}
