"""Where decoding ZTF alerts is cheapest: fastavro in Spark's Python workers or spark-avro in its JVM.

    .venv/bin/python bench/jvm_decode.py [--alerts 20000] [--packets both] [--rounds 3]

Issue 10 asks to decode "where it is cheapest (e.g. Avro decoded in the JVM by
spark-avro's from_avro into columns, Arrow to Python only for the modules)".
This measured it before the pipeline was rebuilt around it (it now is:
pipeline/fink_pipeline/stream/jvm_decode.py), on the same Kafka topic of
generated ZTF alerts, Spark local[2], batch reads of the whole topic:

  raw handoff     the raw values handed to Python (mapInPandas), nothing decoded:
                  what the pipeline pays before its decoder runs
  python decode   the same, then the pipeline's own decoder (codec.decode_batch)
                  on each chunk: what the pipeline does today
  jvm decode      from_avro in the JVM into the pipeline's flat columns (the
                  cutouts never leave the JVM), handed to Python as the pandas
                  frames the modules take (mapInPandas)
  jvm decode, arrow  the same handed over as Arrow batches (mapInArrow), not
                  converted to pandas
  jvm pruned, arrow  the same with ZTF's schema cut to the fields the columns come
                  from, as the reader schema (jvm_decode.reader_schema: what the
                  pipeline does)
  jvm only        from_avro and a count of a decoded column, all in the JVM
  jvm pruned only the same with the reader schema

CPU comes from the kernel's counters of Spark's JVM and of its Python workers
(cpu_share.py), in core-µs per alert, with the wall-clock rate; each figure is
the best of --rounds. The container header of ZTF's messages (Avro object
container files) is skipped in SQL: its length is the same for every message
of one writer schema (checked on the generated ones), and the block's size
varint is read byte by byte. This is a measurement, not the pipeline's decoder:
it has none of the refusals (dead letters) the pipeline's decoder makes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
from confluent_kafka.admin import AdminClient, NewTopic
from cpu_share import JIT, JVM, CpuShare
from pipeline_throughput import produce

from fink_pipeline.alerts import codec, generator
from fink_pipeline.alerts.columns import ZTF_COLUMNS
from fink_pipeline.stream.jvm_decode import reader_schema
from fink_stack import api
from fink_stack.scratch import removed_at_exit

SYNC_SIZE = 16  # an Avro container's sync marker
PACKETS = {"light": (False,), "full": (True,), "both": (False, True)}


def header_size(values: list[bytes]) -> int:
    """Bytes before the data block, the same for every message (else no SQL can skip it).

    A container ends with its sync marker, which also closes its header.
    """
    sizes = {value.find(value[-SYNC_SIZE:]) + SYNC_SIZE for value in values}
    if len(sizes) != 1:
        raise SystemExit(f"the messages' container headers differ in size: {sorted(sizes)}")
    return sizes.pop()


def body_expression(header: int) -> str:
    """The Avro datum of a one-record container: after the header, the record count
    (one byte: 1) and the block's byte size (a varint of 1 to 4 bytes)."""
    first = header + 2  # 1-based: the size varint's first byte

    def byte(k: int) -> str:
        return f"cast(conv(hex(substring(value, {k}, 1)), 16, 10) as int)"

    varint = (
        f"case when {byte(first)} < 128 then 1 when {byte(first + 1)} < 128 then 2 "
        f"when {byte(first + 2)} < 128 then 3 else 4 end"
    )
    return f"substring(value, {first} + {varint})"


def flat_columns(alert: str) -> list[str]:
    """The pipeline's ZTF columns (columns.ZTF_COLUMNS) out of the decoded struct."""
    top = {"objectId", "candid"}
    selected = []
    for name in ZTF_COLUMNS:
        if name in top:
            selected.append(f"{alert}.{name} as {name}")
        elif name.startswith("prv_"):
            selected.append(f"{alert}.prv_candidates.{name[4:]} as {name}")
        else:
            selected.append(f"{alert}.candidate.{name} as {name}")
    return selected


