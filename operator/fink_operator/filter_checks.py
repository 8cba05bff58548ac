"""The real checks behind a ScienceFilter's Validated condition: static rules, then a sandboxed dry run.

Kept apart from science_filters.py (the rules of what runs where) because these
start processes and import pandas, in the sandbox's child only: the operator
process itself stays light (tests/core/test_dependencies.py).

The dry run feeds the filter alerts with values of the right types for the
columns it reads (fink_core.filters.samples), in a separate process with a
time and memory limit: it proves the code runs and answers one boolean per
alert, not that it selects anything sensible; `fink-filter test` does that on
realistic alerts.
"""

from __future__ import annotations

from collections.abc import Mapping

from fink_core.filters.samples import sample_columns
from fink_core.filters.source import check_source

DRY_RUN_ALERTS = 1000
DRY_RUN_SECONDS = 10.0
DRY_RUN_MEMORY = 1024**3


def check(code: str, entrypoint: str, columns: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    checked = check_source(code, entrypoint, columns)
    return checked.entrypoint, checked.reads


def dry_run(code: str, entrypoint: str, survey: str, columns: Mapping[str, str]) -> str:
    """Run the filter on sample alerts in the sandbox; one line on what it found."""
    from fink_core.filters.sandbox import SandboxLimits
    from fink_core.filters.sandbox import dry_run as sandboxed

    reads = check_source(code, entrypoint, columns).reads
    frame = sample_columns({c: columns[c] for c in reads}, DRY_RUN_ALERTS, seed=0)
    report = sandboxed(
        code,
        entrypoint,
        frame,
        SandboxLimits(seconds_per_call=DRY_RUN_SECONDS, memory_bytes=DRY_RUN_MEMORY),
    )
    return (
        f"{report.passed} of {report.total} passed, "
        f"{report.seconds_per_alert * 1e6:.1f} µs per alert"
    )
