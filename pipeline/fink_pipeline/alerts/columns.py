"""The flat columns every alert is decoded into, per survey, with their Spark SQL types.

Science modules and filters read these names; the decoder produces exactly
these columns in this order; the stream declares them to Spark. One table here
keeps the three in step. History (ZTF prv_candidates, LSST prvDiaSources)
becomes array columns named prv_<field>, one element per previous point;
ZTF upper limits keep their place with a null prv_magpsf.
"""

from __future__ import annotations

from collections.abc import Mapping

ZTF_COLUMNS: Mapping[str, str] = {
    "objectId": "string",
    "candid": "bigint",
    "jd": "double",
    "fid": "int",
    "ra": "double",
    "dec": "double",
    "magpsf": "double",
    "sigmapsf": "double",
    "diffmaglim": "double",
    "isdiffpos": "string",
    "rb": "double",
    "drb": "double",
    "nbad": "int",
    "ndethist": "int",
    "ssdistnr": "double",
    "ssmagnr": "double",
    "ssnamenr": "string",
    "distpsnr1": "double",
    "sgscore1": "double",
    "classtar": "double",
    "jdstarthist": "double",
    "magnr": "double",
    "sigmagnr": "double",
    "programid": "int",
    "prv_jd": "array<double>",
    "prv_fid": "array<int>",
    "prv_magpsf": "array<double>",
    "prv_sigmapsf": "array<double>",
    "prv_diffmaglim": "array<double>",
}

LSST_COLUMNS: Mapping[str, str] = {
    "diaSourceId": "bigint",
    "diaObjectId": "bigint",
    "midpointMjdTai": "double",
    "ra": "double",
    "dec": "double",
    "band": "string",
    "psfFlux": "double",
    "psfFluxErr": "double",
    "snr": "double",
    "reliability": "double",
    "ssObjectId": "bigint",
    "prv_midpointMjdTai": "array<double>",
    "prv_band": "array<string>",
    "prv_psfFlux": "array<double>",
    "prv_psfFluxErr": "array<double>",
}

# An alert's three cutouts (image stamps), as columns of the decoded frame when
# asked for (codec.decode_batch(..., cutouts=True)): the stampData bytes of each,
# None when the alert has none. Never among the columns above: science does not
# read them, and only HBase stores them (spec.sinks.hbase.cutouts: store).
CUTOUT_COLUMNS: Mapping[str, str] = {
    "cutoutScience": "binary",
    "cutoutTemplate": "binary",
    "cutoutDifference": "binary",
}

# The columns that name one alert and one object, per survey: HBase row keys,
# Parquet file layout and the tests' exactly-once checks are built on them.
ALERT_ID = {"ztf": "candid", "lsst": "diaSourceId"}
OBJECT_ID = {"ztf": "objectId", "lsst": "diaObjectId"}
TIME = {"ztf": "jd", "lsst": "midpointMjdTai"}

_BY_SURVEY = {"ztf": ZTF_COLUMNS, "lsst": LSST_COLUMNS}


def columns_for(survey: str) -> Mapping[str, str]:
    """Column name -> Spark SQL type of a survey's decoded alerts, in order."""
    try:
        return _BY_SURVEY[survey]
    except KeyError:
        raise ValueError(
            f"unknown survey {survey!r}; known surveys: {', '.join(_BY_SURVEY)}"
        ) from None


def julian_date(survey: str, time: float) -> float:
    """An alert's time as a Julian date (LSST gives MJD TAI, close enough for nights)."""
    return time if survey == "ztf" else time + 2400000.5
