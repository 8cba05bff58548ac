"""A source topic full of alerts, a pipeline document naming fresh sinks, and readers for them.

Each test gets its own topics, table and directories (named after the test), so
tests share the real stack without seeing each other's data. Each run of the
pipeline gets its own log file, so what a test reads in a log is what that run
wrote. The expected content of every sink is computed here by applying the
science (`enrich`, `select`) to the produced alerts directly, and the cell and
record formats are spelled out independently of the pipeline's own code.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import happybase
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fink_core.spec import parse_pipeline
from fink_pipeline.alerts import codec, generator, rubin_schemas
from fink_pipeline.alerts.columns import ALERT_ID, OBJECT_ID, columns_for
from fink_pipeline.alerts.malformed import malformed_messages
from fink_pipeline.alerts.registry import registry_at
from fink_pipeline.alerts.survey_encoder import SurveyEncoder
from fink_pipeline.science import enrich, plan_science, select
from fink_pipeline.science.plan import SciencePlan
from fink_pipeline.stream import faults, storage
from fink_pipeline.stream.enriched import FILTERS_FIELD, EnrichedCodec, enriched_schema
from fink_pipeline.stream.observe import read_topic
from fink_pipeline.stream.rows import nights, row_keys
from fink_pipeline.stream.science_step import ScienceStep, arrow_type
from fink_pipeline.stream.sinks import ARCHIVE_PARTITIONS, COORDINATOR_SETTLING, ParquetArchive
from fink_stack import api
from fink_stack.endpoints import Endpoints

MODULES = ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch", "snia_score"]
FILTERS = {
    "ztf": ["early_sn_candidates", "new_sso_candidates", "fast_transients"],
    "lsst": ["fast_transients"],
}
FINK_PIPELINE = str(Path(sys.executable).with_name("fink-pipeline"))
RUN_TOKEN = "FINK_TEST_RUN"  # in the environment of every process of one run
BATCH_LINE = re.compile(r"batch (\d+): (\d+) read, (\d+) rejected, passed (\{.*?\})(.*) in ")


@dataclass
class Run:
    """One `fink-pipeline run` process, its own log, and its fault hook's marker file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    marker: Path
    token: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def batch_lines(self) -> dict[int, str]:
        """Batch id -> the line this run logged when the batch was written."""
        return {int(m.group(1)): m.group(0) for m in BATCH_LINE.finditer(self.log())}

    def fault_hits(self) -> list[dict[str, Any]]:
        if not self.marker.exists():
            return []
        return [json.loads(line) for line in self.marker.read_text().splitlines() if line]


