"""The Spark settings a pipeline's session starts with, and what they do in a real Spark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fink_core.spec import parse_pipeline
from fink_pipeline.stream.runner import (
    ARROW_BYTES_PER_BATCH,
    ARROW_RECORDS_PER_BATCH,
    JVM_OPTIONS,
    session_conf,
)
from fink_pipeline.stream.settings import RunSettings, settings_for

CHUNK_KEYS = (
    "spark.sql.execution.arrow.maxRecordsPerBatch",
    "spark.sql.execution.arrow.maxBytesPerBatch",
)


def settings(spark_conf: dict[str, str] | None = None, master: str = "local[2]") -> RunSettings:
    document = {
        "apiVersion": "fink.broker.dev/v1alpha1",
        "kind": "BrokerPipeline",
        "metadata": {"name": "conf", "namespace": "tests"},
        "spec": {
            "survey": "ztf",
            "source": {"kafka": {"topic": "conf-alerts"}},
            "filters": [{"name": "early_sn_candidates", "topic": "conf.early"}],
            "sinks": {"kafka": {"deadLetterTopic": "conf.dead-letters"}},
            "spark": {"sparkConf": spark_conf or {}},
        },
    }
    return settings_for(parse_pipeline(document), master=master, jars="")


def test_the_session_bounds_a_workers_chunk_in_rows_and_bytes_and_sets_the_jvm_options() -> None:
    conf = session_conf(settings())
    assert conf["spark.sql.execution.arrow.maxRecordsPerBatch"] == str(ARROW_RECORDS_PER_BATCH)
    assert conf["spark.sql.execution.arrow.maxBytesPerBatch"] == str(ARROW_BYTES_PER_BATCH)
    assert conf["spark.driver.defaultJavaOptions"] == JVM_OPTIONS
    assert conf["spark.executor.defaultJavaOptions"] == JVM_OPTIONS
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert "spark.jars" not in conf


def test_the_specs_spark_conf_wins_over_ours() -> None:
    mine = {
        "spark.sql.execution.arrow.maxRecordsPerBatch": "500",
        "spark.driver.defaultJavaOptions": "-XX:+UseSerialGC",
    }
    conf = session_conf(settings(mine, master="k8s://https://10.96.0.1:443"))
    assert conf | mine == conf
    assert "spark.driver.bindAddress" not in conf  # a cluster's driver: the operator's


@pytest.fixture
def chunk_conf(spark: Any) -> Iterator[None]:
    """The shared session with a pipeline's chunk bounds for one test (they are SQL
    settings, read when a query runs), then as it was."""
    before = {key: spark.conf.get(key, None) for key in CHUNK_KEYS}
    conf = session_conf(settings())
    for key in CHUNK_KEYS:
        spark.conf.set(key, conf[key])
    yield
    for key, value in before.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


def chunk_sizes(spark: Any, rows: int, value_bytes: int) -> list[int]:
    """The rows of each Arrow batch a Python worker receives from one partition of
    `rows` values of `value_bytes` bytes each."""

    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield pa.RecordBatch.from_pydict({"rows": [batch.num_rows]})

    values = spark.range(rows, numPartitions=1).selectExpr(
        f"CAST(repeat('x', {value_bytes}) AS BINARY) AS value"
    )
    return [row.rows for row in values.mapInArrow(count, "rows long").collect()]


@pytest.mark.stack
@pytest.mark.usefixtures("chunk_conf")
def test_a_worker_gets_light_alerts_by_thousands_and_full_size_packets_bounded_in_bytes(
    spark: Any,
) -> None:
    """Light alerts (8.5 KB) cost each chunk a fixed share, so they come by thousands;
    full-size packets (~65 KB) come no more than 64 MiB at a time."""
    assert chunk_sizes(spark, 12_000, 100) == [ARROW_RECORDS_PER_BATCH, 2_000]
    full_size = chunk_sizes(spark, 3_000, 65_000)
    assert sum(full_size) == 3_000
    assert len(full_size) >= 3_000 * 65_000 // ARROW_BYTES_PER_BATCH
    assert max(full_size) * 65_000 <= ARROW_BYTES_PER_BATCH * 1.05


PRINT_JVM_OPTIONS = """
import json
from fink_pipeline.stream.runner import spark_session
from test_session_conf import settings
session = spark_session(settings({"spark.driver.extraJavaOptions": "-Dfink.tests.user=1"}))
runtime = session.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
print(json.dumps([str(a) for a in runtime.getInputArguments()]))
session.stop()
"""


@pytest.mark.stack
def test_the_pipelines_jvm_starts_with_our_options_and_the_specs_after_them() -> None:
    """The options reach the JVM pyspark starts (spark-submit reads them before it
    starts), and a spec's extraJavaOptions come after ours, so a user's flag wins."""
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", PRINT_JVM_OPTIONS],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=here,
        env={**os.environ, "PYTHONPATH": here, "SPARK_LOCAL_IP": "127.0.0.1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    options = json.loads(done.stdout.strip().splitlines()[-1])
    assert JVM_OPTIONS in options
    assert options.index(JVM_OPTIONS) < options.index("-Dfink.tests.user=1")
