"""Cross-match every alert with a sky catalogue: the nearest source within a radius."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fink_pipeline.science.catalogue import load_catalogue, read_catalogue_table
from fink_pipeline.science.registry import Parameter, science_module

MAX_RADIUS_ARCSEC = 3600.0


def _check(parameters: Mapping[str, Any]) -> None:
    """The catalogue file must be readable where the pipeline runs (the operator cannot see it)."""
    if parameters["catalogue"]:
        read_catalogue_table(parameters["catalogue"])


@science_module(
    "crossmatch",
    surveys=("ztf", "lsst"),
    reads=("ra", "dec"),
    writes={"xm_name": "string", "xm_type": "string", "xm_distance_arcsec": "double"},
    parameters={
        "catalogue": Parameter(
            "",
            description="CSV/Parquet file (ra, dec, name, type); gcvs or vsx: the full "
            "catalogues fink-science ships (types, no names); empty: a GCVS sample",
        ),
        "radiusArcsec": Parameter(
            1.5,
            minimum=0,
            exclusive_minimum=True,
            maximum=MAX_RADIUS_ARCSEC,
            description="match radius, arcsec",
        ),
    },
    check=_check,
)
def crossmatch(frame: pd.DataFrame, catalogue: str = "", radiusArcsec: float = 1.5) -> pd.DataFrame:
    """Name, type and distance of the nearest catalogue source within radiusArcsec.

    `catalogue` is a CSV or Parquet file with columns ra, dec (degrees), name,
    type; empty means the GCVS sample bundled with the package. No match: nulls.
    """
    sources = load_catalogue(catalogue)
    rows, distances = sources.nearest(
        frame["ra"].to_numpy(np.float64), frame["dec"].to_numpy(np.float64), radiusArcsec
    )
    hit = rows >= 0
    names = sources.table["name"].to_numpy(dtype=object)
    types = sources.table["type"].to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "xm_name": np.where(hit, names[np.maximum(rows, 0)], None),
            "xm_type": np.where(hit, types[np.maximum(rows, 0)], None),
            "xm_distance_arcsec": distances,
        },
        index=frame.index,
    )
