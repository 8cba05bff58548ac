"""The simulated sky behind the synthetic streams, observed night after night.

The sky keeps a population of objects of five classes (the "truth" of
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

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
class Point:
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
class SkyObject:
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
    history: list[Point] = field(default_factory=list)
    detections_left: int = -1  # asteroids: number of sightings, then gone
    ss_object_id: int | None = None


class Sky:
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
        self.objects: list[SkyObject] = []
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

    def _supernova(self, now: float) -> SkyObject:
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
        return SkyObject(
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

    def _fast_transient(self, now: float) -> SkyObject:
        rng = self.rng
        rise, fade = float(rng.uniform(0.8, 2.0)), float(rng.uniform(0.6, 1.5))
        peak_time = now + float(rng.uniform(0.5, 2.5))
        peak_mag = self.depth - float(rng.uniform(1.0, 2.5))
        colour = {1: -0.25, 2: 0.0, 3: 0.1}

        def magnitude(t: float, band: int) -> float:
            slope = rise * (peak_time - t) if t < peak_time else fade * (t - peak_time)
            return peak_mag + slope + colour[band]

        ra, dec = self._position()
        return SkyObject(
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

    def _variable_star(self, now: float) -> SkyObject:
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
        star = SkyObject(
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

    def _asteroid(self, now: float, known: bool) -> SkyObject:
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
        asteroid = SkyObject(
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

    def _bogus(self, now: float) -> SkyObject:
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
        return SkyObject(
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

    def _visits(self, obj: SkyObject, night_start: float) -> list[tuple[float, int]]:
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

    def night(self, index: int) -> Iterator[tuple[SkyObject, Point, bool]]:
        """(object, point, detected) for every visit of night `index`, in time order.

        The point is appended to the object's history once the consumer of the
        iterator has built its alert (so the alert's history excludes it).
        """
        night_start = self.start_jd + index
        self._spawn(night_start)
        visits: list[tuple[float, int, SkyObject]] = []
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
            point = Point(
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


def recent(obj: SkyObject, now: float) -> list[Point]:
    """The visits of the last HISTORY_DAYS before `now`: what an alert carries as history."""
    return [p for p in obj.history if now - HISTORY_DAYS <= p.time < now]
