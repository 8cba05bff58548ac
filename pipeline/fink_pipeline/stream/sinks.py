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
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from thriftpy2.transport import TTransportException

from fink_core.connections import KafkaConnection
from fink_pipeline.stream import faults, storage
from fink_pipeline.stream.progress import SinkProgress, progress_key, progress_value
from fink_pipeline.stream.thrift_mutations import (
    CellColumn,
    ThriftMutations,
    encoded_rows,
    requests,
)

log = logging.getLogger(__name__)

# Thrift's own transport errors (a connection refused, or dropped: "TSocket read 0
# bytes") are not OSErrors; EOFError and OSError come from the socket underneath
THRIFT_TRANSPORT_ERRORS = (TTransportException, OSError, EOFError)
# Cells (whole rows, until one passes this count) sent per Thrift request: about 500
# alerts of ~40 cells. A request of 1,000 cells (27 alerts) spent most of its time
# in round trips: 5,300-5,600 rows/s against the stack's HBase, 6,600-8,300 with
# 20,000-40,000 (measured with 37-cell rows, 10,000 of them)
MUTATIONS_PER_REQUEST = 20_000
# librdkafka's default transaction.timeout.ms: the broker aborts a transaction left
# open longer, so waiting longer than this for a commit gains nothing
TRANSACTION_SECONDS = 60.0
ABORT_SECONDS = 10.0  # an abort that cannot reach the broker is done by the next start
# what a group coordinator answers while it starts (after a broker restart)
COORDINATOR_SETTLING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def _kafka_text(error: KafkaException) -> str:
    """librdkafka's own words ("Timed out waiting for ..."), not the KafkaError repr."""
    cause = error.args[0] if error.args else error
    return cause.str() if hasattr(cause, "str") else str(cause)


def delivered(
    committed: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int]
) -> bool:
    """The group's committed offsets already reach the batch's ends: a transaction sent it."""
    return all(committed.get(tp, -1) >= end for tp, end in ends.items())


def _batch_text(batch_id: int | None) -> str:
    return "" if batch_id is None else f" (micro-batch {batch_id})"


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    # None: the producer's partitioner chooses from the key (fink-client's layout sets it)
    partition: int | None = None


