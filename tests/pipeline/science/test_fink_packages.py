"""The field's own code (fink-science, fink-filters, fink-utils) is really the code that runs.

`fink_packages` falls back to our implementation of a rule when a fink-* part
does not import, so without these tests a broken install (a new pin, a missing
dependency of theirs) would silently swap their code for ours, and the
"tested equal" checks would compare our rule with itself. Here every part
docs/science.md says runs here must import at the pinned version, every part it
says does not run must fail for the reason it gives, the modules must call the
fink code, and the rules we claim equal are compared with the fink code itself.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from science_rows import frame_of, random_ztf_rows

from fink_pipeline.alerts.columns import columns_for
from fink_pipeline.science import FILTERS, MODULES, fink_packages
from fink_pipeline.science.filters import new_sso_candidates as sso_filter
from fink_pipeline.science.modules import quality_cuts, solar_system

ROOT = Path(__file__).parents[3]
DISTRIBUTIONS = ("fink-science", "fink-filters", "fink-utils")

# docs/science.md, "The field's own packages": what runs here, through which getter
RUNS_HERE = {
    "roid_catcher": ("fink_science.ztf.asteroids.processor", "roid_catcher"),
    "fast_transient_rate": (
        "fink_science.ztf.fast_transient_rate.processor",
        "fast_transient_rate",
    ),
    "ztf_quality_cuts_": ("fink_filters.ztf.filter_quality_cuts.filter", "ztf_quality_cuts_"),
    "sso_fink_candidates_": (
        "fink_filters.ztf.livestream.filter_sso_fink_candidates.filter",
        "sso_fink_candidates_",
    ),
    "vect_conversion": ("fink_utils.photometry.vect_conversion", "vect_dc_mag"),
}
GETTERS = {
    "roid_catcher": fink_packages.fink_roid_catcher,
    "fast_transient_rate": fink_packages.fink_fast_transient_rate,
    "ztf_quality_cuts_": fink_packages.fink_ztf_quality_cuts,
    "sso_fink_candidates_": fink_packages.fink_sso_candidates,
}
# ... and what does not, with the missing module the table names as the reason
DOES_NOT_RUN = {
    "fink_science.ztf.random_forest_snia.processor": "actsnfink",
    "fink_science.ztf.snn.processor": "supernnova",
    "fink_science.ztf.xmatch.processor": "fink_tns",
    "fink_science.ztf.kilonova.processor": "kndetect",
}
# ... and what imports but cannot run: fink-filters' early SN filter reads classifier and
# cross-match columns (SuperNNova, random forest, SIMBAD) that no module here computes
EARLY_SN = ("fink_filters.ztf.livestream.filter_early_sn_candidates.filter", "early_sn_candidates_")
EARLY_SN_MISSING = {"snn_snia_vs_nonia", "snn_sn_vs_all", "rf_snia_vs_nonia", "cdsxmatch"}


def pinned() -> dict[str, str]:
    """Distribution -> version as pyproject.toml pins it (==)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, _, version = requirement.partition("==")
        pins[name.strip().lower().replace("_", "-")] = version.strip()
    return {d: pins[d] for d in DISTRIBUTIONS}


def test_the_pinned_versions_are_installed_and_are_the_documented_ones() -> None:
    pins = pinned()
    installed = {d: metadata.version(d) for d in DISTRIBUTIONS}
    assert installed == pins
    science_md = (ROOT / "docs" / "science.md").read_text()
    for distribution, version in pins.items():
        assert f"{distribution} {version}" in science_md, f"docs/science.md: {distribution}"


@pytest.mark.parametrize("part", sorted(RUNS_HERE))
def test_every_part_we_claim_to_run_imports(part: str) -> None:
    module, attribute = RUNS_HERE[part]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imported = importlib.import_module(module)  # the real error, not a silent fallback
    assert callable(getattr(imported, attribute))
    if part in GETTERS:
        assert GETTERS[part]() is not None, fink_packages.UNAVAILABLE


