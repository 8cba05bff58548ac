"""Each built-in module on hand-made alerts whose right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from science_rows import JD0, frame_of, lsst_row, random_ztf_rows, ztf_row

from fink_pipeline.science import MODULES
from fink_pipeline.science.catalogue import SHIPPED, catalogue_positions, load_catalogue
from fink_pipeline.science.fink_packages import fink_fast_transient_rate, fink_roid_catcher
from fink_pipeline.science.modules.solar_system import roid_rules


def run(name: str, rows: list[dict], survey: str = "ztf", **parameters: object) -> pd.DataFrame:
    module = MODULES[name].for_survey(survey)
    frame = frame_of(rows)
    out = module.function(frame, **{**module.defaults, **parameters})
    assert list(out.columns) == list(module.writes)
    assert out.index.equals(frame.index)
    return out


# quality cuts -------------------------------------------------------------------------


def test_quality_cuts_apply_each_of_finks_ztf_cuts() -> None:
    rows = [
        ztf_row(),  # clean
        ztf_row(nbad=1),  # a bad pixel
        ztf_row(rb=0.54),  # bogus-looking
        ztf_row(rb=0.55),  # exactly at the threshold: kept
        ztf_row(fid=3),  # i band
        ztf_row(rb=np.nan),  # no score: not trusted
    ]
    assert run("quality_cuts", rows)["quality_ok"].tolist() == [
        True,
        False,
        False,
        True,
        False,
        False,
    ]


def test_quality_cuts_threshold_is_a_parameter() -> None:
    rows = [ztf_row(rb=0.9), ztf_row(rb=0.97)]
    assert run("quality_cuts", rows, minRb=0.95)["quality_ok"].tolist() == [False, True]


def test_lsst_quality_cut_is_on_reliability() -> None:
    rows = [lsst_row(reliability=0.9), lsst_row(reliability=0.2), lsst_row(reliability=np.nan)]
    assert run("quality_cuts", rows, survey="lsst")["quality_ok"].tolist() == [True, False, False]


# light-curve features ----------------------------------------------------------------


def rising_g_band_supernova() -> dict:
    """g: 20.0 at day 0, 19.0 at day 2, an upper limit at day 3, 18.0 now at day 4; r: 18.5 at day 3."""
    return ztf_row(
        jd=JD0 + 4.0,
        fid=1,
        magpsf=18.0,
        prv_jd=[JD0, JD0 + 2.0, JD0 + 3.0, JD0 + 3.0],
        prv_fid=[1, 1, 1, 2],
        prv_magpsf=[20.0, 19.0, None, 18.5],
        prv_sigmapsf=[0.1, 0.1, None, 0.1],
        prv_diffmaglim=[21.0, 21.0, 20.0, 21.0],
    )


def test_lightcurve_features_of_a_constructed_rise() -> None:
    out = run("lightcurve_features", [rising_g_band_supernova()]).iloc[0]
    assert out["n_detections"] == 4  # three g detections (one upper limit ignored) and one r
    assert out["rise_rate"] == pytest.approx((20.0 - 18.0) / 4.0)  # 0.5 mag/day
    assert math.isnan(out["decline_rate"])  # still at its brightest
    assert out["mag_change"] == pytest.approx(-1.0)  # one magnitude brighter than day 2
    assert out["mag_rate"] == pytest.approx(-0.5)
    assert out["color_gr"] == pytest.approx(18.0 - 18.5)
    assert out["days_since_first"] == pytest.approx(4.0)


def test_lightcurve_features_of_a_decline_after_peak() -> None:
    row = ztf_row(
        jd=JD0 + 20.0,
        fid=2,
        magpsf=19.0,
        prv_jd=[JD0, JD0 + 10.0],
        prv_fid=[2, 2],
        prv_magpsf=[19.5, 17.0],
    )
    out = run("lightcurve_features", [row]).iloc[0]
    assert out["rise_rate"] == pytest.approx(2.5 / 10.0)
    assert out["decline_rate"] == pytest.approx(2.0 / 10.0)
    assert out["mag_change"] == pytest.approx(2.0)
    assert math.isnan(out["color_gr"])  # never seen in g


def test_lightcurve_features_of_a_first_detection() -> None:
    out = run("lightcurve_features", [ztf_row()]).iloc[0]
    assert out["n_detections"] == 1
    assert out["days_since_first"] == 0.0
    for feature in ("rise_rate", "decline_rate", "mag_change", "mag_rate", "color_gr"):
        assert math.isnan(out[feature]), feature


def test_lsst_lightcurve_features_use_ab_magnitudes_of_fluxes() -> None:
    def flux(mag: float) -> float:
        return 10 ** ((31.4 - mag) / 2.5)  # nanojansky

    row = lsst_row(
        midpointMjdTai=60010.0,
        band="r",
        psfFlux=flux(19.0),
        prv_midpointMjdTai=[60000.0, 60005.0, 60008.0],
        prv_band=["r", "r", "g"],
        prv_psfFlux=[flux(21.0), -50.0, flux(18.8)],  # a negative flux is no detection
    )
    out = run("lightcurve_features", [row], survey="lsst").iloc[0]
    assert out["n_detections"] == 3
    assert out["rise_rate"] == pytest.approx(2.0 / 10.0)
    assert out["color_gr"] == pytest.approx(18.8 - 19.0)


# solar-system objects ----------------------------------------------------------------


def test_solar_system_flags_a_known_asteroid_and_not_others() -> None:
    rows = [
        ztf_row(ssdistnr=1.2, ssmagnr=19.5, ssnamenr="4179", ndethist=1),  # Toutatis, 1.2"
        ztf_row(),  # nothing known nearby: -999
        ztf_row(ssdistnr=7.0, ssmagnr=19.5, ssnamenr="433"),  # beyond 5"
    ]
    out = run("solar_system", rows)
    assert out["sso_flag"].tolist() == [True, False, False]
    assert out["sso_name"].tolist() == ["4179", None, None]
    assert out["roid"].tolist()[0] == 3
    wider = run("solar_system", rows, maxDistanceArcsec=10.0)
    assert wider["sso_flag"].tolist() == [True, False, True]


def test_roid_codes_follow_finks_rules() -> None:
    rows = [
        ztf_row(ndethist=1, sgscore1=0.9, distpsnr1=-999.0),  # first sighting, star-like
        ztf_row(ndethist=1, sgscore1=0.1, distpsnr1=-999.0),  # point-like, new: SSO candidate
        ztf_row(ndethist=1, sgscore1=0.1, distpsnr1=2.0),  # on a PS1 source: not moving
        # seen twice, 2 days apart: not moving within the night
        ztf_row(ndethist=2, sgscore1=0.1, distpsnr1=-999.0, prv_jd=[JD0 + 8.0], prv_magpsf=[18.1]),
    ]
    assert roid_rules(frame_of(rows)).tolist() == [1, 2, 0, 0]
    assert run("solar_system", rows)["roid"].tolist() == [1, 2, 0, 0]


def test_our_roid_rules_agree_with_fink_science_roid_catcher() -> None:
    """docs/science.md: without fink-science our rules run, 'tested equal' to its roid_catcher.

    Never skipped: if fink-science stopped importing, solar_system would run our
    rules and this comparison would compare them with themselves.
    """
    assert fink_roid_catcher() is not None, "fink-science's roid_catcher does not import"
    frame = frame_of(random_ztf_rows(400, seed=7))
    from_fink = run("solar_system", random_ztf_rows(400, seed=7))["roid"].to_numpy()
    assert set(from_fink) >= {0, 1, 2, 3}
    np.testing.assert_array_equal(roid_rules(frame), from_fink)


def test_lsst_solar_system_uses_rubins_association() -> None:
    frame = frame_of([lsst_row(), lsst_row()])
    frame["ssObjectId"] = pd.array([2**62 + 5, None], dtype="Int64")  # a nullable long column
    out = MODULES["solar_system"].for_survey("lsst").function(frame)
    assert out["sso_flag"].tolist() == [True, False]
    assert out["sso_name"].tolist() == [str(2**62 + 5), None]  # exact 64-bit id


# cross-match -------------------------------------------------------------------------


def test_crossmatch_hits_a_catalogue_source_and_misses_beyond_the_radius() -> None:
    source = catalogue_positions().iloc[42]
    one_arcsec = 1.0 / 3600.0
    rows = [
        ztf_row(ra=source["ra"], dec=source["dec"] + one_arcsec),  # 1" north
        ztf_row(ra=source["ra"], dec=source["dec"] + 3 * one_arcsec),  # 3" north
    ]
    out = run("crossmatch", rows, radiusArcsec=1.5)
    assert out["xm_name"].tolist() == [source["name"], None]
    assert out["xm_type"].tolist() == [source["type"], None]
    assert out["xm_distance_arcsec"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(out["xm_distance_arcsec"].iloc[1])
    assert run("crossmatch", rows, radiusArcsec=5.0)["xm_name"].tolist() == [source["name"]] * 2


def test_crossmatch_reads_a_given_catalogue_and_picks_the_nearest(tmp_path) -> None:
    path = tmp_path / "mini.csv"
    path.write_text(
        "ra,dec,name,type\n"
        "359.9997,10.0,V1 Psc,RRAB\n"  # across ra = 0 from the alert: 2.0" * cos(10 deg) away
        "0.0,10.0006,V2 Psc,EW\n"  # 2.16" north
    )
    row = ztf_row(ra=0.0002, dec=10.0)
    out = run("crossmatch", [row], catalogue=str(path), radiusArcsec=3.0).iloc[0]
    assert out["xm_name"] == "V1 Psc"
    expected = 0.0005 * 3600 * math.cos(math.radians(10.0))
    assert out["xm_distance_arcsec"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("name", "ra", "dec", "kind", "stars"),
    [("gcvs", "ra", "dec", "VarType", 59_099), ("vsx", "RAJ2000", "DEJ2000", "VType", 1_933_544)],
)
def test_crossmatch_with_the_full_catalogues_fink_science_ships(
    name: str, ra: str, dec: str, kind: str, stars: int
) -> None:
    """`catalogue: gcvs|vsx` reads fink-science's own files: their stars and types, no names."""
    raw = pd.read_parquet(SHIPPED[name][0], columns=[ra, dec, kind])
    assert len(load_catalogue(name).table) == len(raw) == stars
    star = raw.iloc[1234]
    rows = [
        ztf_row(ra=star[ra], dec=star[dec] + 0.5 / 3600),  # half an arcsec north
        ztf_row(ra=(star[ra] + 90.0) % 360.0, dec=-star[dec]),  # another part of the sky
    ]
    out = run("crossmatch", rows, catalogue=name, radiusArcsec=1.0)
    assert out["xm_type"].iloc[0] == star[kind]
    assert out["xm_name"].iloc[0] is None
    assert out["xm_distance_arcsec"].iloc[0] <= 0.5 + 1e-6
    assert out["xm_type"].iloc[1] is None  # no star within 1" there (odds ~1e-5)


