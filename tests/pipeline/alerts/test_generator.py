"""The generator: deterministic, unique ids, honest histories, every class, filters find them."""

from __future__ import annotations

import collections
import gzip
import io
from itertools import islice

import numpy as np
import pytest

from fink_pipeline.alerts import codec
from fink_pipeline.alerts.generator import CLASSES, generate_labelled, iter_alerts
from fink_pipeline.science import enrich, plan_for, select

HISTORY_DAYS = 30.0


@pytest.fixture(scope="module")
def ztf_labelled() -> list[tuple[dict, str]]:
    return generate_labelled(2000, "ztf", seed=0)


def test_a_seed_gives_the_same_stream() -> None:
    assert generate_labelled(50, "ztf", seed=2) == generate_labelled(50, "ztf", seed=2)
    assert generate_labelled(50, "ztf", seed=2) != generate_labelled(50, "ztf", seed=3)


def test_ztf_ids_unique_times_increase_histories_are_the_objects_past(ztf_labelled) -> None:
    alerts = [a for a, _ in ztf_labelled]
    candids = [a["candid"] for a in alerts]
    assert len(set(candids)) == len(candids)
    pairs = [(a["objectId"], a["candidate"]["jd"]) for a in alerts]
    assert len(set(pairs)) == len(pairs)
    times = [a["candidate"]["jd"] for a in alerts]
    assert times == sorted(times) and times[-1] - times[0] > 2  # nights roll over
    seen: dict[str, set[float]] = collections.defaultdict(set)
    for alert in alerts:
        now = alert["candidate"]["jd"]
        for point in alert["prv_candidates"] or []:
            assert now - HISTORY_DAYS <= point["jd"] < now
            if point["magpsf"] is not None and point["jd"] >= times[0]:
                # a detection during the stream was an alert of the same object
                assert point["jd"] in seen[alert["objectId"]]
        seen[alert["objectId"]].add(now)
    with_history = sum(1 for a in alerts if a["prv_candidates"])
    assert with_history > len(alerts) / 3


def test_lsst_ids_unique_and_histories_of_the_same_object() -> None:
    alerts = [a for a, _ in islice(iter_alerts("lsst", seed=1), 800)]
    sources = [a["diaSource"]["diaSourceId"] for a in alerts]
    assert len(set(sources)) == len(sources)
    pairs = [(a["diaSource"]["diaObjectId"], a["diaSource"]["midpointMjdTai"]) for a in alerts]
    assert len(set(pairs)) == len(pairs)
    for alert in alerts:
        now = alert["diaSource"]["midpointMjdTai"]
        for point in alert["prvDiaSources"] or []:
            assert point["diaObjectId"] == alert["diaSource"]["diaObjectId"]
            assert now - HISTORY_DAYS <= point["midpointMjdTai"] < now


def test_every_class_with_plausible_values(ztf_labelled) -> None:
    by_class = collections.defaultdict(list)
    for alert, label in ztf_labelled:
        by_class[label].append(alert["candidate"])
    assert set(by_class) == set(CLASSES)
    assert all(len(v) >= 100 for v in by_class.values())
    asteroids = by_class["asteroid"]
    known = [c for c in asteroids if c["ssnamenr"] is not None]
    assert known and all(0 <= c["ssdistnr"] <= 3 and c["ssmagnr"] > 0 for c in known)
    new = [c for c in asteroids if c["ssnamenr"] is None]
    assert new and all(c["ssdistnr"] == -999 and c["ndethist"] <= 2 for c in new)
    bogus = by_class["bogus"]
    assert all(c["rb"] < 0.3 or c["nbad"] > 0 for c in bogus)
    assert any(c["isdiffpos"] == "f" for c in bogus)
    stars = by_class["variable_star"]
    assert all(c["sgscore1"] > 0.8 and c["distpsnr1"] < 1 for c in stars)
    assert all(c["sgscore1"] < 0.5 or c["distpsnr1"] > 1.5 for c in by_class["sn_like"])


def test_the_science_filters_find_their_classes(ztf_labelled) -> None:
    alerts = [a for a, _ in ztf_labelled]
    labels = np.array([label for _, label in ztf_labelled])
    frame = codec.decode_batch([codec.encode(a, "ztf") for a in alerts], "ztf").frame
    plan = plan_for(
        "ztf",
        ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch"],
        ["early_sn_candidates", "new_sso_candidates", "fast_transients"],
    )
    enriched = enrich(frame, plan)
    assert not enriched["quality_ok"][labels == "bogus"].any()
    assert enriched["quality_ok"][labels != "bogus"].mean() > 0.85
    rise = enriched["rise_rate"][labels == "sn_like"].dropna()
    assert 0.08 < rise.median() < 0.5
    assert enriched["sso_flag"][labels == "asteroid"].mean() > 0.4
    assert enriched["xm_name"][labels == "variable_star"].notna().sum() > 20
    expected = {
        "early_sn_candidates": "sn_like",
        "new_sso_candidates": "asteroid",
        "fast_transients": "fast_transient",
    }
    for name, mask in select(enriched, plan).items():
        chosen = labels[mask.to_numpy()]
        assert len(chosen) >= 0.03 * len(labels), name
        assert (chosen == expected[name]).mean() > 0.7, (name, collections.Counter(chosen))


