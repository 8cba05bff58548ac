"""Where a pipeline run connects and keeps its state.

Addresses and credentials are resolved by the shared core's resolver, in the
same order as the operator: the spec's own fields, then its connections
ConfigMap, then this run's defaults (the command's flags, else the environment
`fink-stack env` exports, else the local stack's addresses). The checkpoint and
the archive are locations (storage.py): plain paths or Hadoop URLs, kept as given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fink_core.connections import Connections, Defaults, Reader, resolve
from fink_core.references import absent
from fink_core.spec import PipelineSpec

STATE_ROOT = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
ENV_SPARK_JARS = "FINK_SPARK_JARS"
# Messages per micro-batch when neither the spec (source.kafka.maxOffsetsPerTrigger) nor
# the command line says: a ZTF packet with its cutouts weighs ~65 KB, so a batch of a whole
# night's backlog read at once would not fit the 1 GB driver and executor defaults; 5,000
# is ~330 MB of source values spread over the tasks, a few seconds of work on 2 cores
DEFAULT_MAX_OFFSETS_PER_TRIGGER = 5_000
# seconds without a micro-batch before the Python workers are exercised (warm_up.KeepWarm):
# Spark stops every worker idle for a minute, a fixed time
DEFAULT_KEEP_WARM_AFTER = 40.0


@dataclass(frozen=True)
class RunSettings:
    spec: PipelineSpec
    connections: Connections
    checkpoint: str  # a local path or a Hadoop URL (hdfs://, s3a://, file://)
    archive: str | None  # the same
    metrics_port: int | None
    master: str
    spark_jars: tuple[str, ...]
    max_offsets_per_trigger: int
    trigger_interval: str
    until_idle_seconds: float | None
    metrics_address: str = "127.0.0.1"
    warm_up: bool = True  # start the Python workers before the query (warm_up.py)
    keep_warm_after: float = DEFAULT_KEEP_WARM_AFTER  # 0: let Spark stop idle workers

    @property
    def source_bootstrap(self) -> str:
        return self.connections.source.bootstrap

    @property
    def sink_bootstrap(self) -> str:
        return self.connections.sink.bootstrap

    @property
    def thrift_host(self) -> str:
        return self.connections.hbase.host

    @property
    def thrift_port(self) -> int:
        return self.connections.hbase.port

    @property
    def transactional_id(self) -> str:
        return f"fink-pipeline.{self.spec.namespace}.{self.spec.name}"

    @property
    def pipeline_id(self) -> str:
        """NAMESPACE.NAME: in the archive's file names, so pipelines sharing its path never collide."""
        return f"{self.spec.namespace}.{self.spec.name}"

    @property
    def consumer_group(self) -> str:
        """The group whose committed offsets say how far the sinks got (kafka-consumer-groups shows it)."""
        return f"fink-pipeline.{self.spec.namespace}.{self.spec.name}"


def settings_for(
    spec: PipelineSpec,
    *,
    defaults: Defaults | None = None,
    read_configmap: Reader = absent,
    read_secret: Reader = absent,
    checkpoint: str | None = None,
    metrics_port: int | None = None,
    metrics_address: str = "127.0.0.1",
    master: str = "local[2]",
    jars: str | None = None,
    max_offsets_per_trigger: int | None = None,
    trigger_interval: str | None = None,
    until_idle_seconds: float | None = None,
    warm_up: bool = True,
    keep_warm_after: float = DEFAULT_KEEP_WARM_AFTER,
) -> RunSettings:
    """Resolve a run; raises the core's NeedsUser/MissingReference errors for what is wrong."""
    connections = resolve(
        spec, defaults or Defaults.from_environment(), read_configmap, read_secret
    )
    state = STATE_ROOT / "fink-pipeline" / spec.namespace / spec.name
    return RunSettings(
        spec=spec,
        connections=connections,
        checkpoint=checkpoint or spec.spark.checkpoint_location or str(state / "checkpoint"),
        archive=spec.archive_path or None,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        master=master,
        spark_jars=_jars(jars),
        max_offsets_per_trigger=max_offsets_per_trigger
        or spec.source.max_offsets_per_trigger
        or DEFAULT_MAX_OFFSETS_PER_TRIGGER,
        trigger_interval=trigger_interval or spec.spark.trigger_interval,
        until_idle_seconds=until_idle_seconds,
        warm_up=warm_up,
        keep_warm_after=keep_warm_after,
    )


def _jars(given: str | None) -> tuple[str, ...]:
    """The Kafka connector jars: given, else $FINK_SPARK_JARS (which `fink-stack env` exports).

    None at all means Spark already has them (an image that ships them, or spark-submit
    --packages); the query then fails at start with Spark's own message if it does not.
    """
    text = given if given is not None else os.environ.get(ENV_SPARK_JARS, "")
    return tuple(j for j in text.split(",") if j)
