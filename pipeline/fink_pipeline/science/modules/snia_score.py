"""An early type Ia supernova score: a small logistic model over light-curve features.

Not a trained model: its coefficients are set by hand from what an SN Ia looks
like in its first weeks, and fixed here so the score is reproducible and
readable. A young SN Ia brightens by roughly 0.1 to 0.3 mag/day, is blue to
neutral (g - r near 0), has been seen for days, not months, and has not started
to fade. Each feature below is bounded so that no single one dominates:

    rise      = clip(rise_rate, 0, 0.5)            (mag/day; NaN -> 0)
    too_fast  = clip(rise_rate - 0.5, 0, 2)        (kilonovae, flares, ...)
    colour    = clip(|color_gr|, 0, 2)             (NaN -> 0.3, uninformative)
    age       = clip(days_since_first / 10, 0, 10)
    fading    = clip(decline_rate, 0, 1)           (NaN -> 0)

    snia_score = 1 / (1 + exp(-(BIAS + sum(weight * feature))))

Fink's own SN Ia classifiers (fink-science's random forest on sigmoid features,
SuperNNova) need actsnfink and torch, which do not install here: see
docs/science.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fink_pipeline.science.registry import science_module

BIAS = -0.5
WEIGHTS = {"rise": 12.0, "too_fast": -8.0, "colour": -3.0, "age": -0.5, "fading": -3.0}
RISE_CAP = 0.5
NEUTRAL_COLOUR = 0.3


@science_module(
    "snia_score",
    surveys=("ztf", "lsst"),
    reads=("rise_rate", "decline_rate", "color_gr", "days_since_first"),
    writes={"snia_score": "double"},
)
def snia_score(frame: pd.DataFrame) -> pd.DataFrame:
    """Probability-like score (0..1) that the alert is a young, rising SN Ia."""
    rise_rate = frame["rise_rate"].to_numpy(np.float64)
    rise = np.clip(np.nan_to_num(rise_rate, nan=0.0), 0.0, RISE_CAP)
    too_fast = np.clip(np.nan_to_num(rise_rate, nan=0.0) - RISE_CAP, 0.0, 2.0)
    colour_gr = np.nan_to_num(frame["color_gr"].to_numpy(np.float64), nan=NEUTRAL_COLOUR)
    colour = np.clip(np.abs(colour_gr), 0.0, 2.0)
    days = np.nan_to_num(frame["days_since_first"].to_numpy(np.float64), nan=0.0)
    age = np.clip(days / 10.0, 0.0, 10.0)
    fading = np.clip(np.nan_to_num(frame["decline_rate"].to_numpy(np.float64), nan=0.0), 0, 1)
    z = (
        BIAS
        + WEIGHTS["rise"] * rise
        + WEIGHTS["too_fast"] * too_fast
        + WEIGHTS["colour"] * colour
        + WEIGHTS["age"] * age
        + WEIGHTS["fading"] * fading
    )
    return pd.DataFrame({"snia_score": 1.0 / (1.0 + np.exp(-z))}, index=frame.index)
