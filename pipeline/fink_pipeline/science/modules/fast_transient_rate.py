"""Fink's fast transient rate, run by fink-science's own code.

fink-science's `fast_transient_rate` measures the magnitude rate between the
current alert and the last measurement in the same band, using the last upper
limit when it is more recent than the last detection (a source that appears
from nowhere), and estimates the rate's error by sampling both magnitudes
`samples` times. This module only lays our flat columns out the way that
function wants them (Fink's c* arrays: history then current) and renames its
outputs with an ft_ prefix.

It needs fink-science, fink-utils and astropy installed; a pipeline that lists
it without them is refused at plan time, with the command that fixes it.

ft_mag_rate and ft_sigma_rate are the mean and spread of Monte Carlo samples.
With a fixed seed they are reproducible for a given batch, but they depend on
the batch: fink-science draws the samples for all alerts from one generator and
shifts every flux sample by the batch-wide minimum. So the same alert can get
slightly different values in a different micro-batch (a few hundredths of a
mag/day in our tests); ft_delta_time and ft_from_upper do not depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fink_pipeline.science.fink_packages import fink_fast_transient_rate
from fink_pipeline.science.history import with_current
from fink_pipeline.science.registry import Parameter, science_module

OUTPUT = {
    "ft_mag_rate": "double",
    "ft_sigma_rate": "double",
    "ft_delta_time": "double",
    "ft_from_upper": "boolean",
}


def _check(parameters: Mapping[str, Any]) -> None:
    if fink_fast_transient_rate() is None:
        raise ValueError(
            "module fast_transient_rate runs fink-science's own code, which is not importable "
            "here: pip install fink-science fink-utils astropy line_profiler"
        )


@science_module(
    "fast_transient_rate",
    surveys=("ztf",),
    reads=(
        "fid",
        "jd",
        "jdstarthist",
        "magpsf",
        "sigmapsf",
        "diffmaglim",
        "prv_fid",
        "prv_jd",
        "prv_magpsf",
        "prv_sigmapsf",
        "prv_diffmaglim",
    ),
    writes=OUTPUT,
    parameters={
        "samples": Parameter(1000, minimum=10, description="Monte Carlo draws per alert"),
        "seed": Parameter(2023, description="random seed of the draws"),
    },
    check=_check,
)
def fast_transient_rate(frame: pd.DataFrame, samples: int = 1000, seed: int = 2023) -> pd.DataFrame:
    """Magnitude rate (mag/day) since the last detection or upper limit, with its error."""
    compute = fink_fast_transient_rate()
    if compute is None:  # the plan refuses this; a direct call gets the same message
        _check({"samples": samples})
    if len(frame) == 0:  # fink-science's function fails on an empty batch
        return pd.DataFrame({c: pd.Series(dtype=object) for c in OUTPUT}, index=frame.index)
    fink_frame = pd.DataFrame(
        {
            "fid": frame["fid"].to_numpy(),
            "jd": frame["jd"].to_numpy(np.float64),
            "jdstarthist": frame["jdstarthist"].to_numpy(np.float64),
            "magpsf": frame["magpsf"].to_numpy(np.float64),
            "sigmapsf": frame["sigmapsf"].to_numpy(np.float64),
        }
    )
    for name in ("fid", "jd", "magpsf", "sigmapsf", "diffmaglim"):
        fink_frame[f"c{name}"] = with_current(frame[f"prv_{name}"], frame[name])
    result = compute(fink_frame, samples, seed)  # type: ignore[misc]
    return pd.DataFrame(
        {
            "ft_mag_rate": result["mag_rate"].to_numpy(np.float64),
            "ft_sigma_rate": result["sigma_rate"].to_numpy(np.float64),
            "ft_delta_time": result["delta_time"].to_numpy(np.float64),
            "ft_from_upper": result["from_upper"].fillna(0).to_numpy().astype(bool),
        },
        index=frame.index,
    )
