"""ZTF alert records (schema 3.3) built from the simulated sky's detections."""

from __future__ import annotations

from typing import Any

from fink_pipeline.alerts.sky import Point, Sky, SkyObject, recent
from fink_pipeline.alerts.stamps import stamps_for


def ztf_alert(
    sky: Sky, obj: SkyObject, point: Point, stamp_seed: int | None = None
) -> dict[str, Any]:
    """The alert ZTF would send for this detection, with 30 days of history.

    With a `stamp_seed` it carries the three cutouts, picked from that seed's
    pool (stamps.py), as ZTF's packets do; without, the three cutout fields are
    null (a packet of a few KB).
    """
    rng = sky.rng
    name = sky.object_name(obj.number, obj.jdstarthist or point.time)
    assert point.mag is not None and point.alert_id is not None
    negative = rng.random() < obj.quality.get("negative", 0.0)
    host, solar = obj.host, obj.solar_system
    jd = point.time
    nid = int(jd - 2458000.5)
    field_id = 200 + (obj.number % 600)
    rcid = obj.number % 64
    pid = (int((jd - 2458000.5) * 1440) * 100 + rcid) * 10
    candidate = {
        "jd": jd,
        "fid": point.band,
        "pid": pid,
        "diffmaglim": point.limit,
        "programpi": "Kulkarni",
        "programid": 1,
        "candid": point.alert_id,
        "isdiffpos": "f" if negative else "t",
        "tblid": int(rng.integers(0, 100)),
        "nid": nid,
        "rcid": rcid,
        "field": field_id,
        "xpos": float(rng.uniform(10, 3070)),
        "ypos": float(rng.uniform(10, 3070)),
        "ra": point.ra,
        "dec": point.dec,
        "magpsf": point.mag,
        "sigmapsf": point.sigma,
        "chipsf": float(rng.uniform(0.5, 3.0)),
        "magap": point.mag + float(rng.normal(0, 0.05)),
        "sigmagap": (point.sigma or 0.1) * 1.2,
        "distnr": host.get("distnr"),
        "magnr": host.get("magnr"),
        "sigmagnr": host.get("sigmagnr"),
        "chinr": float(rng.uniform(0.5, 2.0)),
        "sharpnr": float(rng.normal(0.0, 0.1)),
        "sky": float(rng.normal(0.0, 1.0)),
        "fwhm": float(rng.uniform(1.5, 3.5)),
        "classtar": host.get("classtar"),
        "mindtoedge": float(rng.uniform(10, 1500)),
        "seeratio": float(rng.uniform(0.7, 1.3)),
        "elong": float(rng.uniform(1.0, 1.5)),
        "nneg": int(rng.integers(0, 6)),
        "nbad": int(obj.quality.get("nbad", 0)),
        "rb": point.rb,
        "ssdistnr": solar.get("ssdistnr", -999.0),
        "ssmagnr": solar.get("ssmagnr", -999.0),
        "ssnamenr": solar.get("ssnamenr"),
        "ranr": obj.ra,
        "decnr": obj.dec,
        "sgmag1": None if host.get("magnr") is None else host["magnr"] + 0.3,
        "srmag1": host.get("magnr"),
        "sgscore1": host.get("sgscore1"),
        "distpsnr1": host.get("distpsnr1"),
        "objectidps1": 100_000_000_000_000_000 + obj.number,
        "ndethist": obj.ndethist,
        "ncovhist": obj.ndethist + int(rng.integers(0, 50)),
        "jdstarthist": obj.jdstarthist,
        "jdendhist": jd,
        "tooflag": 0,
        "drb": min(1.0, max(0.0, (point.rb or 0.0) + float(rng.normal(0.0, 0.05)))),
        "rbversion": "t17_f5_c3",
        "drbversion": "d6_m7",
    }
    history = [
        {
            "jd": p.time,
            "fid": p.band,
            "pid": (int((p.time - 2458000.5) * 1440) * 100 + rcid) * 10,
            "diffmaglim": p.limit,
            "programid": 1,
            "candid": p.alert_id,
            "isdiffpos": "t" if p.mag is not None else None,
            "nid": int(p.time - 2458000.5),
            "rcid": rcid,
            "field": field_id,
            "ra": p.ra if p.mag is not None else None,
            "dec": p.dec if p.mag is not None else None,
            "magpsf": p.mag,
            "sigmapsf": p.sigma,
            "magnr": host.get("magnr") if p.mag is not None else None,
            "sigmagnr": host.get("sigmagnr") if p.mag is not None else None,
            "rb": p.rb,
            "nbad": int(obj.quality.get("nbad", 0)) if p.mag is not None else None,
            "ssdistnr": None,
            "ssmagnr": None,
            "ssnamenr": None,
        }
        for p in recent(obj, jd)
    ]
    stamps = {"cutoutScience": None, "cutoutTemplate": None, "cutoutDifference": None}
    if stamp_seed is not None:
        triple = stamps_for(stamp_seed, point.mag, point.alert_id)
        prefix = f"candid{point.alert_id}_pid{pid}_targ"
        stamps = {
            "cutoutScience": {"fileName": f"{prefix}_sci.fits.gz", "stampData": triple.science},
            "cutoutTemplate": {"fileName": f"{prefix}_ref.fits.gz", "stampData": triple.template},
            "cutoutDifference": {
                "fileName": f"{prefix}_diff.fits.gz",
                "stampData": triple.difference,
            },
        }
    return {
        "schemavsn": "3.3",
        "publisher": "fink-k8s synthetic",
        "objectId": name,
        "candid": point.alert_id,
        "candidate": candidate,
        "prv_candidates": history or None,
        **stamps,
    }
