"""Adapters that write one micro-batch to Kafka, HBase and Parquet, each idempotently.

A restarted query replays the micro-batch that was in flight, with the same
offsets. HBase rows have deterministic keys and Parquet files are named after
the batch, so replaying rewrites the same rows and files. Kafka cannot be
rewritten, so the filter topics, the dead letters and the source offsets the
batch reached go in one transaction; a replayed batch whose offsets are already
committed for the pipeline's consumer group is not sent again.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import happybase
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from fink_core.connections import KafkaConnection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


class HBaseWriter:
    """Puts rows through the Thrift server; reconnects once if the connection dropped."""

    def __init__(self, host: str, port: int, table: str, batch_size: int = 1000) -> None:
        self.host, self.port, self.table_name, self.batch_size = host, port, table, batch_size
        self._connection: happybase.Connection | None = None

    def _table(self) -> happybase.Table:
        if self._connection is None:
            self._connection = happybase.Connection(
                self.host, self.port, timeout=60_000, autoconnect=True
            )
        return self._connection.table(self.table_name)

    def put(self, keys: Sequence[bytes], cells: Sequence[Mapping[bytes, bytes]]) -> None:
        for attempt in (1, 2):
            try:
                with self._table().batch(batch_size=self.batch_size) as batch:
                    for key, row in zip(keys, cells, strict=True):
                        if row:
                            batch.put(key, row)
                return
            except (OSError, EOFError) as error:  # Thrift transport errors
                self.close()
                if attempt == 2:
                    raise ConnectionError(
                        f"HBase Thrift server {self.host}:{self.port} failed while writing "
                        f"table {self.table_name}: {error}"
                    ) from error
                log.warning("HBase connection lost (%s); reconnecting once", error)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None


class ParquetArchive:
    """One file per night and micro-batch: night=YYYYMMDD/batch-<id>.parquet."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def write(self, batch_id: int, table: pa.Table, nights: pd.Series) -> int:
        written = 0
        night_values = nights.to_numpy(dtype=object)
        for night in sorted(set(night_values)):
            rows = pa.array(night_values == night)
            part = table.filter(rows)
            directory = self.root / f"night={night}"
            directory.mkdir(parents=True, exist_ok=True)
            final = directory / f"batch-{batch_id:09d}.parquet"
            partial = directory / f".batch-{batch_id:09d}.{uuid.uuid4().hex}.tmp"
            pq.write_table(part, partial, compression="zstd")
            os.replace(partial, final)  # readers never see half a file; a replay overwrites
            written += part.num_rows
        return written


class TransactionalKafka:
    """Filter topics, dead letters and source offsets committed together, or not at all."""

    def __init__(self, connection: KafkaConnection, transactional_id: str, group_id: str) -> None:
        self.bootstrap = connection.bootstrap
        self.group_id = group_id
        self.producer = Producer(
            {
                **connection.client_config(),
                "transactional.id": transactional_id,
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
                "message.max.bytes": 8 * 1024 * 1024,
            }
        )
        # a new producer with this id fences a crashed predecessor and aborts its transaction
        self.producer.init_transactions(60)
        self.consumer = Consumer(
            {
                **connection.client_config(),
                "group.id": group_id,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )

    def committed(self, partitions: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """The next offset to read per source partition, as the last transaction left it."""
        asked = [TopicPartition(t, p) for t, p in partitions]
        found = self.consumer.committed(asked, timeout=30)
        return {(tp.topic, tp.partition): tp.offset for tp in found}

    def already_delivered(self, ends: Mapping[tuple[str, int], int]) -> bool:
        """True when a transaction already committed this batch (it is being replayed)."""
        committed = self.committed(ends)
        return all(committed.get(tp, -1) >= end for tp, end in ends.items())

    def deliver(
        self, messages: Sequence[OutgoingMessage], ends: Mapping[tuple[str, int], int]
    ) -> None:
        self.producer.begin_transaction()
        try:
            for message in messages:
                self._produce(message)
            offsets = [TopicPartition(t, p, end) for (t, p), end in ends.items()]
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), 60
            )
            self.producer.commit_transaction(120)
        except KafkaException:
            self._abort()
            raise

    def _produce(self, message: OutgoingMessage) -> None:
        while True:
            try:
                self.producer.produce(
                    message.topic, value=message.value, key=message.key, headers=message.headers
                )
                return
            except BufferError:  # local queue full: let it drain
                self.producer.poll(0.5)

    def _abort(self) -> None:
        try:
            self.producer.abort_transaction(60)
        except KafkaException as error:
            log.warning("could not abort the Kafka transaction: %s", error)

    def watermarks(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The head (next offset to be written) of each source partition."""
        heads = {}
        for topic, partition in partitions:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            heads[(topic, partition)] = high
        return heads

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(30)
