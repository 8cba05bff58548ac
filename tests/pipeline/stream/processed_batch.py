"""One real micro-batch's science output, without Spark: what the writer's tests start from.

Generated alerts, encoded as the survey ships them, run through the pipeline's own
ScienceStep (decode, modules, filters) in this process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fink_core import spec as model
from fink_pipeline.alerts import codec, generator
from fink_pipeline.science.plan import build_plan
from fink_pipeline.stream.science_step import ScienceStep

SSO = "new_sso_candidates"
FAST = "fast_transients"


def document(survey: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
    modules = ["quality_cuts", "solar_system", "lightcurve_features"]
    modules += ["fast_transient_rate"] if survey == "ztf" else []
    return {
        "apiVersion": f"{model.API_GROUP}/{model.API_VERSION}",
        "kind": model.KIND,
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "survey": survey,
            "source": {"kafka": {"topic": "alerts"}},
            "modules": [{"name": m} for m in modules],
            "filters": filters,
        },
    }


def science(
    survey: str, spec: model.PipelineSpec, count: int, seed: int, source: str = "alerts"
) -> tuple[Any, Any]:
    """The pipeline's step and one real processed batch of generated alerts."""
    values = [codec.encode(a, survey) for a in generator.generate_alerts(count, survey, seed=seed)]
    step = ScienceStep(build_plan(spec.survey, spec.modules, spec.filters))
    return step, step.process(source_rows(values, source))


def source_rows(values: list[bytes | None], source: str) -> pd.DataFrame:
    """Kafka messages as Spark's source hands them to a task: one partition, offsets from 0."""
    return pd.DataFrame(
        {
            "value": values,
            "topic": source,
            "partition": np.int32(0),
            "offset": np.arange(len(values), dtype=np.int64),
            "timestamp": pd.Timestamp("2026-11-25T12:00:00"),
        }
    )
