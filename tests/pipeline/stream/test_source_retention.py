"""Source messages deleted by retention while the pipeline was stopped: skipped, and counted.

The pipeline reads with failOnDataLoss=false, so a restart whose checkpoint
points below the partition's earliest offset goes on from the earliest one
left; `fink_pipeline_alerts_lost_total` counts what was skipped and the log
says which offsets. The same run shows the default bound on a micro-batch
(settings.DEFAULT_MAX_OFFSETS_PER_TRIGGER) when no one sets one.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from stream_world import World, iter_until

from fink_pipeline.alerts import codec, generator
from fink_pipeline.stream.observe import by_label, metric_sum, scrape_metrics
from fink_pipeline.stream.settings import DEFAULT_MAX_OFFSETS_PER_TRIGGER
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack

FIRST, DELETED = 200, 150  # read by the first run; then deleted before the second run read them
LATER = DEFAULT_MAX_OFFSETS_PER_TRIGGER + 300  # more than one default batch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(60) == 0


def test_messages_deleted_while_stopped_are_counted_as_lost(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    world = World(stack=stack, name=unique_name, directory=tmp_path)
    bootstrap = stack.kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(world.source, num_partitions=1, replication_factor=1)])[
        world.source
    ].result(timeout=30)
    # alerts without cutouts: 5,500 of them stay light (the pipeline reads both alike)
    alerts = generator.generate_alerts(FIRST + LATER, "ztf", seed=31, cutouts=False)
    values = [codec.encode(a, "ztf") for a in alerts]

    send(bootstrap, world.source, values[:FIRST])
    world.wait(world.start("--until-idle", "4"))
    assert world.committed()[0] == FIRST

    # while the pipeline is stopped: more alerts, and retention deletes the oldest unread
    send(bootstrap, world.source, values[FIRST:])
    deleted_to = FIRST + DELETED
    done = admin.delete_records([TopicPartition(world.source, 0, deleted_to)])
    assert done[TopicPartition(world.source, 0, deleted_to)].result(timeout=30).low_watermark == (
        deleted_to
    )

    port = free_port()
    run = world.start("--until-idle", "4", metrics_port=port)
    last: dict[str, float] = {}
    for _ in iter_until(240, 0.25):
        if run.process.poll() is not None:
            break
        try:
            last = scrape_metrics(port)
        except OSError:
            continue
    world.wait(run)

    name = world.name
    assert by_label(last, "fink_pipeline_alerts_lost_total", "partition") == {"0": DELETED}
    assert metric_sum(last, "fink_pipeline_alerts_read_total", pipeline=name) == (LATER - DELETED)
    assert world.committed()[0] == FIRST + LATER
    assert f"{DELETED} message(s) of {world.source} partition 0 (offsets {FIRST} to " in run.log()
    # no maxOffsetsPerTrigger anywhere: the default bounds each batch
    offsets = world.offsets_log()
    batches = sorted(b for b in offsets if offsets[b][0] > FIRST)
    assert len(batches) >= 2
    starts = [FIRST] + [offsets[b][0] for b in batches[:-1]]
    sizes = [offsets[b][0] - start for b, start in zip(batches, starts, strict=True)]
    assert max(sizes) <= DEFAULT_MAX_OFFSETS_PER_TRIGGER, sizes
