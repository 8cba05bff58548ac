"""New solar-system object candidates: moving, point-like, unknown to the MPC.

Fink's roid code 2 (see modules/solar_system.py) marks what moves like an
asteroid: seen at most twice, both times within 30 minutes, point-like (PS1
sgscore1 < 0.76) and with no PS1 source within 5". A new candidate is such an
alert that passes the quality cuts and that no known SSO explains (no sso_flag).
The roid == 2 test is fink-filters' own sso_fink_candidates_ when installed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fink_pipeline.science.fink_packages import fink_sso_candidates
from fink_pipeline.science.registry import science_filter

FINK_SSO_CANDIDATE = 2


@science_filter(
    "new_sso_candidates",
    surveys=("ztf",),
    reads=("quality_ok", "sso_flag", "roid"),
)
def new_sso_candidates(alerts: pd.DataFrame) -> pd.Series:
    """Clean alerts Fink flags as SSO candidates (roid == 2) that no known SSO explains."""
    fink_rule = fink_sso_candidates()
    if fink_rule is not None:
        candidate = pd.Series(np.asarray(fink_rule(alerts["roid"]), bool), index=alerts.index)
    else:
        candidate = alerts["roid"] == FINK_SSO_CANDIDATE
    return alerts["quality_ok"] & ~alerts["sso_flag"] & candidate
