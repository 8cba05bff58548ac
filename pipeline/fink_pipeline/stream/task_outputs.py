"""What a micro-batch's tasks hand on: their alerts to the archive, the rest to the driver.

The driver does not need the whole batch. It sends through Kafka only the alerts
that passed a filter, already encoded by the tasks (outbox.py), and the rejected
messages; for the rest it needs counts, each chunk's timings and, per source
partition, the first and last offsets read. So each task archives its good
alerts itself (sinks.ParquetArchive: its own Parquet files under a local root,
or typed columns yielded to Spark's writer for a Hadoop URL), and adds what the
driver needs to an accumulator: one `ChunkReport` per chunk, its rows and its
outbox as Arrow IPC. Spark merges a finished task's accumulator updates into the
driver once, and before the job returns.

When the tasks yield nothing (no archive, or a local one), the job's output goes
to Spark's `noop` writer: the same single pass over the batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fink_pipeline.stream import rows
from fink_pipeline.stream.outbox import OUTBOX_SCHEMA, FilterEncoder
from fink_pipeline.stream.science_step import (
    ScienceStep,
    arrow_array,
    arrow_type,
    from_ipc,
    pass_column,
    table_ipc,
    to_ipc,
)
from fink_pipeline.stream.sinks import ARCHIVE_PARTITIONS, ParquetArchive

SOURCE_META = ("_topic", "_partition", "_offset", "_timestamp_ms")
NOTHING = "`_nothing` int"  # the (empty) output of tasks that archive nothing

Partition = tuple[str, int]


@dataclass(frozen=True)
class BatchTally:
    """What the driver knows of a whole batch without its rows."""

    read: int = 0  # source messages, good or rejected
    good: int = 0  # alerts decoded and enriched (in HBase and the archive)
    first: dict[Partition, int] = field(default_factory=dict)  # first offset read
    last: dict[Partition, int] = field(default_factory=dict)  # last offset read

    @classmethod
    def of(cls, frame: pd.DataFrame) -> BatchTally:
        """The tally of a frame holding every row of the batch (one chunk of it, in a task)."""
        if frame.empty:
            return cls()
        offsets = frame.groupby(["_topic", "_partition"])["_offset"].agg(["min", "max"])
        keys = [(str(t), int(p)) for t, p in offsets.index]
        return cls(
            read=len(frame),
            good=int(frame["_reject"].isna().sum()),
            first=dict(zip(keys, offsets["min"].astype(int).tolist(), strict=True)),
            last=dict(zip(keys, offsets["max"].astype(int).tolist(), strict=True)),
        )

    def __add__(self, other: BatchTally) -> BatchTally:
        first, last = dict(self.first), dict(self.last)
        for key, offset in other.first.items():
            first[key] = min(offset, first.get(key, offset))
        for key, offset in other.last.items():
            last[key] = max(offset, last.get(key, offset))
        return BatchTally(self.read + other.read, self.good + other.good, first, last)

    def ends(self) -> dict[Partition, int]:
        """Per source partition, the offset after the last message of the batch."""
        return {key: offset + 1 for key, offset in self.last.items()}


@dataclass(frozen=True)
class ChunkReport:
    """One chunk's share for the driver, as Arrow IPC: its rows for the dead letters and
    the timings, its encoded filter messages; its tally and the seconds encoding took."""

    rows: bytes
    outbox: bytes
    tally: BatchTally
    encode_seconds: float = 0.0


def driver_rows(out: pd.DataFrame) -> pd.DataFrame:
    """The rows the driver reads: rejected (dead letters) or carrying the chunk's timings."""
    keep = out["_reject"].notna().to_numpy(bool) | out["_timings"].notna().to_numpy(bool)
    return out[keep]


@dataclass(frozen=True)
class Gathered:
    """The driver's side of a batch's tasks: their rows, outboxes, tally and encoding time."""

    rows: pa.Table
    outbox: pa.Table
    tally: BatchTally
    encode_seconds: float


class ReportsParam:
    """The accumulator's arithmetic (pyspark's AccumulatorParam protocol): lists, joined."""

    def zero(self, value: list[ChunkReport]) -> list[ChunkReport]:
        return []

    def addInPlace(  # pyspark's name
        self, reports: list[ChunkReport], more: list[ChunkReport]
    ) -> list[ChunkReport]:
        reports.extend(more)
        return reports


