"""Every message the pipeline produces has a key, so compacted topics accept its transactions.

Kafka refuses a message without a key on a topic with cleanup.policy=compact, and
with it the whole transaction of the micro-batch: the good alerts and the source
offsets too. The batch here is a real one (the tasks' science on generated alerts
and malformed messages) written by the pipeline's own writer through the real
Kafka of the stack, into compacted topics.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from processed_batch import source_rows

from fink_core.connections import KafkaConnection
from fink_core.spec import FilterSpec, ModuleSpec, TopicSettings
from fink_pipeline.alerts import codec, generator
from fink_pipeline.alerts.malformed import malformed_messages
from fink_pipeline.science.plan import build_plan
from fink_pipeline.stream.batch import BatchSinks, MicroBatchWriter, dead_letter_key
from fink_pipeline.stream.enriched import EnrichedCodec, enriched_schema
from fink_pipeline.stream.metrics import PipelineMetrics
from fink_pipeline.stream.observe import read_committed
from fink_pipeline.stream.outbox import filter_message_keys
from fink_pipeline.stream.science_step import ScienceStep
from fink_pipeline.stream.sinks import TransactionalKafka
from fink_stack.endpoints import Endpoints


def test_a_filter_message_is_keyed_by_its_object_else_by_the_alert() -> None:
    ztf = filter_message_keys(pa.array(["ZTF24aaaaaab", "ZTF24aaaaaac"]), pa.array([123, 124]))
    assert ztf.to_pylist() == [b"ZTF24aaaaaab", b"ZTF24aaaaaac"]
    # LSST: integer ids in decimal; a diaSource of a known asteroid has no diaObject
    objects = pa.array([2_000_000_000_000_000_001, None], pa.int64())
    sources = pa.array([5, 100_000_000_000_000_007], pa.int64())
    assert filter_message_keys(objects, sources).to_pylist() == [
        b"2000000000000000001",
        b"100000000000000007",
    ]
    assert dead_letter_key("ztf-alerts", np.int32(1), np.int64(42)) == b"ztf-alerts:1:42"


@pytest.mark.stack
def test_compacted_topics_accept_a_batch_with_malformed_messages(
    stack: Endpoints, unique_name: str
) -> None:
    source, dead, selected = f"{unique_name}-src", f"{unique_name}-dead", f"{unique_name}-sso"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    compact = {"cleanup.policy": "compact"}
    futures = admin.create_topics(
        [
            NewTopic(source, num_partitions=1, replication_factor=1),
            NewTopic(dead, num_partitions=1, replication_factor=1, config=compact),
            NewTopic(selected, num_partitions=1, replication_factor=1, config=compact),
        ]
    )
    for future in futures.values():
        future.result(timeout=30)

    alerts = [codec.encode(a, "ztf") for a in generator.generate_alerts(300, "ztf", seed=21)]
    bad = [m for m, _ in malformed_messages(6, "ztf", seed=21)]
    values = [*alerts, *bad, None]  # a null message too: a dead letter with an empty value
    raw = source_rows(values, source)
    plan = build_plan(
        "ztf",
        [ModuleSpec("quality_cuts"), ModuleSpec("solar_system")],
        [FilterSpec("new_sso_candidates", selected, TopicSettings())],
    )
    step = ScienceStep(plan)
    frame = step.process(raw)
    kafka = TransactionalKafka(
        KafkaConnection(stack.kafka_bootstrap), f"tx-{unique_name}", f"group-{unique_name}"
    )
    writer = MicroBatchWriter(
        unique_name,
        step,
        EnrichedCodec(enriched_schema("ztf", step.alert_columns)),
        BatchSinks(kafka=kafka, archive=None, dead_letter_topic=dead),
        PipelineMetrics(unique_name),
    )
    try:
        report = writer.write(frame, 0, time.monotonic())  # raises if Kafka refused the batch
    finally:
        kafka.close()
    assert report.rejected == len(bad) + 1 and report.passed["new_sso_candidates"] > 0

    letters = read_committed(stack.kafka_bootstrap, dead)
    assert len(letters) == len(bad) + 1
    for message in letters:
        headers = dict(message.headers())
        partition, offset = headers["fink-source-partition"], headers["fink-source-offset"]
        assert message.key() == f"{source}:{partition.decode()}:{offset.decode()}".encode()
    assert sorted(m.value() for m in letters) == sorted([*bad, b""])

    passed = read_committed(stack.kafka_bootstrap, selected)
    assert len(passed) == report.passed["new_sso_candidates"]
    assert all(m.key() and m.key().startswith(b"ZTF") for m in passed)
    # and the source offsets went with them: the transaction committed as a whole
    assert kafka_committed(stack, unique_name, source) == len(values)


def kafka_committed(stack: Endpoints, name: str, topic: str) -> int:
    sink = TransactionalKafka(
        KafkaConnection(stack.kafka_bootstrap), f"tx2-{name}", f"group-{name}"
    )
    try:
        return sink.committed({(topic, 0): 0})[(topic, 0)]
    finally:
        sink.close()
