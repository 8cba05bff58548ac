"""Synthetic alert streams: a small simulated sky, observed night after night.

The generator keeps a population of objects of five classes (the "truth" of
each alert) and observes them the way a survey does: on each night an object's
field is visited or not, in one or two bands, and each visit either detects it
(an alert, with the object's history of the last 30 days attached) or records
an upper limit (ZTF keeps those in prv_candidates; Rubin's prvDiaSources hold
detections only). Times increase along the stream and nights roll over.

Classes and their light-curve models (docs/alerts.md has the details):

- sn_like: a Bazin flux curve, rising ~0.1-0.4 mag/day for ~15-20 days, then
  fading ~0.03-0.05 mag/day; on a galaxy (PS1 source within ~3", sgscore1 < 0.4).
- variable_star: sinusoidal, Cepheid-like (8-45 days) or Mira-like (80-400
  days); on a star (sgscore1 > 0.85, distpsnr1 < 0.8"), some exactly on GCVS
  sources of the sample catalogue so a cross-match finds them.
- asteroid: known (ssdistnr < 3", ssmagnr, ssnamenr set) or new (one or two
  detections within 30 minutes, point-like, no PS1 source within 5").
- fast_transient: rises 0.8-2 mag/day and fades 0.6-1.5 mag/day.
- bogus: real/bogus score rb < 0.3 and/or bad pixels, sometimes negative.

Before the first alert the sky is simulated for BURN_IN_NIGHTS nights, so that
the very first alerts already carry histories. Everything is drawn from one
numpy generator: a seed gives the same stream every time.
"""

from __future__ import annotations

import copy
import io
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
from fastavro import parse_schema, writer

from fink_pipeline.alerts import codec
from fink_pipeline.alerts.schemas import raw_schema
from fink_pipeline.science.catalogue import catalogue_positions

CLASSES = ("sn_like", "variable_star", "asteroid", "fast_transient", "bogus")
DEFAULT_START_JD = 2460400.5  # 2024-04-02
HISTORY_DAYS = 30.0  # ZTF attaches 30 days of prv_candidates
BURN_IN_NIGHTS = 40
NIGHT_START, NIGHT_LENGTH = 0.15, 0.32  # fraction of the day when the survey observes

# Per night: new objects of each class (variable stars are a standing population)
SPAWN_PER_NIGHT = {"sn_like": 3.0, "fast_transient": 14.0, "known_asteroid": 40.0}
SPAWN_PER_NIGHT |= {"new_asteroid": 28.0, "bogus": 80.0}
VARIABLE_STARS = 110
ON_CATALOGUE_FRACTION = 0.4

# Survey depth (5-sigma limiting magnitude per band, mean) and band names
SURVEYS = {
    "ztf": {"bands": (1, 2), "limits": {1: 20.5, 2: 20.3}},
    "lsst": {"bands": (1, 2, 3), "limits": {1: 24.2, 2: 24.0, 3: 23.6}},
}
LSST_BAND_NAMES = {1: "g", 2: "r", 3: "i"}
LSST_ZERO_POINT = 31.4  # AB magnitude of 1 nJy

CANDID_BASE = 2_000_000_000_000_000_000
DIA_SOURCE_BASE = 100_000_000_000_000_000
DIA_OBJECT_BASE = 200_000_000_000_000_000
SS_OBJECT_BASE = 300_000_000_000_000_000
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class _Point:
    """One visit of an object: a detection (mag set) or an upper limit (mag None)."""

    time: float
    band: int
    mag: float | None
    sigma: float | None
    limit: float
    alert_id: int | None
    ra: float
    dec: float
    rb: float | None


@dataclass
class _Object:
    kind: str  # one of CLASSES
    number: int
    ra: float
    dec: float
    magnitude: Callable[[float, int], float]  # true magnitude at (time, band)
    end: float  # no visit after this time
    visit_probability: float
    host: dict[str, Any]  # PS1 / reference-image neighbour fields
    quality: dict[str, Any] = field(default_factory=dict)
    solar_system: dict[str, Any] = field(default_factory=dict)
    ndethist: int = 0
    jdstarthist: float | None = None
    history: list[_Point] = field(default_factory=list)
    detections_left: int = -1  # asteroids: number of sightings, then gone
    ss_object_id: int | None = None


