"""The local Kafka is a real broker: topics are created by the AdminClient, messages round-trip."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


def test_admin_client_creates_a_topic_with_its_settings(stack: Endpoints, unique_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topic = NewTopic(
        unique_name, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"}
    )
    admin.create_topics([topic])[unique_name].result(timeout=30)

    # a created topic reaches the broker's metadata cache a moment after the reply
    deadline = time.monotonic() + 15
    metadata = admin.list_topics(unique_name, timeout=10).topics[unique_name]
    while metadata.error is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        metadata = admin.list_topics(unique_name, timeout=10).topics[unique_name]
    assert len(metadata.partitions) == 3
    resource = ConfigResource(ConfigResource.Type.TOPIC, unique_name)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["retention.ms"].value == "3600000"


def test_messages_produced_are_consumed_back(stack: Endpoints, unique_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(unique_name, num_partitions=2, replication_factor=1)])[
        unique_name
    ].result(timeout=30)

    sent = {f"alert-{i}".encode(): f"payload-{i}".encode() for i in range(200)}
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "enable.idempotence": True})
    for key, value in sent.items():
        producer.produce(unique_name, key=key, value=value)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": unique_name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(unique_name, p) for p in range(2)])
    received: dict[bytes, bytes] = {}
    try:
        for _ in range(60):
            for message in consumer.consume(num_messages=500, timeout=1.0):
                assert message.error() is None, message.error()
                received[message.key()] = message.value()
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert received == sent
