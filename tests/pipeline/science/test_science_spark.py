"""enrich and select run inside real Spark (mapInPandas) and answer as plain pandas does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from science_rows import frame_of, random_ztf_rows

from fink_pipeline.alerts.columns import columns_for
from fink_pipeline.science import enrich, plan_for, select

MODULES = ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch", "snia_score"]
FILTERS = ["early_sn_candidates", "new_sso_candidates", "fast_transients"]

pytestmark = pytest.mark.stack  # the session's SparkSession comes with the stack's jars


def test_enrich_and_select_in_spark_match_pandas(spark: Any) -> None:
    plan = plan_for("ztf", MODULES, FILTERS)
    columns = columns_for("ztf")
    frame = frame_of(random_ztf_rows(240, seed=21))[list(columns)]

    added = plan.added_columns()
    flags = {f"pass_{name}": "boolean" for name in FILTERS}
    output = {**columns, **added, **flags}
    schema = ", ".join(f"`{name}` {kind}" for name, kind in output.items())

    def science(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            enriched = enrich(batch, plan)
            for name, mask in select(enriched, plan).items():
                enriched[f"pass_{name}"] = mask
            yield enriched[list(output)]

    input_schema = ", ".join(f"`{name}` {kind}" for name, kind in columns.items())
    alerts = spark.createDataFrame(frame, schema=input_schema).repartition(2)
    in_spark = alerts.mapInPandas(science, schema=schema).toPandas()

    expected = enrich(frame, plan)
    masks = select(expected, plan)
    in_spark = in_spark.set_index("candid").sort_index()
    expected = expected.set_index("candid").sort_index()
    assert len(in_spark) == len(expected) == 240
    for column in added:
        pd.testing.assert_series_equal(
            in_spark[column], expected[column], check_dtype=False, check_names=False
        )
    for name in FILTERS:
        passing = set(frame["candid"][masks[name]])
        assert set(in_spark.index[in_spark[f"pass_{name}"]]) == passing
    assert any(masks[name].any() for name in FILTERS)
