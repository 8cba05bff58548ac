"""Benchmark the enrichment core end to end on the local stack, with a same-run baseline.

    .venv/bin/python bench/pipeline_throughput.py [--alerts 20000] [--batch 5000] [--settle 0.5]
        [--bursts 4 --burst 2000 --every 10] [--baseline-sample 3000] [--keep]
        [--packets light|full|both] [--layouts columns|packed|both] [--rounds 1]
        [--java-options OPTIONS ...] [--code CHECKOUT ...] [--conf KEY=VALUE ...]

1. Throughput, for both packet sizes (--packets): light ZTF alerts without
   cutouts (7-11 KB) and full-size ones with their three gzipped FITS stamps
   (61-67 KB, as ZTF sends them). --alerts generated ZTF alerts wait in a 2-partition source topic;
   `fink-pipeline run` (Spark local[2], the five built-in modules, three filters,
   all sinks: filter topics, dead letters, HBase, Parquet) drains them in batches
   of --batch. Alerts/s = alerts read / time spent in micro-batches (from the
   pipeline's own metrics), and over wall-clock time from the streaming query's
   start (its metrics are served once it runs: the first scrape, 0.25 s apart)
   to the end of its last batch (fink_pipeline_last_batch_timestamp_seconds).
   The wall clock holds every batch and the gaps between them, so it can only
   be slower than the in-batch rate.
   MB/s = source bytes read / the same busy time.
   Per-module cost comes from fink_pipeline_module_seconds (CPU-side seconds summed
   over Spark tasks), per-stage cost from fink_pipeline_stage_seconds.
   CPU per process (cpu_share.py: the pipeline's driver, Spark's JVM, its Python
   workers, each stack server, every JVM's just-in-time compiler threads apart,
   the rest of the machine) from the kernel's counters, after the first batch (its
   warm-up: Python workers importing), after --settle of the alerts (by then
   Spark's JVM has done most of its compiling: it compiles Spark's, Avro's,
   Arrow's and Kafka's hot code for the first minutes of a run, a cost a pipeline
   that runs for days no longer pays), each with the throughput of those batches,
   and from the query's start. A freshly started stack's servers (HBase, its
   gateway, Kafka) compile theirs during the run too, while a broker's run for
   months: "the same, compilers warm" is the bound the CPU left by every JVM's
   compiler gives, a projection beside the measured rate, not a measurement.
2. Latency: a pipeline is started on a 1 s trigger and, once its query runs,
   --bursts bursts of --burst alerts come every --every seconds (Rubin sends
   ~10,000 every 40 s); a consumer on the filter topics (read_committed) measures
   produce -> visible-in-filter-topic time, per burst and over all. Twice: started
   with --no-warm-up (its first burst pays the Python workers' start-up), then as
   by default (the workers started on synthetic alerts before the query).
3. Baseline, same run, same machine: the same decoding and modules applied alert
   by alert in plain Python (fink_pipeline.science.baseline) on a sample of the
   same alerts, one core; and the same modules vectorised on that sample without
   Spark. Both sides, and the decoding, are timed the same way: best of 3 after
   a warm-up (the per-alert runs on fresh copies of the alerts, copied outside
   the timed region). Ratios are printed against the per-alert baseline.

Topics, table and archive are the benchmark's own (named bench-<token>) and are
removed when it ends, by an error or Ctrl-C too, unless --keep.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from cpu_share import CpuShare, compiling_seconds

from fink_core.spec import parse_pipeline
from fink_pipeline.alerts import codec, generator
from fink_pipeline.science import baseline, enrich, plan_science
from fink_pipeline.stream.observe import by_label, scrape_metrics
from fink_pipeline.stream.outbox import SOURCE_TIMESTAMP_HEADER
from fink_stack import api
from fink_stack.scratch import removed_at_exit

MODULES = ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch", "snia_score"]
FILTERS = ["early_sn_candidates", "new_sso_candidates", "fast_transients"]
FINK_PIPELINE = str(Path(sys.executable).with_name("fink-pipeline"))
METRICS_PORT = 19470
PACKETS = {"light": ("light",), "full": ("full",), "both": ("light", "full")}
SALT_DIGITS = 2  # with --regions > 1: 100 salts spread over the regions
PACKET_NAMES = {"light": "no cutouts", "full": "full-size (cutouts)"}
LAYOUTS = {"columns": ("columns",), "packed": ("packed",), "both": ("columns", "packed")}


def document(
    name: str,
    archive: Path,
    regions: int = 1,
    layout: str = "columns",
    java_options: str = "",
    spark_conf: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The benchmark's pipeline; with regions > 1 its table is pre-split, row keys salted;
    java_options: the options of Spark's JVM (in local mode, the driver's); spark_conf:
    the spec's spark.sparkConf."""
    hbase: dict[str, Any] = {
        "table": name.replace("-", "_"),
        "columnFamilies": [{"name": "i"}, {"name": "d"}],
        "layout": layout,
    }
    if regions > 1:
        hbase.update(saltDigits=SALT_DIGITS, regions=regions)
    spark_conf = dict(spark_conf or {})
    if java_options:
        spark_conf["spark.driver.extraJavaOptions"] = java_options
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
                "hbase": hbase,
                "archive": {"path": str(archive)},
            },
            "spark": {"triggerInterval": "1 second", "sparkConf": spark_conf},
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


