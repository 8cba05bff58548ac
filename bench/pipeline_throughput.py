"""Benchmark the enrichment core end to end on the local stack, with a same-run baseline.

    .venv/bin/python bench/pipeline_throughput.py [--alerts 20000] [--batch 5000]
        [--bursts 4 --burst 2000 --every 10] [--baseline-sample 3000] [--keep]

1. Throughput: --alerts generated ZTF alerts wait in a 2-partition source topic;
   `fink-pipeline run` (Spark local[2], the five built-in modules, three filters,
   all sinks: filter topics, dead letters, HBase, Parquet) drains them in batches
   of --batch. Alerts/s = alerts read / time spent in micro-batches (from the
   pipeline's own metrics), and over wall-clock time from the streaming query's
   start (its metrics are served once it runs: the first scrape, 0.25 s apart)
   to the end of its last batch (fink_pipeline_last_batch_timestamp_seconds).
   The wall clock holds every batch and the gaps between them, so it can only
   be slower than the in-batch rate.
   Per-module cost comes from fink_pipeline_module_seconds (CPU-side seconds summed
   over Spark tasks), per-stage cost from fink_pipeline_stage_seconds.
2. Latency: with the pipeline running on a 1 s trigger, --bursts bursts of --burst
   alerts every --every seconds (Rubin sends ~10,000 every 40 s); a consumer on the
   filter topics (read_committed) measures produce -> visible-in-filter-topic time.
3. Baseline, same run, same machine: the same decoding and modules applied alert
   by alert in plain Python (fink_pipeline.science.baseline) on a sample of the
   same alerts, one core; and the same modules vectorised on that sample without
   Spark. Both sides, and the decoding, are timed the same way: best of 3 after
   a warm-up (the per-alert runs on fresh copies of the alerts, copied outside
   the timed region). Ratios are printed against the per-alert baseline.

Topics, table and archive are the benchmark's own (named bench-<time>) and are
removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import happybase
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fink_core.spec import parse_pipeline
from fink_pipeline.alerts import codec, generator
from fink_pipeline.science import baseline, enrich, plan_science
from fink_pipeline.stream.batch import SOURCE_TIMESTAMP_HEADER
from fink_pipeline.stream.observe import by_label, scrape_metrics
from fink_stack import api

MODULES = ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch", "snia_score"]
FILTERS = ["early_sn_candidates", "new_sso_candidates", "fast_transients"]
FINK_PIPELINE = str(Path(sys.executable).with_name("fink-pipeline"))
METRICS_PORT = 19470


def document(name: str, archive: Path) -> dict[str, Any]:
    return {
        "apiVersion": "fink.broker.dev/v1alpha1",
        "kind": "BrokerPipeline",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "survey": "ztf",
            "source": {"kafka": {"topic": f"{name}-alerts"}},
            "modules": [{"name": m} for m in MODULES],
            "filters": [{"name": f, "topic": f"{name}.{f}"} for f in FILTERS],
            "sinks": {
                "kafka": {"deadLetterTopic": f"{name}.dead-letters"},
                "hbase": {
                    "table": name.replace("-", "_"),
                    "columnFamilies": [{"name": "i"}, {"name": "d"}],
                },
                "archive": {"path": str(archive)},
            },
            "spark": {"triggerInterval": "1 second"},
        },
    }


def produce(bootstrap: str, topic: str, values: list[bytes]) -> float:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"}
    )
    started = time.perf_counter()
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=value, partition=i % 2)
                break
            except BufferError:
                producer.poll(0.2)
    producer.flush(120)
    return time.perf_counter() - started


class PipelineProcess:
    def __init__(self, pipeline_file: Path, checkpoint: Path, log: Path, *args: str) -> None:
        command = [
            FINK_PIPELINE, "-q", "run", "-f", str(pipeline_file), "--checkpoint", str(checkpoint),
            "--metrics-port", str(METRICS_PORT), "--create-missing", *args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        self.samples: dict[str, float] = {}
        self.first_scrape: tuple[float, float] | None = None  # (unix time, alerts read)

    def watch(self, name: str, until: Any = None) -> None:
        """Scrape metrics every 0.25 s until the process exits (or `until()` is true)."""
        key = f'fink_pipeline_alerts_read_total{{pipeline="{name}"}}'
        while self.process.poll() is None:
            try:
                self.samples = scrape_metrics(METRICS_PORT)
            except OSError:
                time.sleep(0.25)
                continue
            read = self.samples.get(key, 0.0)
            if self.first_scrape is None:  # served once the query runs: about its start
                self.first_scrape = (time.time(), read)
            if until is not None and until(self.samples):
                return
            time.sleep(0.25)
        if self.process.returncode != 0:
            raise SystemExit(f"fink-pipeline exited with {self.process.returncode}")


def latency_consumer(
    bootstrap: str,
    topics: list[str],
    ready: threading.Event,
    stop: threading.Event,
    out: list[float],
) -> None:
    """Collect produce -> visible delays of every filter message from now on."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-latency-{time.time_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    # assigned at the current ends, no group join: nothing produced after `ready` is missed
    partitions = []
    for topic in topics:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            partitions.append(TopicPartition(topic, p, high))
    consumer.assign(partitions)
    ready.set()
    while not stop.is_set():
        message = consumer.poll(0.1)
        if message is None or message.error():
            continue
        received_ms = time.time() * 1000
        sent = dict(message.headers() or []).get(SOURCE_TIMESTAMP_HEADER)
        if sent is not None:
            out.append((received_ms - int(sent)) / 1000)
    consumer.close()


