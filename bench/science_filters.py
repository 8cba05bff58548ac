"""Benchmark ScienceFilters in a running pipeline on the local stack, with a same-run baseline.

    .venv/bin/python bench/science_filters.py [--alerts 6000] [--batch 1000] [--filters 3]
        [--reload-every 2] [--refreshes 100] [--order baseline,filters,reloads] [--quick]
        [--keep]

--quick: 3,000 alerts, 30 refreshes, 50 calls per timing (about 2.5 minutes; the
default takes about 4.5 on 2 cores).

1. Throughput: --alerts light ZTF alerts (no cutouts) wait in a 2-partition source
   topic; `fink-pipeline run` (Spark local[2], the five built-in modules, three
   built-in filters, every sink; the run of bench/pipeline_throughput.py, its
   helpers reused) drains them in batches of --batch, three ways, each in its own
   fresh topics, table, archive and checkpoint, on the same alerts:
   (a) baseline: no ScienceFilters (no control topic);
   (b) --filters ScienceFilters, simple vectorised rules such as
       `(magpsf < 18.5) & (rb > 0.5)`, on the control topic before the start
       (handed over as the operator does: compacted `<pipeline>-filters`, one
       topic per filter, the filter records);
   (c) the same filters, and a new generation of the first one published to the
       control topic every --reload-every seconds while the pipeline reads alerts
       (through the operator's fink_operator.filter_channel.FilterChannel): live
       reloads. The generations the pipeline ran are read back from its status
       records on the control topic.
   Alerts/s as pipeline_throughput.py counts them: alerts read / time inside
   micro-batches (the pipeline's metrics), and over the wall clock from the
   query's start (first metrics scrape) to its last batch's end. Also after the
   first batch (which starts the Python workers, and in (b) and (c) their sandbox
   processes and the first read of the control topic), from the metrics scraped
   once it is done. The sandbox processes the pipeline started are counted from
   /proc (a worker keeps its one for its life).
2. The driver's read of the control topic before each batch, timed apart against
   the real Kafka (LiveFilters.refresh, --refreshes each): with no control topic
   (what (a) pays), with nothing new, and with one new record each time; the last
   again with the consumer's fetch.wait.max.ms at 10 ms instead of librdkafka's
   500 (the end of the partition is told by an empty fetch, which the broker holds
   that long).
3. One ScienceFilter on 1,000-row frames of the same alerts, one core: the same
   function called in-process vs FilterSandbox.run (the child process, the
   columns sent through a pipe, the mask back) vs SandboxedFilter (what a Spark
   task calls); and loading a new generation into the sandbox (what each Python
   worker pays once per reload). Best of 3 after a warm-up.

Everything is named bench-sf-<token>-* and removed when it ends, by an error or Ctrl-C
too, unless --keep.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pipeline_throughput import PipelineProcess, document, produce

from fink_core.connections import KafkaConnection
from fink_core.filter_control import STATUS_PREFIX, FilterReport, LiveFilter, control_topic
from fink_core.filters.sandbox import FilterSandbox
from fink_operator.filter_channel import FilterChannel
from fink_pipeline.alerts import codec, generator
from fink_pipeline.stream import live_filters
from fink_pipeline.stream.live_filters import LiveFilters, as_filter
from fink_pipeline.stream.observe import by_label, read_committed
from fink_stack import api
from fink_stack.scratch import removed_at_exit

# name, the columns it reads, its rule ({t}: the threshold that a new generation moves)
RULES = [
    ("bright", ("magpsf", "rb"), "(magpsf < {t:g}) & (rb > 0.5)", 18.5),
    (
        "reliable",
        ("drb", "nbad", "sigmapsf"),
        "(drb > {t:g}) & (nbad == 0) & (sigmapsf < 0.05)",
        0.95,
    ),
    ("young", ("ndethist", "sgscore1"), "(ndethist <= {t:g}) & (sgscore1 < 0.1)", 1),
    ("near_star", ("distpsnr1", "classtar"), "(distpsnr1 < {t:g}) & (classtar > 0.95)", 1.0),
]
CONFIGS = ("baseline", "filters", "reloads")


def science_filter(pipeline: str, index: int, generation: int = 1) -> LiveFilter:
    """The index-th ScienceFilter of the bench; a new generation moves its threshold a little."""
    rule, reads, expression, threshold = RULES[index % len(RULES)]
    name = rule if index < len(RULES) else f"{rule}_{index // len(RULES) + 1}"
    parameters = ", ".join(f"{column}: pd.Series" for column in reads)
    body = expression.format(t=threshold + 0.01 * (generation - 1))
    code = f"import pandas as pd\n\n\ndef {name}({parameters}) -> pd.Series:\n    return {body}\n"
    return LiveFilter(
        name=name,
        generation=generation,
        code=code,
        entrypoint=name,
        reads=reads,
        topic=f"{pipeline}.science.{name}",
    )


def hand_over(bootstrap: str, pipeline: str, filters: list[LiveFilter]) -> None:
    """What the operator does once filters are validated: topics, then the filter records."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [
        NewTopic(control_topic(pipeline), 1, 1, config={"cleanup.policy": "compact"}),
        *(NewTopic(f.topic, 2, 1) for f in filters),
    ]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for live in filters:
        producer.produce(control_topic(pipeline), key=live.key(), value=live.value())
    if producer.flush(30):
        raise SystemExit(f"could not write the filter records to {control_topic(pipeline)}")


