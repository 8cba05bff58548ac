"""Hand-made flat alert rows (one dict per alert) for the science tests.

`ztf_row` / `lsst_row` give a plain, clean alert with every flat column of the
contract; a test overrides only what its case is about. `random_ztf_rows` and
`random_lsst_rows` draw messy batches (upper limits, missing values, several
bands, asteroids, catalogue neighbours) for comparing the vectorised modules
with the per-alert baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fink_pipeline.science.catalogue import catalogue_positions

JD0 = 2460000.5


def ztf_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "objectId": "ZTF24aaaaaaa",
        "candid": 1,
        "jd": JD0 + 10.0,
        "fid": 1,
        "ra": 150.0,
        "dec": 20.0,
        "magpsf": 18.0,
        "sigmapsf": 0.05,
        "diffmaglim": 20.5,
        "isdiffpos": "t",
        "rb": 0.9,
        "drb": 0.99,
        "nbad": 0,
        "ndethist": 3,
        "ssdistnr": -999.0,
        "ssmagnr": -999.0,
        "ssnamenr": None,
        "distpsnr1": 10.0,
        "sgscore1": 0.1,
        "classtar": 0.9,
        "jdstarthist": JD0,
        "magnr": 21.0,
        "sigmagnr": 0.1,
        "programid": 1,
        "prv_jd": [],
        "prv_fid": [],
        "prv_magpsf": [],
        "prv_sigmapsf": [],
        "prv_diffmaglim": [],
    }
    row.update(overrides)
    return row


def lsst_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "diaSourceId": 1,
        "diaObjectId": 10,
        "midpointMjdTai": 60010.0,
        "ra": 150.0,
        "dec": -20.0,
        "band": "g",
        "psfFlux": 10000.0,
        "psfFluxErr": 100.0,
        "snr": 100.0,
        "reliability": 0.9,
        "ssObjectId": None,
        "prv_midpointMjdTai": [],
        "prv_band": [],
        "prv_psfFlux": [],
        "prv_psfFluxErr": [],
    }
    row.update(overrides)
    return row


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def random_ztf_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    sources = catalogue_positions()
    rows = []
    for i in range(count):
        n_prv = int(rng.integers(0, 8))
        jd = JD0 + 30.0 + float(rng.uniform(0, 1))
        prv_jd = sorted(jd - rng.uniform(0.001, 30.0, n_prv))
        prv_mag: list[float | None] = [
            None if rng.random() < 0.25 else float(rng.uniform(16, 21)) for _ in range(n_prv)
        ]
        kind = rng.random()
        ra, dec = float(rng.uniform(0, 360)), float(rng.uniform(-30, 90))
        if kind < 0.2:  # next to a catalogue source, within a few arcsec
            source = sources.iloc[int(rng.integers(0, len(sources)))]
            ra = float(source["ra"]) + float(rng.normal(0, 1.0)) / 3600.0
            dec = float(source["dec"]) + float(rng.normal(0, 1.0)) / 3600.0
        asteroid = kind > 0.85
        rows.append(
            ztf_row(
                candid=i,
                objectId=f"ZTF24{i:07d}",
                jd=jd,
                fid=int(rng.choice([1, 2, 3], p=[0.45, 0.45, 0.1])),
                ra=ra,
                dec=dec,
                magpsf=float(rng.uniform(16, 21)),
                rb=float(rng.uniform(0, 1)),
                nbad=int(rng.choice([0, 0, 0, 1])),
                ndethist=int(rng.integers(1, 12)),
                ssdistnr=float(rng.uniform(0, 12)) if asteroid else -999.0,
                ssmagnr=float(rng.uniform(17, 21)) if asteroid else -999.0,
                ssnamenr=f"{int(rng.integers(1, 99999))}" if asteroid else None,
                distpsnr1=float(rng.choice([-999.0, rng.uniform(0, 30)])),
                sgscore1=float(rng.uniform(0, 1)) if rng.random() > 0.1 else np.nan,
                prv_jd=[float(t) for t in prv_jd],
                prv_fid=[int(f) for f in rng.choice([1, 2], n_prv)],
                prv_magpsf=prv_mag,
                prv_sigmapsf=[0.1] * n_prv,
                prv_diffmaglim=[20.5] * n_prv,
            )
        )
    return rows


def random_lsst_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        n_prv = int(rng.integers(0, 8))
        now = 60030.0 + float(rng.uniform(0, 1))
        rows.append(
            lsst_row(
                diaSourceId=i,
                diaObjectId=1000 + i,
                midpointMjdTai=now,
                band=str(rng.choice(list("ugrizy"))),
                psfFlux=float(rng.normal(5000, 4000)),
                reliability=float(rng.uniform(0, 1)) if rng.random() > 0.05 else np.nan,
                ssObjectId=int(rng.integers(1, 10**9)) if rng.random() < 0.15 else None,
                ra=float(rng.uniform(0, 360)),
                dec=float(rng.uniform(-90, 10)),
                prv_midpointMjdTai=[float(t) for t in sorted(now - rng.uniform(0.01, 30, n_prv))],
                prv_band=[str(b) for b in rng.choice(list("gri"), n_prv)],
                prv_psfFlux=[float(f) for f in rng.normal(5000, 4000, n_prv)],
                prv_psfFluxErr=[100.0] * n_prv,
            )
        )
    return rows