def code_environment(code: str) -> dict[str, str]:
    """The environment of a pipeline running the code of the checkout `code` ("": this one).

    Its `pipeline` and `core` folders come first on PYTHONPATH, ahead of this checkout's
    editable install, in the driver and in the Python workers Spark starts from it."""
    env = os.environ.copy()
    if code:
        root = Path(code).resolve()
        paths = [str(root / "pipeline"), str(root / "core"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


class PipelineProcess:
    def __init__(
        self, pipeline_file: Path, checkpoint: Path, log: Path, *args: str, code: str = ""
    ) -> None:
        command = [
            FINK_PIPELINE, "-q", "run", "-f", str(pipeline_file), "--checkpoint", str(checkpoint),
            "--metrics-port", str(METRICS_PORT), "--create-missing", *args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=code_environment(code)
        )
        self.samples: dict[str, float] = {}
        self.first_scrape: tuple[float, float] | None = None  # (unix time, alerts read)
        self.cpu = CpuShare(self.process.pid)
        self.query_started = time.monotonic()
        self.ended: float | None = None

    def __enter__(self) -> PipelineProcess:
        return self

    def __exit__(self, *_: object) -> None:
        """A pipeline still running when its block ends (an error or an interrupt in the
        bench) is stopped, so that it does not write into what the bench then removes."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)

    def watch(self, name: str, until: Any = None) -> None:
        """Scrape metrics every 0.25 s until the process exits (or `until()` is true)."""
        key = f'fink_pipeline_alerts_read_total{{pipeline="{name}"}}'
        while self.process.poll() is None:
            self.cpu.sample()
            self.ended = time.monotonic()
            try:
                self.samples = scrape_metrics(METRICS_PORT)
            except OSError:
                time.sleep(0.25)
                continue
            read = self.samples.get(key, 0.0)
            if self.first_scrape is None:  # served once the query runs: about its start
                self.first_scrape = (time.time(), read)
                self.cpu.mark("query started")
                self.query_started = time.monotonic()
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
    out: list[tuple[float, float]],
) -> None:
    """Collect (produced at, produce -> visible delay) of every filter message from now on."""
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
            out.append((int(sent) / 1000, (received_ms - int(sent)) / 1000))
    consumer.close()


def latency_run(
    args: argparse.Namespace,
    bootstrap: str,
    name: str,
    pipeline_file: Path,
    checkpoint: Path,
    log: Path,
    cutouts: bool,
    start: str,
) -> tuple[list[tuple[float, float]], list[float]]:
    """(produced at, delay) of every filter message, and when each burst began, for bursts
    into a pipeline started now (`start`: "warm-up", or "no warm-up" for --no-warm-up)."""
    delays: list[tuple[float, float]] = []
    burst_starts: list[float] = []
    stop, ready = threading.Event(), threading.Event()
    filter_topics = [f"{name}.{f}" for f in FILTERS]
    consumer = threading.Thread(
        target=latency_consumer, args=(bootstrap, filter_topics, ready, stop, delays)
    )
    consumer.start()
    try:
        ready.wait(30)
        idle = str(args.every + 8)  # longer than the pause between bursts
        flags = ["--until-idle", idle] + (["--no-warm-up"] if start == "no warm-up" else [])
        with PipelineProcess(pipeline_file, checkpoint, log, *flags) as live:
            running_key = f'fink_pipeline_running{{pipeline="{name}"}}'
            live.watch(name, until=lambda samples: samples.get(running_key, 0) == 1)
            seed = 100 if start == "no warm-up" else 200
            bursts = [
                [
                    codec.encode(a, "ztf")
                    for a in generator.generate_alerts(
                        args.burst, "ztf", seed=seed + b, cutouts=cutouts
                    )
                ]
                for b in range(args.bursts)
            ]
            for b, burst in enumerate(bursts):
                burst_starts.append(time.time())
                produce(bootstrap, f"{name}-alerts", burst)
                if b < len(bursts) - 1:
                    time.sleep(args.every)
            live.watch(name)
        time.sleep(1.0)
    finally:  # the consumer thread ends however the bursts end
        stop.set()
        consumer.join()
    return delays, burst_starts


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))]


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


def drain(
    args: argparse.Namespace,
    endpoints: Any,
    name: str,
    work: Path,
    cutouts: bool,
    layout: str = "columns",
    values: list[bytes] | None = None,
    java_options: str = "",
    code: str = "",
) -> dict[str, Any]:
    """Phase 1 for one packet size and HBase layout: a backlog of --alerts drained by
    fink-pipeline run (`values`: the alerts an earlier drain of that size generated;
    `code`: the checkout whose pipeline runs, "" this one)."""
    work.mkdir(parents=True)
    archive, checkpoint, log = work / "archive", work / "checkpoint", work / "pipeline.log"
    pipeline_file = work / "pipeline.yaml"
    pipeline_file.write_text(
        yaml.safe_dump(document(name, archive, args.regions, layout, java_options, dict(args.conf)))
    )
    source = f"{name}-alerts"
    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap})
    admin.create_topics([NewTopic(source, num_partitions=2, replication_factor=1)])[source].result(
        30
    )
    kind = "full-size" if cutouts else "light"
    made = "the same alerts as the previous drain"
    if values is None:
        print(f"generating {args.alerts} {kind} ZTF alerts ...", flush=True)
        started = time.perf_counter()
        alerts = generator.generate_alerts(args.alerts, "ztf", seed=1, cutouts=cutouts)
        values = [codec.encode(a, "ztf") for a in alerts]
        made = f"generated+encoded in {time.perf_counter() - started:.1f} s"
    sent = produce(endpoints.kafka_bootstrap, source, values)
    size = statistics.fmean(len(v) for v in values)
    print(
        f"  {made}, produced in {sent:.1f} s ({len(values) / sent:,.0f}/s), "
        f"{size / 1024:.1f} KB per alert; HBase rows: {layout}"
    )
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
        code=code,
    )
    first: dict[str, float] = {}  # the metrics once the first batch is done (warm-up)
    settled: dict[str, float] = {}  # the metrics once --settle of the alerts are read
    count_key = f'fink_pipeline_batch_duration_seconds_count{{pipeline="{name}"}}'
    read_key = f'fink_pipeline_alerts_read_total{{pipeline="{name}"}}'
    busy_key = f'fink_pipeline_batch_duration_seconds_sum{{pipeline="{name}"}}'

    def after_first_batch(samples: dict[str, float]) -> bool:
        if not first and samples.get(count_key, 0.0) >= 1:
            first.update(samples)
            runner.cpu.mark("first batch done")
        if not settled and samples.get(read_key, 0.0) >= args.settle * len(values):
            settled.update(samples)
            runner.cpu.mark("settled")
        return False

    with runner:
        runner.watch(name, until=after_first_batch)
    s = runner.samples
    read = s.get(read_key, 0.0)
    busy = s.get(busy_key, 0.0)
    last_batch = s.get(f'fink_pipeline_last_batch_timestamp_seconds{{pipeline="{name}"}}', 0.0)
    if read < len(values) or not busy or runner.first_scrape is None:
        raise SystemExit(f"the pipeline read {read} of {len(values)} alerts; see {log}")
    query_started, read_at_start = runner.first_scrape
    if read_at_start:
        print(f"  (the first scrape came after a batch: the wall clock misses {read_at_start:.0f})")
    return {
        "name": name,
        "work": work,
        "kind": "full" if cutouts else "light",
        "values": values,
        "size": size,
        "read": read,
        "busy": busy,
        "wall": last_batch - query_started,
        "batches": s.get(f'fink_pipeline_batch_duration_seconds_count{{pipeline="{name}"}}', 0.0),
        "modules": by_label(s, "fink_pipeline_module_seconds_total", "module"),
        "stages": by_label(s, "fink_pipeline_stage_seconds_total", "stage"),
        "written": by_label(s, "fink_pipeline_alerts_written_total", "sink"),
        "start-up cpu": sum(runner.cpu.seconds().values())
        - sum(runner.cpu.since("query started").values()),
        "cpu": runner.cpu.since("query started"),
        "steady cpu": runner.cpu.since("first batch done"),
        "steady read": read - first.get(read_key, 0),
        "steady busy": busy - first.get(busy_key, 0),
        "settled cpu": runner.cpu.since("settled"),
        "settled read": read - settled.get(read_key, 0),
        "settled busy": busy - settled.get(busy_key, 0),
        "run": (runner.ended or time.monotonic()) - runner.query_started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5_000, help="maxOffsetsPerTrigger")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="also report the batches after this share of the alerts is read (default: the "
        "second half), when Spark's JVM has compiled its hot code",
    )
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("--burst", type=int, default=2_000)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--baseline-sample", type=int, default=3_000)
    parser.add_argument(
        "--packets",
        choices=sorted(PACKETS),
        default="both",
        help="light (no cutouts), full (with cutouts, as ZTF sends them), or both (default)",
    )
    parser.add_argument(
        "--regions",
        type=int,
        default=1,
        help="regions the HBase table is pre-split into, row keys salted on "
        f"{SALT_DIGITS} digits (default 1: one region, which HBase splits as it grows)",
    )
    parser.add_argument(
        "--layouts",
        choices=sorted(LAYOUTS),
        default="columns",
        help="the HBase rows' layout (spec.sinks.hbase.layout); both: each packet size "
        "drained once per layout, alternated, on the same alerts",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="how many times to alternate the variants"
    )
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        type=lambda text: tuple(text.split("=", 1)),
        metavar="KEY=VALUE",
        help="a Spark setting of every drain (spec.spark.sparkConf), e.g. "
        "spark.sql.execution.arrow.maxRecordsPerBatch=5000",
    )
    parser.add_argument(
        "--java-options",
        action="append",
        metavar="OPTIONS",
        help="options of Spark's JVM (spark.driver.extraJavaOptions); given more than once, "
        "each is a variant drained in turn on the same alerts, e.g. '' and '-XX:...'",
    )
    parser.add_argument(
        "--code",
        action="append",
        metavar="CHECKOUT",
        help="run the pipeline's code of another checkout of this repository (e.g. "
        "`git worktree add /tmp/before HEAD~1`; '.' is this one); given more than once, "
        "each is a variant drained in turn on the same alerts",
    )
    parser.add_argument("--keep", action="store_true", help="keep the topics, table and files")
    args = parser.parse_args(argv)

    # only what the pipeline uses: the rest of the stack would take CPU from it
    components = ("kafka", "hbase", "spark")
    endpoints = api.ensure_up(components, quiet=True)
    os.environ.update(endpoints.environment())
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    with removed_at_exit(endpoints, work, stores=components, keep=args.keep) as scratch:
        return run(args, endpoints, scratch.name("bench"), work)


def run(args: argparse.Namespace, endpoints: Any, name: str, work: Path) -> int:
    """The three phases and the report; what they make is named after name."""
    bootstrap = endpoints.kafka_bootstrap
    drained: dict[str, dict[str, Any]] = {}  # by the column the report gives it
    jvms = args.java_options or [""]
    codes = [("" if c == "." else c) for c in args.code or ["."]]
    # alternated, round after round: the machine's speed drifts
    variants = [(lay, jvm, code) for lay in LAYOUTS[args.layouts] for jvm in jvms for code in codes]
    for kind in PACKETS[args.packets]:
        values = None
        for run_number, (layout, jvm, code) in enumerate(variants * args.rounds, 1):
            label, tag = PACKET_NAMES[kind], kind
            if len(variants) > 1 or args.rounds > 1:
                round_number = (run_number - 1) // len(variants) + 1
                jvm_label = f", JVM {jvms.index(jvm) + 1}" if len(jvms) > 1 else ""
                code_label = f", code {codes.index(code) + 1}" if len(codes) > 1 else ""
                label = f"{kind}, {layout}{jvm_label}{code_label} #{round_number}"
                tag = f"{kind}-{layout}{run_number}"
            d = drain(
                args,
                endpoints,
                f"{name}-{tag}",
                work / tag,
                kind == "full",
                layout,
                values,
                jvm,
                code,
            )
            values = d["values"]
            drained[label] = d
    for number, jvm in enumerate(jvms if len(jvms) > 1 else [], 1):
        print(f"JVM {number}: {jvm or '(Spark defaults)'}")
    for number, code in enumerate(codes if len(codes) > 1 else [], 1):
        print(f"code {number}: {code or 'this checkout'}")
    for key, value in args.conf:
        print(f"every drain: {key}={value}")
    # the latency and baseline phases use the last run drained
    last = drained[list(drained)[-1]]
    kind, name, values = last["kind"], last["name"], last["values"]
    archive, checkpoint = last["work"] / "archive", last["work"] / "checkpoint"
    log, pipeline_file = last["work"] / "pipeline.log", last["work"] / "pipeline.yaml"

    # --- 2. latency: bursts into a freshly started pipeline, without and with warm-up ----------
    if args.bursts > 0:
        print(
            f"latency: {args.bursts} bursts of {args.burst} alerts every {args.every:g} s, into "
            "a pipeline started without warm-up, then into one started with it ...",
            flush=True,
        )
    else:
        print("latency: not measured (--bursts 0)", flush=True)
    latency = {
        start: latency_run(
            args, bootstrap, name, pipeline_file, checkpoint, log, kind == "full", start
        )
        for start in ("no warm-up", "warm-up")
        if args.bursts > 0
    }

    # --- 3. baseline, same run ---------------------------------------------------------------
    print(
        f"baseline: the same modules alert by alert in plain Python on {args.baseline_sample} alerts ...",
        flush=True,
    )
    figures = baseline_figures(values[: args.baseline_sample], name, archive)

    # --- report -------------------------------------------------------------------------------
    print()
    print(
        f"== end to end, Kafka -> science -> filter topics + dead letters + HBase + Parquet ({os.cpu_count()} cores)"
    )
    layout = (
        f"pre-split into {args.regions} regions, keys salted on {SALT_DIGITS} digits"
        if args.regions > 1
        else "one region at the start (HBase splits it as it grows)"
    )
    print(f"HBase table: {layout}")
    width = max(22, 2 + max(len(k) for k in drained))  # a column per drain
    print(f"{'':<26}" + "".join(f"{k:>{width}}" for k in drained))
    rows = [
        ("alert size (mean)", lambda d: f"{d['size'] / 1024:,.1f} KB"),
        ("alerts read", lambda d: f"{d['read']:,.0f} in {d['batches']:.0f} batches"),
        ("throughput (in batches)", lambda d: f"{d['read'] / d['busy']:,.0f} alerts/s"),
        ("  in MB/s", lambda d: f"{d['read'] * d['size'] / d['busy'] / 1e6:,.1f} MB/s"),
        ("throughput (wall clock)", lambda d: f"{d['read'] / d['wall']:,.0f} alerts/s"),
        ("  in MB/s", lambda d: f"{d['read'] * d['size'] / d['wall'] / 1e6:,.1f} MB/s"),
    ]
    for label, cell in rows:
        print(f"{label:<26}" + "".join(f"{cell(d):>{width}}" for d in drained.values()))
    for k, d in drained.items():
        written = ", ".join(f"{sink} {n:,.0f}" for sink, n in sorted(d["written"].items()))
        print(f"written ({k}): {written}")
    print("(in batches: alerts read / time inside micro-batches; wall clock: from the")
    print(" query's start to its last batch's end, gaps between batches included)")
    stage_names = sorted({st for d in drained.values() for st in d["stages"]})
    print("time per stage, µs/alert (science: the tasks' job, Parquet included, driver wall")
    print("time; hbase, encode: inside the tasks, summed over them; kafka: driver, after the")
    print("tasks):")
    for stage in sorted(stage_names, key=lambda st: -last["stages"].get(st, 0.0)):
        print(
            f"  {stage:<24}"
            + "".join(
                f"{1e6 * d['stages'].get(stage, 0.0) / d['read']:>{width}.1f}"
                for d in drained.values()
            )
        )
    print(
        "CPU by process after the first batch (its warm-up excluded; the idle seconds\n"
        f"before the run stops included), and after {args.settle:.0%} of the alerts (Spark's JVM\n"
        "has compiled its hot code by then), core-µs per alert read then:"
    )

    def windows(d: dict[str, Any], cell: Any) -> str:
        """A figure after the first batch, then after --settle of the alerts ("-" when
        no batch came after that point: every alert was read before it)."""
        shown = [
            cell(d, w) if d[f"{w} read"] and d[f"{w} busy"] else "-" for w in ("steady", "settled")
        ]
        return f"{shown[0]:>16}{shown[1]:>10}"

    print(f"  {'':<34}" + "".join(f"{'after batch 1':>16}{'then':>10}" for _ in drained))
    parts = sorted({part for d in drained.values() for part in d["steady cpu"]})
    for part in sorted(parts, key=lambda pt: -last["steady cpu"].get(pt, 0.0)):
        print(
            f"  {part:<34}"
            + "".join(
                windows(
                    d,
                    lambda d, w, p=part: f"{1e6 * d[f'{w} cpu'].get(p, 0.0) / d[f'{w} read']:.1f}",
                )
                for d in drained.values()
            )
        )
    for label, cell in [
        ("all of them", lambda d, w: f"{1e6 * sum(d[f'{w} cpu'].values()) / d[f'{w} read']:.1f}"),
        (
            "  of which JIT compilers",
            lambda d, w: f"{1e6 * compiling_seconds(d[f'{w} cpu']) / d[f'{w} read']:.1f}",
        ),
        ("throughput then, alerts/s", lambda d, w: f"{d[f'{w} read'] / d[f'{w} busy']:,.0f}"),
        (
            f"bound if all {os.cpu_count()} cores served",
            lambda d, w: (
                f"{(os.cpu_count() or 1) * d[f'{w} read'] / sum(d[f'{w} cpu'].values()):,.0f}"
            ),
        ),
        (
            "  the same, compilers warm",
            lambda d, w: (
                f"{(os.cpu_count() or 1) * d[f'{w} read'] / (sum(d[f'{w} cpu'].values()) - compiling_seconds(d[f'{w} cpu'])):,.0f}"
            ),
        ),
    ]:
        print(f"  {label:<34}" + "".join(windows(d, cell) for d in drained.values()))
    rows = [
        (
            "from the query's start, all",
            lambda d: f"{1e6 * sum(d['cpu'].values()) / d['read']:.1f}",
        ),
        ("  cores busy then", lambda d: f"{sum(d['cpu'].values()) / d['run']:.2f}"),
        ("start-up before it, CPU s", lambda d: f"{d['start-up cpu']:.1f}"),
    ]
    for label, cell in rows:
        print(f"  {label:<34}" + "".join(f"{cell(d):>16}{'':>10}" for d in drained.values()))
    read, busy = last["read"], last["busy"]
    modules = last["modules"]
    throughput = read / busy
    per_alert_rate = 1 / (figures["decode"] + figures["per_alert"])
    vectorised_rate = 1 / (figures["decode"] + figures["vectorised"])
    print(f"per module in Spark tasks ({list(drained)[-1]}):")
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
    p95 = None
    for start, (delays, burst_starts) in latency.items():
        latencies = [delay for _, delay in delays]
        if not latencies:
            print(f"== latency ({start}): no filter message seen (is the consumer subscribed?)")
            continue
        print(
            f"== latency produce -> filter topic (read_committed), pipeline started with "
            f"{start}: {len(latencies)} messages"
        )
        print(
            f"all bursts: median {statistics.median(latencies):.2f} s, p95 "
            f"{percentile(latencies, 0.95):.2f} s, max {max(latencies):.2f} s (trigger 1 s)"
        )
        for b, began in enumerate(burst_starts):
            end = burst_starts[b + 1] if b + 1 < len(burst_starts) else float("inf")
            burst = [delay for sent, delay in delays if began <= sent < end]
            if burst:
                print(
                    f"  burst {b + 1}: {len(burst):>5} messages, median "
                    f"{statistics.median(burst):.2f} s, p95 {percentile(burst, 0.95):.2f} s"
                )
        if start == "warm-up":
            p95 = percentile(latencies, 0.95)
    rubin = 10_000 / 40
    print(
        f"\nRubin averages ~{rubin:.0f} alerts/s (bursts of 10,000 every 40 s): a burst takes ~{10_000 / throughput:.0f} s here."
    )

    goals = {"light": 5_000, "full": 2_000}
    print("\n== against the goals (2 cores)")
    for k, d in drained.items():
        rate, goal = d["read"] / d["busy"], goals[d["kind"]]
        later = ""
        if d["settled read"] and d["settled busy"]:
            settled = d["settled read"] / d["settled busy"]
            later = (
                f"; after {args.settle:.0%} of the alerts {settled:,.0f} ({settled / goal:.2f}x)"
            )
        print(f"{k:<22} {rate:>8,.0f} alerts/s, goal >= {goal:,} ({rate / goal:.2f}x)" + later)
    if p95 is not None:
        print(f"{'p95 latency (warm-up)':<22} {p95:>8.2f} s, goal < 5 s")

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