def reload_loop(
    bootstrap: str,
    pipeline: str,
    filters: list[LiveFilter],
    every: float,
    runner: PipelineProcess,
    target: int,
    stop: threading.Event,
    published: list[float],
) -> None:
    """While the pipeline reads alerts: a new generation of the first filter every EVERY s."""
    channel = FilterChannel(KafkaConnection(bootstrap))
    read_key = f'fink_pipeline_alerts_read_total{{pipeline="{pipeline}"}}'
    while runner.first_scrape is None and not stop.wait(0.05):
        pass  # the query runs once its metrics are served
    generation = filters[0].generation
    while not stop.wait(every):
        if runner.samples.get(read_key, 0.0) >= target or runner.process.poll() is not None:
            return
        generation += 1
        wanted = {f.name: f for f in filters}
        wanted[filters[0].name] = science_filter(pipeline, 0, generation)
        if channel.publish(control_topic(pipeline), wanted) != 1:
            raise RuntimeError("a new generation should be one control record")
        published.append(time.time())


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def count_sandboxes(root: int, stop: threading.Event, seen: set[int]) -> None:
    """The sandbox child processes started under ROOT (the pipeline), seen every 0.2 s.

    A child starts in 0.6-0.9 s (it imports numpy and pandas), so none is missed.
    """
    while not stop.wait(0.2):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) in seen:
                continue
            try:
                if b"fink_core.filters._child" not in Path(entry.path, "cmdline").read_bytes():
                    continue
                pid = int(entry.name)
                while pid > 1 and pid != root:
                    pid = parent(pid)
            except (OSError, ValueError, IndexError):
                continue
            if pid == root:
                seen.add(int(entry.name))


def status_history(bootstrap: str, pipeline: str) -> dict[str, list[FilterReport]]:
    """Every status record the pipeline wrote, per filter, in order."""
    history: dict[str, list[FilterReport]] = {}
    for message in read_committed(bootstrap, control_topic(pipeline)):
        key = (message.key() or b"").decode()
        if key.startswith(STATUS_PREFIX) and message.value() is not None:
            report = FilterReport.from_value(message.value())
            history.setdefault(report.name, []).append(report)
    return history


