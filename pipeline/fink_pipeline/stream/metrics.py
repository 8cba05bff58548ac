"""Prometheus metrics of a running pipeline, served by the Spark driver.

Every metric carries the pipeline's name, so one Prometheus scrapes many
pipelines without relabelling.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BATCH_BUCKETS = (0.5, 1, 2, 5, 10, 20, 40, 60, 120, 300)


class PipelineMetrics:
    def __init__(self, pipeline: str, registry: CollectorRegistry | None = None) -> None:
        self.pipeline = pipeline
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.alerts_read = Counter(
            "fink_pipeline_alerts_read",
            "Kafka messages read from the source",
            ["pipeline"],
            registry=r,
        )
        self.alerts_rejected = Counter(
            "fink_pipeline_alerts_rejected",
            "Messages set aside in the dead-letter topic, by reason category",
            ["pipeline", "reason"],
            registry=r,
        )
        self.alerts_written = Counter(
            "fink_pipeline_alerts_written",
            "Alerts written per sink (kafka counts messages to filter topics)",
            ["pipeline", "sink"],
            registry=r,
        )
        self.alerts_lost = Counter(
            "fink_pipeline_alerts_lost",
            "Source messages deleted by the topic's retention before the pipeline read them "
            "(skipped, never processed)",
            ["pipeline", "topic", "partition"],
            registry=r,
        )
        self.filter_passed = Counter(
            "fink_pipeline_filter_passed",
            "Alerts each filter selected",
            ["pipeline", "filter"],
            registry=r,
        )
        self.filters_stopped = Counter(
            "fink_pipeline_science_filter_stopped",
            "ScienceFilters stopped in a micro-batch (raised, timed out, out of memory, "
            "forbidden call, bad answer); each then publishes nothing until its code changes",
            ["pipeline", "filter"],
            registry=r,
        )
        self.workers_kept_warm = Counter(
            "fink_pipeline_workers_kept_warm",
            "Runs of the science step on synthetic alerts that kept a quiet stream's Python "
            "workers started past Spark's idle minute",
            ["pipeline"],
            registry=r,
        )
        self.alerts_decoded = Counter(
            "fink_pipeline_alerts_decoded",
            "Alerts decoded, by where: Spark's JVM (jvm) or the tasks' Python workers (python)",
            ["pipeline", "decoder"],
            registry=r,
        )
        self.module_seconds = Counter(
            "fink_pipeline_module_seconds",
            "Processing time spent in each science module (and in decoding), summed over tasks",
            ["pipeline", "module"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "fink_pipeline_batch_duration_seconds",
            "Wall time of a micro-batch, from its start to its last sink",
            ["pipeline"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Counter(
            "fink_pipeline_stage_seconds",
            "Time per stage of the micro-batches: science (the Spark tasks' job, driver wall "
            "time), hbase and encode (the filter messages, both in the tasks, summed), "
            "kafka (the driver's transaction)",
            ["pipeline", "stage"],
            registry=r,
        )
        self.batches = Counter(
            "fink_pipeline_batches", "Micro-batches by outcome", ["pipeline", "outcome"], registry=r
        )
        self.input_lag = Gauge(
            "fink_pipeline_input_lag_messages",
            "Messages in the source partition not yet processed (head minus processed offset)",
            ["pipeline", "topic", "partition"],
            registry=r,
        )
        self.running = Gauge(
            "fink_pipeline_running",
            "1 while the streaming query runs (it may be waiting for alerts), else 0",
            ["pipeline"],
            registry=r,
        )
        self.last_batch = Gauge(
            "fink_pipeline_last_batch_timestamp_seconds",
            "Unix time the last micro-batch finished",
            ["pipeline"],
            registry=r,
        )

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        start_http_server(port, addr=address, registry=self.registry)
