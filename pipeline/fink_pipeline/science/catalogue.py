"""Sky catalogues for cross-matching: loading, and a k-d tree index on unit vectors.

A catalogue is a CSV or Parquet file with at least the columns ra and dec (ICRS,
degrees), name and type (strings). Distances on the sphere become straight-line
(chord) distances between unit vectors, which a k-d tree answers exactly, so the
nearest source within a radius costs O(log n) per alert with no approximation.

Each process (the driver, every Spark Python worker) builds a catalogue's tree
once, on first use, and keeps it: a micro-batch only queries.

Two names stand for the full catalogues fink-science ships (its
data/catalogs/*.parquet): `gcvs` (the General Catalogue of Variable Stars,
59,099 stars) and `vsx` (AAVSO's Variable Star Index, 1,933,544 stars). Their
files carry positions and variability types but no names, so a match against
them has a type and no name.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import fink_science
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

import fink_pipeline

CATALOGUE_COLUMNS = ("ra", "dec", "name", "type")
SAMPLE_CATALOGUE = Path(fink_pipeline.__file__).parent / "data" / "gcvs_sample.csv"
ARCSEC = np.pi / (180.0 * 3600.0)
FINK_CATALOGS = Path(fink_science.__file__).parent / "data" / "catalogs"
# name -> (file, its ra column, its dec column, its type column)
SHIPPED: dict[str, tuple[Path, str, str, str]] = {
    "gcvs": (FINK_CATALOGS / "gcvs.parquet", "ra", "dec", "VarType"),
    "vsx": (FINK_CATALOGS / "vsx.parquet", "RAJ2000", "DEJ2000", "VType"),
}


@dataclass(frozen=True)
class Catalogue:
    """A loaded catalogue and its sky index."""

    path: str
    table: pd.DataFrame  # ra, dec, name, type
    tree: cKDTree

    def nearest(
        self, ra: np.ndarray, dec: np.ndarray, radius_arcsec: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row of the nearest source or -1, its distance in arcsec or NaN) per position."""
        valid = np.isfinite(ra) & np.isfinite(dec)
        rows = np.full(len(ra), -1, dtype=np.int64)
        distances = np.full(len(ra), np.nan)
        if not valid.any() or len(self.table) == 0:
            return rows, distances
        chord_radius = 2.0 * np.sin(radius_arcsec * ARCSEC / 2.0)
        chord, found = self.tree.query(
            unit_vectors(ra[valid], dec[valid]), k=1, distance_upper_bound=chord_radius
        )
        hit = np.isfinite(chord)
        angle = 2.0 * np.arcsin(np.clip(chord[hit] / 2.0, 0.0, 1.0)) / ARCSEC
        where = np.flatnonzero(valid)[hit]
        rows[where] = found[hit]
        distances[where] = angle
        return rows, distances


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """(n, 3) Cartesian unit vectors of sky positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cos_dec = np.cos(dec)
    return np.column_stack((cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)))


def _shipped_table(name: str) -> pd.DataFrame:
    """A catalogue fink-science ships, in our columns (no names in its files)."""
    location, ra, dec, kind = SHIPPED[name]
    if not location.is_file():
        raise ValueError(f"catalogue {name!r}: fink-science's file {location} is missing")
    raw = pd.read_parquet(location, columns=[ra, dec, kind])
    return pd.DataFrame(
        {
            "ra": raw[ra].to_numpy(np.float64),
            "dec": raw[dec].to_numpy(np.float64),
            "name": np.full(len(raw), None, dtype=object),
            "type": raw[kind].astype(object).where(raw[kind].notna(), None).to_numpy(),
        }
    )


def read_catalogue_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The ra, dec, name, type columns of a catalogue file (or of `gcvs`, `vsx`: the full
    catalogues fink-science ships); ValueError says what is wrong."""
    if str(path) in SHIPPED:
        return _shipped_table(str(path))
    location = Path(path)
    if not location.is_file():
        raise ValueError(f"catalogue file {str(location)!r} does not exist")
    if location.suffix.lower() == ".parquet":
        table = pd.read_parquet(location)
    else:
        table = pd.read_csv(location, dtype={"name": str, "type": str})
    missing = [c for c in CATALOGUE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"catalogue {str(location)!r} lacks column(s) {', '.join(missing)}; "
            f"a catalogue needs {', '.join(CATALOGUE_COLUMNS)} (ra and dec in degrees)"
        )
    table = table.loc[:, list(CATALOGUE_COLUMNS)].reset_index(drop=True)
    ra = pd.to_numeric(table["ra"], errors="coerce")
    dec = pd.to_numeric(table["dec"], errors="coerce")
    if ra.isna().any() or dec.isna().any() or (dec.abs() > 90).any():
        raise ValueError(f"catalogue {str(location)!r} has rows without a valid ra/dec in degrees")
    return table.assign(ra=ra.astype(np.float64), dec=dec.astype(np.float64))


_CACHE: dict[tuple[str, float], Catalogue] = {}
_LOCK = threading.Lock()


def load_catalogue(path: str | os.PathLike[str] = "") -> Catalogue:
    """The catalogue at `path` (the bundled sample when empty), index built once per process.

    A file changed on disk (new mtime) is read again.
    """
    if str(path) in SHIPPED:
        location = SHIPPED[str(path)][0]
        resolved = str(path)  # read by name: the columns are mapped
    else:
        location = Path(path) if str(path) else SAMPLE_CATALOGUE
        resolved = str(location.resolve())
    key = (resolved, location.stat().st_mtime if location.exists() else 0.0)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            table = read_catalogue_table(resolved)
            cached = Catalogue(
                path=resolved,
                table=table,
                tree=cKDTree(unit_vectors(table["ra"].to_numpy(), table["dec"].to_numpy())),
            )
            _CACHE[key] = cached
        return cached


def catalogue_positions(path: str | os.PathLike[str] = "") -> pd.DataFrame:
    """ra, dec, name, type of every source of a catalogue (the bundled sample by default).

    The alert generator places some of its variable stars on these positions, so
    that a cross-match in a demo or a test has something real to find.
    """
    return load_catalogue(path).table.copy()