class HBaseWriter:
    """Puts rows through the Thrift server; reconnects once if the connection dropped."""

    def __init__(
        self, host: str, port: int, table: str, cells_per_request: int = MUTATIONS_PER_REQUEST
    ) -> None:
        self.host, self.port, self.table_name = host, port, table
        self.cells_per_request = cells_per_request
        self._connection: ThriftMutations | None = None

    def _connected(self) -> ThriftMutations:
        if self._connection is None:
            self._connection = ThriftMutations(self.host, self.port, timeout_ms=60_000)
        return self._connection

    def put(
        self,
        keys: Sequence[bytes],
        columns: Sequence[CellColumn],
        batch_id: int | None = None,
    ) -> None:
        """Write the rows (`columns`: each cell column's value per key; None is not
        stored); a lost connection is reopened once (puts are idempotent)."""
        rows = encoded_rows(keys, columns)
        for attempt in (1, 2):
            try:
                for message in requests(self.table_name.encode(), rows, self.cells_per_request):
                    self._connected().send(message)
                return
            except THRIFT_TRANSPORT_ERRORS as error:
                self._drop()
                if attempt == 2:
                    raise ConnectionError(
                        f"HBase Thrift server {self.host}:{self.port} failed while writing "
                        f"table {self.table_name}{_batch_text(batch_id)}: {error}"
                    ) from error
                log.warning("HBase connection lost (%s); reconnecting once", error)

    def _drop(self) -> None:
        """Forget a broken connection; closing it may fail too, and does not matter."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception as error:
                log.debug("closing the broken HBase connection: %s", error)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None


# the archive's directories, outermost first: night=YYYYMMDD/pipeline=NS.NAME/batch=ID
ARCHIVE_PARTITIONS = {"night": "string", "pipeline": "string", "batch": "bigint"}


class ParquetArchive:
    """The batch's good alerts, written from its tasks, one directory per night,
    pipeline and batch: night=YYYYMMDD/pipeline=NS.NAME/batch=ID/part-*.zstd.parquet.

    Pipelines sharing a root (NAMESPACE.NAME in `pipeline=`) never touch each
    other's files, and a replayed batch replaces its own. The rows come from the
    tasks (task_outputs.py); nothing of them goes through the driver. Picklable:
    the tasks get it to write a local root.

    - A local root (a plain path or file://): each task writes its own files with
      pyarrow, a temporary name renamed over the target (`write_part`); the
      driver removes what an earlier or failed attempt of the batch left
      (`discard`). Spark's writer does the same for about 200 more core-µs
      per light alert (its JVM turns the Arrow columns into rows, then into
      Parquet, and compiles all that): measured 1,752-1,866 alerts/s against
      2,691-3,170 this way.
    - A Hadoop URL (hdfs://, s3a://): Spark's own writer, from the tasks' typed
      columns (`write`), with the checkpoint's `spark.hadoop.*` settings and
      dynamic partition overwrite, which replaces only the directories the
      batch writes.
    """

    def __init__(self, root: str | Path, pipeline: str) -> None:
        self.root = str(root)
        self.pipeline = pipeline

    @staticmethod
    def files_of(pipeline: str) -> str:
        """The glob of one pipeline's files under a night's directory."""
        return f"pipeline={pipeline}/batch=*/*.parquet"

    @property
    def local(self) -> bool:
        return storage.is_local(self.root)

    def batch_directory(self, night: str, batch_id: int) -> str:
        return f"night={night}/pipeline={self.pipeline}/batch={batch_id}"

    def discard(self, batch_id: int) -> None:
        """Remove a local root's files of this batch: before it runs, those of an earlier
        attempt (a replay after a crash); after the tasks' job failed, those its other tasks wrote."""
        if not self.local:
            return  # Spark's writer stages its files, and dynamic overwrite replaces them
        root = storage.local_path(self.root)
        for directory in root.glob(self.batch_directory("*", batch_id)):
            shutil.rmtree(directory)
            log.info("archive: removed %s (batch %d not committed)", directory, batch_id)

    def sweep_aborted_staging(self, files: storage.HadoopFiles) -> list[str]:
        """Remove, at a Hadoop URL, the staging directories that hold no file: what a
        failed job's cancelled tasks recreate after Spark's abort removed its staging.

        Spark's writer stages a job's files in `ROOT/.spark-staging-<job>` and removes it
        when the job fails; but the job fails as soon as one task does, and a task still
        running then (it is cancelled, not waited for) creates its file, and with it the
        parent directories, before aborting and removing only its own file. Call this
        once the failed job's tasks have ended. A directory holding a file is left
        alone: a running job of another pipeline sharing the root, or one to look into.
        """
        swept = []
        for location in files.children(self.root):
            name = location.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(SPARK_STAGING) and not files.holds_files(location):
                files.remove(location)
                swept.append(location)
                log.info("archive: removed %s, left empty by a failed job's tasks", location)
        return swept

    def write_part(self, part: pa.Table, night: str, batch_id: int, name: str) -> None:
        """One task's file of one night (a local root), whole or not at all.

        On a failure (a full disk or quota) the temporary file is removed and an
        OSError names the archive and the batch: the task, then the batch, fails.
        """
        directory = storage.local_path(self.root) / self.batch_directory(night, batch_id)
        final = directory / name
        partial = directory / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                part, partial, compression="zstd", use_dictionary=dictionary_columns(part.schema)
            )
            os.replace(partial, final)
        except OSError as error:
            partial.unlink(missing_ok=True)  # (pyarrow removes a file it failed to write)
            raise OSError(
                error.errno,
                f"archive {self.root}: could not write batch {batch_id} of "
                f"{self.pipeline}: {error.strerror or error}",
            ) from error

    def write(self, rows: Any, batch_id: int) -> None:
        """Run the batch's job, writing its rows (a Spark DataFrame, task_outputs.ArchiveRows)
        to a Hadoop URL with Spark's writer (a local root's tasks write their own files).

        A failure (a full disk or quota, an unreachable store) fails the batch with
        an OSError naming the archive and the cause. Spark removes what the failed
        job staged, and the batch's directories keep what they held before.
        """
        try:
            (
                rows.write.mode("overwrite")
                .option("partitionOverwriteMode", "dynamic")
                .option("compression", "zstd")
                .partitionBy(*ARCHIVE_PARTITIONS)
                .parquet(self.root)
            )
        except Exception as error:
            causes = java_causes(error)
            if not causes or any(PYTHON_EXCEPTION in cause for cause in causes):
                raise  # the science in the tasks failed, not the archive: its own error
            raise OSError(
                f"archive {self.root}: could not write batch {batch_id} of {self.pipeline}: "
                f"{readable_cause(causes[-1])}"
            ) from error


PYTHON_EXCEPTION = "org.apache.spark.api.python.PythonException"
SPARK_STAGING = ".spark-staging-"  # HadoopMapReduceCommitProtocol's staging, with dynamic overwrite


def java_causes(error: BaseException) -> list[str]:
    """The Java exceptions behind a Spark error, outermost first, as `Class: message`."""
    throwable = getattr(error, "_origin", None) or getattr(error, "java_exception", None)
    causes: list[str] = []
    try:
        while throwable is not None and len(causes) < 50:
            causes.append(str(throwable.toString()))
            throwable = throwable.getCause()
    except Exception:  # the JVM gone: what was read is all there is
        pass
    return causes


_REMOTE_WRAPPER = re.compile(r"^org\.apache\.hadoop\.ipc\.RemoteException\(([\w.$]+)\):\s*")
_JAVA_CLASS = re.compile(r"^(?:[a-z_][\w$]*\.)+([A-Z][\w$]*)(?=:|$)")


def readable_cause(cause: str) -> str:
    """A Java `Class: message` as a user reads it: the class without its package, and
    Hadoop's RemoteException wrapper (a store's refusal as the client sees it) replaced
    by the server's exception it carries, e.g. `DSQuotaExceededException: The DiskSpace
    quota of /x is exceeded: ...`; the message itself is kept whole."""
    unwrapped = _REMOTE_WRAPPER.sub(lambda m: f"{m.group(1)}: ", cause, count=1)
    return _JAVA_CLASS.sub(lambda m: m.group(1), unwrapped, count=1)


class TransactionalKafka:
    """Filter topics, dead letters and source offsets committed together, or not at all.

    The source offsets go in the transaction as the consumer group's offsets when
    the source topic is on the sink cluster; as records of the progress topic
    (progress.py) when it is on another cluster (`source` and `progress_topic`).
    """

    def __init__(
        self,
        connection: KafkaConnection,
        transactional_id: str,
        group_id: str,
        source: KafkaConnection | None = None,
        progress_topic: str | None = None,
    ) -> None:
        self.bootstrap = connection.bootstrap
        self.group_id = group_id
        self.progress = SinkProgress(connection, progress_topic) if progress_topic else None
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
        # the source's own cluster, for its offsets (retention, lag)
        self.source_consumer = (
            Consumer({**source.client_config(), "group.id": group_id, "enable.auto.commit": False})
            if source is not None and progress_topic
            else self.consumer
        )

    def committed(
        self, partitions: Mapping[tuple[str, int], int], timeout: float = 30.0
    ) -> dict[tuple[str, int], int]:
        """The next offset to read per source partition, as the last transaction left it.

        A broker that just started answers "not coordinator" (or "loading") while it
        reads the group offsets back: asked again until `timeout`.
        """
        if self.progress is not None:
            delivered = self.progress.committed(timeout)
            return {tp: delivered.get(tp, -1001) for tp in partitions}  # -1001: none yet
        asked = [TopicPartition(t, p) for t, p in partitions]
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = self.consumer.committed(
                    asked, timeout=max(1.0, deadline - time.monotonic())
                )
                return {(tp.topic, tp.partition): tp.offset for tp in found}
            except KafkaException as error:
                cause = error.args[0] if error.args else None
                settling = cause is not None and (
                    cause.code() in COORDINATOR_SETTLING or cause.retriable()
                )
                if settling and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise ConnectionError(
                    f"Kafka at {self.bootstrap}: could not read the offsets committed for "
                    f"consumer group {self.group_id}: {_kafka_text(error)}"
                ) from error

    def deliver(
        self,
        messages: Sequence[OutgoingMessage],
        ends: Mapping[tuple[str, int], int],
        batch_id: int | None = None,
    ) -> None:
        """One transaction: the messages and the source offsets, committed or not at all.

        A failure aborts the transaction (or leaves it to the next start to abort, if
        the broker cannot be reached) and raises ConnectionError naming the broker.
        Either way no consumer sees part of it, and a restart sends the batch again
        only if its offsets were not committed.
        """
        self.producer.begin_transaction()
        try:
            for message in messages:
                self._produce(message)
            left = self.producer.flush(TRANSACTION_SECONDS)
            if left:
                raise KafkaException(f"{left} message(s) not sent in {TRANSACTION_SECONDS:.0f} s")
            if self.progress is not None:
                for (topic, partition), end in ends.items():
                    self._produce(
                        OutgoingMessage(
                            self.progress.topic,
                            progress_value(end, batch_id),
                            progress_key(topic, partition),
                            [],
                        )
                    )
                left = self.producer.flush(TRANSACTION_SECONDS)
                if left:
                    raise KafkaException(f"{left} progress record(s) not sent")
            else:
                offsets = [TopicPartition(t, p, end) for (t, p), end in ends.items()]
                self.producer.send_offsets_to_transaction(
                    offsets, self.consumer.consumer_group_metadata(), TRANSACTION_SECONDS
                )
            faults.reached("kafka-transaction", batch_id)
            self.producer.commit_transaction(TRANSACTION_SECONDS)
            if self.progress is not None:
                self.progress.delivered(ends)
        except KafkaException as error:
            if self.progress is not None:
                self.progress.forget()
            self._abort()
            raise ConnectionError(
                f"Kafka at {self.bootstrap}: the transaction{_batch_text(batch_id)} failed: "
                f"{_kafka_text(error)}"
            ) from error

    def _produce(self, message: OutgoingMessage) -> None:
        while True:
            try:
                extra = {} if message.partition is None else {"partition": message.partition}
                self.producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=message.headers,
                    **extra,
                )
                return
            except BufferError:  # local queue full: let it drain
                self.producer.poll(0.5)

    def _abort(self) -> None:
        try:
            self.producer.abort_transaction(ABORT_SECONDS)
        except KafkaException as error:
            log.warning(
                "could not abort the Kafka transaction (%s); the next start of this "
                "pipeline aborts it",
                error,
            )

    def partition_count(self, topic: str) -> int:
        """How many partitions the topic has now (a topic's partitions may grow)."""
        found = self.producer.list_topics(topic, timeout=10).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise ConnectionError(
                f"Kafka at {self.bootstrap}: cannot read the partitions "
                f"of topic {topic}: {found.error if found is not None else 'no such topic'}"
            )
        return len(found.partitions)

    def bounds(
        self, partitions: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[int, int]]:
        """(earliest offset still held, head) of each source partition."""
        found = {}
        for topic, partition in partitions:
            found[(topic, partition)] = self.source_consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
        return found

    def close(self) -> None:
        if self.source_consumer is not self.consumer:
            self.source_consumer.close()
        self.consumer.close()
        self.producer.flush(30)


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns a local archive's files dictionary-encode: the texts (ids, names, flags,
    and lists of them, as a Rubin history's bands), by their Parquet paths.

    Numbers, the histories above all, rarely repeat within a file, so their
    dictionaries were built to be dropped: measured on 5,000 light alerts, all
    columns dictionary-encoded took 4.9 µs per alert and 209 bytes, the texts
    only 3.0 µs and 155 bytes (a chunk's ten files, one per night: 10.3 against 7.5 µs).
    """
    texts = []
    for field in schema:
        kind, path = field.type, field.name
        while pa.types.is_list(kind):
            kind, path = kind.value_type, f"{path}.list.element"
        if pa.types.is_string(kind) or pa.types.is_binary(kind):
            texts.append(path)
    return texts