def count_rows(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield pd.DataFrame({"n": [sum(len(chunk) for chunk in chunks)]})


def decode_rows(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    total = 0
    for chunk in chunks:
        decoded = codec.decode_batch(chunk["value"].tolist(), "ztf")
        total += len(decoded.frame) + len(decoded.rejects)
    yield pd.DataFrame({"n": [total]})


def count_arrow(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    total = sum(batch.num_rows for batch in batches)
    yield pa.RecordBatch.from_pydict({"n": [total]})


def phases(source: Any, header: int) -> dict[str, Callable[[], int]]:
    from pyspark.sql.avro.functions import from_avro
    from pyspark.sql.functions import expr

    schema = codec.schema_json("ztf")
    body = expr(body_expression(header))
    flat = source.select(from_avro(body, schema).alias("a")).selectExpr(*flat_columns("a"))
    # what the pipeline does: ZTF's schema cut to the fields its columns come from
    options = {"avroSchema": reader_schema(cutouts=False)}
    pruned = source.select(from_avro(body, schema, options).alias("a"))
    pruned = pruned.selectExpr(*flat_columns("a"))

    def total(frame: Any) -> int:
        return int(frame.agg({"n": "sum"}).collect()[0][0])

    return {
        "raw handoff": lambda: total(source.mapInPandas(count_rows, "n long")),
        "python decode": lambda: total(source.mapInPandas(decode_rows, "n long")),
        "jvm decode": lambda: total(flat.mapInPandas(count_rows, "n long")),
        "jvm decode, arrow": lambda: total(flat.mapInArrow(count_arrow, "n long")),
        "jvm pruned, arrow": lambda: total(pruned.mapInArrow(count_arrow, "n long")),
        "jvm only": lambda: int(flat.selectExpr("count(candid) as n").collect()[0][0]),
        "jvm pruned only": lambda: int(pruned.selectExpr("count(candid) as n").collect()[0][0]),
    }


def measure(run: Callable[[], int], alerts: int) -> dict[str, float]:
    cpu = CpuShare(os.getpid(), servers={})
    cpu.mark("start")  # Spark's JVM and workers run already: count from here
    started = time.perf_counter()
    counted = run()
    wall = time.perf_counter() - started
    cpu.sample()
    if counted != alerts:
        raise SystemExit(f"counted {counted} alerts, expected {alerts}")
    seconds = cpu.since("start")
    return {
        "alerts/s": alerts / wall,
        "jvm": (seconds.get(JVM, 0.0) + seconds.get(JIT, 0.0)) / alerts * 1e6,
        "python": seconds.get("pipeline: workers (Python)", 0.0) / alerts * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--packets", choices=sorted(PACKETS), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    components = ("kafka", "spark")
    endpoints = api.ensure_up(components, quiet=True)
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers need our packages
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("fink-bench-jvm-decode")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")  # as the pipeline
        .config("spark.jars", ",".join(str(p) for p in endpoints.spark_jars))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap})
    results: dict[str, dict[str, dict[str, float]]] = {}
    # the topics go when the run ends, however it ends
    with removed_at_exit(endpoints, stores=components) as scratch:
        for cutouts in PACKETS[args.packets]:
            kind = "full-size" if cutouts else "light"
            topic = f"{scratch.name('bench-decode')}-{kind}"
            admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[
                topic
            ].result(30)
            alerts = generator.generate_alerts(args.alerts, "ztf", seed=1, cutouts=cutouts)
            values = [codec.encode(a, "ztf") for a in alerts]
            produce(endpoints.kafka_bootstrap, topic, values)
            header = header_size(values)
            size = sum(map(len, values)) / len(values) / 1024
            print(f"{kind}: {args.alerts} alerts, {size:.1f} KB each, header {header} bytes")
            source = (
                spark.read.format("kafka")
                .option("kafka.bootstrap.servers", endpoints.kafka_bootstrap)
                .option("subscribe", topic)
                .option("startingOffsets", "earliest")
                .load()
                .select("value")
            )
            results[kind] = {}
            for name, run in phases(source, header).items():
                run()  # warm-up: the JVM compiles, the workers import
                rounds = [measure(run, args.alerts) for _ in range(args.rounds)]
                best = min(rounds, key=lambda r: r["jvm"] + r["python"])
                results[kind][name] = best
                print(
                    f"  {name:17s} {best['alerts/s']:8,.0f} alerts/s  JVM {best['jvm']:6.0f}"
                    f"  Python {best['python']:6.0f}  core-µs/alert",
                    flush=True,
                )
    spark.stop()
    print("\n== decode cost over the raw handoff, core-µs/alert (JVM + Python workers)")
    for kind, figures in results.items():
        raw = figures["raw handoff"]["jvm"] + figures["raw handoff"]["python"]
        for name in ("python decode", "jvm decode", "jvm decode, arrow", "jvm pruned, arrow"):
            cost = figures[name]["jvm"] + figures[name]["python"]
            print(f"  {kind:9s} {name:17s} {cost:6.0f} ({cost - raw:+.0f} over the raw handoff)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
