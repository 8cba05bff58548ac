"""Start the Python workers before the query reads its first alert.

A fresh Python worker pays, on its first task, for importing pandas, pyarrow,
the decoder and the science modules and for the modules' first call (building
the cross-match's catalogue index...), and Spark's JVM compiles its Arrow path
to Python. Left to the first micro-batch, that start-up lands on the latency of
the first alerts a started (or restarted) pipeline reads. Run here, on a few
synthetic alerts in every task slot, it is paid before the query starts.

For ZTF the same alerts then go once more through Spark's JVM decoder
(jvm_decode.py), which the stream's decoder trusts only from the batch after
the Python workers reported a container prefix: without this, the first batch
the JVM decodes pays for loading spark-avro's and Avro's classes and for
generating and compiling the query's code. This pass uses a decoder of its own,
taught the synthetic alerts' prefix; the stream's decoder still learns only
from the stream.

The step is the one the first batch would run, with the ScienceFilters live at
the start (MicroBatchWriter.current_step): each worker also starts its sandbox
process and loads the filters (0.6-0.9 s per worker), which the first batch
paid before. A filter applied later still pays that in its first batch.

Nothing is written: the step runs without its HBase target and its output is
dropped. Spark keeps idle workers for a minute and reuses them, so the query's
first tasks find them warm.

That minute is fixed (PythonWorkerFactory stops every idle worker once none has
been used for a minute), so a stream quiet for longer would pay the start-up
again on its next alerts. KeepWarm runs the same dry step whenever the workers
have had nothing to do for a while (settings.DEFAULT_KEEP_WARM_AFTER: 40 s,
well inside the minute, with room for the factory's check every 10 s).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fink_pipeline.alerts import codec, generator
from fink_pipeline.stream.jvm_decode import JvmDecoder
from fink_pipeline.stream.live_filters import stopped_in
from fink_pipeline.stream.science_step import (
    DECODED_KEY,
    PREFIXES_KEY,
    ScienceStep,
    pass_column,
)
from fink_pipeline.stream.settings import DEFAULT_KEEP_WARM_AFTER

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
    jvm_decoded: int = 0  # of the second pass's alerts, those Spark's JVM decoded (ZTF)


def warm_up_rows(survey: str, count: int) -> list[tuple[bytes, str, int, int, datetime]]:
    """Synthetic raw Kafka records, as the source would hand them over."""
    now = datetime.now(UTC)
    alerts = generator.generate_alerts(count, survey, seed=0, cutouts=False)
    return [(codec.encode(a, survey), "warm-up", 0, i, now) for i, a in enumerate(alerts)]


def dry_step(step: ScienceStep) -> ScienceStep:
    """The step that writes nothing: no HBase target, no batch (so no fault hook),
    and the survey package's own schema ids (a registry may not know them)."""
    return replace(step, hbase=None, batch_id=None, schema_registry=None)


def warm_up(
    spark: Any, step: ScienceStep, quiet: bool = False, jvm_pass: bool = True
) -> WarmedUp | None:
    """Every task slot's worker started on synthetic alerts; None if that failed
    (logged: the pipeline runs anyway and its first micro-batch pays the start-up).
    Quiet (KeepWarm's runs) logs what went well at debug level only. `jvm_pass`: also
    run the JVM's decoder on them (ZTF), which a pipeline's start needs, KeepWarm not."""
    started = time.monotonic()
    slots = max(1, int(spark.sparkContext.defaultParallelism))
    try:
        rows = warm_up_rows(step.plan.survey, ALERTS_PER_SLOT * slots)
        dry = dry_step(step)
        frame = spark.createDataFrame(rows, RAW_SCHEMA).repartition(slots)
        out = dry.rows_of(frame.mapInArrow(dry, schema=dry.spark_schema()).toArrow())
    except Exception as error:  # a start-up optimisation must never stop the pipeline
        log.warning("warming the Python workers up failed, the first batch will: %s", error)
        return None
    rejected = out.num_rows - out.column("_reject").null_count
    passed = {f.name: _true_count(out.column(pass_column(f.name))) for f, _ in dry.plan.filters}
    stopped = stopped_in(out.column("_timings").to_pylist())
    jvm_decoded = _jvm_pass(frame, dry, _reports(out), step.stores_cutouts) if jvm_pass else 0
    done = WarmedUp(
        slots, out.num_rows, rejected, time.monotonic() - started, passed, stopped, jvm_decoded
    )
    for name, why in stopped.items():  # the first batch runs it again (and reports it)
        log.log(
            logging.DEBUG if quiet else logging.WARNING,
            "ScienceFilter %s failed on the warm-up's synthetic alerts: %s",
            name,
            why,
        )
    log.log(
        logging.DEBUG if quiet else logging.INFO,
        "%d task slots warmed up on %d synthetic alerts in %.1f s (filters passed %s, "
        "Spark's JVM decoded %d)",
        done.slots,
        done.alerts,
        done.seconds,
        done.passed,
        done.jvm_decoded,
    )
    return done


