"""Where a pipeline's Kafka and HBase are, and with which credentials: one resolver for all.

The operator (to create topics and tables) and the enrichment core (to read
and write alerts) resolve a pipeline's connections here, in the same order of
precedence, most specific first:

1. the resource's own fields (`spec.source.kafka.bootstrapServers`,
   `spec.sinks.kafka.bootstrapServers`, `spec.sinks.hbase.thrift`);
2. the ConfigMap named by `spec.sinks.connectionsFrom.configMapRef`
   (keys `kafka.bootstrapServers`, `hbase.thrift.host`, `hbase.thrift.port`,
   `hbase.thrift.adminPort`);
3. the defaults of whoever runs it: the operator's flags, the pipeline runner's
   flags, else the environment (`FINK_KAFKA_BOOTSTRAP`, `FINK_HBASE_THRIFT`,
   `FINK_HBASE_ADMIN`), else the local stack's addresses.

Kafka credentials come from the Secrets named by
`spec.source.kafka.credentialsSecretRef` and `spec.sinks.kafka.credentialsSecretRef`.
Their keys are librdkafka settings, and only the security settings a tenant
needs are accepted: anything else (a file path, a client tuning, another
bootstrap address) is refused with a message naming the key, so a Secret can
never make the operator read a file or talk to another cluster.

Readers are injected (Kubernetes API, mounted files, fakes), so this module does no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fink_core.errors import CredentialsRefused, MissingReference, SpecError
from fink_core.spec import PipelineSpec

# name -> data, or None when the object does not exist
Reader = Callable[[str], Mapping[str, str] | None]

KAFKA_BOOTSTRAP_KEY = "kafka.bootstrapServers"
HBASE_HOST_KEY = "hbase.thrift.host"
HBASE_PORT_KEY = "hbase.thrift.port"
HBASE_ADMIN_PORT_KEY = "hbase.thrift.adminPort"

ENV_KAFKA = "FINK_KAFKA_BOOTSTRAP"
ENV_HBASE = "FINK_HBASE_THRIFT"
ENV_HBASE_ADMIN = "FINK_HBASE_ADMIN"

# The librdkafka settings a credentials Secret may hold, and the values some may take.
ALLOWED_SECURITY_SETTINGS = (
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.key.password",
)
ALLOWED_VALUES = {
    "security.protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "sasl.mechanism": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    "sasl.mechanisms": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
}


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, what: str, example_port: int = 9090) -> Address:
    """host:port, or a SpecError saying what is wrong with it (e.g. a missing port)."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host:
        raise SpecError(
            f"{what}: {text!r} has no port; write it as host:port (e.g. {text}:{example_port})"
        )
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(f"{what}: {text!r} has an invalid port {port!r}; write it as host:port")
    return Address(host.strip("[]"), int(port))


def check_bootstrap(text: str, what: str) -> str:
    """A Kafka bootstrap list, every entry host:port; returned as it was given."""
    entries = [e for e in text.split(",") if e.strip()]
    if not entries:
        raise SpecError(f"{what} is empty; write host:port[,host:port]")
    for entry in entries:
        parse_address(entry, what, example_port=9092)
    return text


