"""Real/bogus and quality cuts, as a flag: no alert is dropped, filters read `quality_ok`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fink_pipeline.science.fink_packages import fink_ztf_quality_cuts
from fink_pipeline.science.registry import Parameter, science_module

FINK_MIN_RB = 0.55  # the threshold fink-filters' ztf_quality_cuts_ hard-codes
ZTF_I_BAND = 3  # ZTF's i band, too sparse for Fink's science


@science_module(
    "quality_cuts",
    surveys=("ztf",),
    reads=("nbad", "rb", "fid"),
    writes={"quality_ok": "boolean"},
    parameters={
        "minRb": Parameter(FINK_MIN_RB, minimum=0, maximum=1, description="real/bogus score cut")
    },
)
def ztf_quality_cuts(frame: pd.DataFrame, minRb: float = FINK_MIN_RB) -> pd.DataFrame:
    """Fink's ZTF cuts: no bad pixel (nbad == 0), real/bogus rb >= minRb, not the i band.

    With the default threshold the rb and nbad part is fink-filters' own
    `ztf_quality_cuts_` when that package is installed.
    """
    fink_cuts = fink_ztf_quality_cuts()
    if fink_cuts is not None and minRb == FINK_MIN_RB:
        clean = np.asarray(fink_cuts(frame["rb"].fillna(-1.0), frame["nbad"].fillna(-1)), bool)
    else:
        clean = (frame["rb"].to_numpy(np.float64) >= minRb) & (
            frame["nbad"].to_numpy(np.float64) == 0
        )
    not_i = frame["fid"].to_numpy(np.float64) != ZTF_I_BAND
    return pd.DataFrame({"quality_ok": clean & not_i}, index=frame.index)


@science_module(
    "quality_cuts",
    surveys=("lsst",),
    reads=("reliability",),
    writes={"quality_ok": "boolean"},
    parameters={
        "minReliability": Parameter(0.5, minimum=0, maximum=1, description="reliability cut")
    },
)
def lsst_quality_cuts(frame: pd.DataFrame, minReliability: float = 0.5) -> pd.DataFrame:
    """Rubin's machine-learned reliability score at least minReliability (NaN fails)."""
    reliable = frame["reliability"].to_numpy(np.float64) >= minReliability
    return pd.DataFrame({"quality_ok": reliable}, index=frame.index)
