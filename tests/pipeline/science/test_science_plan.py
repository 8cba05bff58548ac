"""plan_science: the example pipeline plans; every mistake is a SpecError that says the fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fink_core.spec import SpecError, parse_pipeline
from fink_pipeline.alerts.columns import columns_for
from fink_pipeline.science import plan_science

EXAMPLE = Path(__file__).parents[3] / "manifests" / "examples" / "ztf-demo-pipeline.yaml"


def document(**spec_changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    doc["spec"].update(spec_changes)
    return doc


def plan_error(**spec_changes: Any) -> str:
    with pytest.raises(SpecError) as raised:
        plan_science(parse_pipeline(document(**spec_changes)))
    return str(raised.value)


def test_the_example_pipeline_plans_in_order() -> None:
    plan = plan_science(parse_pipeline(document()))
    assert [m.name for m, _ in plan.modules] == [
        "quality_cuts",
        "lightcurve_features",
        "solar_system",
    ]
    assert dict(plan.modules[2][1]) == {"maxDistanceArcsec": 5.0}
    assert dict(plan.modules[0][1]) == {"minRb": 0.55}  # defaults merged in
    assert plan.filter_topics() == {
        "early_sn_candidates": "fink_early_sn_candidates_ztf",
        "new_sso_candidates": "fink_new_sso_candidates_ztf",
    }
    added = plan.added_columns()
    assert list(added)[:2] == ["quality_ok", "n_detections"]
    assert added["rise_rate"] == "double" and added["roid"] == "int"
    assert not set(added) & set(columns_for("ztf"))


def test_unknown_module_lists_the_known_ones() -> None:
    message = plan_error(modules=[{"name": "quality_cut"}])
    assert "spec.modules[0].name: unknown science module 'quality_cut'" in message
    assert "quality_cuts" in message and "crossmatch" in message


def test_unknown_filter_lists_the_known_ones() -> None:
    message = plan_error(filters=[{"name": "early_sn"}])
    assert "spec.filters[0].name: unknown science filter 'early_sn'" in message
    assert "early_sn_candidates" in message


def test_unknown_parameter_names_the_accepted_ones() -> None:
    message = plan_error(modules=[{"name": "solar_system", "parameters": {"maxDistance": 5}}])
    assert "module solar_system has no parameter 'maxDistance'" in message
    assert "maxDistanceArcsec (default 5.0)" in message


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"maxDistanceArcsec": "five"}, "maxDistanceArcsec must be a number, got 'five'"),
        ({"maxDistanceArcsec": -1}, "maxDistanceArcsec must be positive, got -1"),
    ],
)
def test_bad_parameter_values_are_refused(parameters: dict, expected: str) -> None:
    message = plan_error(modules=[{"name": "solar_system", "parameters": parameters}], filters=[])
    assert message.startswith("spec.modules[0].parameters")
    assert expected in message


def test_a_missing_catalogue_file_is_refused_at_plan_time(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    message = plan_error(
        modules=[{"name": "crossmatch", "parameters": {"catalogue": str(missing)}}], filters=[]
    )
    assert f"catalogue file {str(missing)!r} does not exist" in message


def test_a_catalogue_without_the_needed_columns_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("RAJ2000,DEJ2000,VType\n1.0,2.0,EW\n")
    message = plan_error(
        modules=[{"name": "crossmatch", "parameters": {"catalogue": str(bad)}}], filters=[]
    )
    assert "lacks column(s) ra, dec, name, type" in message


def test_a_filter_reading_a_column_no_module_writes_says_which_module_to_add() -> None:
    message = plan_error(modules=[{"name": "quality_cuts"}, {"name": "solar_system"}])
    assert message == (
        "spec.filters[0]: filter early_sn_candidates reads days_since_first, written by module "
        "lightcurve_features: add it to spec.modules before early_sn_candidates"
    )


def test_a_module_before_its_inputs_says_to_move_the_writer() -> None:
    message = plan_error(
        modules=[{"name": "snia_score"}, {"name": "lightcurve_features"}], filters=[]
    )
    assert message == (
        "spec.modules[0]: module snia_score reads rise_rate, written by module "
        "lightcurve_features: move lightcurve_features before it in spec.modules"
    )


def test_a_filter_of_another_survey_is_refused() -> None:
    doc = document(survey="lsst")
    with pytest.raises(SpecError) as raised:
        plan_science(parse_pipeline(doc))
    assert str(raised.value) == (
        "spec.filters[0].name: filter early_sn_candidates does not support survey lsst "
        "(it supports ztf); remove it or change spec.survey"
    )


def test_lsst_pipelines_run_the_lsst_variants() -> None:
    plan = plan_science(
        parse_pipeline(
            document(
                survey="lsst",
                modules=[
                    {"name": "quality_cuts"},
                    {"name": "lightcurve_features"},
                    {"name": "solar_system"},
                ],
                filters=[{"name": "fast_transients"}],
            )
        )
    )
    quality, _ = plan.modules[0]
    assert quality.reads == ("reliability",)
    message = plan_error(
        survey="lsst", modules=[{"name": "quality_cuts", "parameters": {"minRb": 0.6}}], filters=[]
    )
    assert "has no parameter 'minRb'; its parameters are: minReliability (default 0.5)" in message


def test_a_module_needing_a_missing_fink_package_says_how_to_install_it(monkeypatch) -> None:
    from fink_pipeline.science.modules import fast_transient_rate

    monkeypatch.setattr(fast_transient_rate, "fink_fast_transient_rate", lambda: None)
    message = plan_error(modules=[{"name": "fast_transient_rate"}], filters=[])
    assert "runs fink-science's own code, which is not importable here" in message
    assert "pip install fink-science fink-utils astropy line_profiler" in message
