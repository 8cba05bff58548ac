"""The built-in modules written alert by alert, in plain Python.

This is how science code reads when written for one alert at a time: loops
over dicts and the math module. It computes the same values as the vectorised
modules and exists for two reasons: the benchmark (bench/pipeline_modules.py)
measures what vectorisation buys against it, and the tests check that both
agree, which guards each against the other's mistakes.

An alert here is a dict of flat columns (one row of the alert frame); each
function returns the dict of the columns its module writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from fink_pipeline.science.catalogue import SAMPLE_CATALOGUE, read_catalogue_table
from fink_pipeline.science.history import LSST_BANDS, NJY_ZERO_POINT, ZTF_G, ZTF_R

Alert = dict[str, Any]
NAN = float("nan")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def quality_cuts_ztf(alert: Alert, minRb: float = 0.55) -> Alert:
    rb, nbad, fid = alert["rb"], alert["nbad"], alert["fid"]
    clean = not _missing(rb) and rb >= minRb and not _missing(nbad) and nbad == 0
    return {"quality_ok": bool(clean and fid != 3)}


def quality_cuts_lsst(alert: Alert, minReliability: float = 0.5) -> Alert:
    reliability = alert["reliability"]
    return {"quality_ok": bool(not _missing(reliability) and reliability >= minReliability)}


def _features(
    history: Iterable[tuple[Any, Any, Any]], now: float, band_now: Any, mag_now: Any
) -> Alert:
    points = [
        (t, b, m)
        for t, b, m in history
        if not _missing(t) and not _missing(b) and not _missing(m) and t < now
    ]
    points.sort(key=lambda p: p[0])
    detected_now = not _missing(mag_now) and not _missing(band_now)
    if detected_now:
        points.append((now, band_now, mag_now))
    latest: dict[Any, float] = {}
    for _, band, mag in points:
        latest[band] = mag
    curve = [(t, m) for t, b, m in points if b == band_now] if detected_now else []
    rise = decline = change = rate = NAN
    if curve:
        first_t, first_m = curve[0]
        peak_t, peak_m = curve[0]
        for t, m in curve:
            if m < peak_m:
                peak_t, peak_m = t, m
        if peak_t > first_t:
            rise = (first_m - peak_m) / (peak_t - first_t)
        if now > peak_t:
            decline = (mag_now - peak_m) / (now - peak_t)
        if len(curve) > 1:
            previous_t, previous_m = curve[-2]
            change = mag_now - previous_m
            if now > previous_t:
                rate = change / (now - previous_t)
    colour = latest[ZTF_G] - latest[ZTF_R] if ZTF_G in latest and ZTF_R in latest else NAN
    return {
        "n_detections": len(points),
        "color_gr": colour,
        "rise_rate": rise,
        "decline_rate": decline,
        "mag_change": change,
        "mag_rate": rate,
        "days_since_first": now - points[0][0] if points else NAN,
    }


def _listed(value: Any) -> list[Any]:
    return [] if _missing(value) else list(value)


def lightcurve_features_ztf(alert: Alert) -> Alert:
    history = zip(
        _listed(alert["prv_jd"]),
        _listed(alert["prv_fid"]),
        _listed(alert["prv_magpsf"]),
        strict=True,
    )
    return _features(history, alert["jd"], alert["fid"], alert["magpsf"])


def _magnitude(flux: Any) -> float:
    if _missing(flux) or flux <= 0:
        return NAN
    return NJY_ZERO_POINT - 2.5 * math.log10(flux)


def lightcurve_features_lsst(alert: Alert) -> Alert:
    history = [
        (t, LSST_BANDS.get(b) if isinstance(b, str) else None, _magnitude(f))
        for t, b, f in zip(
            _listed(alert["prv_midpointMjdTai"]),
            _listed(alert["prv_band"]),
            _listed(alert["prv_psfFlux"]),
            strict=True,
        )
    ]
    band = LSST_BANDS.get(alert["band"]) if isinstance(alert["band"], str) else None
    return _features(history, alert["midpointMjdTai"], band, _magnitude(alert["psfFlux"]))


def _roid(alert: Alert) -> int:
    """fink-science's roid_catcher rules for one alert."""
    ndethist, sgscore1 = alert["ndethist"], alert["sgscore1"]
    ssdistnr, distpsnr1 = alert["ssdistnr"], alert["distpsnr1"]
    prv_mag, prv_jd = _listed(alert["prv_magpsf"]), _listed(alert["prv_jd"])
    n_alerts = sum(1 for m in prv_mag if not _missing(m)) + (0 if _missing(alert["magpsf"]) else 1)
    last_gap = alert["jd"] - prv_jd[-1] if prv_jd and not _missing(prv_jd[-1]) else NAN

    def above(value: Any, threshold: float) -> bool:
        return not _missing(value) and value > threshold

    def below(value: Any, threshold: float) -> bool:
        return not _missing(value) and value < threshold

    code = 0
    if ndethist == 1:
        code = 1
    if below(sgscore1, 0.76) and ndethist <= 2:
        code = 2
    if above(distpsnr1, 0) and below(distpsnr1, 5.0):
        code = 0
    if n_alerts == 2 and above(last_gap, 30.0 / (24.0 * 60.0)):
        code = 0
    if ndethist == 2 and n_alerts == 1:
        code = 0
    if (
        not _missing(ssdistnr)
        and 0 <= ssdistnr < 5.0
        and not _missing(distpsnr1)
        and abs(distpsnr1) - ssdistnr > 0
        and ndethist <= 5
        and n_alerts <= 5
    ):
        code = 3
    return code


