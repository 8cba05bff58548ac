"""Run a pipeline as a Spark structured-streaming query until stopped or idle.

The query reads the source topic with Spark's Kafka connector and hands each
micro-batch to MicroBatchWriter. Spark's checkpoint (offsets and commit logs)
decides which batch runs next after a restart; the sinks make a replayed batch
harmless. SIGTERM and SIGINT stop the query between batches.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from fink_pipeline.science import plan_science
from fink_pipeline.stream import storage
from fink_pipeline.stream.batch import BatchSinks, MicroBatchWriter
from fink_pipeline.stream.enriched import EnrichedCodec, enriched_schema
from fink_pipeline.stream.kafka_options import spark_source_options
from fink_pipeline.stream.live_filters import LiveFilters, limits_from_environment
from fink_pipeline.stream.metrics import PipelineMetrics
from fink_pipeline.stream.science_step import HBaseTarget, ScienceStep, hbase_families
from fink_pipeline.stream.settings import RunSettings
from fink_pipeline.stream.sinks import ParquetArchive, TransactionalKafka
from fink_pipeline.stream.warm_up import KeepWarm, warm_up

log = logging.getLogger(__name__)

# What a task's Python worker receives at a time: up to Spark's default 10,000 rows, and no
# more than 64 MiB of them. A ZTF packet with its cutouts weighs ~65 KB, so those come about
# 1,000 at a time and a worker's memory stays bounded whatever the micro-batch size, while
# light alerts come in chunks of thousands: every chunk costs the modules, the HBase call
# and the Parquet file a fixed share (at 1,000 rows, ~15 µs of a light alert's ~170 in
# the workers). spec.spark.sparkConf can set other values.
ARROW_RECORDS_PER_BATCH = 10_000
ARROW_BYTES_PER_BATCH = 64 * 1024 * 1024
# Options of Spark's JVMs (driver and executors; spark.*.extraJavaOptions add to them).
# HotSpot compiles a method after 5x the calls it would by default: the code that runs
# every alert still compiles within the first batches, the code that runs a few times
# per batch stays interpreted. Measured on light packets: the JIT compiler's CPU per
# alert in the first minutes down by a third to a half, throughput the same or up to 7 %
# higher, p95 latency of the first bursts unchanged with the warm-up (docs/pipeline.md).
JVM_OPTIONS = "-XX:CompileThresholdScaling=5"


@dataclass(frozen=True)
class RunSummary:
    batches: int
    read: int
    rejected: int
    passed: dict[str, int]
    seconds: float


def session_conf(settings: RunSettings) -> dict[str, str]:
    """The Spark settings of a pipeline's session: ours, then the spec's sparkConf."""
    conf = {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_RECORDS_PER_BATCH),
        "spark.sql.execution.arrow.maxBytesPerBatch": str(ARROW_BYTES_PER_BATCH),
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        "spark.driver.defaultJavaOptions": JVM_OPTIONS,
        "spark.executor.defaultJavaOptions": JVM_OPTIONS,
    }
    if settings.master.startswith("local"):
        conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = "127.0.0.1"
    if settings.spark_jars:
        conf["spark.jars"] = ",".join(settings.spark_jars)
    return conf | dict(settings.spec.spark.spark_conf)


def spark_session(settings: RunSettings) -> Any:
    # the Python workers must be this interpreter (the one with our packages), and the
    # driver stays on loopback like every server of the local stack
    os.environ["PYSPARK_PYTHON"] = sys.executable
    if settings.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(settings.master).appName(f"fink-{settings.spec.name}")
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def build_writer(settings: RunSettings, metrics: PipelineMetrics) -> MicroBatchWriter:
    spec = settings.spec
    plan = plan_science(spec)
    hbase = None
    if spec.hbase_sink is not None:
        families = hbase_families(plan, [f.name for f in spec.hbase_sink.column_families])
        hbase = HBaseTarget(
            host=settings.thrift_host,
            port=settings.thrift_port,
            table=spec.hbase_sink.table,
            families=tuple((f, tuple(c)) for f, c in families.items()),
            salt_digits=spec.hbase_sink.salt_digits,
            cutouts=spec.hbase_sink.stores_cutouts,
            layout=spec.hbase_sink.layout,
        )
    step = ScienceStep(plan, hbase, schema_registry=spec.source.schema_registry)
    codec = EnrichedCodec(enriched_schema(spec.survey, step.alert_columns))
    sinks = BatchSinks(
        kafka=TransactionalKafka(
            settings.connections.sink,
            settings.transactional_id,
            settings.consumer_group,
            source=settings.connections.source,
            progress_topic=spec.progress_topic,
        ),
        archive=ParquetArchive(settings.archive, settings.pipeline_id)
        if settings.archive
        else None,
        dead_letter_topic=spec.kafka_sink.dead_letter_topic,
    )
    layouts = {f.topic: f.layout for f in spec.filters}  # topic -> spec.filters[].layout
    # ScienceFilters handed over by the operator through the control topic (live_filters.py)
    live = LiveFilters(
        spec.name,
        settings.connections.sink.client_config(),
        limits_from_environment(os.environ),
    )
    return MicroBatchWriter(spec.name, step, codec, sinks, metrics, layouts, live)


def run(settings: RunSettings, metrics: PipelineMetrics | None = None) -> RunSummary:
    """Start the query and block until a signal, an error, or the idle timeout."""
    metrics = metrics or PipelineMetrics(settings.spec.name)
    writer = build_writer(settings, metrics)
    spark = spark_session(settings)
    if settings.warm_up:  # the first alerts read should not wait for the workers' start
        warm_up(spark, writer.current_step())  # ScienceFilters too: their sandboxes start
    source = settings.spec.source
    reader = (
        spark.readStream.format("kafka")
        .options(**spark_source_options(settings.connections.source))
        .option("subscribe", source.topic)
        .option("startingOffsets", source.starting_offsets)
        .option("failOnDataLoss", "false")
    )
    # bounds a micro-batch, so the memory of the tasks and of the driver's collect
    reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    raw = reader.load().select("value", "topic", "partition", "offset", "timestamp")
    if storage.is_local(settings.checkpoint):  # a URL's directories are Spark's to make
        storage.local_path(settings.checkpoint).mkdir(parents=True, exist_ok=True)
    query = (
        raw.writeStream.foreachBatch(writer)
        .option("checkpointLocation", settings.checkpoint)
        .trigger(processingTime=settings.trigger_interval)
        .queryName(f"fink-{settings.spec.name}")
        .start()
    )
    log.info(
        "pipeline %s running: %s -> %s (checkpoint %s)",
        settings.spec.name,
        source.topic,
        ", ".join(settings.spec.topics),
        settings.checkpoint,
    )
    metrics.running.labels(settings.spec.name).set(1)
    if settings.metrics_port is not None:
        # served once the query runs: on Kubernetes the driver pod's readiness probe asks for
        # them, so a Ready driver is a streaming one
        metrics.serve(settings.metrics_port, settings.metrics_address)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, settings.metrics_port)
    writer.last_rows_at = time.monotonic()  # idle time counts from the query's start
    stop = threading.Event()
    _stop_on_signals(stop)
    started = time.monotonic()
    # a quiet stream keeps its warmed-up workers past Spark's idle minute (warm_up.py)
    keeper = KeepWarm(spark, settings.keep_warm_after) if settings.keep_warm_after > 0 else None
    try:
        while query.isActive and not stop.is_set():
            if query.exception() is not None:
                break
            if _idle(writer, query, settings.until_idle_seconds):
                log.info(
                    "no new alerts for %.0f s and nothing left to read: stopping",
                    settings.until_idle_seconds,
                )
                break
            if (
                keeper is not None
                and not query.status["isTriggerActive"]
                and keeper.tick(writer.last_step, writer.last_rows_at)
            ):
                metrics.workers_kept_warm.labels(settings.spec.name).inc()
            stop.wait(1.0)
    finally:
        if query.isActive and query.exception() is None:
            _finish_the_batch_in_flight(writer, query)
        failure = query.exception()
        if query.isActive:
            query.stop()
        metrics.running.labels(settings.spec.name).set(0)
        writer.sinks.kafka.close()
        spark.stop()
    if writer.refused is not None:
        log.info(
            "stopped before micro-batch %d: nothing of it was written; the next start runs it",
            writer.refused,
        )
    elif failure is not None:
        raise RuntimeError(failure_message(writer.failure, failure))
    return RunSummary(
        batches=sum(1 for r in writer.reports if r.read),
        read=sum(r.read for r in writer.reports),
        rejected=sum(r.rejected for r in writer.reports),
        passed={
            name: sum(r.passed.get(name, 0) for r in writer.reports)
            for name in writer.step.plan.filter_topics()
        },
        seconds=time.monotonic() - started,
    )


# the last line of a Python traceback: "module.ExceptionName: message"
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Injected|Exit)): (.+)$")


def failure_message(batch_failure: tuple[int, BaseException] | None, failure: Any) -> str:
    """One line: which micro-batch failed and the error that failed it.

    An error raised in a Spark task reaches the driver wrapped in Spark's
    exception, whose text holds the worker's whole traceback: its last
    exception line is the cause (e.g. the HBase Thrift server that could not be
    reached, or the module's own error).
    """
    if batch_failure is None:
        lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
        return f"the streaming query failed: {lines[0] if lines else type(failure).__name__}"
    batch_id, error = batch_failure
    text = str(error)
    cause = f"{type(error).__name__}: {text}"
    if "Traceback (most recent call last)" in text:
        found = [m for line in text.splitlines() if (m := _EXCEPTION_LINE.match(line.strip()))]
        if found:
            name, message = found[-1].groups()
            cause = f"{name.rsplit('.', 1)[-1]}: {message}"
    first = cause.strip().splitlines()[0] if cause.strip() else type(error).__name__
    return f"micro-batch {batch_id} failed: {first}"


def _finish_the_batch_in_flight(
    writer: MicroBatchWriter, query: Any, timeout: float = 900.0
) -> None:
    """Stop between micro-batches: let the one in flight finish, refuse the next one.

    Stopping the query while a batch runs interrupts Spark after the batch's
    sinks but before its commit log entry, so a restart would replay it. Instead
    the batch in flight completes (sinks and Spark's commit), and a batch that
    starts meanwhile is refused by the writer before it writes anything (its
    offsets stay in Spark's log; the next start runs it).
    """
    writer.stop_requested.set()
    deadline = time.monotonic() + timeout
    while query.isActive and time.monotonic() < deadline:
        if not query.status["isTriggerActive"]:
            return
        time.sleep(0.1)


def _idle(writer: MicroBatchWriter, query: Any, until_idle: float | None) -> bool:
    """Nothing new for until_idle seconds, and Spark sees no data waiting in the source."""
    if until_idle is None or time.monotonic() - writer.last_rows_at < until_idle:
        return False
    if query.lastProgress is None:  # not even one trigger yet: Spark has not looked
        return False
    status = query.status
    return not status["isDataAvailable"] and not status["isTriggerActive"]


def _stop_on_signals(stop: threading.Event) -> None:
    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping after the current micro-batch", signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
