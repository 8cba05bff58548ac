"""Look at a running or finished pipeline from outside: its metrics, its output topics.

What the demo shows, what the benchmarks measure and what the end-to-end tests
check all come from here, so the three read the pipeline the same way a user's
tools would: a Prometheus scrape, and a read_committed consumer.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request

from confluent_kafka import Consumer, Message, TopicPartition


def scrape_metrics(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> dict[str, float]:
    """Prometheus samples `name{labels}` -> value; OSError when nothing answers."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                samples[key] = float(value)
    return samples


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (label order does not matter)."""
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def by_label(samples: dict[str, float], name: str, label: str) -> dict[str, float]:
    """{value of `label`: sample} for one metric."""
    found = {}
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and f'{label}="' in rest:
            found[rest.split(f'{label}="', 1)[1].split('"', 1)[0]] = value
    return found


def read_committed(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Message]:
    """Every committed message of a topic, from the beginning, as a read_committed consumer sees it.

    LookupError for a missing topic, TimeoutError if the end is not reached in time.
    """
    return read_topic(bootstrap, topic, "read_committed", timeout)


def read_topic(
    bootstrap: str, topic: str, isolation: str = "read_committed", timeout: float = 60.0
) -> list[Message]:
    """Every message of a topic from the beginning, at an isolation level.

    read_committed stops at the last stable offset (an open transaction's messages
    are not shown); read_uncommitted also returns the messages of open and aborted
    transactions, which is how a test sees what a transaction cut by a crash sent.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"fink-reader-{time.time_ns()}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise LookupError(f"topic {topic}: {metadata.error if metadata else 'not found'}")
        # for a read_committed consumer the high watermark is the last stable offset
        bounds = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            for p in metadata.partitions
        }
        partitions = [TopicPartition(topic, p, low) for p, (low, _) in bounds.items()]
        ends = {p: high for p, (_, high) in bounds.items()}
        consumer.assign(partitions)
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # transaction markers take offsets too: done once every position reached the end
            # an empty partition is never fetched: its position stays invalid (< 0)
            positions = {
                p.partition: p.offset if p.offset >= 0 else bounds[p.partition][0]
                for p in consumer.position(partitions)
            }
            if all(positions[p] >= end for p, end in ends.items()):
                return messages
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
        raise TimeoutError(f"reading topic {topic} took over {timeout:.0f} s")
    finally:
        consumer.close()
