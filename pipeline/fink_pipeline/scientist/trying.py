"""`fink-filter test`: the operator's checks, on this machine, on alerts that look real.

The operator's dry run feeds a filter values of the right *type* (it has no
science code to compute realistic ones); here the enrichment core is at hand,
so the sample alerts are the synthetic survey stream, decoded and enriched by
the science modules as a pipeline would, or rows of a pipeline's Parquet
archive. The filter runs in the very sandbox the pipelines use
(`fink_core.filters.sandbox`): what fails here fails there, with the same message.

Which columns a filter may read: by default those of a pipeline running every
module the catalogue has for the survey (the widest choice); with a pipeline
file, exactly that pipeline's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fink_core.errors import SpecError
from fink_core.filters.sandbox import FilterFailure, FilterSandbox, SandboxLimits
from fink_core.filters.source import FilterCodeError, check_source
from fink_core.science import shipped_catalogue
from fink_pipeline.science import SciencePlan, enrich, plan_for
from fink_pipeline.scientist.problems import BadInput, FilterFailed, pointed

EXAMPLES = 5
# the limits the operator's dry run uses: what passes here passes there
LIMITS = SandboxLimits(seconds_per_call=10.0, memory_bytes=1024**3)


@dataclass(frozen=True)
class Trial:
    """What the filter did to the sample: counts, a few passing alerts, its cost."""

    entrypoint: str
    reads: tuple[str, ...]
    source: str  # where the alerts came from, for the report
    total: int
    passed: int
    seconds_per_alert: float
    examples: pd.DataFrame  # identifiers and the columns it reads, of the first passing alerts


def all_modules_plan(survey: str) -> SciencePlan:
    """A plan with every module the catalogue has for SURVEY, each after the modules it reads from."""
    catalogue = shipped_catalogue()
    if survey not in catalogue.surveys:
        raise BadInput(f"unknown survey {survey!r}: choose one of {', '.join(catalogue.surveys)}")
    available = set(catalogue.columns[survey])
    waiting = [m for m in (catalogue.module(n, survey) for n in catalogue.module_names()) if m]
    ordered: list[str] = []
    while waiting:
        ready = [m for m in waiting if set(m.reads) <= available]
        if not ready:  # a module reading a column no module writes: leave it out
            break
        for module in ready:
            ordered.append(module.name)
            available |= set(module.writes)
            waiting.remove(module)
    return plan_for(survey, ordered)


def pipeline_plan(path: str) -> SciencePlan:
    """The plan of a BrokerPipeline YAML, checked as `fink-pipeline validate` checks it."""
    from fink_pipeline.cli import InputError, load

    try:
        _, plan = load(path, None)
    except InputError as error:
        raise BadInput(str(error)) from None
    except SpecError as error:
        raise BadInput(f"{path}: invalid pipeline: {error}") from None
    return plan


def columns_of(plan: SciencePlan) -> dict[str, str]:
    """Every column a filter may read in a pipeline with this plan (name -> Spark type)."""
    return {**shipped_catalogue().columns[plan.survey], **plan.added_columns()}


def check(path: Path, code: str, entrypoint: str, columns: Mapping[str, str]) -> tuple[str, ...]:
    """The static checks; FilterFailed pointing at the line and column to change."""
    try:
        return check_source(code, entrypoint, columns).reads
    except FilterCodeError as error:
        raise FilterFailed(pointed(path, code, str(error))) from None


def synthetic_alerts(plan: SciencePlan, count: int, seed: int = 0) -> pd.DataFrame:
    """COUNT alerts of the synthetic stream, through the survey's codec and the plan's modules."""
    from fink_pipeline.alerts.codec import decode_batch, encode
    from fink_pipeline.alerts.generator import generate_alerts

    survey = plan.survey
    raw = [encode(alert, survey) for alert in generate_alerts(count, survey, seed, cutouts=False)]
    frame = decode_batch(raw, survey).frame.drop(columns=["_position"])
    return enrich(frame.reset_index(drop=True), plan)


def topic_alerts(
    topic: str, bootstrap: str, plan: SciencePlan, count: int, registry: str | None = None
) -> pd.DataFrame:
    """The first COUNT alerts of a survey's topic (what a pipeline reads), decoded and enriched.

    Messages that are not alerts of the survey are left out, as the pipeline sends them
    to its dead letters; none at all is a BadInput naming the topic.
    """
    from fink_pipeline.alerts.codec import decode_batch
    from fink_pipeline.stream.observe import read_topic

    try:
        messages = read_topic(bootstrap, topic)
    except LookupError as error:
        raise BadInput(str(error)) from None
    values = [m.value() for m in messages[:count] if m.value() is not None]
    decoded = decode_batch(values, plan.survey, registry)
    if decoded.frame.empty:
        reasons = sorted({r.reason.split(":", 1)[0] for r in decoded.rejects})
        raise BadInput(
            f"no {plan.survey} alert in the first {len(values)} message(s) of {topic} at "
            f"{bootstrap} ({', '.join(reasons) or 'empty topic'}): name a survey's alert topic"
        )
    frame = decoded.frame.drop(columns=["_position"]).reset_index(drop=True)
    return enrich(frame, plan)


def parquet_alerts(path: str, plan: SciencePlan, reads: tuple[str, ...]) -> pd.DataFrame:
    """Rows of a Parquet file or directory (a pipeline's archive); enriched when they lack modules' columns."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise BadInput(f"cannot read Parquet {path}: {error}") from None
    frame = frame.reset_index(drop=True)
    missing = [c for c in reads if c not in frame.columns]
    if not missing:
        return frame
    alert_columns = shipped_catalogue().columns[plan.survey]
    if all(c in frame.columns for c in alert_columns):
        return enrich(frame[list(alert_columns)], plan)
    raise BadInput(
        f"{path} has no column(s) {', '.join(missing)}, and not every alert column to compute "
        "them from: use a pipeline's archive, or the synthetic alerts (--alerts N)"
    )


def run(
    path: Path,
    code: str,
    entrypoint: str,
    reads: tuple[str, ...],
    alerts: pd.DataFrame,
    source: str,
) -> Trial:
    """Run the filter in the sandbox on ALERTS; FilterFailed with the line when it fails."""
    missing = [c for c in reads if c not in alerts.columns]
    if missing:
        raise BadInput(f"the sample alerts have no column(s) {', '.join(missing)}")
    try:
        with FilterSandbox(LIMITS) as sandbox:
            sandbox.load(path.stem, code, entrypoint)
            started = time.perf_counter()
            mask = sandbox.run(path.stem, alerts)
            elapsed = time.perf_counter() - started
    except FilterFailure as failure:
        raise FilterFailed(
            pointed(path, code, f"the filter {failure.message}", failure.line)
        ) from None
    identifiers = [c for c in ("objectId", "candid", "diaObjectId", "diaSourceId") if c in alerts]
    shown = list(dict.fromkeys([*identifiers, *reads]))
    return Trial(
        entrypoint=entrypoint,
        reads=reads,
        source=source,
        total=len(mask),
        passed=int(mask.sum()),
        seconds_per_alert=elapsed / len(mask) if len(mask) else 0.0,
        examples=alerts.loc[mask, shown].head(EXAMPLES),
    )
