"""Spark runs locally with the Kafka connector from the stack's cached jars."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


def test_pyspark_reads_a_kafka_topic_with_the_connector(
    stack: Endpoints, spark: Any, unique_name: str
) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(unique_name, num_partitions=3, replication_factor=1)])[
        unique_name
    ].result(timeout=30)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for i in range(321):
        producer.produce(unique_name, value=f"{i}".encode(), partition=i % 3)
    assert producer.flush(30) == 0

    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", stack.kafka_bootstrap)
        .option("subscribe", unique_name)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    assert frame.count() == 321
    values = {int(r.value) for r in frame.selectExpr("CAST(value AS STRING) AS value").collect()}
    assert values == set(range(321))
    per_partition = {r.partition for r in frame.select("partition").distinct().collect()}
    assert per_partition == {0, 1, 2}
