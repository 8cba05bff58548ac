"""Where each source partition's delivered batches end, kept in the sink cluster.

Exactly once needs the source offsets a batch reached to be committed in the
same Kafka transaction as the batch's messages. When source and sinks share a
cluster, the offsets of the pipeline's consumer group do that
(`send_offsets_to_transaction`). When the survey's stream comes from another
cluster (the survey's upstream, the broker's own Kafka for the outputs), the
sink cluster's group coordinator cannot hold offsets of a topic it does not
have: the offsets are written instead as records of a compacted topic of the
sink cluster (the progress topic), one key per source partition, inside the
batch's transaction. Spark's checkpoint stays the truth of what to read next;
this record is the sink side's truth of what was delivered, so a replayed
batch is recognised and not sent twice.

The pipeline is the only writer (its transactional id fences any other), so
the topic is read once at start and then kept in memory; a failed transaction
makes the next check read it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from fink_core.connections import KafkaConnection

READ_TIMEOUT_S = 60.0


def progress_key(topic: str, partition: int) -> bytes:
    return f"{topic}:{partition}".encode()


def progress_value(end: int, batch_id: int | None) -> bytes:
    return json.dumps({"offset": end, "batch": batch_id}).encode()


class SinkProgress:
    """The delivered ends per source partition, as the progress topic's records say."""

    def __init__(self, connection: KafkaConnection, topic: str) -> None:
        self.connection = connection
        self.topic = topic
        self._ends: dict[tuple[str, int], int] | None = None

    def committed(self, timeout: float = READ_TIMEOUT_S) -> dict[tuple[str, int], int]:
        """(source topic, partition) -> the offset the last delivered batch reached."""
        if self._ends is None:
            self._ends = self._read(timeout)
        return dict(self._ends)

    def delivered(self, ends: Mapping[tuple[str, int], int]) -> None:
        """A transaction carrying these ends committed."""
        if self._ends is not None:
            self._ends.update(ends)

    def forget(self) -> None:
        """A transaction failed or its outcome is unknown: read the topic again next time."""
        self._ends = None

    def _read(self, timeout: float) -> dict[tuple[str, int], int]:
        consumer = Consumer(
            {
                **self.connection.client_config(),
                "group.id": f"{self.topic}.reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        try:
            return self._read_all(consumer, timeout)
        except KafkaException as error:
            cause = error.args[0] if error.args else error
            text = cause.str() if hasattr(cause, "str") else str(cause)
            raise ConnectionError(
                f"Kafka at {self.connection.bootstrap}: could not read the progress topic "
                f"{self.topic}: {text}"
            ) from error
        finally:
            consumer.close()

    def _read_all(self, consumer: Consumer, timeout: float) -> dict[tuple[str, int], int]:
        metadata = consumer.list_topics(self.topic, timeout=10)
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None:
            raise ConnectionError(
                f"Kafka at {self.connection.bootstrap}: the progress topic {self.topic} is "
                "missing; the operator creates it (fink-pipeline run: --create-missing)"
            )
        ends: dict[tuple[str, int], int] = {}
        pending: dict[int, int] = {}  # partition -> high watermark still to reach
        start = []
        for partition in found.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10, cached=False
            )
            if high > low:
                pending[partition] = high
                start.append(TopicPartition(self.topic, partition, low))
        if not pending:
            return ends
        consumer.assign(start)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"Kafka at {self.connection.bootstrap}: the progress topic {self.topic} "
                    f"was not read to its end in {timeout:.0f} s"
                )
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(message.error())
                # the end a read_committed reader may reach; the producer's own start
                # fenced any open transaction, so that is the partition's end
                pending.pop(message.partition(), None)
                continue
            if message is not None:
                record = json.loads(message.value())
                topic, _, partition = message.key().decode().rpartition(":")
                ends[(topic, int(partition))] = int(record["offset"])
            if pending:
                positions = consumer.position([TopicPartition(self.topic, p) for p in pending])
                for position in positions:
                    if position.offset >= pending[position.partition]:
                        del pending[position.partition]
        return ends