@dataclass
class World:
    stack: Endpoints
    name: str
    directory: Path
    survey: str = "ztf"
    salt_digits: int = 0
    catalogue: str = ""  # crossmatch's catalogue file ("": the bundled sample)
    runs: list[Run] = field(default_factory=list)
    # Rubin: official schema versions to write with, cycled alert by alert, and the
    # registry their ids come from (None: the package's official ids)
    schema_versions: tuple[str, ...] = ()
    schema_registry: str | None = None
    # more fields of spec.source.kafka and spec.sinks.kafka, e.g. the stack's SASL_SSL listener
    # and a credentialsSecretRef (the run then needs --references); the world itself still
    # produces and reads through the stack's PLAINTEXT listener, on the same broker
    source_connection: dict[str, Any] = field(default_factory=dict)
    sink_connection: dict[str, Any] = field(default_factory=dict)
    # the source topic on another Kafka cluster (the survey's upstream); "" : the sinks' one
    source_bootstrap: str = ""
    cutouts: str = "drop"  # spec.sinks.hbase.cutouts ("store": the stamps in family cutouts)
    layout: str = "columns"  # spec.sinks.hbase.layout ("packed": one JSON record per family)
    # a Hadoop URL (the stack's FINK_HDFS): the checkpoint and the archive live under it,
    # at <hdfs>/tests/<name>/, instead of in `directory`
    hdfs: str = ""
    archive_path: str = ""  # spec.sinks.archive.path when not this world's own (a shared one)

    @property
    def filters(self) -> list[str]:
        return FILTERS[self.survey]

    @property
    def source(self) -> str:
        return f"{self.name}-alerts"

    @property
    def table(self) -> str:
        return self.name.replace("-", "_")

    @property
    def archive(self) -> Path:
        return self.directory / "archive"

    @property
    def checkpoint(self) -> Path:
        return self.directory / "checkpoint"

    @property
    def archive_location(self) -> str:
        """spec.sinks.archive.path: a local directory, or a URL with `hdfs`."""
        if self.archive_path:
            return self.archive_path
        return f"{self.hdfs}/tests/{self.name}/archive" if self.hdfs else str(self.archive)

    @property
    def checkpoint_location(self) -> str:
        return f"{self.hdfs}/tests/{self.name}/checkpoint" if self.hdfs else str(self.checkpoint)

    def local_archive(self) -> Path:
        """The archive as local files: itself, or a fresh copy of one at a Hadoop URL,
        read through the pipeline's own Hadoop filesystem (storage.HadoopFiles)."""
        if storage.is_local(self.archive_location):
            return storage.local_path(self.archive_location)
        copy = self.directory / f"archive-copy-{uuid.uuid4().hex[:8]}"
        with storage.HadoopFiles.launched() as files:
            if files.exists(self.archive_location):
                files.download(self.archive_location, copy)
        return copy

    def filter_topic(self, name: str) -> str:
        return f"{self.name}.{name}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}.dead-letters"

    def _source_kafka(self) -> dict[str, Any]:
        kafka: dict[str, Any] = {"topic": self.source, "startingOffsets": "earliest"}
        if self.source_bootstrap:
            kafka["bootstrapServers"] = self.source_bootstrap
        if self.schema_registry:
            kafka["schemaRegistry"] = self.schema_registry
        kafka.update(self.source_connection)
        return kafka

    def decode(self, values: list[bytes]) -> codec.DecodedBatch:
        """What the pipeline's decoder makes of these messages, with this world's registry."""
        return codec.decode_batch(values, self.survey, self.schema_registry)

    def document(self) -> dict[str, Any]:
        modules: list[dict[str, Any]] = [{"name": m} for m in MODULES]
        if self.catalogue:
            modules[MODULES.index("crossmatch")]["parameters"] = {"catalogue": self.catalogue}
        hbase: dict[str, Any] = {
            "table": self.table,
            "columnFamilies": [{"name": "i"}, {"name": "d"}],
        }
        if self.salt_digits:
            hbase["saltDigits"] = self.salt_digits
        if self.cutouts != "drop":
            hbase["cutouts"] = self.cutouts
        if self.layout != "columns":
            hbase["layout"] = self.layout
        return {
            "apiVersion": "fink.broker.dev/v1alpha1",
            "kind": "BrokerPipeline",
            "metadata": {"name": self.name, "namespace": "tests"},
            "spec": {
                "survey": self.survey,
                "source": {"kafka": self._source_kafka()},
                "modules": modules,
                "filters": [{"name": f, "topic": self.filter_topic(f)} for f in self.filters],
                "sinks": {
                    "kafka": {
                        "deadLetterTopic": self.dead_letter_topic,
                        "topicDefaults": {"partitions": 2, "replicationFactor": 1},
                        **self.sink_connection,
                    },
                    "hbase": hbase,
                    "archive": {"path": self.archive_location},
                },
                "spark": {"triggerInterval": "1 second"},
            },
        }

    def pipeline_file(self) -> Path:
        path = self.directory / "pipeline.yaml"
        path.write_text(yaml.safe_dump(self.document()))
        return path

    # --- the source -------------------------------------------------------------------

    def produce(self, count: int, malformed: int = 0, seed: int = 7) -> list[bytes]:
        """Alerts (and malformed messages interleaved) into a fresh 2-partition source topic."""
        admin = AdminClient({"bootstrap.servers": self.source_cluster})
        admin.create_topics([NewTopic(self.source, num_partitions=2, replication_factor=1)])[
            self.source
        ].result(timeout=30)
        alerts = generator.generate_alerts(count, self.survey, seed)
        encoder = SurveyEncoder(self.survey, self.schema_versions, self.schema_registry)
        values = [encoder.encode(a) for a in alerts]
        bad = [
            m for m, _ in malformed_messages(malformed, self.survey, seed, encoder.encode_latest)
        ]
        every = max(1, len(values) // max(1, len(bad)))
        mixed: list[bytes] = []
        for i, value in enumerate(values):
            mixed.append(value)
            if bad and i % every == every - 1:
                mixed.append(bad.pop())
        mixed.extend(bad)
        producer = Producer({"bootstrap.servers": self.source_cluster, "linger.ms": 20})
        for i, value in enumerate(mixed):
            producer.produce(self.source, value=value, partition=i % 2)
        assert producer.flush(60) == 0
        return mixed

    def source_messages(self) -> dict[tuple[int, int], tuple[bytes, int]]:
        """(partition, offset) -> (value, Kafka timestamp in ms) of every source message."""
        return {
            (m.partition(), m.offset()): (m.value(), m.timestamp()[1])
            for m in read_topic(self.source_cluster, self.source, "read_committed")
        }

    @property
    def source_cluster(self) -> str:
        """The bootstrap of the Kafka cluster holding the source topic."""
        return self.source_bootstrap or self.stack.kafka_bootstrap

    # --- running the pipeline ------------------------------------------------------------

    def start(
        self,
        *extra: str,
        metrics_port: int | None = None,
        fault: str | None = None,
        stdin: bool = False,
    ) -> Run:
        """Start `fink-pipeline run` on this world's document (from stdin with `-f -`).

        `fault` sets the pipeline's test hook (fink_pipeline.stream.faults), with a
        marker file of this run's own.
        """
        number = len(self.runs) + 1
        command = [
            FINK_PIPELINE,
            "run",
            "-f",
            "-" if stdin else str(self.pipeline_file()),
            "--checkpoint",
            self.checkpoint_location,
            "--create-missing",
            *extra,
        ]
        if metrics_port is not None:
            command += ["--metrics-port", str(metrics_port)]
        log_path = self.directory / f"pipeline-{number}.log"
        marker = self.directory / f"fault-{number}.jsonl"
        token = f"{self.name}-{number}-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, **self.stack.environment(), RUN_TOKEN: token}
        if fault:
            env[faults.ENV_FAULT] = fault
            env[faults.ENV_MARKER] = str(marker)
        with log_path.open("ab") as log:
            # its own process group: a test can kill the driver and its JVM like a crash would
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        if stdin:
            assert process.stdin is not None
            process.stdin.write(yaml.safe_dump(self.document()).encode())
            process.stdin.close()
        run = Run(process, log_path, marker, token)
        self.runs.append(run)
        return run

    def wait(self, run: Run, timeout: float = 300, expect: int = 0) -> int:
        try:
            code = run.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(run)
            raise AssertionError(
                f"the pipeline did not stop in {timeout} s:\n{run.log()[-6000:]}"
            ) from None
        assert code == expect, (
            f"the pipeline exited with {code}, not {expect}:\n{run.log()[-6000:]}"
        )
        return code

    def wait_for_fault(self, run: Run, timeout: float = 240) -> list[dict[str, Any]]:
        """Block until the run's fault hook fired; its marker lines (stage, batch, pid)."""
        for _ in iter_until(timeout, 0.2):
            hits = run.fault_hits()
            if hits:
                return hits
            if run.process.poll() is not None:
                raise AssertionError(
                    f"the pipeline exited ({run.process.returncode}) before its fault:\n"
                    f"{run.log()[-6000:]}"
                )
        kill(run)
        raise AssertionError(f"the fault did not fire in {timeout} s:\n{run.log()[-6000:]}")

    @staticmethod
    def release(run: Run) -> None:
        """Let a run paused by its fault hook go on."""
        faults.release_file(run.marker).touch()

    # --- the checkpoint and the consumer group ---------------------------------------------

    def offsets_log(self) -> dict[int, dict[int, int]]:
        """Spark's offset log: batch id -> source partition -> offset the batch reads up to."""
        found = {}
        for path in (self.checkpoint / "offsets").iterdir():
            if path.name.isdigit():
                source = json.loads(path.read_text().splitlines()[2])[self.source]
                found[int(path.name)] = {int(p): int(o) for p, o in source.items()}
        return found

    def commit_log(self) -> set[int]:
        """Spark's commit log: the batches it finished."""
        commits = self.checkpoint / "commits"
        return {int(p.name) for p in commits.iterdir() if p.name.isdigit()}

    def committed(self) -> dict[int, int]:
        """Source partition -> next offset, as the pipeline's committed transactions left it.

        A transaction cut by a crash holds pending offsets for the group until it is
        aborted; a read_committed consumer waits for them to settle, so read as
        read_uncommitted, which answers with the committed ones at once. A source on
        another cluster: the progress topic's committed records (progress.py).
        """
        if self.source_bootstrap:
            found = {p: 0 for p in (0, 1)}
            for message in self.read_topic(f"{self.name}-progress"):
                topic, _, partition = message.key().decode().rpartition(":")
                if topic == self.source:
                    found[int(partition)] = json.loads(message.value())["offset"]
            return found
        consumer = Consumer(
            {
                "bootstrap.servers": self.stack.kafka_bootstrap,
                "group.id": f"fink-pipeline.tests.{self.name}",
                "isolation.level": "read_uncommitted",
            }
        )
        asked = [TopicPartition(self.source, p) for p in (0, 1)]
        try:
            for _ in iter_until(60, 0.5):  # a restarted broker's coordinator loads for a while
                try:
                    found = consumer.committed(asked, timeout=10)
                    return {tp.partition: max(tp.offset, 0) for tp in found}
                except KafkaException as error:
                    if error.args[0].code() not in COORDINATOR_SETTLING:
                        raise
            raise AssertionError("the group coordinator did not answer in 60 s")
        finally:
            consumer.close()

    def committed_offsets(self) -> int:
        """How many source messages the pipeline's transactions have committed so far."""
        return sum(self.committed().values())

    # --- what the sinks hold -------------------------------------------------------------

    def hbase_rows(self) -> dict[bytes, dict[bytes, bytes]]:
        connection = happybase.Connection(
            self.stack.hbase_thrift_host, self.stack.hbase_thrift_port, timeout=60_000
        )
        try:
            return dict(connection.table(self.table).scan(batch_size=1000))
        finally:
            connection.close()

    def hbase_families(self) -> set[str]:
        connection = happybase.Connection(
            self.stack.hbase_thrift_host, self.stack.hbase_thrift_port, timeout=60_000
        )
        try:
            return {name.decode() for name in connection.table(self.table).families()}
        finally:
            connection.close()

    def archive_frame(self) -> pd.DataFrame:
        archive = self.local_archive()
        if not archive.exists():
            return pd.DataFrame({ALERT_ID[self.survey]: []})
        # batches may differ in columns (a ScienceFilter's pass_ flag exists only in the
        # batches it ran in): read them all with their union, missing values as nulls
        # only this pipeline's: others may share the archive's root
        files = sorted(archive.glob(f"night=*/{ParquetArchive.files_of(self.pipeline_id)}"))
        if not files:
            return pd.DataFrame({ALERT_ID[self.survey]: []})
        schema = pa.unify_schemas([pq.read_schema(f) for f in files])
        for name, kind in ARCHIVE_PARTITIONS.items():
            schema = schema.append(pa.field(name, arrow_type(kind)))
        dataset = ds.dataset(files, schema=schema, format="parquet", partitioning="hive")
        return dataset.to_table().to_pandas()

    def archive_batches(self) -> set[int]:
        files = self.local_archive().glob(f"night=*/{ParquetArchive.files_of(self.pipeline_id)}")
        return {int(p.parent.name.partition("=")[2]) for p in files}

    @property
    def pipeline_id(self) -> str:
        return f"tests.{self.name}"

    def read_topic(self, topic: str, isolation: str = "read_committed") -> list[Any]:
        """Every message of a topic from the beginning (read_committed unless told)."""
        return read_topic(self.stack.kafka_bootstrap, topic, isolation)


# --- what the sinks should hold ----------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The produced messages as the science sees them, applied directly (no Spark)."""

    plan: SciencePlan
    enriched: pd.DataFrame  # good alerts, every module column and pass_<filter>, by alert id
    selected: dict[str, set[int]]  # filter -> alert ids
    bad: list[bytes]  # malformed messages, in order
    # alert id -> its cutout cells, when the world stores cutouts (read with fastavro)
    stamps: dict[int, dict[bytes, bytes]] = field(default_factory=dict)


def expected(world: World, values: list[bytes]) -> Expected:
    plan = plan_science(parse_pipeline(world.document()))
    decoded = world.decode(values)
    frame = decoded.frame.drop(columns=["_position"])
    enriched = enrich(frame, plan)
    masks = select(enriched, plan)
    for name, mask in masks.items():
        enriched[f"pass_{name}"] = mask.to_numpy(dtype=bool)
    ids = frame[ALERT_ID[world.survey]].astype(int)
    enriched.index = pd.Index(ids, name="alert_id")
    selected = {name: set(ids[mask.to_numpy()]) for name, mask in masks.items()}
    bad = [values[r.position] for r in decoded.rejects]
    stamps = {}
    if world.cutouts == "store":
        stamps = produced_stamps(values, set(ids), world.survey, world.schema_registry)
    return Expected(plan, enriched, selected, bad, stamps)


CUTOUT_CELLS = {
    "cutoutScience": b"cutouts:science",
    "cutoutTemplate": b"cutouts:template",
    "cutoutDifference": b"cutouts:difference",
}


def produced_stamps(
    values: list[bytes], alert_ids: set[int], survey: str = "ztf", registry: str | None = None
) -> dict[int, dict[bytes, bytes]]:
    """Alert id -> the stamps its message carried, read with plain fastavro: ZTF containers,
    or Rubin's wire format with the whole writer schema (from the registry or the package)."""
    found = {}
    for value in values:
        try:
            if survey == "ztf":
                (record,) = fastavro.reader(io.BytesIO(value))
                alert_id = record.get("candid")
                stamps = {n: (record.get(n) or {}).get("stampData") for n in CUTOUT_CELLS}
            else:
                record = _rubin_record(value, registry)
                alert_id = record["diaSource"]["diaSourceId"]
                stamps = {n: record.get(n) for n in CUTOUT_CELLS}
        except Exception:  # a malformed message: a dead letter, no row
            continue
        if alert_id in alert_ids:
            found[alert_id] = {
                cell: stamps[name] for name, cell in CUTOUT_CELLS.items() if stamps[name]
            }
    return found


def _rubin_record(value: bytes, registry: str | None) -> dict[str, Any]:
    magic, schema_id = struct.unpack(">bI", value[:5])
    assert magic == 0
    if registry:
        writer = json.loads(registry_at(registry).schema_text(schema_id))
    else:
        version = rubin_schemas.version_of_id(schema_id)
        assert version is not None
        writer = rubin_schemas.writer_schema(version)
    record: dict[str, Any] = fastavro.schemaless_reader(
        io.BytesIO(value[5:]), fastavro.parse_schema(writer), None
    )
    return record


def expected_selection(
    world: World, values: list[bytes]
) -> tuple[pd.DataFrame, dict[str, set[int]]]:
    """The decoded alerts and, per filter, the alert ids its function selects, applied directly."""
    found = expected(world, values)
    decoded = world.decode(values).frame.drop(columns=["_position"])
    return decoded, found.selected


def enriched_codec(world: World) -> EnrichedCodec:
    plan = plan_science(parse_pipeline(world.document()))
    return EnrichedCodec(enriched_schema(world.survey, ScienceStep(plan).alert_columns))


def cell(value: Any) -> bytes | None:
    """A cell as docs/pipeline.md describes it, written out here independently of rows.py."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list | np.ndarray):
        items = [
            None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in value
        ]
        return json.dumps([v.item() if isinstance(v, np.generic) else v for v in items]).encode()
    if isinstance(value, float | np.floating):
        return repr(float(value)).encode()
    return str(int(value)).encode()


def expected_row(world: World, alert: pd.Series, plan: SciencePlan) -> dict[bytes, bytes]:
    """Family i: the alert's columns; family d: the modules' columns and pass_<filter> flags."""
    families = {
        "i": list(columns_for(world.survey)),
        "d": [*plan.added_columns(), *(f"pass_{f.name}" for f, _ in plan.filters)],
    }
    row = {}
    for family, columns in families.items():
        for column in columns:
            text = cell(alert[column])
            if text is not None:
                row[f"{family}:{column}".encode()] = text
    return row


def as_packed(row: Mapping[bytes, bytes], alert: pd.Series) -> dict[bytes, Any]:
    """The cells of a row in the columns layout as the packed layout holds them, parsed:
    each family's values in one `family:record` object (strings as they are, the other
    texts read as JSON); the cutouts' cells unchanged."""
    packed: dict[bytes, Any] = {}
    for qualifier, text in row.items():
        family, _, column = qualifier.decode().partition(":")
        if family == "cutouts":
            packed[qualifier] = text
            continue
        value = text.decode() if isinstance(alert[column], str) else json.loads(text)
        packed.setdefault(f"{family}:record".encode(), {})[column] = value
    return packed


