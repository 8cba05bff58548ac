"""A source topic full of alerts, a pipeline document naming fresh sinks, and readers for them.

Each test gets its own topics, table and directories (named after the test), so
tests share the real stack without seeing each other's data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import happybase
import pandas as pd
import pyarrow.dataset as ds
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fink_core.spec import parse_pipeline
from fink_pipeline.alerts import codec, generator
from fink_pipeline.alerts.columns import ALERT_ID
from fink_pipeline.science import enrich, plan_science, select
from fink_pipeline.stream.enriched import FILTERS_FIELD, EnrichedCodec, enriched_schema
from fink_pipeline.stream.observe import read_committed
from fink_pipeline.stream.science_step import ScienceStep
from fink_stack.endpoints import Endpoints

MODULES = ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch", "snia_score"]
FILTERS = {
    "ztf": ["early_sn_candidates", "new_sso_candidates", "fast_transients"],
    "lsst": ["fast_transients"],
}
FINK_PIPELINE = str(Path(sys.executable).with_name("fink-pipeline"))


@dataclass
class World:
    stack: Endpoints
    name: str
    directory: Path
    survey: str = "ztf"

    @property
    def filters(self) -> list[str]:
        return FILTERS[self.survey]

    @property
    def source(self) -> str:
        return f"{self.name}-alerts"

    @property
    def table(self) -> str:
        return self.name.replace("-", "_")

    @property
    def archive(self) -> Path:
        return self.directory / "archive"

    @property
    def checkpoint(self) -> Path:
        return self.directory / "checkpoint"

    def filter_topic(self, name: str) -> str:
        return f"{self.name}.{name}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}.dead-letters"

    def document(self) -> dict[str, Any]:
        return {
            "apiVersion": "fink.broker.dev/v1alpha1",
            "kind": "BrokerPipeline",
            "metadata": {"name": self.name, "namespace": "tests"},
            "spec": {
                "survey": self.survey,
                "source": {"kafka": {"topic": self.source, "startingOffsets": "earliest"}},
                "modules": [{"name": m} for m in MODULES],
                "filters": [{"name": f, "topic": self.filter_topic(f)} for f in self.filters],
                "sinks": {
                    "kafka": {
                        "deadLetterTopic": self.dead_letter_topic,
                        "topicDefaults": {"partitions": 2, "replicationFactor": 1},
                    },
                    "hbase": {
                        "table": self.table,
                        "columnFamilies": [{"name": "i"}, {"name": "d"}],
                    },
                    "archive": {"path": str(self.archive)},
                },
                "spark": {"triggerInterval": "1 second"},
            },
        }

    def pipeline_file(self) -> Path:
        path = self.directory / "pipeline.yaml"
        path.write_text(yaml.safe_dump(self.document()))
        return path

    # --- the source -------------------------------------------------------------------

    def produce(self, count: int, malformed: int = 0, seed: int = 7) -> list[bytes]:
        """Alerts (and malformed messages interleaved) into a fresh 2-partition source topic."""
        admin = AdminClient({"bootstrap.servers": self.stack.kafka_bootstrap})
        admin.create_topics([NewTopic(self.source, num_partitions=2, replication_factor=1)])[
            self.source
        ].result(timeout=30)
        alerts = generator.generate_alerts(count, self.survey, seed)
        values = [codec.encode(a, self.survey) for a in alerts]
        bad = [m for m, _ in generator.malformed_messages(malformed, self.survey, seed)]
        every = max(1, len(values) // max(1, len(bad)))
        mixed: list[bytes] = []
        for i, value in enumerate(values):
            mixed.append(value)
            if bad and i % every == every - 1:
                mixed.append(bad.pop())
        mixed.extend(bad)
        producer = Producer({"bootstrap.servers": self.stack.kafka_bootstrap, "linger.ms": 20})
        for i, value in enumerate(mixed):
            producer.produce(self.source, value=value, partition=i % 2)
        assert producer.flush(60) == 0
        return mixed

    # --- running the pipeline ------------------------------------------------------------

    def start(self, *extra: str, metrics_port: int | None = None) -> subprocess.Popen[bytes]:
        command = [
            FINK_PIPELINE,
            "run",
            "-f",
            str(self.pipeline_file()),
            "--checkpoint",
            str(self.checkpoint),
            "--create-missing",
            *extra,
        ]
        if metrics_port is not None:
            command += ["--metrics-port", str(metrics_port)]
        log = (self.directory / "pipeline.log").open("ab")
        env = {**os.environ, **self.stack.environment()}
        # its own process group: a test can kill the driver and its JVM like a crash would
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def log(self) -> str:
        path = self.directory / "pipeline.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def wait(self, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(process)
            raise AssertionError(
                f"the pipeline did not stop in {timeout} s:\n{self.log()}"
            ) from None
        assert code == 0, f"the pipeline exited with {code}:\n{self.log()}"

    # --- what the sinks hold -------------------------------------------------------------

    def hbase_rows(self) -> dict[bytes, dict[bytes, bytes]]:
        connection = happybase.Connection(
            self.stack.hbase_thrift_host, self.stack.hbase_thrift_port, timeout=60_000
        )
        try:
            return dict(connection.table(self.table).scan(batch_size=1000))
        finally:
            connection.close()

    def archive_frame(self) -> pd.DataFrame:
        return (
            ds.dataset(self.archive, format="parquet", partitioning="hive").to_table().to_pandas()
        )

    def read_topic(self, topic: str) -> list[Any]:
        """Every committed message of a topic (read_committed, from the beginning)."""
        return read_committed(self.stack.kafka_bootstrap, topic)

    def committed_offsets(self) -> int:
        """How many source messages the pipeline's transactions have committed so far."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.stack.kafka_bootstrap,
                "group.id": f"fink-pipeline.tests.{self.name}",
            }
        )
        try:
            found = consumer.committed([TopicPartition(self.source, p) for p in (0, 1)], timeout=10)
            return sum(max(tp.offset, 0) for tp in found)
        finally:
            consumer.close()


def expected_selection(
    world: World, values: list[bytes]
) -> tuple[pd.DataFrame, dict[str, set[int]]]:
    """The decoded alerts and, per filter, the alert ids its function selects, applied directly."""
    spec = parse_pipeline(world.document())
    plan = plan_science(spec)
    decoded = codec.decode_batch(values, world.survey).frame.drop(columns=["_position"])
    enriched = enrich(decoded, plan)
    masks = select(enriched, plan)
    ids = decoded[ALERT_ID[world.survey]]
    return decoded, {name: set(ids[mask].astype(int)) for name, mask in masks.items()}


def enriched_codec(world: World) -> EnrichedCodec:
    plan = plan_science(parse_pipeline(world.document()))
    return EnrichedCodec(enriched_schema(world.survey, ScienceStep(plan).alert_columns))


def topic_alert_ids(world: World, codec_: EnrichedCodec, topic: str, filter_name: str) -> list[int]:
    ids = []
    for message in world.read_topic(topic):
        record = codec_.decode(message.value())
        assert filter_name in record[FILTERS_FIELD]
        ids.append(int(record[ALERT_ID[world.survey]]))
    return ids


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the pipeline's whole process group (Python driver and Spark's JVM)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def iter_until(timeout: float, interval: float = 0.5) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield
        time.sleep(interval)