class _Sky:
    """The simulated population and the survey observing it, night by night."""

    def __init__(self, survey: str, seed: int, start_jd: float) -> None:
        if survey not in SURVEYS:
            raise ValueError(f"unknown survey {survey!r}; known surveys: ztf, lsst")
        self.survey = survey
        self.rng = np.random.default_rng(seed)
        self.bands: tuple[int, ...] = SURVEYS[survey]["bands"]  # type: ignore[assignment]
        self.limits: dict[int, float] = SURVEYS[survey]["limits"]  # type: ignore[assignment]
        self.depth = self.limits[2]
        self.start_jd = start_jd
        self.seed_block = (seed % 1000) * 10**12
        self.name_offset = (seed * 7_919_093) % 26**7
        self.objects: list[_Object] = []
        self.object_count = 0
        self.alert_count = 0
        self.catalogue = catalogue_positions()
        for _ in range(VARIABLE_STARS):
            self.objects.append(self._variable_star(start_jd - BURN_IN_NIGHTS))

    # ------------------------------------------------------------------ identities

    def _new_number(self) -> int:
        self.object_count += 1
        return self.object_count

    def _next_alert_id(self) -> int:
        self.alert_count += 1
        base = CANDID_BASE if self.survey == "ztf" else DIA_SOURCE_BASE
        return base + self.seed_block + self.alert_count

    def object_name(self, number: int, jd: float) -> str:
        """A ZTF-style objectId, 'ZTF' + two-digit year + seven letters, unique per number."""
        value = (self.name_offset + number) % 26**7
        letters = []
        for _ in range(7):
            value, digit = divmod(value, 26)
            letters.append(LETTERS[digit])
        year = 2000 + int((jd - 2451544.5) / 365.25)
        return f"ZTF{year % 100:02d}{''.join(reversed(letters))}"

    # ------------------------------------------------------------------ populations

    def _position(self) -> tuple[float, float]:
        ra = float(self.rng.uniform(0.0, 360.0))
        dec = math.degrees(math.asin(self.rng.uniform(math.sin(math.radians(-30.0)), 1.0)))
        return ra, dec

    def _galaxy_host(self) -> dict[str, Any]:
        rng = self.rng
        return {
            "distpsnr1": float(rng.uniform(0.2, 3.0)),
            "sgscore1": float(rng.uniform(0.0, 0.4)),
            "classtar": float(rng.uniform(0.3, 0.9)),
            "magnr": float(rng.uniform(18.5, 21.5)),
            "sigmagnr": float(rng.uniform(0.02, 0.15)),
            "distnr": float(rng.uniform(0.1, 2.0)),
        }

    def _real_quality(self) -> dict[str, Any]:
        rng = self.rng
        low = rng.random() < 0.06  # a few real objects fail the cuts, as in real data
        return {
            "rb_range": (0.3, 0.54) if low else (0.62, 1.0),
            "nbad": int(rng.random() < 0.02),
            "negative": 0.0,
        }

    def _supernova(self, now: float) -> _Object:
        rng = self.rng
        tau_rise = float(rng.uniform(1.5, 5.0))
        tau_fall = float(rng.uniform(20.0, 40.0))
        t0 = now + float(rng.uniform(0.0, 8.0)) + 2.0 * tau_rise
        peak_time = t0 + tau_rise * math.log(tau_fall / tau_rise - 1.0)
        peak_mag = self.depth - float(rng.uniform(1.3, 3.3))
        colour = {1: float(rng.uniform(-0.15, 0.1)), 2: 0.0, 3: 0.15}

        def bazin(t: float) -> float:
            x = (t - t0) / tau_rise
            if x < -50:
                return 0.0
            return math.exp(-(t - t0) / tau_fall) / (1.0 + math.exp(-x))

        peak_flux = bazin(peak_time)

        def magnitude(t: float, band: int) -> float:
            flux = bazin(t)
            if flux <= 0:
                return 40.0
            reddening = 0.02 * max(0.0, t - peak_time) if band == 1 else 0.0
            return peak_mag - 2.5 * math.log10(flux / peak_flux) + colour[band] + reddening

        ra, dec = self._position()
        return _Object(
            "sn_like",
            self._new_number(),
            ra,
            dec,
            magnitude,
            end=peak_time + 70.0,
            visit_probability=0.7,
            host=self._galaxy_host(),
            quality=self._real_quality(),
        )

    def _fast_transient(self, now: float) -> _Object:
        rng = self.rng
        rise, fade = float(rng.uniform(0.8, 2.0)), float(rng.uniform(0.6, 1.5))
        peak_time = now + float(rng.uniform(0.5, 2.5))
        peak_mag = self.depth - float(rng.uniform(1.0, 2.5))
        colour = {1: -0.25, 2: 0.0, 3: 0.1}

        def magnitude(t: float, band: int) -> float:
            slope = rise * (peak_time - t) if t < peak_time else fade * (t - peak_time)
            return peak_mag + slope + colour[band]

        ra, dec = self._position()
        return _Object(
            "fast_transient",
            self._new_number(),
            ra,
            dec,
            magnitude,
            end=peak_time + 6.0,
            visit_probability=0.9,  # high-cadence fields
            host=self._galaxy_host(),
            quality=self._real_quality(),
        )

    def _variable_star(self, now: float) -> _Object:
        rng = self.rng
        if rng.random() < ON_CATALOGUE_FRACTION:
            source = self.catalogue.iloc[int(rng.integers(0, len(self.catalogue)))]
            ra, dec = float(source["ra"]), float(source["dec"])
        else:
            ra, dec = self._position()
        if rng.random() < 0.6:  # Cepheid-like
            period, amplitude = float(rng.uniform(8.0, 45.0)), float(rng.uniform(0.3, 0.8))
        else:  # Mira-like
            period, amplitude = float(rng.uniform(80.0, 400.0)), float(rng.uniform(1.5, 4.0))
        mean = self.depth - float(rng.uniform(1.0, 3.5))
        phase = float(rng.uniform(0.0, 1.0))
        colour = {1: 0.6, 2: 0.0, 3: -0.3}

        def magnitude(t: float, band: int) -> float:
            return (
                mean + 0.5 * amplitude * math.sin(2 * math.pi * (t / period + phase)) + colour[band]
            )

        host = {
            "distpsnr1": float(rng.uniform(0.05, 0.8)),
            "sgscore1": float(rng.uniform(0.86, 1.0)),
            "classtar": float(rng.uniform(0.9, 1.0)),
            "magnr": mean - float(rng.uniform(0.0, 0.5)),
            "sigmagnr": float(rng.uniform(0.01, 0.05)),
            "distnr": float(rng.uniform(0.05, 0.5)),
        }
        star = _Object(
            "variable_star",
            self._new_number(),
            ra,
            dec,
            magnitude,
            end=math.inf,
            visit_probability=0.5,
            host=host,
            quality=self._real_quality(),
        )
        star.ndethist = int(rng.integers(40, 400))
        star.jdstarthist = now - float(rng.uniform(300.0, 2000.0))
        return star

    def _asteroid(self, now: float, known: bool) -> _Object:
        rng = self.rng
        ra = float(rng.uniform(0.0, 360.0))
        dec = 23.4 * math.sin(math.radians(ra)) + float(rng.normal(0.0, 6.0))  # near the ecliptic
        mag = self.depth - float(rng.uniform(0.2, 2.0))
        if known:
            distance = float(rng.uniform(0.0, 3.0))
            host = {
                "distpsnr1": float(rng.uniform(3.5, 30.0)),
                "sgscore1": float(rng.uniform(0.0, 1.0)),
            }
            number = int(rng.integers(1, 700_000))
            name = str(number) if rng.random() < 0.8 else f"20{rng.integers(10, 24)}AB{number % 99}"
            solar = {"ssdistnr": distance, "ssmagnr": mag + float(rng.normal(0, 0.3))}
            solar["ssnamenr"] = name
            sightings = 1
        else:
            no_source = rng.random() < 0.3
            host = {
                "distpsnr1": -999.0 if no_source else float(rng.uniform(5.5, 30.0)),
                "sgscore1": -999.0 if no_source else float(rng.uniform(0.0, 0.6)),
            }
            solar = {"ssdistnr": -999.0, "ssmagnr": -999.0, "ssnamenr": None}
            sightings = 2 if rng.random() < 0.55 else 1
        host |= {"classtar": float(rng.uniform(0.8, 1.0)), "magnr": None, "sigmagnr": None}
        host["distnr"] = None
        asteroid = _Object(
            "asteroid",
            self._new_number(),
            ra,
            dec % 90.0 if dec > 90 else max(dec, -89.0),
            lambda t, band: mag + (0.5 if band == 1 else 0.0),
            end=now + 1.0,
            visit_probability=1.0,
            host=host,
            quality=self._real_quality(),
            solar_system=solar,
        )
        asteroid.detections_left = sightings
        if known:
            asteroid.ss_object_id = SS_OBJECT_BASE + self.seed_block + asteroid.number
        return asteroid

    def _bogus(self, now: float) -> _Object:
        rng = self.rng
        ra, dec = self._position()
        mag = self.depth - float(rng.uniform(0.0, 1.5))
        low_rb = rng.random() < 0.7
        quality = {
            "rb_range": (0.02, 0.29) if low_rb else (0.3, 0.9),
            "nbad": int(rng.integers(0, 3)) if low_rb else int(rng.integers(1, 6)),
            "negative": 0.3,
        }
        host = {
            "distpsnr1": float(rng.uniform(0.0, 30.0)),
            "sgscore1": float(rng.uniform(0.0, 1.0)),
            "classtar": float(rng.uniform(0.0, 1.0)),
            "magnr": float(rng.uniform(14.0, 21.0)),
            "sigmagnr": float(rng.uniform(0.01, 0.2)),
            "distnr": float(rng.uniform(0.0, 5.0)),
        }
        return _Object(
            "bogus",
            self._new_number(),
            ra,
            dec,
            lambda t, band: mag + float(self.rng.normal(0.0, 0.4)),
            end=now + float(rng.choice([0.5, 0.5, 0.5, 3.0])),  # some artefacts recur
            visit_probability=0.6,
            host=host,
            quality=quality,
        )

    def _spawn(self, night_start: float) -> None:
        rng = self.rng
        counts = {kind: int(rng.poisson(rate)) for kind, rate in SPAWN_PER_NIGHT.items()}
        for _ in range(counts["sn_like"]):
            self.objects.append(self._supernova(night_start))
        for _ in range(counts["fast_transient"]):
            self.objects.append(self._fast_transient(night_start))
        for _ in range(counts["known_asteroid"]):
            self.objects.append(self._asteroid(night_start, known=True))
        for _ in range(counts["new_asteroid"]):
            self.objects.append(self._asteroid(night_start, known=False))
        for _ in range(counts["bogus"]):
            self.objects.append(self._bogus(night_start))

    # ------------------------------------------------------------------ observing

    def _visits(self, obj: _Object, night_start: float) -> list[tuple[float, int]]:
        rng = self.rng
        if rng.random() > obj.visit_probability:
            return []
        first = night_start + NIGHT_START + float(rng.uniform(0.0, NIGHT_LENGTH - 0.06))
        if obj.kind == "asteroid":
            band = int(rng.choice(self.bands[:2]))
            if obj.detections_left == 2:  # two sightings within 30 minutes
                second = first + float(rng.uniform(0.007, 0.02))
                return [(first, band), (second, band)]
            return [(first, band)]
        bands = [b for b in self.bands if rng.random() < 0.75] or [int(rng.choice(self.bands))]
        return [(first + 0.03 * i + float(rng.uniform(0.0, 0.02)), b) for i, b in enumerate(bands)]

    def night(self, index: int) -> Iterator[tuple[_Object, _Point, bool]]:
        """(object, point, detected) for every visit of night `index`, in time order.

        The point is appended to the object's history once the consumer of the
        iterator has built its alert (so the alert's history excludes it).
        """
        night_start = self.start_jd + index
        self._spawn(night_start)
        visits: list[tuple[float, int, _Object]] = []
        for obj in self.objects:
            for time, band in self._visits(obj, night_start):
                visits.append((time, band, obj))
        visits.sort(key=lambda v: (v[0], v[2].number))
        rng = self.rng
        for time, band, obj in visits:
            limit = float(rng.normal(self.limits[band], 0.25))
            true_mag = obj.magnitude(time, band)
            always = obj.kind in ("asteroid", "bogus")
            sigma = min(0.03 + 0.1 * 10 ** (0.4 * (true_mag - self.depth)), 0.3)
            observed = true_mag + float(rng.normal(0.0, sigma))
            detected = always or observed < limit
            if always:
                observed = min(observed, limit - 0.05)
            low, high = obj.quality.get("rb_range", (0.62, 1.0))
            point = _Point(
                time=time,
                band=band,
                mag=observed if detected else None,
                sigma=sigma if detected else None,
                limit=limit,
                alert_id=self._next_alert_id() if detected else None,
                ra=obj.ra + float(rng.normal(0.0, 0.1)) / 3600.0,
                dec=obj.dec + float(rng.normal(0.0, 0.1)) / 3600.0,
                rb=float(rng.uniform(low, high)) if detected else None,
            )
            if detected:
                obj.ndethist += 1
                if obj.jdstarthist is None:
                    obj.jdstarthist = time
                obj.detections_left -= 1
            yield obj, point, detected
            obj.history.append(point)
        end_of_night = night_start + 1.0
        for obj in self.objects:
            obj.history = [p for p in obj.history if p.time > end_of_night - HISTORY_DAYS - 1]
        self.objects = [o for o in self.objects if o.end > end_of_night and o.detections_left != 0]