def plain(value: Any) -> Any:
    """A frame value as the Avro record holds it (NaN and NA as None, numpy as Python)."""
    if isinstance(value, list | np.ndarray):
        return [plain(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def assert_sinks_hold_exactly(
    world: World, values: list[bytes], science_filters: Mapping[str, set[int]] | None = None
) -> Expected:
    """Every sink holds every produced message exactly once, with the content science gives it.

    HBase: one row per alert under the documented key, every cell equal to what the
    modules computed for that alert. Parquet: one row per alert, under its night,
    with the same science columns and the source position of its message. Each
    filter topic: exactly the (non-empty) set its filter selects, each record the
    enriched alert, with the documented key and headers. Dead letters: every
    malformed message once, with its reason and the position it came from.
    `science_filters` (ScienceFilter name -> the alert ids it selects) are the
    filters the pipeline ran from its control topic: alerts name them too.
    """
    want = expected(world, values)
    alerts = want.enriched
    alert_id = ALERT_ID[world.survey]
    sources = world.source_messages()
    assert len(sources) == len(values)

    # HBase
    families = world.hbase_families()
    assert ("cutouts" in families) == (world.cutouts == "store"), (world.cutouts, families)
    rows = world.hbase_rows()
    keys = dict(zip(row_keys(alerts, world.survey, world.salt_digits), alerts.index, strict=True))
    assert len(rows) == len(alerts) and set(rows) == set(keys)
    differing = []
    for key, cells in rows.items():
        alert = alerts.loc[keys[key]]
        wanted: dict[bytes, Any] = expected_row(world, alert, want.plan)
        wanted.update(want.stamps.get(keys[key], {}))
        if world.layout == "packed":  # the same values, each family's in one JSON record
            wanted = as_packed(wanted, alert)
            cells = {q: json.loads(v) if q.endswith(b":record") else v for q, v in cells.items()}
        if cells != wanted:
            extra = {k: (cells.get(k), wanted.get(k)) for k in set(cells) ^ set(wanted)}
            changed = {k: (cells[k], wanted[k]) for k in set(cells) & set(wanted)}
            changed = {k: v for k, v in changed.items() if v[0] != v[1]}
            differing.append((key, extra, changed))
    assert not differing, f"{len(differing)} HBase rows differ, e.g. {differing[:2]}"

    # Parquet
    archived = world.archive_frame().set_index(alert_id, drop=False)
    assert len(archived) == len(alerts) and archived.index.is_unique
    assert set(archived.index) == set(alerts.index)
    assert Counter(archived["night"].astype(str)) == Counter(nights(alerts, world.survey))
    science = [*want.plan.added_columns(), *(f"pass_{name}" for name in want.selected)]
    for column in science:
        got = [plain(v) for v in archived.loc[alerts.index, column]]
        assert got == [plain(v) for v in alerts[column]], f"archive column {column}"
    at_source = source_alert_ids(world, sources)
    positions = zip(
        archived["_partition"].astype(int), archived["_offset"].astype(int), strict=True
    )
    assert [at_source[p] for p in positions] == list(archived.index), "wrong source positions"

    stamps = {candidate: sources[position][1] for position, candidate in at_source.items()}
    assert [stamps[c] for c in archived.index] == list(archived["_timestamp_ms"])
    archive = world.local_archive()
    files = [f for f in archive.rglob("*") if f.is_file() and not f.name.startswith((".", "_"))]
    own = re.escape(f"pipeline=tests.{world.name}")
    layout = rf"night=\d{{8}}/{own}/batch=\d+/part-[^/]+\.zstd\.parquet"
    assert files and all(re.fullmatch(layout, str(f.relative_to(archive))) for f in files), files
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        assert metadata.row_group(0).column(0).compression == "ZSTD"
        if not storage.is_local(world.archive_location):
            continue  # a Hadoop URL: Spark's own Parquet writer, its own encodings
        # the tasks' files: texts dictionary-encoded, numbers not (sinks.dictionary_columns)
        for i in range(metadata.num_columns):
            chunk = metadata.row_group(0).column(i)
            text = chunk.physical_type == "BYTE_ARRAY"
            assert ("RLE_DICTIONARY" in chunk.encodings) == text, (chunk.path_in_schema, chunk)

    # filter topics
    decoder = enriched_codec(world)
    record_columns = list(ScienceStep(want.plan).alert_columns)
    for name in world.filters:
        assert want.selected[name], f"{name} selects nothing from these alerts: a weak test"
        got = []
        for message in world.read_topic(world.filter_topic(name)):
            record = decoder.decode(message.value())
            candidate = int(record[alert_id])
            got.append(candidate)
            alert = alerts.loc[candidate]
            passed = [f for f in world.filters if alert[f"pass_{f}"]]
            passed += [f for f, ids in sorted((science_filters or {}).items()) if candidate in ids]
            assert record[FILTERS_FIELD] == passed
            wanted = {c: plain(alert[c]) for c in record_columns}
            assert {c: record[c] for c in record_columns} == wanted, f"{name}: record {candidate}"
            headers = dict(message.headers())
            assert headers["fink-filter"] == name.encode()
            assert int(headers["fink-source-timestamp-ms"]) == stamps[candidate]
            assert message.key() == message_key(alert[OBJECT_ID[world.survey]], candidate)
        duplicates = [c for c, n in Counter(got).items() if n > 1]
        assert not duplicates, f"{name}: delivered twice: {duplicates[:5]}"
        assert set(got) == want.selected[name], f"{name}: topic differs from the filter applied"

    assert_dead_letters(world, want.bad, sources)
    return want


def source_alert_ids(
    world: World, sources: Mapping[tuple[int, int], tuple[bytes, int]]
) -> dict[tuple[int, int], int]:
    """(partition, offset) -> alert id, for the source messages that are good alerts."""
    positions = list(sources)
    frame = world.decode([sources[p][0] for p in positions]).frame
    ids = frame[ALERT_ID[world.survey]].astype(int)
    return {positions[i]: int(c) for i, c in zip(frame["_position"], ids, strict=True)}


def message_key(object_id: Any, alert_id: int) -> bytes:
    """objectId (ZTF) or diaObjectId (LSST); the diaSourceId for a diaSource without diaObject."""
    if object_id is None or object_id is pd.NA:
        return str(alert_id).encode()
    if isinstance(object_id, str):
        return object_id.encode()
    return str(int(object_id)).encode()


def assert_dead_letters(
    world: World,
    bad: list[bytes],
    sources: Mapping[tuple[int, int], tuple[bytes, int]] | None = None,
) -> None:
    """Each malformed message once, with its own reason and the position it was read from."""
    sources = sources if sources is not None else world.source_messages()
    dead = world.read_topic(world.dead_letter_topic)
    assert Counter(m.value() for m in dead) == Counter(bad), "dead letters differ"
    for message in dead:
        headers = {k: v.decode() for k, v in message.headers()}
        (reject,) = world.decode([message.value()]).rejects
        assert headers["fink-error"] == reject.reason
        assert headers["fink-pipeline"] == world.name
        assert headers["fink-source-topic"] == world.source
        position = (int(headers["fink-source-partition"]), int(headers["fink-source-offset"]))
        assert sources[position][0] == message.value(), "a dead letter names another message"
        assert message.key() == f"{world.source}:{position[0]}:{position[1]}".encode()
    reasons = Counter(h.split(":")[0] for h in (_error(m) for m in dead))
    assert set(reasons) <= {"not-avro", "wrong-schema", "missing-field"}
    if len(bad) >= 6:  # malformed.malformed_messages cycles through every category
        assert set(reasons) == {"not-avro", "wrong-schema", "missing-field"}


def _error(message: Any) -> str:
    return dict(message.headers())["fink-error"].decode()


def messages_before(
    sources: Mapping[tuple[int, int], tuple[bytes, int]], ends: Mapping[int, int]
) -> list[bytes]:
    """The source messages below `ends` (partition -> offset), in source order."""
    return [v for (p, o), (v, _) in sorted(sources.items()) if o < ends.get(p, 0)]


def assert_stopped_in(world: World, batch: int, stage: str) -> None:
    """What every sink holds after a crash or failure in `batch` at `stage` (faults.STAGES).

    Kafka (read_committed filter topics, dead letters, the group's offsets) holds
    exactly the batches before it, whatever the stage: the batch's transaction
    was never committed. The idempotent sinks, written before the transaction,
    hold the batch as far as it got: nothing of it when it stopped at its start
    (`batch`), the HBase rows some tasks wrote (`hbase-write`, and `parquet`: the
    archive's write failed, in tasks that had written their HBase rows first, and
    left no Parquet file of the batch), all its rows and its Parquet files
    (`kafka-transaction`).
    """
    offsets, commits = world.offsets_log(), world.commit_log()
    assert batch in offsets and batch not in commits, (sorted(offsets), sorted(commits))
    assert commits == set(range(batch)), sorted(commits)
    before = offsets[batch - 1] if batch else {0: 0, 1: 0}
    assert world.committed() == before
    sources = world.source_messages()
    done = messages_before(sources, before)
    through = messages_before(sources, offsets[batch])
    want, want_through = expected(world, done), expected(world, through)
    decoder = enriched_codec(world)
    for name in world.filters:
        got = {
            int(decoder.decode(m.value())[ALERT_ID[world.survey]])
            for m in world.read_topic(world.filter_topic(name))
        }
        assert got == want.selected[name], f"{name} holds more or less than the earlier batches"
    dead = Counter(m.value() for m in world.read_topic(world.dead_letter_topic))
    assert dead == Counter(want.bad)

    archived = want_through if stage == "kafka-transaction" else want
    assert world.archive_batches() == set(range(batch + (stage == "kafka-transaction")))
    assert sorted(world.archive_frame()[ALERT_ID[world.survey]]) == sorted(archived.enriched.index)

    rows = set(world.hbase_rows())
    earlier = set(row_keys(want.enriched, world.survey, world.salt_digits))
    upto = set(row_keys(want_through.enriched, world.survey, world.salt_digits))
    if stage == "batch":
        assert rows == earlier
    elif stage in ("hbase-write", "parquet"):
        assert earlier < rows <= upto, "some, and only, rows of the batch reached HBase"
    else:
        assert rows == upto


def count_messages(world: World, isolation: str) -> int:
    """Messages of the filter topics and dead letters visible at an isolation level."""
    topics = [world.filter_topic(f) for f in world.filters] + [world.dead_letter_topic]
    return sum(len(world.read_topic(t, isolation)) for t in topics)


# --- processes -----------------------------------------------------------------------------


def run_pids(token: str) -> list[int]:
    """Every process whose environment carries this run's token (driver, JVM, Python workers)."""
    wanted = f"{RUN_TOKEN}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def kill(run: Run) -> None:
    """SIGKILL every process of the run, like a crash of the machine would.

    The driver and its JVM share a process group, but pyspark's worker daemon
    makes its own: its workers are found by the run's token, so none keeps
    writing after the "crash".
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.process.pid, signal.SIGKILL)
    run.process.wait(timeout=30)
    for _ in iter_until(30, 0.2):
        left = run_pids(run.token)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"processes of the run still alive: {run_pids(run.token)}")


@contextlib.contextmanager
def outage(component: str) -> Iterator[None]:
    """Stop a component of the shared stack; start it again and wait for it, whatever happens.

    Other tests (and other sessions) use the same servers: an outage test that
    failed half-way must not leave them down.
    """
    api.stop_component(component)
    try:
        yield
    finally:
        api.start_component(component)
        for _ in iter_until(180, 1.0):
            if api.is_up([component]):
                break


def iter_until(timeout: float, interval: float = 0.5) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield
        time.sleep(interval)
