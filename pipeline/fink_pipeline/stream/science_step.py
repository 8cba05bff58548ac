"""What every Spark task runs on its slice of a micro-batch: decode, enrich, select.

This is the function given to mapInArrow. It receives the raw Kafka records
(value, topic, partition, offset, timestamp), with the alerts Spark's JVM
decoded already as columns (jvm_decode.py: their value is then null), and
makes one row per message:
a good alert with its science columns and one pass_<filter> flag per filter,
or a rejected message with the reason and its original bytes (the dead-letter
topic gets them). Given an HBase target, it also writes the good alerts' rows.
Per-module seconds ride along in `_timings` on the first row of each chunk,
since the tasks' Python workers cannot reach the driver's metrics; so do the
container prefixes the JVM may decode from the next batch on (PREFIXES_KEY).

The rows leave the task as one Arrow IPC stream per chunk, a single binary
value (`_chunk`), which only the driver opens. Handing Spark ~60 typed columns
instead made its JVM turn every row from Arrow into its own format and back to
Arrow for the driver, for nothing: no Spark operator reads them in between.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fink_pipeline.alerts.codec import decode_batch
from fink_pipeline.alerts.columns import CUTOUT_COLUMNS, columns_for
from fink_pipeline.science import SciencePlan, enrich, select
from fink_pipeline.stream import faults
from fink_pipeline.stream.jvm_decode import DECODED, SOURCE_COLUMNS, decoded_frame
from fink_pipeline.stream.live_filters import FAILURE_TIMING, take_chunk_failures
from fink_pipeline.stream.rows import cutout_columns, hbase_columns, packed_records, row_keys
from fink_pipeline.stream.sinks import HBaseWriter

META_COLUMNS = {
    "_topic": "string",
    "_partition": "int",
    "_offset": "bigint",
    "_timestamp_ms": "bigint",
    "_reject": "string",
    "_raw": "binary",
    "_timings": "string",
}
CHUNK_COLUMN = "_chunk"  # the one column a task yields: a chunk's rows as Arrow IPC
DECODE_TIMING = "decode"
HBASE_TIMING = "sink:hbase"  # not a module: reported as a stage of the batch
PREFIXES_KEY = "_jvm_prefixes"  # not a time: container prefixes (hex) the JVM may decode
DECODED_KEY = "_decoded_by"  # not a time: alerts of the chunk decoded {"jvm": n, "python": m}
_NULLABLE_DTYPE = {"bigint": "Int64", "int": "Int32", "boolean": "boolean"}
_ARROW_TYPES = {
    "string": pa.string(),
    "binary": pa.binary(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "long": pa.int64(),
    "double": pa.float64(),
}


def arrow_type(spark_type: str) -> pa.DataType:
    """The Arrow type Spark would give a column of this Spark SQL type."""
    if spark_type.startswith("array<") and spark_type.endswith(">"):
        return pa.list_(arrow_type(spark_type[len("array<") : -1]))
    try:
        return _ARROW_TYPES[spark_type]
    except KeyError:
        raise ValueError(f"no Arrow type for the Spark type {spark_type!r}") from None


def pass_column(filter_name: str) -> str:
    return f"pass_{filter_name}"


@dataclass(frozen=True)
class HBaseTarget:
    """Where the tasks write their alerts' rows; each family with the columns it holds."""

    host: str
    port: int
    table: str
    families: tuple[tuple[str, tuple[str, ...]], ...]
    salt_digits: int = 0
    cutouts: bool = False  # the alerts' stamps in family "cutouts" (spec.sinks.hbase.cutouts)
    layout: str = "columns"  # "packed": one JSON record per family (spec.sinks.hbase.layout)


def hbase_families(plan: SciencePlan, family_names: Sequence[str]) -> dict[str, list[str]]:
    """The alert's columns go to the first family, module columns and flags to the second.

    With a single family everything goes there.
    """
    alert = list(columns_for(plan.survey))
    science = [*plan.added_columns(), *[pass_column(f.name) for f, _ in plan.filters]]
    if len(family_names) == 1:
        return {family_names[0]: alert + science}
    return {family_names[0]: alert, family_names[1]: science}


_HBASE_WRITERS: dict[tuple[str, int, str], HBaseWriter] = {}


def _hbase_writer(target: HBaseTarget) -> HBaseWriter:
    """One connection per Python worker and table; Spark reuses its workers across tasks."""
    key = (target.host, target.port, target.table)
    if key not in _HBASE_WRITERS:
        _HBASE_WRITERS[key] = HBaseWriter(target.host, target.port, target.table)
    return _HBASE_WRITERS[key]