# ---------------------------------------------------------------------- alert records


def _recent(obj: _Object, now: float) -> list[_Point]:
    return [p for p in obj.history if now - HISTORY_DAYS <= p.time < now]


def _ztf_alert(sky: _Sky, obj: _Object, point: _Point) -> dict[str, Any]:
    rng = sky.rng
    name = sky.object_name(obj.number, obj.jdstarthist or point.time)
    assert point.mag is not None and point.alert_id is not None
    negative = rng.random() < obj.quality.get("negative", 0.0)
    host, solar = obj.host, obj.solar_system
    jd = point.time
    nid = int(jd - 2458000.5)
    field_id = 200 + (obj.number % 600)
    rcid = obj.number % 64
    pid = (int((jd - 2458000.5) * 1440) * 100 + rcid) * 10
    candidate = {
        "jd": jd,
        "fid": point.band,
        "pid": pid,
        "diffmaglim": point.limit,
        "programpi": "Kulkarni",
        "programid": 1,
        "candid": point.alert_id,
        "isdiffpos": "f" if negative else "t",
        "tblid": int(rng.integers(0, 100)),
        "nid": nid,
        "rcid": rcid,
        "field": field_id,
        "xpos": float(rng.uniform(10, 3070)),
        "ypos": float(rng.uniform(10, 3070)),
        "ra": point.ra,
        "dec": point.dec,
        "magpsf": point.mag,
        "sigmapsf": point.sigma,
        "chipsf": float(rng.uniform(0.5, 3.0)),
        "magap": point.mag + float(rng.normal(0, 0.05)),
        "sigmagap": (point.sigma or 0.1) * 1.2,
        "distnr": host.get("distnr"),
        "magnr": host.get("magnr"),
        "sigmagnr": host.get("sigmagnr"),
        "chinr": float(rng.uniform(0.5, 2.0)),
        "sharpnr": float(rng.normal(0.0, 0.1)),
        "sky": float(rng.normal(0.0, 1.0)),
        "fwhm": float(rng.uniform(1.5, 3.5)),
        "classtar": host.get("classtar"),
        "mindtoedge": float(rng.uniform(10, 1500)),
        "seeratio": float(rng.uniform(0.7, 1.3)),
        "elong": float(rng.uniform(1.0, 1.5)),
        "nneg": int(rng.integers(0, 6)),
        "nbad": int(obj.quality.get("nbad", 0)),
        "rb": point.rb,
        "ssdistnr": solar.get("ssdistnr", -999.0),
        "ssmagnr": solar.get("ssmagnr", -999.0),
        "ssnamenr": solar.get("ssnamenr"),
        "ranr": obj.ra,
        "decnr": obj.dec,
        "sgmag1": None if host.get("magnr") is None else host["magnr"] + 0.3,
        "srmag1": host.get("magnr"),
        "sgscore1": host.get("sgscore1"),
        "distpsnr1": host.get("distpsnr1"),
        "objectidps1": 100_000_000_000_000_000 + obj.number,
        "ndethist": obj.ndethist,
        "ncovhist": obj.ndethist + int(rng.integers(0, 50)),
        "jdstarthist": obj.jdstarthist,
        "jdendhist": jd,
        "tooflag": 0,
        "drb": min(1.0, max(0.0, (point.rb or 0.0) + float(rng.normal(0.0, 0.05)))),
        "rbversion": "t17_f5_c3",
        "drbversion": "d6_m7",
    }
    history = [
        {
            "jd": p.time,
            "fid": p.band,
            "pid": (int((p.time - 2458000.5) * 1440) * 100 + rcid) * 10,
            "diffmaglim": p.limit,
            "programid": 1,
            "candid": p.alert_id,
            "isdiffpos": "t" if p.mag is not None else None,
            "nid": int(p.time - 2458000.5),
            "rcid": rcid,
            "field": field_id,
            "ra": p.ra if p.mag is not None else None,
            "dec": p.dec if p.mag is not None else None,
            "magpsf": p.mag,
            "sigmapsf": p.sigma,
            "magnr": host.get("magnr") if p.mag is not None else None,
            "sigmagnr": host.get("sigmagnr") if p.mag is not None else None,
            "rb": p.rb,
            "nbad": int(obj.quality.get("nbad", 0)) if p.mag is not None else None,
            "ssdistnr": None,
            "ssmagnr": None,
            "ssnamenr": None,
        }
        for p in _recent(obj, jd)
    ]
    return {
        "schemavsn": "3.3",
        "publisher": "fink-k8s synthetic",
        "objectId": name,
        "candid": point.alert_id,
        "candidate": candidate,
        "prv_candidates": history or None,
        "cutoutScience": None,
        "cutoutTemplate": None,
        "cutoutDifference": None,
    }


