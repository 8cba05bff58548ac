"""What every Spark task runs on its slice of a micro-batch: decode, enrich, select.

This is the function given to mapInPandas. It receives the raw Kafka records
(value, topic, partition, offset, timestamp) and yields one row per message:
a good alert with its science columns and one pass_<filter> flag per filter,
or a rejected message with the reason and its original bytes (the dead-letter
topic gets them). Per-module seconds ride along in `_timings` on the first row
of each chunk, since the tasks' Python workers cannot reach the driver's metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fink_pipeline.alerts.codec import decode_batch
from fink_pipeline.alerts.columns import columns_for
from fink_pipeline.science import SciencePlan, enrich, select

META_COLUMNS = {
    "_topic": "string",
    "_partition": "int",
    "_offset": "bigint",
    "_timestamp_ms": "bigint",
    "_reject": "string",
    "_raw": "binary",
    "_timings": "string",
}
DECODE_TIMING = "decode"
_NULLABLE_DTYPE = {"bigint": "Int64", "int": "Int32", "boolean": "boolean"}


def pass_column(filter_name: str) -> str:
    return f"pass_{filter_name}"


@dataclass(frozen=True)
class ScienceStep:
    """Picklable: Spark ships it to its Python workers with the plan inside."""

    plan: SciencePlan

    @property
    def alert_columns(self) -> dict[str, str]:
        return {**columns_for(self.plan.survey), **self.plan.added_columns()}

    @property
    def output_columns(self) -> dict[str, str]:
        flags = {pass_column(f.name): "boolean" for f, _ in self.plan.filters}
        return {**META_COLUMNS, **self.alert_columns, **flags}

    def spark_schema(self) -> str:
        return ", ".join(f"`{name}` {kind}" for name, kind in self.output_columns.items())

    def __call__(self, chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            yield self.process(chunk)

    def process(self, raw: pd.DataFrame) -> pd.DataFrame:
        """One chunk of raw Kafka records -> one output row per record."""
        raw = raw.reset_index(drop=True)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        decoded = decode_batch(raw["value"].tolist(), self.plan.survey)
        timings[DECODE_TIMING] = time.perf_counter() - started

        good = decoded.frame.reset_index(drop=True)
        enriched = enrich(good.drop(columns=["_position"]), self.plan, timings)
        for name, mask in select(enriched, self.plan).items():
            enriched[pass_column(name)] = mask.to_numpy(dtype=bool)
        good_positions = good["_position"].to_numpy(np.int64)
        enriched["_reject"] = None
        enriched["_raw"] = None

        reject_positions = np.array([r.position for r in decoded.rejects], dtype=np.int64)
        # explicit None in every column: concat would otherwise fill strings and arrays with NaN
        rejected = pd.DataFrame(
            {c: pd.Series([None] * len(reject_positions), dtype=object) for c in enriched}
        )
        rejected["_reject"] = [r.reason for r in decoded.rejects]
        rejected["_raw"] = [raw["value"].iat[p] for p in reject_positions]
        out = pd.concat([_nullable(enriched, self.output_columns), rejected], ignore_index=True)
        positions = np.concatenate([good_positions, reject_positions])
        out["_topic"] = raw["topic"].to_numpy(dtype=object)[positions]
        out["_partition"] = raw["partition"].to_numpy(np.int64)[positions].astype(np.int32)
        out["_offset"] = raw["offset"].to_numpy(np.int64)[positions]
        out["_timestamp_ms"] = _milliseconds(raw["timestamp"])[positions]
        out["_timings"] = None
        if len(out):
            out.loc[0, "_timings"] = json.dumps(timings)
        for column in self.output_columns:
            if column not in out:
                out[column] = None
        return out[list(self.output_columns)]


def _nullable(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Integer and boolean columns as pandas' nullable dtypes: reject rows hold nulls."""
    converted = frame.copy(deep=False)
    for column in frame.columns:
        kind = columns.get(column)
        if kind in _NULLABLE_DTYPE:
            converted[column] = frame[column].astype(_NULLABLE_DTYPE[kind])
    return converted


def _milliseconds(timestamps: pd.Series) -> np.ndarray:
    values = pd.to_datetime(timestamps)
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.to_numpy("datetime64[ms]").astype(np.int64)
