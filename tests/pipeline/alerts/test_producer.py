"""`fink-alerts produce` against the real Kafka of the local stack."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from fink_pipeline.alerts import codec
from fink_stack.endpoints import Endpoints

BIN = Path(sys.executable).parent / "fink-alerts"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.stack
def test_produced_alerts_and_malformed_messages_reach_the_topic(
    stack: Endpoints, unique_name: str
) -> None:
    done = run(
        "produce",
        "--survey",
        "ztf",
        "--topic",
        unique_name,
        "--bootstrap-servers",
        stack.kafka_bootstrap,
        "--count",
        "500",
        "--malformed",
        "20",
        "--create-topic",
        "--partitions",
        "3",
        "--seed",
        "7",
    )
    assert done.returncode == 0, done.stderr
    assert "500 alerts and 20 malformed" in done.stdout

    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": unique_name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(unique_name, p) for p in range(3)])
    messages = []
    try:
        deadline = time.monotonic() + 60
        while len(messages) < 520 and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=600, timeout=1.0):
                assert message.error() is None, message.error()
                messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == 520
    batch = codec.decode_batch([m.value() for m in messages], "ztf")
    assert len(batch.frame) == 500 and len(batch.rejects) == 20
    # alerts (keyed; malformed messages have no key) weigh what ZTF's do: three cutouts each
    sizes = [len(m.value()) for m in messages if m.key() is not None]
    assert len(sizes) == 500 and min(sizes) >= 60_000 and max(sizes) <= 75_000
    # an object's alerts share a partition (keyed by objectId)
    partitions: dict[bytes, set[int]] = {}
    for message in messages:
        if message.key() is not None:
            partitions.setdefault(message.key(), set()).add(message.partition())
    assert all(len(p) == 1 for p in partitions.values())


@pytest.mark.stack
def test_no_cutouts_sends_light_ztf_packets(stack: Endpoints, unique_name: str) -> None:
    done = run(
        "produce", "--survey", "ztf", "--topic", unique_name, "--no-cutouts",
        "--bootstrap-servers", stack.kafka_bootstrap, "--count", "50", "--create-topic",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": unique_name})
    consumer.assign([TopicPartition(unique_name, 0, 0)])
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(values) < 50 and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(num_messages=50, timeout=1.0)]
    finally:
        consumer.close()
    assert len(values) == 50 and max(len(v) for v in values) < 15_000
    assert len(codec.decode_batch(values, "ztf").frame) == 50


def test_an_unreachable_broker_fails_fast_with_a_message() -> None:
    started = time.monotonic()
    done = run("produce", "--survey", "lsst", "--topic", "x", "--bootstrap-servers", "127.0.0.1:9")
    assert done.returncode == 1
    assert time.monotonic() - started < 20
    assert "Kafka at 127.0.0.1:9 is unreachable" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.stack
def test_a_missing_topic_fails_without_create_topic(stack: Endpoints, unique_name: str) -> None:
    done = run(
        "produce", "--survey", "ztf", "--topic", unique_name,
        "--bootstrap-servers", stack.kafka_bootstrap, "--count", "5",
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"topic {unique_name!r} does not exist on {stack.kafka_bootstrap}" in done.stderr
    assert "--create-topic" in done.stderr


def timestamps(bootstrap: str, topic: str, count: int) -> list[float]:
    """The producer's timestamps (seconds) of the first `count` messages of a 1-partition topic."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: list[float] = []
    try:
        deadline = time.monotonic() + 60
        while len(found) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=count, timeout=1.0):
                assert message.error() is None
                found.append(message.timestamp()[1] / 1000)
    finally:
        consumer.close()
    assert len(found) == count
    return sorted(found)


@pytest.mark.stack
def test_rate_and_burst_pace_the_stream(stack: Endpoints, unique_name: str) -> None:
    """--rate spreads the alerts over count/rate seconds; --burst sends groups that far apart.

    Only lower bounds: a loaded machine may send later, never earlier.
    """
    steady, bursty = f"{unique_name}-steady", f"{unique_name}-bursty"
    common = ["--survey", "ztf", "--bootstrap-servers", stack.kafka_bootstrap, "--create-topic"]
    assert (
        run("produce", *common, "--topic", steady, "--count", "100", "--rate", "200").returncode
        == 0
    )
    sent = timestamps(stack.kafka_bootstrap, steady, 100)
    assert sent[-1] - sent[0] >= 99 / 200 * 0.9  # the 100th alert is due 0.495 s after the first

    done = run(
        "produce", *common, "--topic", bursty, "--count", "300", "--rate", "500", "--burst", "100"
    )
    assert done.returncode == 0
    sent = timestamps(stack.kafka_bootstrap, bursty, 300)
    for group in (1, 2):  # group g is due g * 100 / 500 s after the first
        assert sent[100 * group] - sent[0] >= group * 0.2 * 0.9
    assert sent[99] - sent[0] < sent[100] - sent[99] + 0.2  # a burst goes out at once


def test_schema_and_sample_commands() -> None:
    schema = run("schema", "--survey", "ztf")
    assert schema.returncode == 0 and '"prv_candidates"' in schema.stdout
    sample = run("sample", "--survey", "ztf", "--count", "3")
    assert sample.returncode == 0 and len(sample.stdout.strip().splitlines()) == 3
    assert '"objectId"' in sample.stdout
