"""Synthetic alert streams: a small simulated sky, observed night after night.

The sky (sky.py: five classes of objects, their light curves, the survey's
visits; docs/alerts.md has the details) yields detections in time order,
nights rolling over; ztf_records.py and lsst_records.py turn each into the
alert its survey would send, and malformed.py makes the messages a broker must
refuse. Before the first alert the sky is simulated for BURN_IN_NIGHTS nights,
so that the very first alerts already carry histories. Everything is drawn
from one numpy generator: a seed gives the same stream every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from itertools import islice
from typing import Any

from fink_pipeline.alerts.lsst_records import lsst_alert
from fink_pipeline.alerts.sky import BURN_IN_NIGHTS, CLASSES, DEFAULT_START_JD, Sky
from fink_pipeline.alerts.ztf_records import ztf_alert

__all__ = ["CLASSES", "generate_alerts", "generate_labelled", "iter_alerts"]


def iter_alerts(
    survey: str = "ztf", seed: int = 0, start_jd: float = DEFAULT_START_JD, cutouts: bool = True
) -> Iterator[tuple[dict[str, Any], str]]:
    """An endless, lazy stream of (alert, class) in time order, nights rolling over.

    Alerts carry their three cutouts unless `cutouts=False` (stamps.py: a pool
    made once per seed, so a packet weighs what a real one does at almost no cost);
    the cutouts come from their own random stream, so the alerts are the same
    either way. Rubin alerts carry the same stamps as bare bytes fields.
    """
    sky = Sky(survey, seed, start_jd)
    stamp_seed = seed if cutouts else None
    if survey == "ztf":
        build = partial(ztf_alert, stamp_seed=stamp_seed)
    else:
        build = partial(lsst_alert, stamp_seed=stamp_seed)
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
    count: int,
    survey: str = "ztf",
    seed: int = 0,
    start_jd: float = DEFAULT_START_JD,
    cutouts: bool = True,
) -> list[tuple[dict[str, Any], str]]:
    """The first `count` alerts of the stream with their class."""
    return list(islice(iter_alerts(survey, seed, start_jd, cutouts), count))


def generate_alerts(
    count: int,
    survey: str = "ztf",
    seed: int = 0,
    start_jd: float = DEFAULT_START_JD,
    cutouts: bool = True,
) -> list[dict[str, Any]]:
    """The first `count` alerts of the stream (nested dicts per the survey's schema)."""
    return [alert for alert, _ in generate_labelled(count, survey, seed, start_jd, cutouts)]


# ---------------------------------------------------------------------- malformed
