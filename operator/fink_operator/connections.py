"""Where a pipeline's Kafka and HBase are: the resource first, then a ConfigMap, then defaults.

Precedence, most specific first: explicit fields of the resource
(spec.sinks.kafka.bootstrapServers, spec.sinks.hbase.thrift), then the keys of
the ConfigMap named by spec.sinks.connectionsFrom.configMapRef, then the
operator-wide defaults given on its command line. Kafka credentials come from
the Secret named by spec.sinks.kafka.credentialsSecretRef, whose keys are
librdkafka settings (security.protocol, sasl.mechanism, sasl.username, ...).
Readers are injected so that this module stays free of Kubernetes I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ServerRejected

# name -> data, or None when the object does not exist
Reader = Callable[[str], Mapping[str, str] | None]

KAFKA_BOOTSTRAP_KEY = "kafka.bootstrapServers"
HBASE_HOST_KEY = "hbase.thrift.host"
HBASE_PORT_KEY = "hbase.thrift.port"


@dataclass(frozen=True)
class Defaults:
    """Operator-wide connection settings, used when a pipeline does not name its own."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    hbase_host: str = "127.0.0.1"
    hbase_port: int = 9090


@dataclass(frozen=True)
class Connections:
    kafka_bootstrap: str
    kafka_settings: Mapping[str, str] = field(default_factory=dict)
    hbase_host: str = "127.0.0.1"
    hbase_port: int = 9090


class MissingReference(ServerRejected):
    """A ConfigMap or Secret the resource names does not exist (yet)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__("Kubernetes", f"{kind} {name}", f"{kind} {name!r} not found")
        self.kind = kind
        self.name = name


def resolve(
    spec: Mapping[str, Any],
    defaults: Defaults,
    read_configmap: Reader,
    read_secret: Reader,
) -> Connections:
    sinks = spec.get("sinks") or {}
    kafka = sinks.get("kafka") or {}
    thrift = (sinks.get("hbase") or {}).get("thrift") or {}

    shared: Mapping[str, str] = {}
    configmap = ((sinks.get("connectionsFrom") or {}).get("configMapRef") or {}).get("name")
    if configmap:
        found = read_configmap(configmap)
        if found is None:
            raise MissingReference("ConfigMap", configmap)
        shared = found

    settings: Mapping[str, str] = {}
    secret = (kafka.get("credentialsSecretRef") or {}).get("name")
    if secret:
        found = read_secret(secret)
        if found is None:
            raise MissingReference("Secret", secret)
        settings = {k: v for k, v in found.items() if k != "bootstrap.servers"}

    return Connections(
        kafka_bootstrap=kafka.get("bootstrapServers")
        or shared.get(KAFKA_BOOTSTRAP_KEY)
        or defaults.kafka_bootstrap,
        kafka_settings=settings,
        hbase_host=thrift.get("host") or shared.get(HBASE_HOST_KEY) or defaults.hbase_host,
        hbase_port=int(thrift.get("port") or shared.get(HBASE_PORT_KEY) or defaults.hbase_port),
    )
