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


def spark_source_options(connection: KafkaConnection) -> dict[str, str]:
    """Options of Spark's Kafka source: kafka.<Java client setting>."""
    options = {"kafka.bootstrap.servers": connection.bootstrap}
    options.update({f"kafka.{k}": v for k, v in java_client_settings(connection.settings).items()})
    return options


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
