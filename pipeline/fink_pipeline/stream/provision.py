"""Check, before Spark starts, that every topic and table the pipeline needs exists.

In a cluster the operator creates them from the BrokerPipeline resource; a local
run either finds them or, with --create-missing, creates them with the shared
core's adapters and the same desired resources, so both paths agree.
"""

from __future__ import annotations

from fink_core.errors import FinkError
from fink_core.hbase_admin import HBaseAdmin
from fink_core.kafka_admin import KafkaAdmin
from fink_core.resources import ObservedTable, TableState, resources_of
from fink_pipeline.stream.settings import RunSettings

TIMEOUT = 15.0


class NotReady(Exception):
    """Something the pipeline needs is missing or unreachable; the message says what to do."""


def ensure_ready(settings: RunSettings, *, create_missing: bool) -> list[str]:
    """Names of what was created; NotReady if anything is missing and may not be created."""
    spec = settings.spec
    wanted = resources_of(spec)
    connections = settings.connections
    created: list[str] = []
    try:
        source_admin = KafkaAdmin(connections.source, timeout=TIMEOUT)
        if spec.source.topic not in source_admin.list_names():
            raise NotReady(
                f"the source topic {spec.source.topic} does not exist in Kafka at "
                f"{connections.source.bootstrap}: produce alerts into it first (e.g. "
                f"fink-alerts produce --topic {spec.source.topic} --create-topic)"
            )
        sink_admin = (
            source_admin
            if connections.sink == connections.source
            else KafkaAdmin(connections.sink, timeout=TIMEOUT)
        )
        existing = sink_admin.list_names()
        missing = [t for t in wanted.topics if t.name not in existing]
        if missing and not create_missing:
            raise NotReady(
                f"topic(s) {', '.join(t.name for t in missing)} do not exist in Kafka at "
                f"{connections.sink.bootstrap}: apply the BrokerPipeline with the operator "
                "running, or pass --create-missing"
            )
        if missing:
            created += sink_admin.create(missing)
        if wanted.table is not None:
            with HBaseAdmin(connections.hbase_admin, timeout=TIMEOUT) as hbase:
                found = hbase.observe(wanted.table.name)
                if found is None:
                    if not create_missing:
                        raise NotReady(
                            f"HBase table {wanted.table.name} does not exist (Thrift2 admin "
                            f"{connections.hbase_admin}): apply the BrokerPipeline with the "
                            "operator running, or pass --create-missing"
                        )
                    if hbase.create(wanted.table):
                        created.append(wanted.table.name)
                else:
                    mismatch = wanted.table.layout_mismatch(found.layout)
                    if mismatch:  # rows must go in the layout the table already holds
                        raise NotReady(mismatch)
                    created += _add_missing_families(hbase, wanted.table, found, create_missing)
    except FinkError as error:  # unreachable, or a creation the server refused
        raise NotReady(str(error)) from error
    return created


def _add_missing_families(
    hbase: HBaseAdmin, table: TableState, found: ObservedTable, create_missing: bool
) -> list[str]:
    """An existing table lacking a family the pipeline writes (e.g. cutouts: store on an
    older table): added with --create-missing, else NotReady (a write would fail)."""
    missing = [f for f in table.families if f.name not in found.families]
    if missing and not create_missing:
        names = ", ".join(f.name for f in missing)
        raise NotReady(
            f"HBase table {table.name} has no column family {names}, which the pipeline "
            "writes: apply the BrokerPipeline with the operator running, or pass "
            "--create-missing"
        )
    for family in missing:
        hbase.add_family(table.name, family)
    return [f"{table.name}:{f.name}" for f in missing]