def _flux(mag: float) -> float:
    return 10 ** ((LSST_ZERO_POINT - mag) / 2.5)


def _dia_source(sky: _Sky, obj: _Object, point: _Point, object_id: int) -> dict[str, Any]:
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


def _lsst_alert(sky: _Sky, obj: _Object, point: _Point) -> dict[str, Any]:
    object_id = DIA_OBJECT_BASE + sky.seed_block + obj.number
    source = _dia_source(sky, obj, point, object_id)
    previous = [
        _dia_source(sky, obj, p, object_id) for p in _recent(obj, point.time) if p.mag is not None
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
    ss_object = None
    if obj.ss_object_id is not None:
        ss_object = {
            "ssObjectId": obj.ss_object_id,
            "designation": obj.solar_system.get("ssnamenr"),
            "numObs": int(50 + obj.number % 500),
            "arc": float(1 + obj.number % 3000),
            "MOIDEarth": 0.5 + (obj.number % 100) / 50.0,
        }
    return {
        "alertId": point.alert_id,
        "diaSource": source,
        "prvDiaSources": previous or None,
        "diaObject": dia_object,
        "ssObject": ss_object,
        "cutoutDifference": None,
        "cutoutScience": None,
        "cutoutTemplate": None,
    }


# ---------------------------------------------------------------------- public API


def iter_alerts(
    survey: str = "ztf", seed: int = 0, start_jd: float = DEFAULT_START_JD
) -> Iterator[tuple[dict[str, Any], str]]:
    """An endless, lazy stream of (alert, class) in time order, nights rolling over."""
    sky = _Sky(survey, seed, start_jd)
    build = _ztf_alert if survey == "ztf" else _lsst_alert
    for index in range(-BURN_IN_NIGHTS, 0):  # histories before the first alert
        for _ in sky.night(index):
            pass
    index = 0
    while True:
        for obj, point, detected in sky.night(index):
            if detected:
                yield build(sky, obj, point), obj.kind
        index += 1


def generate_labelled(
    count: int, survey: str = "ztf", seed: int = 0, start_jd: float = DEFAULT_START_JD
) -> list[tuple[dict[str, Any], str]]:
    """The first `count` alerts of the stream with their class."""
    return list(islice(iter_alerts(survey, seed, start_jd), count))


def generate_alerts(
    count: int, survey: str = "ztf", seed: int = 0, start_jd: float = DEFAULT_START_JD
) -> list[dict[str, Any]]:
    """The first `count` alerts of the stream (nested dicts per the survey's schema)."""
    return [alert for alert, _ in generate_labelled(count, survey, seed, start_jd)]


# ---------------------------------------------------------------------- malformed


UNRELATED_SCHEMA = parse_schema(
    {
        "type": "record",
        "name": "reading",
        "namespace": "weather",
        "fields": [{"name": "station", "type": "string"}, {"name": "celsius", "type": "double"}],
    }
)


def _container(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    writer(buffer, parse_schema(schema), [record], codec="null")
    return buffer.getvalue()


def _ztf_variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema = copy.deepcopy(raw_schema("ztf"))
    change(schema)
    return schema


def _nullable_jd(schema: dict[str, Any]) -> None:
    candidate = next(f for f in schema["fields"] if f["name"] == "candidate")["type"]
    jd = next(f for f in candidate["fields"] if f["name"] == "jd")
    jd["type"] = ["null", "double"]


def _without_object_id(schema: dict[str, Any]) -> None:
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "objectId"]


def malformed_messages(count: int, survey: str, seed: int = 0) -> list[tuple[bytes, str]]:
    """`count` messages a broker must refuse, each with the category it should get.

    A mix of garbage (not-avro), cut messages (not-avro), the other survey's
    alerts and unrelated Avro records (wrong-schema), and alerts lacking a
    required field (missing-field).
    """
    rng = np.random.default_rng(seed + 1_000_003)
    other = "lsst" if survey == "ztf" else "ztf"
    goods = generate_alerts(8, survey, seed=seed + 77)
    others = generate_alerts(2, other, seed=seed + 78)
    messages: list[tuple[bytes, str]] = []
    for i in range(count):
        kind = i % 4
        alert = copy.deepcopy(goods[i % len(goods)])
        if kind == 0:
            if i % 8 == 0:
                junk = b'{"objectId": "ZTF24abcdefg", "jd": 2460400.7}'
            else:
                junk = bytes(rng.integers(1, 256, int(rng.integers(1, 400)), dtype=np.uint8))
            messages.append((junk, codec.NOT_AVRO))
        elif kind == 1:
            whole = codec.encode(alert, survey)
            cut = int(rng.integers(1, len(whole) - 1))
            messages.append((whole[:cut], codec.NOT_AVRO))
        elif kind == 2:
            choice = (i // 4) % 3
            if choice == 0:
                data = codec.encode(others[i % 2], other)
            elif choice == 1:
                record = {"station": "Palomar", "celsius": 11.5}
                data = _container(UNRELATED_SCHEMA, record)
                if survey == "lsst":  # wire format, but a schema id that is not ours
                    data = struct.pack(">bI", 0, 9999) + data[-20:]
            else:
                data = _container(UNRELATED_SCHEMA, {"station": "Cerro Pachon", "celsius": 9.0})
            messages.append((data, codec.WRONG_SCHEMA))
        else:
            if survey == "ztf":
                if (i // 4) % 2 == 0:
                    alert["candidate"]["jd"] = None
                    data = _container(_ztf_variant(_nullable_jd), alert)
                else:
                    del alert["objectId"]
                    data = _container(_ztf_variant(_without_object_id), alert)
            else:
                alert["diaSource"]["psfFlux"] = None
                data = codec.encode(alert, survey)
            messages.append((data, codec.MISSING_FIELD))
    return messages
