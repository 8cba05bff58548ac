"""Light-curve features from the alert's history: what a classifier or a filter needs.

All rates are in magnitudes per day over detections (points with a magnitude;
upper limits are ignored) in the band of the current alert, current included:

- n_detections: detections in any band, the current one included;
- color_gr: latest g magnitude minus latest r magnitude (NaN without both);
- rise_rate: (first magnitude - peak magnitude) / (peak time - first time):
  how fast it brightened to its peak, positive; NaN if the first point is the peak;
- decline_rate: (current magnitude - peak magnitude) / (now - peak time):
  how fast it faded since its peak, positive; NaN if the current point is the peak;
- mag_change: current magnitude minus the previous one in the band
  (negative: brighter); mag_rate: that change divided by the days between them;
- days_since_first: days since the first detection in the history.

Magnitudes are those the survey gives in its alerts: ZTF's difference-image PSF
magnitudes; for LSST the AB magnitude of a positive difference flux.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fink_pipeline.science.history import (
    ZTF_G,
    ZTF_R,
    Detections,
    before_last_per_row,
    first_per_row,
    last_per_row,
    lsst_detections,
    ztf_detections,
)
from fink_pipeline.science.registry import science_module

FEATURES = {
    "n_detections": "int",
    "color_gr": "double",
    "rise_rate": "double",
    "decline_rate": "double",
    "mag_change": "double",
    "mag_rate": "double",
    "days_since_first": "double",
}


@science_module(
    "lightcurve_features",
    surveys=("ztf",),
    reads=("jd", "fid", "magpsf", "prv_jd", "prv_fid", "prv_magpsf"),
    writes=FEATURES,
)
def ztf_lightcurve_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Colour, rise and decline rates, magnitude change and age from ZTF prv_candidates."""
    return features(ztf_detections(frame), frame)


@science_module(
    "lightcurve_features",
    surveys=("lsst",),
    reads=(
        "midpointMjdTai",
        "band",
        "psfFlux",
        "prv_midpointMjdTai",
        "prv_band",
        "prv_psfFlux",
    ),
    writes=FEATURES,
)
def lsst_lightcurve_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Colour, rise and decline rates, magnitude change and age from LSST prvDiaSources."""
    return features(lsst_detections(frame), frame)


def features(points: Detections, frame: pd.DataFrame) -> pd.DataFrame:
    """The features of every alert of a batch, from its detections laid end to end."""
    n = points.count
    rows, times, bands, mags = points.rows, points.times, points.bands, points.mags
    n_detections = np.bincount(rows, minlength=n)

    latest = {}
    for band in (ZTF_G, ZTF_R):
        in_band = bands == band
        latest[band] = last_per_row(rows[in_band], mags[in_band], n)

    # the current alert, when a detection, is the last point of its row; its band
    # picks the light curve the rates are measured on
    now = points.now
    band_now = np.where(points.detected_now, points.band_now, np.nan)
    same = bands == band_now[rows]
    s_rows, s_times, s_mags = rows[same], times[same], mags[same]
    current_mag = last_per_row(s_rows, s_mags, n)
    previous_mag = before_last_per_row(s_rows, s_mags, n)
    previous_time = before_last_per_row(s_rows, s_times, n)
    first_mag = first_per_row(s_rows, s_mags, n)
    first_time = first_per_row(s_rows, s_times, n)

    # the peak: the brightest point, the earliest of equals
    by_brightness = np.lexsort((s_times, s_mags, s_rows))
    peak_mag = first_per_row(s_rows[by_brightness], s_mags[by_brightness], n)
    peak_time = first_per_row(s_rows[by_brightness], s_times[by_brightness], n)

    with np.errstate(divide="ignore", invalid="ignore"):
        rise_rate = np.where(
            peak_time > first_time, (first_mag - peak_mag) / (peak_time - first_time), np.nan
        )
        decline_rate = np.where(
            now > peak_time, (current_mag - peak_mag) / (now - peak_time), np.nan
        )
        mag_change = current_mag - previous_mag
        mag_rate = np.where(now > previous_time, mag_change / (now - previous_time), np.nan)

    return pd.DataFrame(
        {
            "n_detections": n_detections.astype(np.int32),
            "color_gr": latest[ZTF_G] - latest[ZTF_R],
            "rise_rate": rise_rate,
            "decline_rate": decline_rate,
            "mag_change": mag_change,
            "mag_rate": mag_rate,
            "days_since_first": now - first_per_row(rows, times, n),
        },
        index=frame.index,
    )