def baseline_figures(values: list[bytes], name: str, archive: Path) -> dict[str, float]:
    """Seconds per alert, one core: per-alert Python vs vectorised, decode and each module."""
    plan = plan_science(parse_pipeline(document(name, archive)))
    codec.decode_batch(values[:100], "ztf")  # warm-up: the schema parsed and cached
    decode = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        frame = codec.decode_batch(values, "ztf").frame.drop(columns=["_position"])
        decode = min(decode, time.perf_counter() - started)
    alerts = frame.to_dict("records")
    # warm up both (imports, the catalogue's k-d tree, fink-* functions), then time
    enrich(frame.iloc[:100], plan)
    warm = [dict(a) for a in alerts[:100]]
    for module, parameters in plan.modules:
        baseline.run_module(module.name, "ztf", warm, parameters)
    best: dict[str, float] = {}
    vectorised = float("inf")
    for _ in range(3):
        timings: dict[str, float] = {}
        started = time.perf_counter()
        enrich(frame, plan, timings)
        vectorised = min(vectorised, time.perf_counter() - started)
        best = {k: min(v, best.get(k, float("inf"))) for k, v in timings.items()}
    timings = best
    per_alert: dict[str, float] = {}
    for module, parameters in plan.modules:
        # each module reads what the earlier ones added: every timed run starts from
        # a fresh copy of the alerts as the earlier modules left them
        per_alert[module.name] = float("inf")
        for _ in range(3):
            copies = [dict(a) for a in alerts]
            started = time.perf_counter()
            baseline.run_module(module.name, "ztf", copies, parameters)
            per_alert[module.name] = min(per_alert[module.name], time.perf_counter() - started)
        alerts = copies
    n = len(frame)
    figures = {f"vectorised:{k}": v / n for k, v in timings.items()}
    figures.update({f"per_alert:{k}": v / n for k, v in per_alert.items()})
    figures["decode"] = decode / n
    figures["vectorised"] = vectorised / n
    figures["per_alert"] = sum(per_alert.values()) / n
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5_000, help="maxOffsetsPerTrigger")
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("--burst", type=int, default=2_000)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--baseline-sample", type=int, default=3_000)
    parser.add_argument("--keep", action="store_true", help="keep the topics, table and files")
    args = parser.parse_args(argv)

    endpoints = api.ensure_up(quiet=True)
    os.environ.update(endpoints.environment())
    bootstrap = endpoints.kafka_bootstrap
    name = f"bench-{int(time.time())}"
    work = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    archive, checkpoint, log = work / "archive", work / "checkpoint", work / "pipeline.log"
    pipeline_file = work / "pipeline.yaml"
    pipeline_file.write_text(yaml.safe_dump(document(name, archive)))
    source = f"{name}-alerts"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(source, num_partitions=2, replication_factor=1)])[source].result(
        30
    )

    print(f"generating {args.alerts} ZTF alerts ...", flush=True)
    started = time.perf_counter()
    values = [codec.encode(a, "ztf") for a in generator.generate_alerts(args.alerts, "ztf", seed=1)]
    generated = time.perf_counter() - started
    sent = produce(bootstrap, source, values)
    print(
        f"  generated+encoded in {generated:.1f} s, produced in {sent:.1f} s ({len(values) / sent:,.0f}/s)"
    )

    # --- 1. throughput: drain the backlog ---------------------------------------------------
    print(
        f"draining them with fink-pipeline run (Spark local[2], batches of {args.batch}) ...",
        flush=True,
    )
    runner = PipelineProcess(
        pipeline_file,
        checkpoint,
        log,
        "--until-idle",
        "4",
        "--max-offsets-per-trigger",
        str(args.batch),
    )
    runner.watch(name)
    s = runner.samples
    read = s.get(f'fink_pipeline_alerts_read_total{{pipeline="{name}"}}', 0.0)
    busy = s.get(f'fink_pipeline_batch_duration_seconds_sum{{pipeline="{name}"}}', 0.0)
    batches = s.get(f'fink_pipeline_batch_duration_seconds_count{{pipeline="{name}"}}', 0.0)
    modules = by_label(s, "fink_pipeline_module_seconds_total", "module")
    stages = by_label(s, "fink_pipeline_stage_seconds_total", "stage")
    written = by_label(s, "fink_pipeline_alerts_written_total", "sink")
    last_batch = s.get(f'fink_pipeline_last_batch_timestamp_seconds{{pipeline="{name}"}}', 0.0)
    if read < len(values) or not busy or runner.first_scrape is None:
        raise SystemExit(f"the pipeline read {read} of {len(values)} alerts; see {log}")
    query_started, read_at_start = runner.first_scrape
    if read_at_start:
        print(f"  (the first scrape came after a batch: the wall clock misses {read_at_start:.0f})")

    # --- 2. latency: bursts into a running pipeline -------------------------------------------
    print(
        f"latency: {args.bursts} bursts of {args.burst} alerts every {args.every:g} s ...",
        flush=True,
    )
    latencies: list[float] = []
    stop, ready = threading.Event(), threading.Event()
    filter_topics = [f"{name}.{f}" for f in FILTERS]
    consumer = threading.Thread(
        target=latency_consumer, args=(bootstrap, filter_topics, ready, stop, latencies)
    )
    consumer.start()
    ready.wait(30)
    idle = str(args.every + 8)  # longer than the pause between bursts
    live = PipelineProcess(pipeline_file, checkpoint, log, "--until-idle", idle)
    running_key = f'fink_pipeline_running{{pipeline="{name}"}}'
    live.watch(name, until=lambda samples: samples.get(running_key, 0) == 1)
    bursts = [
        [codec.encode(a, "ztf") for a in generator.generate_alerts(args.burst, "ztf", seed=100 + b)]
        for b in range(args.bursts)
    ]
    for b, burst in enumerate(bursts):
        produce(bootstrap, source, burst)
        if b < len(bursts) - 1:
            time.sleep(args.every)
    live.watch(name)
    time.sleep(1.0)
    stop.set()
    consumer.join()

    # --- 3. baseline, same run ---------------------------------------------------------------
    print(
        f"baseline: the same modules alert by alert in plain Python on {args.baseline_sample} alerts ...",
        flush=True,
    )
    figures = baseline_figures(values[: args.baseline_sample], name, archive)

    # --- report -------------------------------------------------------------------------------
    throughput = read / busy
    wall_seconds = last_batch - query_started
    wall = read / wall_seconds
    per_alert_rate = 1 / (figures["decode"] + figures["per_alert"])
    vectorised_rate = 1 / (figures["decode"] + figures["vectorised"])
    print()
    print(
        f"== end to end, Kafka -> science -> filter topics + dead letters + HBase + Parquet ({os.cpu_count()} cores)"
    )
    print(f"alerts read              {read:>12,.0f}   in {batches:.0f} micro-batches")
    print(f"throughput (in batches)  {throughput:>12,.0f} alerts/s   ({busy:.1f} s busy)")
    print(
        f"throughput (wall clock)  {wall:>12,.0f} alerts/s   ({wall_seconds:.1f} s from the "
        "query's start to its last batch's end)"
    )
    print(
        f"written                  {', '.join(f'{k} {v:,.0f}' for k, v in sorted(written.items()))}"
    )
    print("time per stage (science: Spark tasks + collect, driver wall time; hbase: inside")
    print("the tasks, summed over them; parquet, kafka: driver, after the tasks):")
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<22} {seconds:>7.2f} s   {1e6 * seconds / read:>8.1f} µs/alert")
    print("per module in Spark tasks (seconds summed over tasks; 2 tasks run at once):")
    for module, seconds in sorted(modules.items(), key=lambda kv: -kv[1]):
        print(f"  {module:<22} {1e6 * seconds / read:>8.1f} µs/alert")
    print()
    print(f"== baseline, same run, one core, no Spark, {args.baseline_sample} of the same alerts")
    print("(each side best of 3 after a warm-up; solar_system calls fink-science's roid_catcher,")
    print(
        " which applies a Python function per alert, where the per-alert baseline uses our rules)"
    )
    print(f"{'':<22}{'per alert µs':>14}{'vectorised µs':>15}{'ratio':>8}")
    for module, _ in [(m, None) for m in MODULES]:
        pa, ve = figures[f"per_alert:{module}"], figures[f"vectorised:{module}"]
        print(f"  {module:<20}{1e6 * pa:>14.1f}{1e6 * ve:>15.1f}{pa / ve:>7.1f}x")
    print(
        f"  {'decode (shared)':<20}{1e6 * figures['decode']:>14.1f}{1e6 * figures['decode']:>15.1f}"
    )
    print(f"decode + modules alert by alert:  {per_alert_rate:>9,.0f} alerts/s (the baseline)")
    print(
        f"decode + modules vectorised:      {vectorised_rate:>9,.0f} alerts/s ({vectorised_rate / per_alert_rate:.1f}x the baseline)"
    )
    in_tasks = sum(modules.values()) / read  # decode + modules, seconds per alert per core
    print(
        f"decode + modules in Spark tasks:  {1 / in_tasks:>9,.0f} alerts/s per core "
        f"({1 / in_tasks / per_alert_rate:.1f}x the baseline)"
    )
    print(
        f"the whole pipeline in Spark:      {throughput:>9,.0f} alerts/s on {os.cpu_count()} cores "
        f"({throughput / per_alert_rate:.1f}x the baseline, which writes nowhere)"
    )
    print()
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        print(f"== latency produce -> filter topic (read_committed), {len(latencies)} messages")
        print(
            f"median {statistics.median(latencies):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s (trigger 1 s)"
        )
    else:
        print("== latency: no filter message seen (is the consumer subscribed?)")
    rubin = 10_000 / 40
    print(
        f"\nRubin averages ~{rubin:.0f} alerts/s (bursts of 10,000 every 40 s): a burst takes ~{10_000 / throughput:.0f} s here."
    )

    if not args.keep:
        topics = [source, f"{name}.dead-letters", *(f"{name}.{f}" for f in FILTERS)]
        for future in admin.delete_topics(topics).values():
            future.result(30)
        connection = happybase.Connection(endpoints.hbase_thrift_host, endpoints.hbase_thrift_port)
        connection.delete_table(name.replace("-", "_"), disable=True)
        connection.close()
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: topics {name}*, table {name.replace('-', '_')}, files {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
