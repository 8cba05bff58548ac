"""The operator's end of a pipeline's control topic (fink_core.filter_control): publish, read back.

One client per sink cluster, kept by the operator: it remembers what each
control topic holds (read once from the start, then only what was added), so a
pass that changes nothing writes nothing, and a ScienceFilter's status is read
from what the pipeline reported without re-reading the whole topic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from fink_core.connections import KafkaConnection
from fink_core.filter_control import ControlState, LiveFilter, changes

READ_TIMEOUT = 10.0


class FilterChannel:
    def __init__(self, connection: KafkaConnection, timeout: float = READ_TIMEOUT) -> None:
        self.connection = connection
        self.timeout = timeout
        self._states: dict[str, tuple[ControlState, int]] = {}
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None

    def read(self, topic: str) -> ControlState:
        """The topic's state up to its current end."""
        with self._lock:
            state, offset = self._states.get(topic, (ControlState(), OFFSET_BEGINNING))
            consumer = self._consumer_client()
            low, high = self._watermarks(consumer, topic)
            start = low if offset == OFFSET_BEGINNING else max(offset, low)
            position = start
            if start < high:
                # read to the partition's end (its last stable offset: transactions of the
                # pipeline still open are not waited for); transaction markers take offsets
                # without being records, so the end is told by the EOF event, not by offsets
                consumer.assign([TopicPartition(topic, 0, start)])
                while True:
                    message = consumer.poll(self.timeout)
                    if message is None:
                        raise TimeoutError(
                            f"{topic}: no end of partition after {self.timeout:.0f} s"
                        )
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            position = message.offset()
                            break
                        raise KafkaException(error)
                    state.apply(message.key(), message.value())
                    position = message.offset() + 1
                consumer.unassign()
            self._states[topic] = (state, max(position, start))
            return state

    def _watermarks(self, consumer: Consumer, topic: str) -> tuple[int, int]:
        """The partition's bounds; a topic created a moment ago may not be known yet."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                consumer.list_topics(topic, timeout=self.timeout)  # refreshes the metadata
                return consumer.get_watermark_offsets(
                    TopicPartition(topic, 0), timeout=self.timeout
                )
            except KafkaException as error:
                code = error.args[0].code() if error.args else None
                if code != KafkaError._UNKNOWN_PARTITION or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def publish(self, topic: str, wanted: Mapping[str, LiveFilter]) -> int:
        """Write what differs between the topic and `wanted`; the number of records written."""
        records = changes(self.read(topic).filters, wanted)
        if not records:
            return 0
        producer = self._producer_client()
        failures: list[str] = []

        def delivered(error: object, _message: object) -> None:
            if error is not None:
                failures.append(str(error))

        for key, value in records:
            producer.produce(topic, key=key, value=value, on_delivery=delivered)
        remaining = producer.flush(self.timeout)
        if remaining or failures:
            raise KafkaException(f"{topic}: {remaining} record(s) undelivered {failures}")
        self.read(topic)
        return len(records)

    def _consumer_client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    **self.connection.client_config(),
                    "group.id": "fink-operator-filters",  # never committed: assign() only
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": 10,  # the partition's end is told after this wait
                }
            )
        return self._consumer

    def _producer_client(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {**self.connection.client_config(), "enable.idempotence": True, "acks": "all"}
            )
        return self._producer
