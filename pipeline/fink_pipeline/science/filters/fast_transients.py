"""Fast transients: alerts whose brightness changed by a lot within a day.

THIS FILE IS THE TEMPLATE FOR A NEW FILTER. Copy it, rename it, change the rule.

A filter is one function of alert columns that returns one boolean per alert:
True sends the alert (with every column the modules added) to the filter's own
Kafka topic. Four things make a good filter:

1. The decorator registers it under a name (the name pipelines list under
   `filters:`) and declares every column it reads. The pipeline is checked
   against that list before it runs: reading a column no module writes is an
   error with a message, not a crash at 3 a.m.
2. It works on whole columns at once (pandas/numpy comparisons, `&`, `|`, `~`),
   never `for` loops over alerts: a micro-batch holds thousands of alerts.
3. Thresholds are named constants with their unit, so a reader sees the science.
4. It tolerates missing values: a comparison with NaN is False, and a null
   answer counts as "not selected".

Test it on a frame you build by hand, without Spark or Kafka (see
tests/pipeline/science/test_science_filters.py):

    frame = pd.DataFrame({"quality_ok": [True, True], "sso_flag": [False, False],
                          "mag_change": [-1.2, -0.1], "mag_rate": [-1.5, -0.1]})
    assert fast_transients(frame).tolist() == [True, False]

and in a pipeline with `plan_for("ztf", [...modules...], ["fast_transients"])`
followed by `enrich` and `select` on generated alerts.
"""

from __future__ import annotations

import pandas as pd

from fink_pipeline.science.registry import science_filter

MIN_RATE_MAG_PER_DAY = 0.5  # faster than any supernova rises or fades
MIN_CHANGE_MAG = 0.3  # well above ZTF's photometric noise (~0.1 mag)


@science_filter(
    "fast_transients",
    surveys=("ztf", "lsst"),
    reads=("quality_ok", "sso_flag", "mag_change", "mag_rate"),
)
def fast_transients(alerts: pd.DataFrame) -> pd.Series:
    """Good alerts, not asteroids, that brightened or faded fast since the last detection."""
    fast = alerts["mag_rate"].abs() >= MIN_RATE_MAG_PER_DAY
    large = alerts["mag_change"].abs() >= MIN_CHANGE_MAG
    return alerts["quality_ok"] & ~alerts["sso_flag"] & fast & large