def test_the_sky_index_is_built_once_per_catalogue() -> None:
    assert load_catalogue() is load_catalogue("")
    assert len(load_catalogue().table) >= 300


# classifier --------------------------------------------------------------------------


def test_snia_score_follows_its_documented_coefficients() -> None:
    features = pd.DataFrame(
        {
            "rise_rate": [0.25, 0.02, 2.0],
            "decline_rate": [np.nan, 0.01, np.nan],
            "color_gr": [0.0, 0.9, -0.1],
            "days_since_first": [5.0, 28.0, 0.5],
        }
    )
    score = MODULES["snia_score"].function(features)["snia_score"]
    # young SN-like: z = -0.5 + 12 * 0.25 - 3 * 0 - 0.5 * 0.5 = 2.25
    assert score.iloc[0] == pytest.approx(1.0 / (1.0 + math.exp(-2.25)))
    assert score.iloc[0] > 0.5 > score.iloc[1]  # an old, red, flat variable
    assert score.iloc[2] < 0.5  # too fast for a supernova


# fink-science's fast transient rate --------------------------------------------------


def test_fink_fast_transient_rate_measures_a_rise_and_a_rise_from_an_upper_limit() -> None:
    assert fink_fast_transient_rate() is not None, (
        "fink-science's fast_transient_rate fails to import"
    )
    rows = [
        # 19.0 at day 10.0, 18.0 at day 10.5 (same band): -2 mag/day
        ztf_row(
            jd=JD0 + 10.5,
            jdstarthist=JD0 + 10.0,
            prv_jd=[JD0 + 10.0],
            prv_fid=[1],
            prv_magpsf=[19.0],
            prv_sigmapsf=[0.05],
            prv_diffmaglim=[20.5],
        ),
        # an upper limit at 20.5 half a day ago, after an old detection: at least -5 mag/day
        ztf_row(
            jd=JD0 + 10.5,
            jdstarthist=JD0 + 10.5,
            prv_jd=[JD0 + 8.0, JD0 + 10.0],
            prv_fid=[1, 1],
            prv_magpsf=[19.0, None],
            prv_sigmapsf=[0.05, None],
            prv_diffmaglim=[20.5, 20.5],
        ),
        ztf_row(),  # nothing before: no rate
    ]
    out = run("fast_transient_rate", rows)
    assert out["ft_mag_rate"].iloc[0] == pytest.approx(-2.0, abs=0.1)
    assert out["ft_from_upper"].tolist() == [False, True, False]
    assert out["ft_mag_rate"].iloc[1] < -4.5
    assert out["ft_delta_time"].iloc[:2].tolist() == pytest.approx([0.5, 0.5])
    assert math.isnan(out["ft_mag_rate"].iloc[2])


