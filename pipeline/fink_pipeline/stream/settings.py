"""Where a pipeline run connects and keeps its state: the spec, then the environment, then defaults.

The same BrokerPipeline document drives a run on a laptop and in a cluster; only
addresses differ, and those come from the document when it names them, else
from the environment `fink-stack env` exports, else the local stack's defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fink_pipeline.spec import PipelineSpec

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_THRIFT = "127.0.0.1:9090"
STATE_ROOT = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))


@dataclass(frozen=True)
class RunSettings:
    spec: PipelineSpec
    source_bootstrap: str
    sink_bootstrap: str
    thrift_host: str
    thrift_port: int
    checkpoint: Path
    archive: Path | None
    metrics_port: int | None
    master: str
    spark_jars: tuple[str, ...]
    max_offsets_per_trigger: int | None
    trigger_interval: str
    until_idle_seconds: float | None

    @property
    def transactional_id(self) -> str:
        return f"fink-pipeline.{self.spec.namespace}.{self.spec.name}"

    @property
    def consumer_group(self) -> str:
        """The group whose committed offsets say how far the sinks got (kafka-consumer-groups shows it)."""
        return f"fink-pipeline.{self.spec.namespace}.{self.spec.name}"


def resolve(
    spec: PipelineSpec,
    *,
    bootstrap: str | None = None,
    thrift: str | None = None,
    checkpoint: str | None = None,
    metrics_port: int | None = None,
    master: str = "local[2]",
    jars: str | None = None,
    max_offsets_per_trigger: int | None = None,
    trigger_interval: str | None = None,
    until_idle_seconds: float | None = None,
) -> RunSettings:
    env_kafka = os.environ.get("FINK_KAFKA_BOOTSTRAP")
    source = bootstrap or spec.source.bootstrap_servers or env_kafka or DEFAULT_KAFKA
    sink = bootstrap or spec.kafka_sink.bootstrap_servers or env_kafka or DEFAULT_KAFKA
    host, port = _thrift(spec, thrift)
    state = STATE_ROOT / "fink-pipeline" / spec.namespace / spec.name
    return RunSettings(
        spec=spec,
        source_bootstrap=source,
        sink_bootstrap=sink,
        thrift_host=host,
        thrift_port=port,
        checkpoint=Path(checkpoint or spec.spark.checkpoint_location or state / "checkpoint"),
        archive=Path(spec.archive_path) if spec.archive_path else None,
        metrics_port=metrics_port,
        master=master,
        spark_jars=_jars(jars),
        max_offsets_per_trigger=max_offsets_per_trigger or spec.source.max_offsets_per_trigger,
        trigger_interval=trigger_interval or spec.spark.trigger_interval,
        until_idle_seconds=until_idle_seconds,
    )


def _thrift(spec: PipelineSpec, given: str | None) -> tuple[str, int]:
    sink = spec.hbase_sink
    if given is None and sink is not None and sink.thrift_host:
        return sink.thrift_host, sink.thrift_port or 9090
    text = given or os.environ.get("FINK_HBASE_THRIFT") or DEFAULT_THRIFT
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port or 9090)


def _jars(given: str | None) -> tuple[str, ...]:
    """The Kafka connector jars: given, exported by `fink-stack env`, or the local stack's cache."""
    text = given if given is not None else os.environ.get("FINK_SPARK_JARS", "")
    if text:
        return tuple(j for j in text.split(",") if j)
    try:
        from fink_stack.layout import Layout
        from fink_stack.stack import endpoints

        return tuple(str(p) for p in endpoints(Layout.default()).spark_jars)
    except Exception:  # not on a machine with the local stack: spark-submit provides them
        return ()
