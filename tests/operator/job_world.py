"""A pipeline's world for the real-node job tests: its source, its sinks, and what they must hold.

The operator runs the job on the real node with the addresses pods use; the test
reads the very same Kafka, HBase and archive from the host. What the sinks must
hold is computed here by applying the pipeline's science directly to the alerts
that were produced, so "exactly once" is checked alert by alert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import happybase
import pyarrow.dataset as ds
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from short_lived_jvm import SPARK_CONF as SHORT_LIVED_JVM

from fink_core.spec import parse_pipeline
from fink_pipeline.alerts import codec, generator
from fink_pipeline.alerts.columns import ALERT_ID
from fink_pipeline.alerts.malformed import malformed_messages
from fink_pipeline.science import enrich, plan_science, select
from fink_pipeline.stream.enriched import FILTERS_FIELD, EnrichedCodec, enriched_schema
from fink_pipeline.stream.observe import read_committed
from fink_pipeline.stream.science_step import ScienceStep
from fink_pipeline.stream.storage import HadoopFiles
from fink_stack.endpoints import Endpoints

MODULES = [{"name": "quality_cuts"}, {"name": "lightcurve_features"}, {"name": "solar_system"}]
ARCHIVE = "/archive"  # inside the driver pod; the pipeline's volume on the host
SURVEY = "ztf"


@dataclass
class JobWorld:
    stack: Endpoints
    name: str
    namespace: str
    volume: Path  # the operator's --pipeline-volume host-path directory
    filters: list[str] = field(default_factory=lambda: ["early_sn_candidates", "fast_transients"])
    produced: list[bytes] = field(default_factory=list)
    malformed: int = 0
    seed: int = 11
    # a filter added to a running job sees only what arrives after: alerts before its roll
    # are behind the job's checkpoint (filter -> how many alerts were produced before it)
    added_after: dict[str, int] = field(default_factory=dict)
    # checkpoint and archive at <hdfs>/tests/<namespace>/<name>/ (the pods' HDFS URL)
    # instead of on the pipeline's volume
    hdfs: str = ""

    def add_filter(self, name: str) -> None:
        self.filters.append(name)
        self.added_after[name] = len(self.produced)

    @property
    def source(self) -> str:
        return f"{self.name}-alerts"

    @property
    def table(self) -> str:
        return self.name.replace("-", "_")

    @property
    def archive(self) -> Path:
        return self.volume / self.namespace / self.name / "archive"

    def hdfs_location(self, relative: str, from_host: bool = False) -> str:
        """<hdfs>/tests/<namespace>/<name>/<relative>, as pods reach it or from the host."""
        base = self.stack.hdfs if from_host else self.hdfs
        return f"{base}/tests/{self.namespace}/{self.name}/{relative}"

    def filter_topic(self, name: str) -> str:
        return f"{self.name}.{name}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}-deadletter"

    def topics(self) -> list[str]:
        return [self.source, self.dead_letter_topic, *map(self.filter_topic, self.filters)]

    def document(self, **spark: Any) -> dict[str, Any]:
        archive = ARCHIVE
        conf = dict(SHORT_LIVED_JVM)  # the pods' JVMs start as the host's do in tests
        if self.hdfs:
            archive = self.hdfs_location("archive")
            # the stack's DataNode is advertised by a name CoreDNS gives pods
            conf["spark.hadoop.dfs.client.use.datanode.hostname"] = "true"
            spark = {"checkpointLocation": self.hdfs_location("checkpoint"), **spark}
        spark = {"sparkConf": conf, **spark}
        return {
            "apiVersion": "fink.broker.dev/v1alpha1",
            "kind": "BrokerPipeline",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "survey": SURVEY,
                "source": {"kafka": {"topic": self.source, "startingOffsets": "earliest"}},
                "modules": MODULES,
                "filters": [{"name": f, "topic": self.filter_topic(f)} for f in self.filters],
                "sinks": {"hbase": {"table": self.table}, "archive": {"path": archive}},
                "spark": {
                    "triggerInterval": "2 seconds",
                    "driver": {"cores": 1, "coreRequest": "250m", "memory": "768m"},
                    "executor": {
                        "instances": 1,
                        "cores": 1,
                        "coreRequest": "250m",
                        "memory": "768m",
                    },
                    "restartPolicy": {"backoffSeconds": 2},
                    "stopGracePeriodSeconds": 30,
                    **spark,
                },
            },
        }

    # --- the source -----------------------------------------------------------------------

    def create_source(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.stack.kafka_bootstrap})
        admin.create_topics([NewTopic(self.source, num_partitions=2, replication_factor=1)])[
            self.source
        ].result(timeout=30)

    def produce(self, count: int, malformed: int = 0) -> None:
        """New alerts (new objects each call) and malformed messages into the source topic."""
        alerts = generator.generate_alerts(count, SURVEY, self.seed)
        self.seed += 1
        values = [codec.encode(a, SURVEY) for a in alerts]
        bad = [m for m, _ in malformed_messages(malformed, SURVEY, self.seed)]
        producer = Producer({"bootstrap.servers": self.stack.kafka_bootstrap, "linger.ms": 20})
        for i, value in enumerate([*values, *bad]):
            producer.produce(self.source, value=value, partition=i % 2)
        assert producer.flush(60) == 0
        self.produced += values
        self.malformed += len(bad)

    # --- what the sinks must hold, and hold ----------------------------------------------

    def expected(self, filters: list[str] | None = None) -> dict[str, set[int]]:
        """Per filter, the ids of the produced alerts its function selects, applied directly."""
        document = self.document()
        document["spec"]["filters"] = [
            {"name": f, "topic": self.filter_topic(f)} for f in (filters or self.filters)
        ]
        plan = plan_science(parse_pipeline(document))
        decoded = codec.decode_batch(self.produced, SURVEY).frame.drop(columns=["_position"])
        masks = select(enrich(decoded, plan), plan)
        ids = decoded[ALERT_ID[SURVEY]]
        selected = {}
        for name, mask in masks.items():
            seen = mask.copy()
            seen.iloc[: self.added_after.get(name, 0)] = False
            selected[name] = set(ids[seen].astype(int))
        return selected

    def topic_ids(self, filter_name: str) -> list[int]:
        """Alert ids on a filter topic as a read_committed consumer sees them (duplicates kept)."""
        plan = plan_science(parse_pipeline(self.document()))
        enriched = EnrichedCodec(enriched_schema(SURVEY, ScienceStep(plan).alert_columns))
        ids = []
        for message in read_committed(self.stack.kafka_bootstrap, self.filter_topic(filter_name)):
            record = enriched.decode(message.value())
            assert filter_name in record[FILTERS_FIELD]
            ids.append(int(record[ALERT_ID[SURVEY]]))
        return ids

    def dead_letters(self) -> int:
        return len(read_committed(self.stack.kafka_bootstrap, self.dead_letter_topic))

    def hbase_rows(self) -> int:
        connection = happybase.Connection(
            self.stack.hbase_thrift_host, self.stack.hbase_thrift_port, timeout=60_000
        )
        try:
            return sum(1 for _ in connection.table(self.table).scan(columns=[b"i:objectId"]))
        finally:
            connection.close()

    def archived(self) -> int:
        archive = self.archive
        if self.hdfs:  # a copy read from the host through the pipeline's own Hadoop client
            archive = self.volume / f"archive-copy-{uuid.uuid4().hex[:8]}"
            location = self.hdfs_location("archive", from_host=True)
            with HadoopFiles.launched() as files:
                if files.exists(location):
                    files.download(location, archive)
        if not archive.exists():
            return 0
        dataset = ds.dataset(archive, format="parquet", partitioning="hive")
        return dataset.count_rows()

    def on_hdfs(self, relative: str) -> bool:
        """Whether hdfs_location(relative) exists, asked from the host."""
        with HadoopFiles.launched() as files:
            return files.exists(self.hdfs_location(relative, from_host=True))

    def holds_everything(self, filters: list[str] | None = None) -> bool:
        """Every sink holds exactly what was produced (False while the job is catching up)."""
        expected = self.expected(filters)
        for name, ids in expected.items():
            try:
                found = self.topic_ids(name)
            except (KafkaException, LookupError, TimeoutError):
                return False  # a topic just created: its partitions have no leader yet
            if len(found) < len(ids):
                return False
            assert len(found) == len(set(found)), f"{name}: duplicates on the filter topic"
            assert set(found) == ids, f"{name}: other alerts than its function selects"
        if self.dead_letters() < self.malformed or self.hbase_rows() < len(self.produced):
            return False
        assert self.dead_letters() == self.malformed
        assert self.hbase_rows() == len(self.produced)
        archived = self.archived()
        if archived < len(self.produced):
            return False
        assert archived == len(self.produced), "the archive holds an alert twice"
        return True


def operator_flags(stack: Endpoints, volume: Path, *extra: str) -> tuple[str, ...]:
    """The operator as the real-node job tests run it: the addresses pods use, the node's image."""
    pods = stack.pods
    assert pods is not None, "the real node is not up (fink-stack up node)"
    return (
        "--jobs",
        "--spark-image",
        pods.pipeline_image,
        "--image-pull-policy",
        "Never",
        "--pipeline-volume",
        f"host-path:{volume}",
        "--kafka-bootstrap",
        pods.kafka_bootstrap,
        "--hbase-thrift",
        pods.hbase_thrift,
        "--hbase-admin",
        pods.hbase_admin,
        *extra,
    )
