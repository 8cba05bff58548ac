"""The same Kafka credentials for Spark's Java client as for librdkafka.

A credentials Secret holds librdkafka settings (what the operator and the
Python sinks use); Spark's Kafka source runs the Java client, whose settings
for the same thing have other names: SASL credentials go in a JAAS line and a
PEM CA certificate in a PEM trust store.
"""

from __future__ import annotations

from collections.abc import Mapping

from fink_core.connections import KafkaConnection

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def java_client_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """librdkafka security settings (already checked by the core) as Java client settings."""
    java: dict[str, str] = {}
    if "security.protocol" in settings:
        java["security.protocol"] = settings["security.protocol"].upper()
    mechanism = (settings.get("sasl.mechanism") or settings.get("sasl.mechanisms") or "").upper()
    if mechanism:
        java["sasl.mechanism"] = mechanism
    if "sasl.username" in settings:
        module = _LOGIN_MODULES.get(mechanism or "PLAIN", _LOGIN_MODULES["PLAIN"])
        java["sasl.jaas.config"] = (
            f"{module} required username={_quoted(settings['sasl.username'])} "
            f"password={_quoted(settings.get('sasl.password', ''))};"
        )
    if "ssl.ca.pem" in settings:
        java["ssl.truststore.type"] = "PEM"
        java["ssl.truststore.certificates"] = settings["ssl.ca.pem"]
    if "ssl.certificate.pem" in settings and "ssl.key.pem" in settings:
        java["ssl.keystore.type"] = "PEM"
        java["ssl.keystore.certificate.chain"] = settings["ssl.certificate.pem"]
        java["ssl.keystore.key"] = settings["ssl.key.pem"]
        if "ssl.key.password" in settings:
            java["ssl.key.password"] = settings["ssl.key.password"]
    return java


# The Java consumer's defaults fetch at most 1 MiB per partition per request, 16
# full-size ZTF packets (~62 KB): reading them cost Spark's JVM about twice the CPU
# and the broker four times the CPU of fetches of 8 MiB (measured 2026-11-26 on the
# local stack, 20,000 packets: 203-277 against 93-136 core-µs per alert in the JVM,
# 66-73 against 15-18 in Kafka; light packets the same either way). A fetch holds
# at most FETCH_BYTES per consumer.
PARTITION_FETCH_BYTES = 8 << 20
FETCH_BYTES = 32 << 20
SOURCE_FETCH_OPTIONS = {
    "kafka.max.partition.fetch.bytes": str(PARTITION_FETCH_BYTES),
    "kafka.fetch.max.bytes": str(FETCH_BYTES),
    "kafka.receive.buffer.bytes": str(2 << 20),
}


def spark_source_options(connection: KafkaConnection) -> dict[str, str]:
    """Options of Spark's Kafka source: kafka.<Java client setting>, with fetches sized
    for alert packets."""
    options = {"kafka.bootstrap.servers": connection.bootstrap, **SOURCE_FETCH_OPTIONS}
    options.update({f"kafka.{k}": v for k, v in java_client_settings(connection.settings).items()})
    return options


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