def test_the_class_mix_and_the_filters_share_are_the_documented_ones(ztf_labelled) -> None:
    """docs/alerts.md gives the mix of classes and what each built-in filter selects."""
    shares = collections.Counter(label for _, label in ztf_labelled)
    share = {label: count / len(ztf_labelled) for label, count in shares.items()}
    assert 0.27 <= share["sn_like"] <= 0.35, share
    assert 0.15 <= share["variable_star"] <= 0.20, share
    assert 0.15 <= share["asteroid"] <= 0.20, share
    assert 0.12 <= share["fast_transient"] <= 0.15, share
    assert 0.20 <= share["bogus"] <= 0.25, share

    alerts = [a for a, _ in ztf_labelled]
    frame = codec.decode_batch([codec.encode(a, "ztf") for a in alerts], "ztf").frame
    plan = plan_for(
        "ztf",
        ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch"],
        ["early_sn_candidates", "new_sso_candidates", "fast_transients"],
    )
    selected = {n: m.mean() for n, m in select(enrich(frame, plan), plan).items()}
    assert abs(selected["early_sn_candidates"] - 0.12) < 0.015, selected
    assert abs(selected["new_sso_candidates"] - 0.07) < 0.015, selected
    assert abs(selected["fast_transients"] - 0.06) < 0.015, selected


# --- cutouts: ZTF packets weigh what ZTF's do ------------------------------------------------

STAMPS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
SUFFIXES = {"cutoutScience": "sci", "cutoutTemplate": "ref", "cutoutDifference": "diff"}


def test_ztf_packets_carry_three_fits_stamps_and_weigh_60_to_75_kb(ztf_labelled) -> None:
    fits = pytest.importorskip("astropy.io.fits")
    alerts = [a for a, _ in ztf_labelled]
    sizes = np.array([len(codec.encode(a, "ztf")) for a in alerts])
    # real ZTF packets (schema 3.3, three cutouts) weigh 60-75 KB
    assert sizes.min() >= 60_000 and sizes.max() <= 75_000, (sizes.min(), sizes.max())
    seen: set[bytes] = set()
    bright = 0
    for alert in alerts[:60]:
        candidate = alert["candidate"]
        for field in STAMPS:
            cutout = alert[field]
            assert cutout["fileName"] == (
                f"candid{alert['candid']}_pid{candidate['pid']}_targ_{SUFFIXES[field]}.fits.gz"
            )
            data = cutout["stampData"]
            assert data[:2] == b"\x1f\x8b"  # gzip
            raw = gzip.decompress(data)
            assert len(raw) % 2880 == 0 and raw[:30] == b"SIMPLE  =                    T"
            with fits.open(io.BytesIO(raw)) as hdus:  # as Fink reads them: gunzip, then FITS
                hdus.verify("exception")
                image = hdus[0].data
                assert hdus[0].header["BITPIX"] == -32 and image.shape == (63, 63)
            assert image.dtype.kind == "f" and np.isfinite(image).all()
            if field == "cutoutScience" and candidate["magpsf"] < 19.5:
                # a PSF-like source at the centre, well above the noise around it (fainter
                # ones, near the 5-sigma limit, stand out in the aperture, not in one pixel)
                centre = image[29:34, 29:34].max()
                border = np.concatenate([image[:8].ravel(), image[-8:].ravel()])
                assert centre > np.median(border) + 3 * border.std()
                bright += 1
            seen.add(data)
    assert (
        bright >= 5 and len(seen) > 10
    )  # stamps differ between alerts, not one image copied everywhere


def test_without_cutouts_the_same_alerts_come_light() -> None:
    heavy = generate_labelled(200, "ztf", seed=5)
    light = generate_labelled(200, "ztf", seed=5, cutouts=False)
    for (with_stamps, kind), (without, same_kind) in zip(heavy, light, strict=True):
        assert kind == same_kind
        assert all(without[f] is None for f in STAMPS)
        assert {k: v for k, v in with_stamps.items() if k not in STAMPS} == {
            k: v for k, v in without.items() if k not in STAMPS
        }
    assert max(len(codec.encode(a, "ztf")) for a, _ in light) < 15_000