@pytest.mark.parametrize(("module", "missing"), sorted(DOES_NOT_RUN.items()))
def test_every_part_we_say_does_not_run_fails_for_the_documented_reason(
    module: str, missing: str
) -> None:
    with pytest.raises(ModuleNotFoundError) as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module(module)
    assert raised.value.name == missing or raised.value.name.startswith(f"{missing}.")
    assert f"`{missing}`" in (ROOT / "docs" / "science.md").read_text()


def test_finks_early_sn_filter_reads_columns_no_module_here_computes() -> None:
    module, attribute = EARLY_SN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = getattr(importlib.import_module(module), attribute)
    reads = set(inspect.signature(getattr(found, "func", found)).parameters)
    computed = set(columns_for("ztf")) | {
        column for m in MODULES.values() for column in m.for_survey("ztf").writes
    }
    assert reads - computed == EARLY_SN_MISSING
    assert all(
        f"`{column}`" in (ROOT / "docs" / "science.md").read_text() for column in reads - computed
    )


def test_a_part_that_does_not_import_is_reported_not_swallowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert fink_packages.real_function("fink_science.no_such_module", "f") is None
    assert "fink_science.no_such_module.f" in fink_packages.UNAVAILABLE
    assert "not importable" in caplog.text and "our implementation" in caplog.text


class Spy:
    """Wraps a fink function: counts the calls, answers what it answers."""

    def __init__(self, function: Any) -> None:
        assert function is not None, "the fink function does not import"
        self.function, self.calls = function, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.function(*args)


def test_the_modules_and_the_filter_call_the_fink_code(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = random_ztf_rows(200, seed=17)
    frame = frame_of(rows)
    roid = Spy(fink_packages.fink_roid_catcher())
    cuts = Spy(fink_packages.fink_ztf_quality_cuts())
    sso = Spy(fink_packages.fink_sso_candidates())
    monkeypatch.setattr(solar_system, "fink_roid_catcher", lambda: roid)
    monkeypatch.setattr(quality_cuts, "fink_ztf_quality_cuts", lambda: cuts)
    monkeypatch.setattr(sso_filter, "fink_sso_candidates", lambda: sso)

    enriched = frame.join(MODULES["quality_cuts"].for_survey("ztf").function(frame))
    enriched = enriched.join(MODULES["solar_system"].for_survey("ztf").function(enriched))
    FILTERS["new_sso_candidates"].function(enriched)
    assert (roid.calls, cuts.calls, sso.calls) == (1, 1, 1)


def test_new_sso_candidates_with_fink_filters_equal_our_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/science.md: without fink-filters the same rule runs here, 'tested equal'."""
    assert fink_packages.fink_sso_candidates() is not None, fink_packages.UNAVAILABLE
    rng = np.random.default_rng(5)
    size = 2000
    frame = pd.DataFrame(
        {
            "roid": rng.integers(0, 4, size).astype(np.int32),  # every roid code
            "quality_ok": rng.random(size) < 0.7,
            "sso_flag": rng.random(size) < 0.3,
        }
    )
    function = FILTERS["new_sso_candidates"].function
    with_fink = function(frame).astype(bool).tolist()
    monkeypatch.setattr(sso_filter, "fink_sso_candidates", lambda: None)
    ours = function(frame).astype(bool).tolist()
    assert with_fink == ours
    assert 0 < sum(ours) < size  # both answers occur


def test_the_documented_rules_name_what_the_fink_code_does() -> None:
    """The thresholds we copy are the ones in their source, at the pinned versions."""
    source = Path(importlib.import_module(RUNS_HERE["ztf_quality_cuts_"][0]).__file__).read_text()
    assert re.search(r"rb\.astype\(float\)\s*>=\s*0\.55", source)
    assert re.search(r"nbad\.astype\(int\)\s*==\s*0", source)
    assert quality_cuts.FINK_MIN_RB == 0.55
