"""The built-in filters on hand-made frames of already enriched alerts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fink_pipeline.science import FILTERS


def enriched(**columns: list) -> pd.DataFrame:
    """Enriched alerts: a clean, young, rising, extragalactic-looking SN by default."""
    size = len(next(iter(columns.values())))
    base = {
        "quality_ok": [True] * size,
        "sso_flag": [False] * size,
        "roid": [0] * size,
        "ndethist": [3] * size,
        "days_since_first": [4.0] * size,
        "rise_rate": [0.3] * size,
        "decline_rate": [np.nan] * size,
        "mag_change": [-0.4] * size,
        "mag_rate": [-0.2] * size,
        "sgscore1": [0.1] * size,
        "distpsnr1": [8.0] * size,
    }
    base.update(columns)
    return pd.DataFrame(base)


def passes(name: str, frame: pd.DataFrame) -> list[bool]:
    mask = FILTERS[name].function(frame)
    assert mask.index.equals(frame.index)
    return mask.astype(bool).tolist()


def test_early_sn_candidates_keep_young_rising_clean_alerts() -> None:
    frame = enriched(quality_ok=[True, False, True, True, True, True, True, True])
    frame.loc[2, "days_since_first"] = 45.0  # too old
    frame.loc[3, ["mag_change", "decline_rate"]] = [0.5, 0.1]  # fading since its peak
    frame.loc[4, "sso_flag"] = True  # a known asteroid
    frame.loc[5, "roid"] = 2  # moves like one
    frame.loc[6, ["sgscore1", "distpsnr1"]] = [0.98, 0.4]  # on a star
    frame.loc[7, "rise_rate"] = np.nan  # never seen rising
    assert passes("early_sn_candidates", frame) == [True] + [False] * 7


def test_new_sso_candidates_are_finks_candidates_no_known_sso_explains() -> None:
    frame = enriched(roid=[2, 2, 2, 3, 0], quality_ok=[True, False, True, True, True])
    frame.loc[2, "sso_flag"] = True  # a known SSO within the pipeline's own radius
    assert passes("new_sso_candidates", frame) == [True, False, False, False, False]


def test_fast_transients_need_a_large_and_fast_change() -> None:
    frame = enriched(
        mag_change=[-1.2, 1.0, -0.1, -0.6, -1.5, np.nan],
        mag_rate=[-1.5, 2.0, -3.0, -0.2, -1.5, np.nan],
        sso_flag=[False, False, False, False, True, False],
    )
    assert passes("fast_transients", frame) == [True, True, False, False, False, False]