def test_quality_cuts_give_the_same_answer_with_and_without_fink_filters(monkeypatch) -> None:
    from fink_pipeline.science.modules import quality_cuts

    assert quality_cuts.fink_ztf_quality_cuts() is not None, "fink-filters does not import"
    rows = random_ztf_rows(300, seed=9)
    with_fink = run("quality_cuts", rows)["quality_ok"].tolist()
    monkeypatch.setattr(quality_cuts, "fink_ztf_quality_cuts", lambda: None)
    assert run("quality_cuts", rows)["quality_ok"].tolist() == with_fink
    assert 0 < sum(with_fink) < len(with_fink)


def test_snia_score_ranks_a_young_supernova_above_other_light_curves() -> None:
    days = np.arange(0.0, 8.0, 1.0)  # nightly, alternating g and r, current at day 8

    def curve(mags: np.ndarray, colour: float) -> dict:
        """mags[:-1] on the nights of `days`, mags[-1] now; g is `colour` fainter than r."""
        fids = [1 + int(d) % 2 for d in days]
        history = [m + (colour if f == 1 else 0.0) for m, f in zip(mags[:-1], fids, strict=True)]
        return ztf_row(
            jd=JD0 + days[-1] + 1.0,
            fid=1,
            magpsf=float(mags[-1] + colour),
            prv_jd=[JD0 + d for d in days],
            prv_fid=fids,
            prv_magpsf=[float(m) for m in history],
        )

    times = np.append(days, days[-1] + 1.0)
    supernova = curve(20.5 - 0.2 * times, colour=0.0)  # 0.2 mag/day, g - r = 0
    variable = curve(17.0 + 0.3 * np.sin(2 * np.pi * times / 0.6), colour=0.8)
    flare = curve(np.where(times < 6, 21.0, 21.0 - 2.0 * (times - 5)), colour=-0.2)
    asteroid = ztf_row()  # a single detection
    rows = [supernova, variable, flare, asteroid]
    frame = frame_of(rows)
    frame = frame.join(MODULES["lightcurve_features"].for_survey("ztf").function(frame))
    score = MODULES["snia_score"].function(frame)["snia_score"]
    assert score.iloc[0] > 0.5
    assert (score.iloc[1:] < 0.5).all(), score.tolist()
