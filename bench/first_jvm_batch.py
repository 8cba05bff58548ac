"""What the warm-up's pass through Spark's JVM decoder saves the first batch the JVM decodes.

    .venv/bin/python bench/first_jvm_batch.py [--batch 1000] [--batches 4] [--runs 2] [--light]

The pipeline's JVM decoder trusts a container prefix only from the batch after
the Python workers reported it (jvm_decode.py), so the first JVM-decoded batch
comes once the stream runs, and pays for loading spark-avro's and Avro's
classes and generating and compiling the query's code, unless the warm-up
already ran that path (warm_up.py, its JVM pass). A JVM is warmed once, so
each measurement is a fresh process (a Spark session of its own, local[2], made as
`fink-pipeline run` makes it), alternating without and with the JVM pass,
--runs times each:

  1. warm_up(jvm_pass=...) on the pipeline's step (five modules, three filters),
     timed;
  2. --batches batches of --batch alerts each read from one Kafka topic
     (batch reads, consecutive offset ranges), decoded by the JVM (the prefix
     of the topic's alerts trusted, as after a first Python-decoded batch)
     and run through the same step, writing nothing; each batch timed.

Printed: per run, the warm-up's seconds and each batch's; then the median of
the first batch's and of the later ones' seconds without and with the pass,
and the ratio of the first batches. Full-size packets (cutouts) unless --light.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic
from pipeline_throughput import FILTERS, MODULES, document, produce

from fink_core.spec import parse_pipeline
from fink_pipeline.alerts import codec, generator
from fink_pipeline.science import plan_for
from fink_pipeline.stream.jvm_decode import JvmDecoder
from fink_pipeline.stream.runner import spark_session
from fink_pipeline.stream.science_step import ScienceStep
from fink_pipeline.stream.settings import settings_for
from fink_pipeline.stream.warm_up import decoded_in_jvm, dry_step, warm_up
from fink_stack import api


def child(topic: str, prefix: str, batch: int, batches: int, jvm_pass: bool) -> dict[str, Any]:
    """One fresh JVM: the warm-up, then the JVM-decoded batches, timed."""
    endpoints = api.ensure_up(("kafka", "spark"), quiet=True)
    os.environ.update(endpoints.environment())  # the connector jars for settings_for
    spec = parse_pipeline(document("bench-first-jvm-batch", Path("unused")))
    spark = spark_session(settings_for(spec))  # as `fink-pipeline run` makes it
    spark.sparkContext.setLogLevel("ERROR")
    step = ScienceStep(plan_for("ztf", MODULES, FILTERS))
    started = time.perf_counter()
    done = warm_up(spark, step, quiet=True, jvm_pass=jvm_pass)
    warmed = time.perf_counter() - started
    if done is None:
        raise SystemExit("the warm-up failed (see its warning above)")
    decoder = JvmDecoder("ztf")
    decoder.learn([bytes.fromhex(prefix)])
    dry = dry_step(step)
    seconds = []
    per_partition = batch // 2
    for k in range(batches):

        def offsets(at: int) -> str:
            return json.dumps({topic: {"0": at, "1": at}})

        raw = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", endpoints.kafka_bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", offsets(k * per_partition))
            .option("endingOffsets", offsets((k + 1) * per_partition))
            .load()
        )
        started = time.perf_counter()
        chunks = decoder.columns(raw).mapInArrow(dry, schema=dry.spark_schema()).toArrow()
        out = dry.rows_of(chunks)
        seconds.append(time.perf_counter() - started)
        in_jvm = decoded_in_jvm(out)
        if (out.num_rows, in_jvm) != (batch, batch):
            raise SystemExit(f"batch {k}: {out.num_rows} rows, {in_jvm} decoded by the JVM")
    spark.stop()
    return {"warm_up": warmed, "jvm_decoded_in_warm_up": done.jvm_decoded, "batches": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1_000, help="alerts per batch (even)")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2, help="fresh processes each way")
    parser.add_argument("--light", action="store_true", help="alerts without cutouts")
    parser.add_argument("--child", nargs=3, metavar=("TOPIC", "PREFIX", "JVM_PASS"))
    args = parser.parse_args(argv)
    if args.batch % 2:
        parser.error("--batch must be even (two partitions)")
    if args.child:
        topic, prefix, jvm_pass = args.child
        result = child(topic, prefix, args.batch, args.batches, jvm_pass == "1")
        print(json.dumps(result))
        return 0

    endpoints = api.ensure_up(("kafka", "spark"), quiet=True)
    topic = f"bench-first-jvm-{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    try:
        alerts = generator.generate_alerts(
            args.batch * args.batches, "ztf", seed=3, cutouts=not args.light
        )
        values = [codec.encode(a, "ztf") for a in alerts]
        produce(endpoints.kafka_bootstrap, topic, values)
        (prefix,) = codec.decode_batch(values[:1], "ztf").plain_prefixes
        kind = "light" if args.light else "full-size"
        print(f"{len(values)} {kind} ZTF alerts, {sum(map(len, values)) / len(values) / 1e3:.1f} "
              f"KB each; batches of {args.batch}, each run a fresh Spark (local[2])")  # fmt: skip
        results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for run in range(args.runs):
            for jvm_pass in (False, True):
                command = [sys.executable, __file__, "--batch", str(args.batch), "--batches",
                           str(args.batches), "--child", topic, prefix.hex(), str(int(jvm_pass))]  # fmt: skip
                output = subprocess.run(command, capture_output=True, text=True, check=True)
                result = json.loads(output.stdout.strip().splitlines()[-1])
                results[jvm_pass].append(result)
                batches = " ".join(f"{s:.2f}" for s in result["batches"])
                print(f"run {run + 1}, JVM pass {'on ' if jvm_pass else 'off'}: warm-up "
                      f"{result['warm_up']:.2f} s (JVM decoded {result['jvm_decoded_in_warm_up']}); "
                      f"batches {batches} s")  # fmt: skip
    finally:
        admin.delete_topics([topic])[topic].result()

    def median(jvm_pass: bool, which: slice) -> float:
        return statistics.median(s for r in results[jvm_pass] for s in r["batches"][which])

    print("median seconds             warm-up   first JVM batch   later batches")
    for jvm_pass in (False, True):
        warm = statistics.median(r["warm_up"] for r in results[jvm_pass])
        print(f"JVM pass {'on ' if jvm_pass else 'off'}              {warm:7.2f}   "
              f"{median(jvm_pass, slice(0, 1)):15.2f}   {median(jvm_pass, slice(1, None)):13.2f}")  # fmt: skip
    ratio = median(False, slice(0, 1)) / median(True, slice(0, 1))
    print(f"first JVM-decoded batch: {ratio:.2f}x faster with the JVM pass (the baseline: off)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
