"""The vectorised modules and the per-alert baseline compute the same values."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from science_rows import frame_of, random_lsst_rows, random_ztf_rows

from fink_pipeline.science import baseline, enrich, plan_for, select

ALL_MODULES = ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch", "snia_score"]


def same(vectorised: Any, per_alert: Any) -> bool:
    if per_alert is None or (isinstance(per_alert, float) and math.isnan(per_alert)):
        return vectorised is None or (isinstance(vectorised, float) and math.isnan(vectorised))
    if isinstance(per_alert, float):
        return math.isclose(vectorised, per_alert, rel_tol=1e-9, abs_tol=1e-9)
    return vectorised == per_alert


def assert_agree(survey: str, rows: list[dict[str, Any]], modules: list[Any]) -> pd.DataFrame:
    plan = plan_for(survey, modules)
    enriched = enrich(frame_of([dict(r) for r in rows]), plan)
    alerts = [dict(r) for r in rows]
    for module, parameters in plan.modules:
        baseline.run_module(module.name, survey, alerts, parameters)
    for column in plan.added_columns():
        values = enriched[column].tolist()
        differing = [
            (i, values[i], alert[column])
            for i, alert in enumerate(alerts)
            if not same(values[i], alert[column])
        ]
        assert not differing, f"{column}: vectorised != per alert at {differing[:3]}"
    return enriched


def test_vectorised_equals_per_alert_on_messy_ztf_alerts() -> None:
    enriched = assert_agree("ztf", random_ztf_rows(600, seed=3), ALL_MODULES)
    # the comparison covered every case, not only the empty ones
    assert enriched["xm_name"].notna().sum() > 30
    assert set(enriched["roid"]) >= {0, 2, 3}
    assert enriched["rise_rate"].notna().sum() > 50
    assert enriched["quality_ok"].sum() > 100


def test_vectorised_equals_per_alert_with_parameters() -> None:
    modules = [
        ("quality_cuts", {"minRb": 0.8}),
        "lightcurve_features",
        ("solar_system", {"maxDistanceArcsec": 9.0}),
        ("crossmatch", {"radiusArcsec": 2.5}),
    ]
    assert_agree("ztf", random_ztf_rows(300, seed=4), modules)


def test_vectorised_equals_per_alert_on_lsst_alerts() -> None:
    enriched = assert_agree("lsst", random_lsst_rows(400, seed=5), ALL_MODULES)
    assert enriched["sso_flag"].sum() > 20
    assert enriched["color_gr"].notna().sum() > 50


def test_vectorised_equals_per_alert_on_generated_alerts() -> None:
    generated = pytest.importorskip("fink_pipeline.alerts.generator")
    codec = pytest.importorskip("fink_pipeline.alerts.codec")
    alerts = generated.generate_alerts(300, survey="ztf", seed=11)
    frame = codec.decode_batch([codec.encode(a, "ztf") for a in alerts], "ztf").frame
    rows = frame.drop(columns=["_position"]).to_dict("records")
    enriched = assert_agree("ztf", rows, ALL_MODULES)
    assert enriched["quality_ok"].any() and not enriched["quality_ok"].all()
    assert enriched["sso_flag"].any()


def test_enrich_and_select_handle_empty_batches_and_any_index() -> None:
    plan = plan_for(
        "ztf",
        [*ALL_MODULES, "fast_transient_rate"],
        ["early_sn_candidates", "new_sso_candidates", "fast_transients"],
    )
    rows = random_ztf_rows(200, seed=13)
    empty = enrich(frame_of(rows).iloc[0:0], plan)
    assert list(empty.columns)[-len(plan.added_columns()) :] == list(plan.added_columns())
    assert all(len(mask) == 0 for mask in select(empty, plan).values())

    frame = frame_of(rows)
    shuffled = frame.sample(frac=1.0, random_state=1)
    shuffled.index = shuffled.index * 7 + 1000  # a batch need not be indexed 0..n-1
    plain, moved = enrich(frame, plan), enrich(shuffled, plan)
    for column in plan.added_columns():
        if column in ("ft_mag_rate", "ft_sigma_rate"):  # Monte Carlo, depends on the batch
            continue
        expected = plain[column].to_numpy()[(moved.index.to_numpy() - 1000) // 7]
        pd.testing.assert_series_equal(
            moved[column], pd.Series(expected, index=moved.index, name=column)
        )
    plain_masks, moved_masks = select(plain, plan), select(moved, plan)
    for name, mask in moved_masks.items():
        assert set(shuffled["candid"][mask]) == set(frame["candid"][plain_masks[name]])
