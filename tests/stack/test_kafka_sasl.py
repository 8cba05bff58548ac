"""Kafka's secured listeners: SASL_SSL with SCRAM-SHA-512 and the stack's CA, as production runs it."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fink_core.connections import checked_security_settings
from fink_core.references import directory_reader
from fink_stack.endpoints import Endpoints, KafkaSasl

pytestmark = pytest.mark.stack


@pytest.fixture
def sasl(stack: Endpoints) -> KafkaSasl:
    assert stack.kafka_sasl is not None, "the stack exports no SASL_SSL listener (fink-stack env)"
    return stack.kafka_sasl


def refusal(config: dict[str, Any]) -> KafkaError:
    """The connection error a client with this configuration gets (it must get one)."""
    errors: list[KafkaError] = []
    admin = AdminClient({**config, "error_cb": errors.append, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(0)
    found = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
    assert found, "no connection error reported"
    return found[-1]


def test_the_stacks_user_produces_and_consumes_over_sasl_ssl(
    sasl: KafkaSasl, stack: Endpoints, unique_name: str
) -> None:
    client = {"bootstrap.servers": sasl.bootstrap, **sasl.settings()}
    admin = AdminClient(client)
    admin.create_topics([NewTopic(unique_name, num_partitions=1, replication_factor=1)])[
        unique_name
    ].result(timeout=30)
    metadata = admin.list_topics(timeout=10)
    # the broker sends a client of this listener back to it, not to PLAINTEXT
    assert [f"{b.host}:{b.port}" for b in metadata.brokers.values()] == [sasl.bootstrap]

    producer = Producer({**client, "enable.idempotence": True})
    for i in range(20):
        producer.produce(unique_name, value=f"alert-{i}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer({**client, "group.id": unique_name, "enable.auto.commit": False})
    consumer.assign([TopicPartition(unique_name, 0, 0)])
    try:
        received = []
        for _ in range(30):
            received += [m.value() for m in consumer.consume(100, timeout=1) if not m.error()]
            if len(received) == 20:
                break
    finally:
        consumer.close()
    assert received == [f"alert-{i}".encode() for i in range(20)]
    # one broker: its PLAINTEXT listener sees the same topic
    assert (
        unique_name
        in AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=10).topics
    )


def test_the_listener_refuses_a_wrong_password_an_unknown_ca_and_plaintext(
    sasl: KafkaSasl,
) -> None:
    settings = {"bootstrap.servers": sasl.bootstrap, **sasl.settings()}

    wrong = refusal({**settings, "sasl.password": "not-the-password"})
    assert wrong.code() == KafkaError._AUTHENTICATION
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in wrong.str()

    unknown_user = refusal({**settings, "sasl.username": "nobody"})
    assert unknown_user.code() == KafkaError._AUTHENTICATION

    untrusted = {k: v for k, v in settings.items() if k != "ssl.ca.pem"}  # the system's CAs
    assert refusal(untrusted).code() == KafkaError._SSL

    with pytest.raises(KafkaException):  # a PLAINTEXT client gets no answer there
        AdminClient({"bootstrap.servers": sasl.bootstrap, "log_level": 0}).list_topics(timeout=3)


def test_the_references_directory_holds_the_credentials_secret(sasl: KafkaSasl) -> None:
    """What `fink-pipeline run --references` and `kubectl create secret --from-file` read."""
    secret = directory_reader(sasl.references, "secrets")(sasl.secret_name)
    assert secret is not None
    assert checked_security_settings(secret, "the stack's Secret") == sasl.settings()
    assert (
        sasl.references / "secrets" / sasl.secret_name / "sasl.password"
    ).stat().st_mode & 0o077 == 0


def test_pods_have_a_secured_listener_of_their_own(sasl: KafkaSasl, stack: Endpoints) -> None:
    if stack.pods is None:
        pytest.skip("no pod network (the node needs root)")
    bootstrap = stack.pods.kafka_sasl_bootstrap
    metadata = AdminClient({"bootstrap.servers": bootstrap, **sasl.settings()}).list_topics(
        timeout=10
    )  # the certificate names the bridge's address too
    assert [f"{b.host}:{b.port}" for b in metadata.brokers.values()] == [bootstrap]