def solar_system_ztf(alert: Alert, maxDistanceArcsec: float = 5.0) -> Alert:
    distance, magnitude, name = alert["ssdistnr"], alert["ssmagnr"], alert["ssnamenr"]
    known = (
        not _missing(distance)
        and 0 <= distance <= maxDistanceArcsec
        and not _missing(magnitude)
        and magnitude > 0
    )
    named = known and not _missing(name) and name != "null"
    return {"sso_flag": known, "sso_name": name if named else None, "roid": _roid(alert)}


def solar_system_lsst(alert: Alert, maxDistanceArcsec: float = 5.0) -> Alert:
    sso = alert["ssObjectId"]
    known = not _missing(sso) and sso != 0
    return {"sso_flag": known, "sso_name": str(sso) if known else None, "roid": 3 if known else 0}


@cache
def _catalogue_rows(path: str) -> list[tuple[float, float, str, str]]:
    table = read_catalogue_table(path or SAMPLE_CATALOGUE)
    return list(
        zip(table["ra"].tolist(), table["dec"].tolist(), table["name"], table["type"], strict=True)
    )


def crossmatch(alert: Alert, catalogue: str = "", radiusArcsec: float = 1.5) -> Alert:
    """Nearest source by scanning the whole catalogue (haversine distance)."""
    best: tuple[float, str, str] | None = None
    ra, dec = alert["ra"], alert["dec"]
    if not _missing(ra) and not _missing(dec):
        ra1, dec1 = math.radians(ra), math.radians(dec)
        for ra_s, dec_s, name, kind in _catalogue_rows(catalogue):
            ra2, dec2 = math.radians(ra_s), math.radians(dec_s)
            h = (
                math.sin((dec2 - dec1) / 2) ** 2
                + math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2
            )
            arcsec = math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600.0
            if arcsec <= radiusArcsec and (best is None or arcsec < best[0]):
                best = (arcsec, name, kind)
    if best is None:
        return {"xm_name": None, "xm_type": None, "xm_distance_arcsec": NAN}
    return {"xm_name": best[1], "xm_type": best[2], "xm_distance_arcsec": best[0]}


def snia_score(alert: Alert) -> Alert:
    def value(key: str, default: float) -> float:
        v = alert[key]
        return default if _missing(v) else float(v)

    rise_rate = value("rise_rate", 0.0)
    rise = min(max(rise_rate, 0.0), 0.5)
    too_fast = min(max(rise_rate - 0.5, 0.0), 2.0)
    colour = min(abs(value("color_gr", 0.3)), 2.0)
    age = min(max(value("days_since_first", 0.0) / 10.0, 0.0), 10.0)
    fading = min(max(value("decline_rate", 0.0), 0.0), 1.0)
    z = -0.5 + 12.0 * rise - 8.0 * too_fast - 3.0 * colour - 0.5 * age - 3.0 * fading
    return {"snia_score": 1.0 / (1.0 + math.exp(-z))}


BASELINES: dict[tuple[str, str], Callable[..., Alert]] = {
    ("quality_cuts", "ztf"): quality_cuts_ztf,
    ("quality_cuts", "lsst"): quality_cuts_lsst,
    ("lightcurve_features", "ztf"): lightcurve_features_ztf,
    ("lightcurve_features", "lsst"): lightcurve_features_lsst,
    ("solar_system", "ztf"): solar_system_ztf,
    ("solar_system", "lsst"): solar_system_lsst,
    ("crossmatch", "ztf"): crossmatch,
    ("crossmatch", "lsst"): crossmatch,
    ("snia_score", "ztf"): snia_score,
    ("snia_score", "lsst"): snia_score,
}


def run_module(
    name: str, survey: str, alerts: list[Alert], parameters: Mapping[str, Any]
) -> list[Alert]:
    """One module over every alert, one at a time; the alerts gain its columns."""
    compute = BASELINES[(name, survey)]
    for alert in alerts:
        alert.update(compute(alert, **parameters))
    return alerts