def _reports(out: pa.Table) -> list[dict[str, Any]]:
    """What the tasks reported beside their times (science_step: first row of each chunk)."""
    return [json.loads(text) for text in out.column("_timings").to_pylist() if text]


def _jvm_pass(frame: Any, dry: ScienceStep, reports: list[dict[str, Any]], cutouts: bool) -> int:
    """The synthetic alerts once more, decoded by Spark's JVM where it can (the prefixes
    the Python pass reported); how many it decoded. 0 when the survey is not one the JVM
    decodes, Spark has no spark-avro, or this pass failed (logged). The filters stay out
    of it: the first pass started their sandboxes, and one that times out on these
    alerts would hold the start-up for its whole time limit again. `cutouts`: whether the
    stream's decoder reads the stamps (the dry step has no HBase target to say so), so
    that this pass compiles the same query."""
    dry = replace(dry, plan=replace(dry.plan, filters=()))
    decoder = JvmDecoder(dry.plan.survey, cutouts)
    decoder.learn(bytes.fromhex(p) for report in reports for p in report.get(PREFIXES_KEY, ()))
    if not decoder.active:
        return 0
    try:
        source = decoder.columns(frame)
        if not decoder.active:  # no spark-avro: logged by columns()
            return 0
        out = dry.rows_of(source.mapInArrow(dry, schema=dry.spark_schema()).toArrow())
    except Exception as error:  # a start-up optimisation must never stop the pipeline
        log.warning("warming Spark's JVM decoder up failed, its first batch will: %s", error)
        return 0
    return decoded_in_jvm(out)


def decoded_in_jvm(out: pa.Table) -> int:
    """How many alerts of a step's output Spark's JVM decoded, as its tasks reported."""
    return sum(report.get(DECODED_KEY, {}).get("jvm", 0) for report in _reports(out))


def _true_count(flags: pa.ChunkedArray) -> int:
    return int(pc.sum(flags.cast(pa.int64())).as_py() or 0)


@dataclass
class KeepWarm:
    """Keeps a quiet stream's Python workers alive past Spark's idle minute.

    `tick` is called often (the runner's loop, once a second); it runs the dry
    step when neither a micro-batch nor an earlier run used the workers for
    `after` seconds. The step is asked for only then: the runner gives the last
    batch's (a ScienceFilter published meanwhile loads in its first batch, as
    after the warm-up).
    """

    spark: Any
    after: float = DEFAULT_KEEP_WARM_AFTER
    last_run: float = field(default_factory=time.monotonic)
    runs: int = 0

    def tick(self, step: Callable[[], ScienceStep], busy_until: float) -> bool:
        """Whether the workers were exercised now; busy_until: the last batch's end."""
        now = time.monotonic()
        if now - max(busy_until, self.last_run) < self.after:
            return False
        try:
            current = step()
        except Exception as error:  # like the warm-up, never a reason to stop the pipeline
            log.warning("keeping the Python workers warm skipped: %s", error)
            self.last_run = now
            return False
        # the workers only: the JVM's decoder, warmed at the start, stays compiled
        done = warm_up(self.spark, current, quiet=True, jvm_pass=False)  # failures logged
        self.last_run = time.monotonic()
        self.runs += done is not None
        return done is not None
