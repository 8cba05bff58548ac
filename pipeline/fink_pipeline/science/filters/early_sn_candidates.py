"""Early supernova candidates: young, rising, extragalactic-looking, not an asteroid.

In the spirit of Fink's early SN Ia filter, with the features this pipeline
computes rather than Fink's SuperNNova and random-forest scores (see
docs/science.md): a clean detection, of an object first seen at most
MAX_AGE_DAYS ago and detected at most MAX_DETECTIONS times, that is brighter
than at its previous detection in the band or still at its brightest, and is
neither a known or candidate solar-system object nor sitting on a star.
"""

from __future__ import annotations

import pandas as pd

from fink_pipeline.science.registry import science_filter

MAX_AGE_DAYS = 20.0  # SNe Ia take ~18 days to peak
MAX_DETECTIONS = 20  # Fink's early SN cut on ndethist
STAR_SGSCORE = 0.5  # PS1 star/galaxy score: above is star-like (Tachibana & Miller 2018)
STAR_DISTANCE_ARCSEC = 1.5  # a PS1 source this close is the transient's own counterpart


@science_filter(
    "early_sn_candidates",
    surveys=("ztf",),
    reads=(
        "quality_ok",
        "sso_flag",
        "roid",
        "ndethist",
        "days_since_first",
        "rise_rate",
        "decline_rate",
        "mag_change",
        "sgscore1",
        "distpsnr1",
    ),
)
def early_sn_candidates(alerts: pd.DataFrame) -> pd.Series:
    """Clean, young (<= 20 days), rising, not SSO, not on a star-like PS1 source."""
    young = (alerts["days_since_first"] <= MAX_AGE_DAYS) & (alerts["ndethist"] <= MAX_DETECTIONS)
    rose = alerts["rise_rate"] > 0
    still_rising = (alerts["mag_change"] < 0) | alerts["decline_rate"].isna()
    not_sso = ~alerts["sso_flag"] & (alerts["roid"] < 2)
    on_a_star = (
        (alerts["distpsnr1"] >= 0)
        & (alerts["distpsnr1"] <= STAR_DISTANCE_ARCSEC)
        & (alerts["sgscore1"] > STAR_SGSCORE)
    )
    return alerts["quality_ok"] & young & rose & still_rising & not_sso & ~on_a_star