@dataclass(frozen=True)
class Defaults:
    """The connection settings of whoever resolves (operator, runner) for what a spec leaves unset."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    hbase_thrift: Address = Address("127.0.0.1", 9090)
    hbase_admin: Address = Address("127.0.0.1", 9091)

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        kafka_bootstrap: str | None = None,
        hbase_thrift: str | None = None,
        hbase_admin: str | None = None,
    ) -> Defaults:
        """Explicit values (flags) first, then the environment, then the local stack's ports."""
        env = os.environ if environ is None else environ
        base = cls()

        def pick(given: str | None, variable: str, what: str) -> tuple[str | None, str]:
            if given:
                return given, what
            return env.get(variable), f"{what} (${variable})"

        kafka, kafka_what = pick(kafka_bootstrap, ENV_KAFKA, "Kafka bootstrap")
        thrift, thrift_what = pick(hbase_thrift, ENV_HBASE, "HBase Thrift")
        admin, admin_what = pick(hbase_admin, ENV_HBASE_ADMIN, "HBase Thrift2 admin")
        return cls(
            kafka_bootstrap=check_bootstrap(kafka, kafka_what) if kafka else base.kafka_bootstrap,
            hbase_thrift=parse_address(thrift, thrift_what) if thrift else base.hbase_thrift,
            hbase_admin=parse_address(admin, admin_what, 9091) if admin else base.hbase_admin,
        )


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap: str
    settings: Mapping[str, str] = field(default_factory=dict)  # security settings only

    def client_config(self) -> dict[str, str]:
        """librdkafka configuration: the address and the credentials, nothing else."""
        return {"bootstrap.servers": self.bootstrap, **self.settings}

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Hashable identity: connections with the same key share an admin client."""
        return (self.bootstrap, tuple(sorted(self.settings.items())))


@dataclass(frozen=True)
class Connections:
    source: KafkaConnection
    sink: KafkaConnection
    hbase: Address  # Thrift (happybase): alerts are written here
    hbase_admin: Address  # Thrift2: tables are created and altered here


def resolve(
    spec: PipelineSpec,
    defaults: Defaults,
    read_configmap: Reader,
    read_secret: Reader,
) -> Connections:
    """Every address and credential of one pipeline; MissingReference or NeedsUser errors."""
    shared: Mapping[str, str] = {}
    if spec.connections_configmap:
        found = read_configmap(spec.connections_configmap)
        if found is None:
            raise MissingReference("ConfigMap", spec.connections_configmap, spec.namespace)
        shared = found
    where_shared = f"ConfigMap {spec.connections_configmap}"
    shared_kafka = shared.get(KAFKA_BOOTSTRAP_KEY)
    if shared_kafka:
        check_bootstrap(shared_kafka, f"{where_shared} key {KAFKA_BOOTSTRAP_KEY}")

    source = KafkaConnection(
        bootstrap=_bootstrap(
            spec.source.bootstrap_servers,
            "spec.source.kafka.bootstrapServers",
            shared_kafka,
            defaults,
        ),
        settings=_credentials(spec.source.credentials_secret, read_secret, spec.namespace),
    )
    sink = KafkaConnection(
        bootstrap=_bootstrap(
            spec.kafka_sink.bootstrap_servers,
            "spec.sinks.kafka.bootstrapServers",
            shared_kafka,
            defaults,
        ),
        settings=_credentials(spec.kafka_sink.credentials_secret, read_secret, spec.namespace),
    )

    hbase = spec.hbase_sink
    host = (hbase.thrift_host if hbase else None) or shared.get(HBASE_HOST_KEY)
    port = (hbase.thrift_port if hbase else None) or _port(shared, HBASE_PORT_KEY, where_shared)
    admin_port = (hbase.admin_port if hbase else None) or _port(
        shared, HBASE_ADMIN_PORT_KEY, where_shared
    )
    return Connections(
        source=source,
        sink=sink,
        hbase=Address(host or defaults.hbase_thrift.host, port or defaults.hbase_thrift.port),
        hbase_admin=Address(
            host or defaults.hbase_admin.host, admin_port or defaults.hbase_admin.port
        ),
    )


def _bootstrap(given: str | None, where: str, shared: str | None, defaults: Defaults) -> str:
    if given:
        return check_bootstrap(given, where)
    return shared or defaults.kafka_bootstrap


def _port(shared: Mapping[str, str], key: str, where: str) -> int | None:
    text = shared.get(key)
    if text is None:
        return None
    if not str(text).isdigit():
        raise SpecError(f"{where} key {key}: {text!r} is not a port number")
    return int(text)


def _credentials(secret: str | None, read_secret: Reader, namespace: str) -> dict[str, str]:
    if not secret:
        return {}
    found = read_secret(secret)
    if found is None:
        raise MissingReference("Secret", secret, namespace)
    return checked_security_settings(found, f"Secret {secret}")


def checked_security_settings(settings: Mapping[str, str], where: str) -> dict[str, str]:
    """The settings, if every key is a security setting a tenant may give (CredentialsRefused)."""
    refused = sorted(k for k in settings if k not in ALLOWED_SECURITY_SETTINGS)
    if refused:
        raise CredentialsRefused(
            f"{where}: key(s) {', '.join(refused)} not allowed; a credentials Secret may "
            f"hold only {', '.join(ALLOWED_SECURITY_SETTINGS)} (certificates as PEM data, "
            "not file paths; addresses belong in the spec)"
        )
    for key, allowed in ALLOWED_VALUES.items():
        value = settings.get(key)
        if value is not None and value.upper() not in allowed:
            raise CredentialsRefused(
                f"{where}: {key}={value!r} is not supported; use one of {', '.join(allowed)}"
            )
    return {k: str(v) for k, v in settings.items()}
