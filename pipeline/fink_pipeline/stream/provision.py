"""Check, before Spark starts, that every topic and table the pipeline needs exists.

In a cluster the operator creates them from the BrokerPipeline resource; a local
run either finds them or, with --create-missing, creates them with the
operator's own adapters and the same desired state, so both paths agree.
"""

from __future__ import annotations

from fink_operator.desired import from_spec
from fink_operator.errors import ServerUnreachable
from fink_operator.hbase_admin import HBaseAdmin
from fink_operator.kafka_admin import KafkaAdmin
from fink_pipeline.stream.settings import RunSettings


class NotReady(Exception):
    """Something the pipeline needs is missing or unreachable; the message says what to do."""


def ensure_ready(settings: RunSettings, *, create_missing: bool) -> list[str]:
    """Names of what was created; NotReady if anything is missing and may not be created."""
    spec = settings.spec
    desired = from_spec(spec)
    created: list[str] = []
    try:
        source_admin = KafkaAdmin(settings.source_bootstrap, timeout=15.0)
        if spec.source.topic not in source_admin.list_names():
            raise NotReady(
                f"the source topic {spec.source.topic} does not exist in Kafka at "
                f"{settings.source_bootstrap}: produce alerts into it first (e.g. "
                f"fink-alerts produce --topic {spec.source.topic} --create-topic)"
            )
        sink_admin = (
            source_admin
            if settings.sink_bootstrap == settings.source_bootstrap
            else KafkaAdmin(settings.sink_bootstrap, timeout=15.0)
        )
        existing = sink_admin.list_names()
        missing = [t for t in desired.topics if t.name not in existing]
        if missing and not create_missing:
            raise NotReady(
                f"topic(s) {', '.join(t.name for t in missing)} do not exist in Kafka at "
                f"{settings.sink_bootstrap}: apply the BrokerPipeline with the operator running, "
                "or pass --create-missing"
            )
        if missing:
            created += sink_admin.create(missing)
        if desired.table is not None:
            with HBaseAdmin(settings.thrift_host, settings.thrift_port, timeout=15.0) as hbase:
                if not hbase.exists(desired.table.name):
                    if not create_missing:
                        raise NotReady(
                            f"HBase table {desired.table.name} does not exist (Thrift "
                            f"{settings.thrift_host}:{settings.thrift_port}): apply the "
                            "BrokerPipeline with the operator running, or pass --create-missing"
                        )
                    if hbase.create(desired.table):
                        created.append(desired.table.name)
    except ServerUnreachable as error:
        raise NotReady(str(error)) from error
    return created
