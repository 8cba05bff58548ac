"""One micro-batch, start to finish: science, HBase and Parquet in Spark tasks, then Kafka.

Order matters for exactly-once: HBase and Parquet first, both written by the
tasks and both idempotent, then the driver's Kafka transaction that also commits
the source offsets. If the driver dies anywhere in between, Spark replays the
batch: HBase and Parquet are rewritten with the same content and the transaction
either never happened (sent again) or committed (skipped). The driver receives
only what it sends through Kafka, the filter messages already encoded by the
tasks (outbox.py), and a tally of the rest (task_outputs.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import pyarrow as pa

from fink_core.filter_control import LiveFilter
from fink_pipeline.stream import faults, fink_client_layout
from fink_pipeline.stream.enriched import EnrichedCodec
from fink_pipeline.stream.fink_client_layout import FinkClientCodec
from fink_pipeline.stream.jvm_decode import JvmDecoder
from fink_pipeline.stream.live_filters import FAILURE_TIMING, LiveFilters, stopped_in
from fink_pipeline.stream.metrics import PipelineMetrics
from fink_pipeline.stream.outbox import FilterEncoder, passed_counts
from fink_pipeline.stream.science_step import (
    DECODED_KEY,
    HBASE_TIMING,
    PREFIXES_KEY,
    ScienceStep,
)
from fink_pipeline.stream.sinks import (
    OutgoingMessage,
    ParquetArchive,
    TransactionalKafka,
    delivered,
)
from fink_pipeline.stream.storage import HadoopFiles
from fink_pipeline.stream.task_outputs import (
    BatchTally,
    ReportsParam,
    SplitStep,
    gathered,
)

log = logging.getLogger(__name__)


CANCELLED_TASKS_WAIT = 60.0  # seconds: a failed job's cancelled tasks end within a row batch


def await_no_running_tasks(context: Any, timeout: float) -> bool:
    """Wait until no executor runs a task (a failed job's cancelled tasks have ended).

    Spark fails a job as soon as one task fails and cancels the others without
    waiting; a pipeline's driver runs one query, so no running task is left of it.
    """
    deadline = time.monotonic() + timeout
    tracker = context._jsc.sc().statusTracker()
    while True:
        running = sum(info.numRunningTasks() for info in tracker.getExecutorInfos())
        if running == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


class StopRequested(Exception):
    """A micro-batch refused because the pipeline is stopping (it runs at the next start)."""


@dataclass
class BatchSinks:
    kafka: TransactionalKafka
    archive: ParquetArchive | None
    dead_letter_topic: str


@dataclass(frozen=True)
class BatchReport:
    batch_id: int
    read: int
    rejected: int
    passed: dict[str, int]
    replayed: bool
    seconds: float


class MicroBatchWriter:
    """The foreachBatch function: Spark calls it with each micro-batch and its id."""

    def __init__(
        self,
        pipeline: str,
        step: ScienceStep,
        codec: EnrichedCodec,
        sinks: BatchSinks,
        metrics: PipelineMetrics,
        layouts: Mapping[str, str] | None = None,
        live: LiveFilters | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.step = step
        # the ScienceFilters read from the control topic before each batch (None: none)
        self.live = live
        self.plan = step.plan  # the plan of the batch being written (with its ScienceFilters)
        self.live_ran: list[LiveFilter] = []
        self.codec = codec
        # filter topic -> its layout (spec.filters[].layout); a topic not named: `fink`
        self.layouts = dict(layouts or {})
        self.client_codec = (
            FinkClientCodec(step.plan.survey, step.alert_columns)
            if fink_client_layout.LAYOUT in self.layouts.values()
            else None
        )
        self.sinks = sinks
        self.metrics = metrics
        # ZTF containers with a prefix the tasks reported are decoded in Spark's JVM
        self.jvm = JvmDecoder(step.plan.survey, step.stores_cutouts)
        self.last_rows_at = time.monotonic()
        self.reports: list[BatchReport] = []
        self.lag: dict[tuple[str, int], int] = {}
        # the micro-batch that failed and why, for a one-line message when the query stops
        self.failure: tuple[int, BaseException] | None = None
        # set when the pipeline is asked to stop: a batch that starts then is refused
        self.stop_requested = threading.Event()
        self.refused: int | None = None
        self._reports: Any = None  # the tasks' accumulator (task_outputs.ReportsParam)
        # a local archive may hold files of a batch not committed: after a start or a failure
        self._archive_unsettled = True

    def __call__(self, raw: Any, batch_id: int) -> None:
        if self.stop_requested.is_set():
            # raising is the only way to stop Spark from marking the batch done; nothing
            # of it is written, and its offsets stay in the log for the next start
            self.refused = batch_id
            log.info(
                "micro-batch %d refused: the pipeline is stopping (Spark reports the refusal "
                "as an error; nothing of the batch was written, the next start runs it)",
                batch_id,
            )
            raise StopRequested(f"micro-batch {batch_id} not run: the pipeline is stopping")
        started = time.monotonic()
        try:
            faults.reached("batch", batch_id)
            step = self._batch_step(batch_id)
            source = self.jvm.columns(raw)  # the alerts the JVM can decode, decoded
            reports = self._fresh_reports(raw)
            archive = self.sinks.archive
            if archive is not None and self._archive_unsettled:
                archive.discard(batch_id)  # an earlier attempt's files: this run replaces them
                self._archive_unsettled = False
            split = SplitStep(step, reports, self.encoder(step), archive)
            archived = source.mapInArrow(split, schema=split.spark_schema())
            try:
                if archive is not None and split.yields_rows:  # one job: science, HBase, Parquet
                    archive.write(archived, batch_id)
                else:  # the same job; the tasks wrote any archive themselves
                    archived.write.format("noop").mode("overwrite").save()
            except Exception:
                # what the tasks that succeeded wrote, or what Spark's staging left
                self._discard_archived(batch_id, raw.sparkSession.sparkContext)
                raise
            tasks = gathered(reports.value, step.arrow_schema())
            self._stage("science", started)
            self.metrics.stage_seconds.labels(self.pipeline, "encode").inc(tasks.encode_seconds)
            # integer columns holding nulls stay Python ints (not floats) for Avro and HBase
            frame = tasks.rows.to_pandas(integer_object_nulls=True)
            report = self.write(frame, batch_id, started, tasks.tally, tasks.outbox)
        except Exception as error:
            self.failure = (batch_id, error)
            self._archive_unsettled = True
            self.metrics.batches.labels(self.pipeline, "failed").inc()
            log.exception(
                "micro-batch %d failed: the query stops, and a restart replays the batch "
                "from the checkpoint without duplicating what it had written",
                batch_id,
            )
            raise
        self.reports.append(report)
        if report.read:
            self.last_rows_at = time.monotonic()
        log.info(
            "batch %d: %d read, %d rejected, passed %s%s in %.1f s",
            batch_id,
            report.read,
            report.rejected,
            report.passed,
            " (replay: Kafka already had it)" if report.replayed else "",
            report.seconds,
        )

    def _discard_archived(self, batch_id: int, context: Any) -> None:
        """When the tasks' job fails, the files its other tasks wrote do not stay in the archive.

        At a Hadoop URL, Spark's writer removed its staging, but tasks cancelled with
        the job may have made its directories again: once they have ended, those go.
        (A batch that fails later, in the Kafka transaction, keeps its whole archive:
        its replay replaces it.)"""
        archive = self.sinks.archive
        if archive is None:
            return
        try:
            if archive.local:
                archive.discard(batch_id)
            elif await_no_running_tasks(context, CANCELLED_TASKS_WAIT):
                archive.sweep_aborted_staging(HadoopFiles.of_spark(context))
            else:
                log.warning(
                    "the failed batch %d's tasks still run after %.0f s: any staging "
                    "directory they leave under %s stays",
                    batch_id,
                    CANCELLED_TASKS_WAIT,
                    archive.root,
                )
        except Exception as error:  # the next attempt removes or replaces them
            log.warning("could not remove the failed batch %d's archive files: %s", batch_id, error)

    def _fresh_reports(self, raw: Any) -> Any:
        """The accumulator the batch's tasks report to, emptied (one per writer, reused)."""
        if self._reports is None:
            context = raw.sparkSession.sparkContext
            self._reports = context.accumulator([], ReportsParam())
        self._reports.value = []
        return self._reports

    def _batch_step(self, batch_id: int) -> ScienceStep:
        """The step of this batch: the pipeline's science plus the ScienceFilters live now."""
        step = replace(self.current_step(), batch_id=batch_id)
        self.plan = step.plan
        return step

    def last_step(self) -> ScienceStep:
        """The step the last micro-batch ran (before any: the pipeline's own), without
        reading the control topic: safe beside a batch running in Spark's stream thread,
        which current_step (its consumer, live_ran) is not."""
        return replace(self.step, plan=self.plan)

    def current_step(self) -> ScienceStep:
        """The pipeline's step with the ScienceFilters live now, read from the control topic.

        Also what the warm-up runs before the query, so that the Python workers have
        started their sandbox processes and loaded the filters before the first batch.
        """
        self.live_ran = []
        if self.live is None:
            return self.step
        try:
            self.live.refresh()
        except Exception as error:  # the filters loaded before keep running
            log.warning("could not read the control topic %s: %s", self.live.topic, error)
        self.live_ran = self.live.running()
        self.layouts.update({f.topic: f.layout for f in self.live_ran})
        return replace(self.step, plan=self.live.plan_with(self.step.plan))

    def encoder(self, step: ScienceStep) -> FilterEncoder:
        """How the step's alerts become filter messages, with the layouts known now."""
        if self.client_codec is None and fink_client_layout.LAYOUT in self.layouts.values():
            self.client_codec = FinkClientCodec(step.plan.survey, step.alert_columns)
        return FilterEncoder.of(step, self.layouts, self.codec, self.client_codec)

    def _filter_reports(
        self, passed: Mapping[str, int], failures: Mapping[str, str]
    ) -> list[tuple[bytes, bytes]]:
        if self.live is None or not self.live_ran:
            return []
        return self.live.reports(self.live_ran, passed, failures, int(time.time() * 1000))

    def _control_topic(self) -> str:
        assert self.live is not None
        return self.live.topic

    def write(
        self,
        frame: pd.DataFrame,
        batch_id: int,
        started: float,
        tally: BatchTally | None = None,
        outbox: pa.Table | None = None,
    ) -> BatchReport:
        """The driver's part of a batch the tasks ran: Kafka, metrics, the report.

        `frame`: the rows the tasks handed to the driver (rejected or carrying
        timings; task_outputs.driver_rows); `tally`: the whole batch's counts and
        offsets; `outbox`: its filter messages, encoded (outbox.py). Without a
        tally, `frame` is taken as the whole batch; without an outbox, its good
        alerts are encoded here (tests hand it a batch processed in-process).
        """
        m, p = self.metrics, self.pipeline
        tally = tally if tally is not None else BatchTally.of(frame)
        if tally.read == 0:
            m.batches.labels(p, "empty").inc()
            return BatchReport(batch_id, 0, 0, {}, False, time.monotonic() - started)
        self._record_timings(frame["_timings"])
        rejected = frame[frame["_reject"].notna()]
        good = frame[frame["_reject"].isna()].reset_index(drop=True)
        # ScienceFilters stopped in some task: their calls that failed passed nothing, and
        # what their other calls of the batch passed is published, as the archive says
        failures = stopped_in(frame["_timings"].dropna())

        if self.step.hbase is not None:  # the tasks wrote the rows (ScienceStep)
            m.alerts_written.labels(p, "hbase").inc(tally.good)
        if self.sinks.archive is not None:  # and the archive's (ParquetArchive)
            m.alerts_written.labels(p, "parquet").inc(tally.good)

        ends = tally.ends()
        encoder = self.encoder(self.last_step())
        if outbox is None:
            outbox = encoder.encode(good)
        passed = passed_counts(outbox, [f.name for f, _ in self.plan.filters])
        stage = time.monotonic()
        # where the previous batch's transaction left the source: this batch's start
        committed = self.sinks.kafka.committed(ends)
        replayed = delivered(committed, ends)
        if not replayed:
            messages = self.filter_messages(encoder, outbox) + self.dead_letters(rejected)
            reports = self._filter_reports(passed, failures)
            control = [OutgoingMessage(self._control_topic(), v, k, []) for k, v in reports]
            self.sinks.kafka.deliver(messages + control, ends, batch_id)
            if self.live is not None:
                self.live.committed(reports)
            self._stage("kafka", stage)
            m.alerts_written.labels(p, "kafka").inc(len(messages) - len(rejected))
            for name in failures:
                m.filters_stopped.labels(p, name).inc()
            m.alerts_written.labels(p, "dead_letter").inc(len(rejected))
            m.alerts_read.labels(p).inc(tally.read)
            for name, count in passed.items():
                m.filter_passed.labels(p, name).inc(count)
            for reason in rejected["_reject"]:
                m.alerts_rejected.labels(p, reason.split(":", 1)[0]).inc()
        bounds = self._source_bounds(ends)
        if not replayed:
            self._record_lost(tally, committed, bounds, batch_id)
        self._record_lag(ends, bounds)
        seconds = time.monotonic() - started
        m.batch_seconds.labels(p).observe(seconds)
        m.batches.labels(p, "replayed" if replayed else "written").inc()
        m.last_batch.labels(p).set_to_current_time()
        return BatchReport(batch_id, tally.read, len(rejected), passed, replayed, seconds)

    def filter_messages(self, encoder: FilterEncoder, outbox: pa.Table) -> list[OutgoingMessage]:
        """The batch's encoded alerts, one message per filter passed, to its topic."""
        # fink-client's key is the schema: the partition follows the object's id instead,
        # asked once per batch (a topic's partitions may grow)
        partitions = {t: self.sinks.kafka.partition_count(t) for t in encoder.client_topics()}
        return encoder.messages(outbox, partitions)

    def dead_letters(self, rejected: pd.DataFrame) -> list[OutgoingMessage]:
        messages = []
        columns = ("_reject", "_topic", "_partition", "_offset", "_raw")
        for reason, topic, partition, offset, raw in zip(
            *(rejected[c].tolist() for c in columns), strict=True
        ):
            headers = [
                ("fink-error", str(reason).encode()),
                ("fink-pipeline", self.pipeline.encode()),
                ("fink-source-topic", str(topic).encode()),
                ("fink-source-partition", str(partition).encode()),
                ("fink-source-offset", str(offset).encode()),
            ]
            value = bytes(raw) if raw is not None else b""
            key = dead_letter_key(topic, partition, offset)
            messages.append(OutgoingMessage(self.sinks.dead_letter_topic, value, key, headers))
        return messages

    def _stage(self, name: str, since: float) -> None:
        self.metrics.stage_seconds.labels(self.pipeline, name).inc(time.monotonic() - since)

    def _record_timings(self, timings: pd.Series) -> None:
        prefixes: set[bytes] = set()
        for text in timings.dropna():
            for module, seconds in json.loads(text).items():
                if module.startswith(FAILURE_TIMING):
                    continue  # not a time: a stopped ScienceFilter (live_filters.stopped_in)
                if module == PREFIXES_KEY:
                    prefixes.update(bytes.fromhex(p) for p in seconds)
                    continue
                if module == DECODED_KEY:
                    for decoder, count in seconds.items():
                        self.metrics.alerts_decoded.labels(self.pipeline, decoder).inc(count)
                    continue
                if module == HBASE_TIMING:  # task seconds, summed over the tasks
                    self.metrics.stage_seconds.labels(self.pipeline, "hbase").inc(seconds)
                else:
                    self.metrics.module_seconds.labels(self.pipeline, module).inc(seconds)
        for prefix in self.jvm.learn(prefixes):
            log.info(
                "from the next micro-batch on, Spark's JVM decodes the ZTF alerts whose Avro "
                "container starts with this %d-byte prefix (writer schema exactly the "
                "pipeline's, no codec); the Python workers decode the others",
                len(prefix),
            )

    def _source_bounds(
        self, ends: Mapping[tuple[str, int], int]
    ) -> dict[tuple[str, int], tuple[int, int]]:
        try:
            return self.sinks.kafka.bounds(list(ends))
        except Exception as error:  # lag and loss are informative; never fail a batch over them
            log.warning("could not read the source's offsets: %s", error)
            return {}

    def _record_lost(
        self,
        tally: BatchTally,
        committed: Mapping[tuple[str, int], int],
        bounds: Mapping[tuple[str, int], tuple[int, int]],
        batch_id: int,
    ) -> None:
        """Count the source messages retention deleted before they were read.

        Spark's source reads with failOnDataLoss=false: a batch starting at an offset
        that retention already deleted silently starts at the earliest one left. This
        batch starts where the previous transaction committed the group's offset; if
        the partition's earliest offset (or the first one read) lies past it, the
        messages in between were never processed.
        """
        for tp, first_read in tally.first.items():
            start = committed.get(tp, -1)
            if start < 0 or tp not in bounds:  # no earlier batch: nothing to compare with
                continue
            lost = min(bounds[tp][0], int(first_read)) - start
            if lost > 0:
                self.metrics.alerts_lost.labels(self.pipeline, tp[0], str(tp[1])).inc(lost)
                log.warning(
                    "micro-batch %d: %d message(s) of %s partition %d (offsets %d to %d) were "
                    "deleted by the topic's retention before the pipeline read them: skipped "
                    "(failOnDataLoss=false), never processed",
                    batch_id,
                    lost,
                    tp[0],
                    tp[1],
                    start,
                    start + lost - 1,
                )

    def _record_lag(
        self,
        ends: Mapping[tuple[str, int], int],
        bounds: Mapping[tuple[str, int], tuple[int, int]],
    ) -> None:
        for (topic, partition), (_, head) in bounds.items():
            lag = max(0, head - ends[(topic, partition)])
            self.lag[(topic, partition)] = lag
            self.metrics.input_lag.labels(self.pipeline, topic, str(partition)).set(lag)


def dead_letter_key(topic: Any, partition: Any, offset: Any) -> bytes:
    """Where the message was read, `topic:partition:offset`: unique, so compaction keeps all."""
    return f"{topic}:{int(partition)}:{int(offset)}".encode()
