"""Start the Python workers before the query reads its first alert.

A fresh Python worker pays, on its first task, for importing pandas, pyarrow,
the decoder and the science modules and for the modules' first call (building
the cross-match's catalogue index...), and Spark's JVM compiles its Arrow path
to Python. Left to the first micro-batch, that start-up lands on the latency of
the first alerts a started (or restarted) pipeline reads. Run here, on a few
synthetic alerts in every task slot, it is paid before the query starts.

The step is the one the first batch would run, with the ScienceFilters live at
the start (MicroBatchWriter.current_step): each worker also starts its sandbox
process and loads the filters (0.6-0.9 s per worker), which the first batch
paid before. A filter applied later still pays that in its first batch.

Nothing is written: the step runs without its HBase target and its output is
dropped. Spark keeps idle workers for a minute and reuses them, so the query's
first tasks find them warm.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fink_pipeline.alerts import codec, generator
from fink_pipeline.stream.live_filters import stopped_in
from fink_pipeline.stream.science_step import ScienceStep, pass_column

log = logging.getLogger(__name__)

ALERTS_PER_SLOT = 32
RAW_SCHEMA = "value binary, topic string, partition int, offset bigint, timestamp timestamp"


@dataclass(frozen=True)
class WarmedUp:
    slots: int
    alerts: int  # synthetic alerts the workers processed
    rejected: int  # of them, refused by the decoder (0 unless the survey's encoder broke)
    seconds: float
    passed: dict[str, int]  # filter -> warm-up alerts it passed (each filter ran in the workers)
    stopped: dict[str, str]  # ScienceFilters stopped on the warm-up alerts: name -> why


def warm_up_rows(survey: str, count: int) -> list[tuple[bytes, str, int, int, datetime]]:
    """Synthetic raw Kafka records, as the source would hand them over."""
    now = datetime.now(UTC)
    alerts = generator.generate_alerts(count, survey, seed=0, cutouts=False)
    return [(codec.encode(a, survey), "warm-up", 0, i, now) for i, a in enumerate(alerts)]


def dry_step(step: ScienceStep) -> ScienceStep:
    """The step that writes nothing: no HBase target, no batch (so no fault hook),
    and the survey package's own schema ids (a registry may not know them)."""
    return replace(step, hbase=None, batch_id=None, schema_registry=None)


def warm_up(spark: Any, step: ScienceStep) -> WarmedUp | None:
    """Every task slot's worker started on synthetic alerts; None if that failed
    (logged: the pipeline runs anyway and its first micro-batch pays the start-up)."""
    started = time.monotonic()
    slots = max(1, int(spark.sparkContext.defaultParallelism))
    try:
        rows = warm_up_rows(step.plan.survey, ALERTS_PER_SLOT * slots)
        dry = dry_step(step)
        frame = spark.createDataFrame(rows, RAW_SCHEMA).repartition(slots)
        out = dry.rows_of(frame.mapInPandas(dry, schema=dry.spark_schema()).toArrow())
    except Exception as error:  # a start-up optimisation must never stop the pipeline
        log.warning("warming the Python workers up failed, the first batch will: %s", error)
        return None
    rejected = out.num_rows - out.column("_reject").null_count
    passed = {f.name: _true_count(out.column(pass_column(f.name))) for f, _ in dry.plan.filters}
    stopped = stopped_in(out.column("_timings").to_pylist())
    done = WarmedUp(slots, out.num_rows, rejected, time.monotonic() - started, passed, stopped)
    for name, why in stopped.items():  # the first batch runs it again (and reports it)
        log.warning("ScienceFilter %s failed on the warm-up's synthetic alerts: %s", name, why)
    log.info(
        "%d task slots warmed up on %d synthetic alerts in %.1f s (filters passed %s)",
        done.slots,
        done.alerts,
        done.seconds,
        done.passed,
    )
    return done


def _true_count(flags: pa.ChunkedArray) -> int:
    return int(pc.sum(flags.cast(pa.int64())).as_py() or 0)