@dataclass(frozen=True)
class ArchiveRows:
    """The archive's columns of a step's alerts, with the partitions' (night, pipeline, batch)."""

    columns: tuple[tuple[str, str], ...]  # name, Spark SQL type

    @classmethod
    def of(cls, step: ScienceStep) -> ArchiveRows:
        kinds = step.output_columns
        names = [
            *SOURCE_META,
            *step.alert_columns,
            *[pass_column(f.name) for f, _ in step.plan.filters],
        ]
        return cls(tuple((n, kinds[n]) for n in names))

    def spark_schema(self) -> str:
        fields = [*self.columns, *ARCHIVE_PARTITIONS.items()]
        return ", ".join(f"`{name}` {kind}" for name, kind in fields)

    def arrow_schema(self) -> pa.Schema:
        fields = [*self.columns, *ARCHIVE_PARTITIONS.items()]
        return pa.schema([(name, arrow_type(kind)) for name, kind in fields])

    def batch(
        self, good: pd.DataFrame, survey: str, pipeline: str, batch_id: int
    ) -> pa.RecordBatch:
        frame = good[[name for name, _ in self.columns]].copy()
        frame["night"] = rows.nights(good, survey).to_numpy(dtype=object)
        frame["pipeline"] = pipeline  # NAMESPACE.NAME: pipelines sharing a root never collide
        frame["batch"] = batch_id
        schema = self.arrow_schema()
        arrays = [arrow_array(frame[f.name], f.type) for f in schema]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


@dataclass(frozen=True)
class SplitStep:
    """The function a batch's tasks run (mapInArrow): the science step, its output split.

    Picklable, like the ScienceStep inside; `reports` is a pyspark Accumulator,
    which its workers add to and only the driver reads.
    """

    step: ScienceStep
    reports: Any
    encoder: FilterEncoder
    archive: ParquetArchive | None = None

    @property
    def yields_rows(self) -> bool:
        """Whether the tasks hand the archive's rows to Spark's writer (a Hadoop URL)."""
        return self.archive is not None and not self.archive.local

    def spark_schema(self) -> str:
        return ArchiveRows.of(self.step).spark_schema() if self.yields_rows else NOTHING

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        step = self.step
        schema = step.arrow_schema()
        columns = ArchiveRows.of(step)
        for chunk, batch in enumerate(batches):
            out = step.output_of(batch)
            ipc = to_ipc(driver_rows(out), schema)
            good = out[out["_reject"].isna().to_numpy(bool)]
            started = time.perf_counter()
            outbox = table_ipc(self.encoder.encode(good))
            encode_seconds = time.perf_counter() - started
            if self.archive is not None and len(good):
                assert step.batch_id is not None
                archived = columns.batch(
                    good, step.plan.survey, self.archive.pipeline, step.batch_id
                )
                if self.yields_rows:
                    yield archived
                else:
                    self._write_local(archived, step.batch_id, chunk)
            # reported once the chunk is archived: a failed write reports nothing
            self.reports.add([ChunkReport(ipc, outbox, BatchTally.of(out), encode_seconds)])

    def _write_local(self, archived: pa.RecordBatch, batch_id: int, chunk: int) -> None:
        """The chunk's files, one per night, named after the task's partition and the
        chunk: a retried task rewrites the same names."""
        from pyspark import TaskContext

        assert self.archive is not None
        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        table = pa.Table.from_batches([archived])
        nights = table.column("night")
        table = table.drop_columns(list(ARCHIVE_PARTITIONS))  # in the directories' names
        for night in sorted(set(nights.to_pylist())):
            part = table.filter(pc.equal(nights, night))
            name = f"part-{partition:05d}-{chunk:05d}.zstd.parquet"
            self.archive.write_part(part, night, batch_id, name)


def gathered(reports: list[ChunkReport], schema: pa.Schema) -> Gathered:
    """The driver's side: every chunk's rows and outbox as one table each, and the tally."""
    tables = [from_ipc(report.rows) for report in reports]
    outboxes = [from_ipc(report.outbox) for report in reports]
    return Gathered(
        pa.concat_tables(tables) if tables else schema.empty_table(),
        pa.concat_tables(outboxes) if outboxes else OUTBOX_SCHEMA.empty_table(),
        sum((report.tally for report in reports), BatchTally()),
        sum(report.encode_seconds for report in reports),
    )
