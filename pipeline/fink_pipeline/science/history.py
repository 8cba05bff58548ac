"""Light curves of a batch of alerts as flat arrays, for vectorised features.

Each alert carries its history as array columns (prv_*), one ragged list per
row. Looping over rows in Python is what makes per-alert code slow; instead the
whole batch's points are laid end to end in a few numpy arrays, sorted by
(row, time), and per-alert quantities become segment reductions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

# ZTF filter ids; LSST bands are mapped onto the same small integers
ZTF_G, ZTF_R = 1, 2
LSST_BANDS = {"u": 0, "g": 1, "r": 2, "i": 3, "z": 4, "y": 5}
# AB magnitude of a flux in nanojansky (LSST fluxes): m = 31.4 - 2.5 log10(f / nJy)
NJY_ZERO_POINT = 31.4


@dataclass(frozen=True)
class Detections:
    """Every detection of a batch (history and current alert), sorted by row then time."""

    rows: np.ndarray  # int64, the alert (0..n-1) each point belongs to
    times: np.ndarray  # float64, days
    bands: np.ndarray  # int64
    mags: np.ndarray  # float64, never NaN
    count: int  # number of alerts in the batch
    now: np.ndarray  # float64 per alert, the time of the current alert
    band_now: np.ndarray  # float64 per alert, its band (NaN if unknown)
    detected_now: np.ndarray  # bool per alert: the current alert is a detection (last point)


def ragged(column: pd.Series, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(values laid end to end, length of each row); a null row counts as empty.

    Arrow does the flattening in C++ whether the cells are numpy arrays (what
    Spark's mapInPandas hands over) or Python lists holding None (upper limits,
    which become NaN).
    """
    value_type = pa.float64() if dtype is float else pa.string()
    lists = pa.array(column.to_numpy(dtype=object), type=pa.list_(value_type), from_pandas=True)
    lengths = lists.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    flat = lists.flatten().to_numpy(zero_copy_only=False)
    if dtype is float:
        return flat.astype(np.float64, copy=False), lengths.astype(np.int64)
    return flat.astype(object), lengths.astype(np.int64)


def ztf_detections(frame: pd.DataFrame) -> Detections:
    """Detections of ZTF alerts: prv_candidates with a magnitude, then the candidate."""
    prv_jd, lengths = ragged(frame["prv_jd"], float)
    prv_fid, _ = ragged(frame["prv_fid"], float)
    prv_mag, _ = ragged(frame["prv_magpsf"], float)
    current = (
        frame["jd"].to_numpy(np.float64),
        frame["fid"].to_numpy(np.float64),
        frame["magpsf"].to_numpy(np.float64),
    )
    return _assemble(lengths, (prv_jd, prv_fid, prv_mag), current)


def lsst_detections(frame: pd.DataFrame) -> Detections:
    """Detections of LSST alerts: positive-flux diaSources turned into AB magnitudes."""
    prv_time, lengths = ragged(frame["prv_midpointMjdTai"], float)
    prv_band, _ = ragged(frame["prv_band"], object)
    prv_flux, _ = ragged(frame["prv_psfFlux"], float)
    current = (
        frame["midpointMjdTai"].to_numpy(np.float64),
        _band_numbers(frame["band"].to_numpy(dtype=object)),
        flux_to_mag(frame["psfFlux"].to_numpy(np.float64)),
    )
    history = (prv_time, _band_numbers(prv_band), flux_to_mag(prv_flux))
    return _assemble(lengths, history, current)


def flux_to_mag(flux: np.ndarray) -> np.ndarray:
    """AB magnitude of nanojansky fluxes; NaN where the flux is not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, NJY_ZERO_POINT - 2.5 * np.log10(flux), np.nan)


def _band_numbers(bands: np.ndarray) -> np.ndarray:
    return pd.Series(bands, dtype=object).map(LSST_BANDS).to_numpy(np.float64)


def _assemble(
    lengths: np.ndarray,
    history: tuple[np.ndarray, np.ndarray, np.ndarray],
    current: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Detections:
    count = len(lengths)
    rows = np.concatenate([np.repeat(np.arange(count), lengths), np.arange(count)])
    times = np.concatenate([history[0], current[0]])
    bands = np.concatenate([history[1], current[1]])
    mags = np.concatenate([history[2], current[2]])
    # a detection has a magnitude and comes before the alert it travels with
    is_current = np.arange(len(rows)) >= len(rows) - count
    keep = ~np.isnan(mags) & ~np.isnan(times) & ~np.isnan(bands)
    keep &= is_current | (times < current[0][rows])
    order = np.lexsort((is_current[keep], times[keep], rows[keep]))
    return Detections(
        rows=rows[keep][order],
        times=times[keep][order],
        bands=bands[keep][order].astype(np.int64),
        mags=mags[keep][order],
        count=count,
        now=current[0],
        band_now=current[1],
        detected_now=keep[len(rows) - count :],
    )


def first_per_row(rows: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """The first value of each row's segment (rows sorted), NaN for empty rows."""
    out = np.full(count, np.nan)
    if len(rows):
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        out[rows[starts]] = values[starts]
    return out


def last_per_row(rows: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """The last value of each row's segment (rows sorted), NaN for empty rows."""
    out = np.full(count, np.nan)
    if len(rows):
        ends = np.flatnonzero(np.r_[rows[1:] != rows[:-1], True])
        out[rows[ends]] = values[ends]
    return out


def before_last_per_row(rows: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """The next-to-last value of each row's segment, NaN for rows with fewer than two."""
    out = np.full(count, np.nan)
    if len(rows) > 1:
        ends = np.flatnonzero(np.r_[rows[1:] != rows[:-1], True])
        ends = ends[ends > 0]
        previous = ends - 1
        same = rows[previous] == rows[ends]
        out[rows[ends[same]]] = values[previous[same]]
    return out


def with_current(history: pd.Series, current: pd.Series) -> pd.Series:
    """Per alert, an array of its history values followed by the current one.

    This is the layout of Fink's c* columns (cjd, cmagpsf, ...), which the
    fink-science functions we call take as input.
    """
    flat, lengths = ragged(history, float)
    ends = np.cumsum(lengths + 1)
    combined = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.float64)
    is_current = np.zeros(len(combined), dtype=bool)
    is_current[ends - 1] = True
    combined[is_current] = current.to_numpy(np.float64)
    combined[~is_current] = flat
    starts = (ends - lengths - 1).tolist()
    return pd.Series([combined[a:b] for a, b in zip(starts, ends.tolist(), strict=True)])
