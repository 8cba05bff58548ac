"""Solar-system objects: known asteroids flagged, new ones spotted, the Fink way.

ZTF already names the nearest known solar-system object (ssnamenr) with its
distance (ssdistnr, arcsec; -999 when none) and magnitude (ssmagnr). An alert
is a *known* SSO (sso_flag) when that object lies within maxDistanceArcsec and
has a real magnitude. `roid` is Fink's asteroid code, computed by fink-science's
own `roid_catcher` when that package is installed (else by the same rules here):
3 known SSO (MPC within 5"), 2 SSO candidate found by Fink (point-like, seen at
most twice, no PS1 source within 5", both sightings within 30 min), 1 first
sighting of the object, 0 not an SSO.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fink_pipeline.science.fink_packages import fink_roid_catcher
from fink_pipeline.science.history import last_per_row, ragged, with_current
from fink_pipeline.science.registry import Parameter, science_module

SSO_OUTPUT = {"sso_flag": "boolean", "sso_name": "string", "roid": "int"}
# Fink's constants in roid_catcher
ROID_MPC_ARCSEC = 5.0
ROID_STAR_SGSCORE = 0.76
ROID_PS1_ARCSEC = 5.0
ROID_SAME_NIGHT_DAYS = 30.0 / (24.0 * 60.0)


MAX_DISTANCE = {
    "maxDistanceArcsec": Parameter(
        5.0, minimum=0, exclusive_minimum=True, description="association radius, arcsec"
    )
}


@science_module(
    "solar_system",
    surveys=("ztf",),
    reads=(
        "ssdistnr",
        "ssmagnr",
        "ssnamenr",
        "jd",
        "magpsf",
        "ndethist",
        "sgscore1",
        "distpsnr1",
        "prv_jd",
        "prv_magpsf",
    ),
    writes=SSO_OUTPUT,
    parameters=MAX_DISTANCE,
)
def ztf_solar_system(frame: pd.DataFrame, maxDistanceArcsec: float = 5.0) -> pd.DataFrame:
    """Known SSO flag and name from ssdistnr/ssmagnr, and Fink's roid code."""
    distance = frame["ssdistnr"].to_numpy(np.float64)
    magnitude = frame["ssmagnr"].to_numpy(np.float64)
    known = (distance >= 0) & (distance <= maxDistanceArcsec) & (magnitude > 0)
    names = frame["ssnamenr"].to_numpy(dtype=object)
    named = known & pd.notna(names) & (names != "null")
    return pd.DataFrame(
        {
            "sso_flag": known,
            "sso_name": np.where(named, names, None),
            "roid": roid(frame),
        },
        index=frame.index,
    )


@science_module(
    "solar_system",
    surveys=("lsst",),
    reads=("ssObjectId",),
    writes=SSO_OUTPUT,
    parameters=MAX_DISTANCE,
)
def lsst_solar_system(frame: pd.DataFrame, maxDistanceArcsec: float = 5.0) -> pd.DataFrame:
    """Rubin associates known SSOs itself (ssObjectId); roid is 3 for them, else 0.

    maxDistanceArcsec is accepted for symmetry with ZTF; Rubin's association
    radius is its own.
    """
    ids = pd.array(frame["ssObjectId"], dtype="Int64")  # exact 64-bit ids, nulls kept
    known = (ids.fillna(0) != 0).to_numpy(dtype=bool)
    names = np.where(known, ids.fillna(0).astype(str), None)
    return pd.DataFrame(
        {"sso_flag": known, "sso_name": names, "roid": np.where(known, 3, 0).astype(np.int32)},
        index=frame.index,
    )


def roid(frame: pd.DataFrame) -> np.ndarray:
    """Fink's roid code per ZTF alert: fink-science's function if installed, else ours."""
    fink_catcher = fink_roid_catcher()
    if fink_catcher is None:
        return roid_rules(frame)
    cjd = with_current(frame["prv_jd"], frame["jd"])
    cmag = with_current(frame["prv_magpsf"], frame["magpsf"])
    codes = fink_catcher(
        cjd,
        cmag,
        frame["ndethist"].reset_index(drop=True),
        frame["sgscore1"].reset_index(drop=True),
        frame["ssdistnr"].reset_index(drop=True),
        frame["distpsnr1"].reset_index(drop=True),
    )
    return np.asarray(codes, dtype=np.int32)


def roid_rules(frame: pd.DataFrame) -> np.ndarray:
    """The rules of fink-science's roid_catcher, vectorised over the batch."""
    n = len(frame)
    prv_mag, lengths = ragged(frame["prv_magpsf"], float)
    prv_jd, _ = ragged(frame["prv_jd"], float)
    rows = np.repeat(np.arange(n), lengths)
    jd = frame["jd"].to_numpy(np.float64)
    mag = frame["magpsf"].to_numpy(np.float64)
    measured = np.bincount(rows, weights=~np.isnan(prv_mag), minlength=n).astype(np.int64)
    n_alerts = measured + ~np.isnan(mag)
    last_gap = jd - last_per_row(rows, prv_jd, n)

    ndethist = frame["ndethist"].to_numpy(np.float64)
    sgscore1 = frame["sgscore1"].to_numpy(np.float64)
    ssdistnr = frame["ssdistnr"].to_numpy(np.float64)
    distpsnr1 = frame["distpsnr1"].to_numpy(np.float64)

    codes = np.zeros(n, dtype=np.int32)
    codes[ndethist == 1] = 1
    codes[(sgscore1 < ROID_STAR_SGSCORE) & (ndethist <= 2)] = 2
    codes[(distpsnr1 > 0) & (distpsnr1 < ROID_PS1_ARCSEC)] = 0
    codes[(n_alerts == 2) & (last_gap > ROID_SAME_NIGHT_DAYS)] = 0
    codes[(ndethist == 2) & (n_alerts == 1)] = 0
    with np.errstate(invalid="ignore"):
        known = (
            (ssdistnr >= 0)
            & (ssdistnr < ROID_MPC_ARCSEC)
            & (np.abs(distpsnr1) - ssdistnr > 0)
            & (ndethist <= 5)
            & (n_alerts <= 5)
        )
    codes[known] = 3
    return codes