@dataclass(frozen=True)
class ScienceStep:
    """Picklable: Spark ships it to its Python workers with the plan inside.

    With an HBase target the tasks also write their alerts' rows, in parallel and
    close to the data, before the driver commits the batch's Kafka transaction.
    """

    plan: SciencePlan
    hbase: HBaseTarget | None = None
    batch_id: int | None = None  # the micro-batch these tasks run for (messages, fault hook)
    schema_registry: str | None = None  # Rubin: where the schema ids of its alerts resolve

    @property
    def alert_columns(self) -> dict[str, str]:
        return {**columns_for(self.plan.survey), **self.plan.added_columns()}

    @property
    def output_columns(self) -> dict[str, str]:
        flags = {pass_column(f.name): "boolean" for f, _ in self.plan.filters}
        return {**META_COLUMNS, **self.alert_columns, **flags}

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(n, arrow_type(k)) for n, k in self.output_columns.items()])

    def spark_schema(self) -> str:
        """What the tasks yield to Spark: one binary per chunk (see the module's doc)."""
        return f"`{CHUNK_COLUMN}` binary"

    @property
    def stores_cutouts(self) -> bool:
        return self.hbase is not None and self.hbase.cutouts

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        schema = self.arrow_schema()
        for batch in batches:
            chunk = to_ipc(self.output_of(batch), schema)
            yield pa.RecordBatch.from_pydict({CHUNK_COLUMN: [chunk]})

    def output_of(self, batch: pa.RecordBatch) -> pd.DataFrame:
        """One chunk of the source as mapInArrow hands it over -> its output rows."""
        raw = batch.select([c for c in (*SOURCE_COLUMNS, DECODED) if c in batch.schema.names])
        jvm = decoded_frame(batch, self.plan.survey, self.stores_cutouts)
        return self.process(raw.to_pandas(), jvm)

    def rows_of(self, chunks: pa.Table) -> pa.Table:
        """The driver's side: the rows of every chunk the tasks yielded, as one table."""
        schema = self.arrow_schema()
        tables = [from_ipc(value) for value in chunks.column(CHUNK_COLUMN).to_pylist()]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def process(self, raw: pd.DataFrame, jvm: pd.DataFrame | None = None) -> pd.DataFrame:
        """One chunk of raw Kafka records -> one output row per record.

        `jvm`: the alerts of the chunk Spark's JVM decoded (their `_position` in
        `raw`); the Python decoder reads the others.
        """
        raw = raw.reset_index(drop=True)
        timings: dict[str, Any] = {}
        started = time.perf_counter()
        stores_cutouts = self.stores_cutouts
        in_python = np.arange(len(raw), dtype=np.int64)
        if jvm is not None and DECODED in raw:
            in_python = np.flatnonzero(~raw[DECODED].to_numpy(dtype=bool))
        decoded = decode_batch(
            raw["value"].to_numpy(dtype=object)[in_python].tolist(),
            self.plan.survey,
            self.schema_registry,
            cutouts=stores_cutouts,
        )
        timings[DECODE_TIMING] = time.perf_counter() - started
        if decoded.plain_prefixes:
            timings[PREFIXES_KEY] = sorted(p.hex() for p in decoded.plain_prefixes)

        good = decoded.frame
        timings[DECODED_KEY] = {"jvm": 0 if jvm is None else len(jvm), "python": len(good)}
        good["_position"] = in_python[good["_position"].to_numpy(np.int64)]
        if jvm is not None and len(jvm):
            good = pd.concat([jvm, good], ignore_index=True) if len(good) else jvm
            good = good.sort_values("_position", kind="stable")  # the source's order
        good = good.reset_index(drop=True)
        # the stamps go to HBase from here, never to science, the driver, Kafka or Parquet
        stamps = good[list(CUTOUT_COLUMNS)] if stores_cutouts else None
        alerts = good.drop(columns=["_position", *(CUTOUT_COLUMNS if stores_cutouts else ())])
        enriched = enrich(alerts, self.plan, timings)
        for name, mask in select(enriched, self.plan).items():
            enriched[pass_column(name)] = mask.to_numpy(dtype=bool)
        for name, failure in take_chunk_failures().items():  # ScienceFilters stopped here
            timings[f"{FAILURE_TIMING}{name}"] = failure  # type: ignore[assignment]
        good_positions = good["_position"].to_numpy(np.int64)
        if self.hbase is not None and len(enriched):
            started = time.perf_counter()
            keys = row_keys(enriched, self.plan.survey, self.hbase.salt_digits)
            cells = packed_records if self.hbase.layout == "packed" else hbase_columns
            columns = cells(enriched, dict(self.hbase.families))
            if stamps is not None:
                columns += cutout_columns(stamps)
            _hbase_writer(self.hbase).put(keys, columns, self.batch_id)
            timings[HBASE_TIMING] = time.perf_counter() - started
            faults.reached("hbase-write", self.batch_id)
        enriched["_reject"] = None
        enriched["_raw"] = None

        reject_positions = in_python[
            np.array([r.position for r in decoded.rejects], dtype=np.int64)
        ]
        # explicit None in every column: concat would otherwise fill strings and arrays with NaN
        rejected = pd.DataFrame(
            {c: pd.Series([None] * len(reject_positions), dtype=object) for c in enriched}
        )
        rejected["_reject"] = [r.reason for r in decoded.rejects]
        rejected["_raw"] = [raw["value"].iat[p] for p in reject_positions]
        out = _nullable(enriched, self.output_columns)
        if len(rejected):
            with warnings.catch_warnings():
                # pandas warns that all-None columns will count in the dtypes one day;
                # either way the result converts to the same Arrow/Spark types
                warnings.simplefilter("ignore", FutureWarning)
                out = pd.concat([out, rejected], ignore_index=True)
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


def to_ipc(frame: pd.DataFrame, schema: pa.Schema) -> bytes:
    """A chunk's rows as an Arrow IPC stream, converted as pyspark converts them.

    Like pyspark's own pandas -> Arrow step: nulls and NaN both become nulls,
    and casts are unchecked (spark.sql.execution.pandas.convertToArrowArraySafely
    is off by default), so the driver sees what Spark's columns would have held.
    """
    arrays = [arrow_array(frame[field.name], field.type) for field in schema]
    return table_ipc(pa.Table.from_arrays(arrays, schema=schema))


def table_ipc(table: pa.Table) -> bytes:
    """A table as an Arrow IPC stream (from_ipc reads it)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def arrow_array(column: pd.Series, kind: pa.DataType) -> pa.Array:
    if hasattr(column.array, "__arrow_array__"):  # pandas' nullable dtypes know their nulls
        return pa.array(column.array, type=kind)
    return pa.Array.from_pandas(column, mask=column.isnull().to_numpy(), type=kind, safe=False)


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


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