def run_config(
    config: str,
    args: argparse.Namespace,
    bootstrap: str,
    prefix: str,
    values: list[bytes],
    work: Path,
) -> dict[str, Any]:
    """One configuration: fresh topics, table, archive and checkpoint; the backlog drained."""
    name = f"{prefix}-{config}"
    directory = work / config
    directory.mkdir(parents=True)
    archive, checkpoint = directory / "archive", directory / "checkpoint"
    log, pipeline_file = directory / "pipeline.log", directory / "pipeline.yaml"
    pipeline_file.write_text(yaml.safe_dump(document(name, archive)))
    source = f"{name}-alerts"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(source, num_partitions=2, replication_factor=1)])[source].result(
        30
    )
    produce(bootstrap, source, values)
    filters = [science_filter(name, i) for i in range(args.filters)] if config != "baseline" else []
    if filters:
        hand_over(bootstrap, name, filters)
    print(
        f"({config}) draining {len(values):,} alerts, {len(filters)} ScienceFilters"
        f"{', live reloads' if config == 'reloads' else ''} ...",
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
    published: list[float] = []
    stop = threading.Event()
    sandboxes: set[int] = set()
    counter = threading.Thread(
        target=count_sandboxes, args=(runner.process.pid, stop, sandboxes), daemon=True
    )
    counter.start()
    reloader = None
    if config == "reloads":
        reloader = threading.Thread(
            target=reload_loop,
            args=(
                bootstrap,
                name,
                filters,
                args.reload_every,
                runner,
                len(values),
                stop,
                published,
            ),
            daemon=True,
        )
        reloader.start()
    first: dict[str, float] = {}  # the metrics once the first batch is done (warm-up)
    count_key = f'fink_pipeline_batch_duration_seconds_count{{pipeline="{name}"}}'

    def after_first_batch(samples: dict[str, float]) -> bool:
        if not first and samples.get(count_key, 0.0) >= 1:
            first.update(samples)
        return False

    try:
        with runner:
            runner.watch(name, until=after_first_batch)
    finally:
        stop.set()
        counter.join(30)
        if reloader is not None:
            reloader.join(30)
    s = runner.samples
    read = s.get(f'fink_pipeline_alerts_read_total{{pipeline="{name}"}}', 0.0)
    busy = s.get(f'fink_pipeline_batch_duration_seconds_sum{{pipeline="{name}"}}', 0.0)
    last_batch = s.get(f'fink_pipeline_last_batch_timestamp_seconds{{pipeline="{name}"}}', 0.0)
    if read < len(values) or not busy or runner.first_scrape is None:
        raise SystemExit(f"the pipeline read {read} of {len(values)} alerts; see {log}")
    query_started, read_at_start = runner.first_scrape
    if read_at_start:
        print(f"  (the first scrape came after a batch: the wall clock misses {read_at_start:.0f})")
    history = status_history(bootstrap, name) if filters else {}
    if filters and set(history) != {f.name for f in filters}:
        raise SystemExit(f"({config}) status records only for {sorted(history)}; see {log}")
    generations = (
        sorted({r.generation for r in history.get(filters[0].name, [])}) if filters else []
    )
    read_1 = first.get(f'fink_pipeline_alerts_read_total{{pipeline="{name}"}}', 0.0)
    busy_1 = first.get(f'fink_pipeline_batch_duration_seconds_sum{{pipeline="{name}"}}', 0.0)
    return {
        "read": read,
        "busy": busy,
        "first batch": busy_1,
        "steady": (read - read_1) / (busy - busy_1) if read > read_1 else float("nan"),
        "wall": last_batch - query_started,
        "batches": s.get(f'fink_pipeline_batch_duration_seconds_count{{pipeline="{name}"}}', 0.0),
        "stages": by_label(s, "fink_pipeline_stage_seconds_total", "stage"),
        "modules": by_label(s, "fink_pipeline_module_seconds_total", "module"),
        "written": by_label(s, "fink_pipeline_alerts_written_total", "sink"),
        "published": [t for t in published if t <= last_batch],
        "sandboxes": len(sandboxes),
        "generations": generations,
        "final": {n: reports[-1] for n, reports in history.items()},
        "topics": [control_topic(name)] if filters else [],
    }


def timed(call: Any, n: int) -> list[float]:
    """Milliseconds of each of N calls."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - started))
    return times


def refresh_figures(bootstrap: str, prefix: str, k: int, n: int) -> dict[str, list[float]]:
    """LiveFilters.refresh against the real Kafka, ms per call: absent, nothing new, one new."""
    client = {"bootstrap.servers": bootstrap}
    absent = LiveFilters(f"{prefix}-absent", client)
    figures = {"absent": timed(absent.refresh, n)}
    name = f"{prefix}-refresh"
    filters = [science_filter(name, i) for i in range(k)]
    hand_over(bootstrap, name, filters)
    live = LiveFilters(name, client)
    deadline = time.monotonic() + 30
    while len(live.state.filters) < k:  # a new topic's metadata may take a moment
        if time.monotonic() > deadline:
            raise SystemExit(f"LiveFilters did not find the {k} filters of {control_topic(name)}")
        live.close()
        live = LiveFilters(name, client)
        figures["first"] = timed(live.refresh, 1)
    live.refresh()  # the consumer is warm; its first poll done
    figures["nothing new"] = timed(live.refresh, n)
    # the same with the consumer's fetch wait cut from librdkafka's 500 ms default (not the
    # pipeline's setting): how much of a read with news is the broker holding the empty fetch
    # that tells the partition's end
    short = LiveFilters(name, {**client, "fetch.wait.max.ms": "10"})
    short.refresh()
    channel = FilterChannel(KafkaConnection(bootstrap))
    wanted = {f.name: f for f in filters}
    figures["one new record"] = []
    for generation in range(2, n + 2):
        wanted[filters[0].name] = science_filter(name, 0, generation)
        channel.publish(control_topic(name), wanted)  # outside the timed region
        figures["one new record"] += timed(live.refresh, 1)
        figures["one new, fetch wait 10 ms"] = [
            *figures.get("one new, fetch wait 10 ms", []),
            *timed(short.refresh, 1),
        ]
        for reader in (live, short):
            if reader.state.filters[filters[0].name].generation != generation:
                raise SystemExit("a refresh did not read the new generation")
    short.close()
    live.close()
    absent.close()
    return figures


def best_per_alert(call: Any, rows: int, calls: int) -> float:
    """µs per alert of CALL on ROWS alerts: best of 3 runs of CALLS calls, after a warm-up."""
    for _ in range(max(5, calls // 10)):
        call()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / calls / rows


def sandbox_figures(
    values: list[bytes], k: int, rows: int, calls: int
) -> list[tuple[str, float, float, float, float]]:
    """Per filter: (name, in-process, FilterSandbox.run, SandboxedFilter µs/alert, load ms)."""
    frame = codec.decode_batch(values[:rows], "ztf").frame.drop(columns=["_position"])
    results = []
    with FilterSandbox() as sandbox:
        for i in range(k):
            live = science_filter("bench", i)
            namespace: dict[str, Any] = {}
            exec(compile(live.code, f"<{live.name}>", "exec"), namespace)
            function = namespace[live.entrypoint]

            def direct(function: Any = function, reads: tuple[str, ...] = live.reads) -> Any:
                return np.asarray(function(*(frame[c] for c in reads)), dtype=bool)

            sandbox.load(live.name, live.code, live.entrypoint)
            expected = direct()
            if not np.array_equal(sandbox.run(live.name, frame), expected):
                raise SystemExit(f"{live.name}: the sandbox and the direct call disagree")
            in_process = best_per_alert(direct, len(frame), calls)
            sandboxed = best_per_alert(
                lambda name=live.name: sandbox.run(name, frame), len(frame), calls
            )
            task = as_filter(live, "ztf", (live_filters.SECONDS_PER_CALL, live_filters.MEMORY_MIB))
            if not (task.function(frame).to_numpy() == expected).all():
                raise SystemExit(f"{live.name}: SandboxedFilter and the direct call disagree")
            in_task = best_per_alert(lambda task=task: task.function(frame), len(frame), calls)
            loads = []
            for generation in range(2, 12):  # each reload: the worker loads the new code once
                new = science_filter("bench", i, generation)
                started = time.perf_counter()
                sandbox.load(new.name, new.code, new.entrypoint)
                loads.append(1e3 * (time.perf_counter() - started))
            results.append((live.name, in_process, sandboxed, in_task, statistics.median(loads)))
    if live_filters._SANDBOX is not None:  # the one SandboxedFilter started in this process
        live_filters._SANDBOX.close()
    return results


def ms(times: list[float]) -> str:
    return f"{statistics.median(times):6.2f} ms median, {statistics.fmean(times):6.2f} mean"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=None, help="default 6000 (--quick 3000)")
    parser.add_argument("--batch", type=int, default=1_000, help="maxOffsetsPerTrigger")
    parser.add_argument("--filters", type=int, default=3, help="ScienceFilters in (b) and (c)")
    parser.add_argument("--reload-every", type=float, default=2.0, help="seconds, in (c)")
    parser.add_argument("--refreshes", type=int, default=None, help="default 100 (--quick 30)")
    parser.add_argument(
        "--order",
        type=lambda text: text.split(","),
        default=list(CONFIGS),
        help="the order the three runs go in (default baseline,filters,reloads)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer alerts, refreshes, calls")
    parser.add_argument("--keep", action="store_true", help="keep the topics, tables and files")
    args = parser.parse_args(argv)
    if sorted(args.order) != sorted(CONFIGS):
        parser.error(f"--order must name {', '.join(CONFIGS)}, each once")
    if args.filters < 1:
        parser.error("--filters must be at least 1")
    args.alerts = args.alerts or (3_000 if args.quick else 6_000)
    args.refreshes = args.refreshes or (30 if args.quick else 100)
    calls = 50 if args.quick else 200

    load_before = os.getloadavg()
    components = ("kafka", "hbase", "spark")
    endpoints = api.ensure_up(components, quiet=True)
    os.environ.update(endpoints.environment())
    bootstrap = endpoints.kafka_bootstrap
    work = Path(tempfile.mkdtemp(prefix="bench-sf-"))
    started = time.monotonic()
    with removed_at_exit(endpoints, work, stores=components, keep=args.keep) as scratch:
        prefix = scratch.name("bench-sf")
        print(f"generating {args.alerts:,} light ZTF alerts (no cutouts) ...", flush=True)
        alerts = generator.generate_alerts(args.alerts, "ztf", seed=1, cutouts=False)
        values = [codec.encode(a, "ztf") for a in alerts]
        runs = {c: run_config(c, args, bootstrap, prefix, values, work) for c in args.order}
        print(f"LiveFilters.refresh against Kafka, {args.refreshes} of each ...", flush=True)
        refresh = refresh_figures(bootstrap, prefix, args.filters, args.refreshes)
        print(f"ScienceFilters on 1,000-row frames, {calls} calls, best of 3 ...", flush=True)
        sandbox = sandbox_figures(values, args.filters, 1_000, calls)
    load_after = os.getloadavg()

    # --- report -------------------------------------------------------------------------------
    k, base = args.filters, runs["baseline"]
    heads = {"baseline": "(a) baseline", "filters": f"(b) {k} filters", "reloads": "(c) + reloads"}
    print()
    print(
        f"== {args.alerts:,} light alerts, batches of {args.batch:,}, Kafka -> five modules -> every "
        f"sink, Spark local[2] ({os.cpu_count()} cores)"
    )
    print(f"{'':<28}" + "".join(f"{heads[c]:>20}" for c in CONFIGS))
    rows = [
        ("batches", lambda r: f"{r['batches']:.0f}"),
        ("first batch (warm-up)", lambda r: f"{r['first batch']:.1f} s"),
        ("after it (in batches)", lambda r: f"{r['steady']:,.0f} alerts/s"),
        ("  ratio to (a)", lambda r: f"{r['steady'] / base['steady']:.2f}x"),
        ("throughput (in batches)", lambda r: f"{r['read'] / r['busy']:,.0f} alerts/s"),
        (
            "  ratio to (a)",
            lambda r: f"{(r['read'] / r['busy']) / (base['read'] / base['busy']):.2f}x",
        ),
        ("throughput (wall clock)", lambda r: f"{r['read'] / r['wall']:,.0f} alerts/s"),
        (
            "  ratio to (a)",
            lambda r: f"{(r['read'] / r['wall']) / (base['read'] / base['wall']):.2f}x",
        ),
        (
            "science stage µs/alert",
            lambda r: f"{1e6 * r['stages'].get('science', 0) / r['read']:,.0f}",
        ),
        (
            "  decode+modules (tasks)",
            lambda r: f"{1e6 * sum(r['modules'].values()) / r['read']:,.0f}",
        ),
        ("  hbase puts (tasks)", lambda r: f"{1e6 * r['stages'].get('hbase', 0) / r['read']:,.0f}"),
        ("sandbox processes started", lambda r: f"{r['sandboxes']}"),
        ("Kafka messages written", lambda r: f"{r['written'].get('kafka', 0):,.0f}"),
        ("kafka stage µs/alert", lambda r: f"{1e6 * r['stages'].get('kafka', 0) / r['read']:,.0f}"),
    ]
    for label, cell in rows:
        print(f"{label:<28}" + "".join(f"{cell(runs[c]):>20}" for c in CONFIGS))
    reloads = runs["reloads"]
    picked = len(reloads["generations"]) - 1
    print(
        f"reloads in (c): {len(reloads['published'])} new generations published while it read "
        f"alerts (every {args.reload_every:g} s), {picked} picked up by a batch "
        f"(generations run: {', '.join(map(str, reloads['generations']))}; a batch runs the latest)"
    )
    for c in ("filters", "reloads"):
        passed = ", ".join(
            f"{n} {r.alerts_passed:,} ({r.state})" for n, r in runs[c]["final"].items()
        )
        print(f"ScienceFilter alerts passed {heads[c]}: {passed}")
    print()
    print("== the driver's read of the control topic before each batch (LiveFilters.refresh,")
    print(f"   real Kafka, {args.refreshes} calls each)")
    print(f"  no control topic (what (a) pays)   {ms(refresh['absent'])}")
    if "first" in refresh:
        print(f"  first read ({k} filter records)     {ms(refresh['first'])}")
    print(f"  {k} filters, nothing new            {ms(refresh['nothing new'])}")
    print(f"  {k} filters, one new record each    {ms(refresh['one new record'])}")
    print(f"  the same, fetch.wait.max.ms=10      {ms(refresh['one new, fetch wait 10 ms'])}")
    per_batch = statistics.fmean(refresh["nothing new"]) / args.batch
    print(f"  (nothing new, per alert at batches of {args.batch:,}: {1e3 * per_batch:.1f} µs)")
    print()
    print("== one ScienceFilter on 1,000-row frames, one core, µs/alert (best of 3)")
    print(
        f"  {'filter':<12}{'in-process':>12}{'FilterSandbox.run':>19}{'ratio':>8}"
        f"{'SandboxedFilter':>17}{'ratio':>8}{'load (reload)':>15}"
    )
    for name, direct, sandboxed, task, load in sandbox:
        print(
            f"  {name:<12}{direct:>12.2f}{sandboxed:>19.2f}{sandboxed / direct:>7.1f}x"
            f"{task:>17.2f}{task / direct:>7.1f}x{load:>12.1f} ms"
        )
    print(
        f"\nload average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end; "
        f"the whole bench took {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
