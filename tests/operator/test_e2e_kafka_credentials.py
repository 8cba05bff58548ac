"""The operator signs in to a secured Kafka with the credentials Secret the spec names.

Against the stack's SASL_SSL listener (SCRAM-SHA-512, TLS with the stack's CA,
`fink-stack env`'s FINK_KAFKA_SASL_*): the topics are created through it with
the Secret's settings; a wrong password is a condition that says so, and
correcting the Secret heals the pipeline without touching the resource.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cluster import Kafka, Pipelines
from conftest import OperatorFactory
from kubernetes import client
from pipeline_documents import minimal

from fink_stack.endpoints import Endpoints, KafkaSasl

pytestmark = pytest.mark.stack

MODULES = [{"name": "quality_cuts"}, {"name": "lightcurve_features"}, {"name": "solar_system"}]
SECRET = "kafka-credentials"


@pytest.fixture
def sasl(stack: Endpoints) -> KafkaSasl:
    assert stack.kafka_sasl is not None, "the stack exports no SASL_SSL listener (fink-stack env)"
    return stack.kafka_sasl


@pytest.fixture
def put_secret(kube: client.ApiClient, namespace: str) -> Callable[[dict[str, str]], None]:
    """Create (or replace) the namespace's credentials Secret with these librdkafka settings."""
    core = client.CoreV1Api(kube)

    def put(settings: dict[str, str]) -> None:
        body = {"metadata": {"name": SECRET}, "stringData": settings}
        try:
            core.create_namespaced_secret(namespace, body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            core.replace_namespaced_secret(SECRET, namespace, body)

    return put


def secured_pipeline(name: str, sasl: KafkaSasl) -> dict:
    """A pipeline whose topics live behind the SASL_SSL listener, with the Secret's credentials."""
    return minimal(
        name=name,
        modules=MODULES,
        filters=[{"name": "early_sn_candidates", "topic": f"{name}.early-sn", "partitions": 2}],
        sinks={
            "kafka": {"bootstrapServers": sasl.bootstrap, "credentialsSecretRef": {"name": SECRET}}
        },
    )


def test_topics_are_created_through_the_secured_listener_with_the_secrets_credentials(
    sasl: KafkaSasl,
    put_secret: Callable[[dict[str, str]], None],
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    kafka: Kafka,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    # the source names no bootstrap and the sinks do: as written, two clusters, so the
    # offsets go to a progress topic (docs/pipeline.md, "The source on another Kafka cluster")
    wanted = [f"{name}.early-sn", f"{name}-deadletter", f"{name}-progress"]
    leftovers["topics"] += wanted
    put_secret(sasl.settings())
    start_operator()
    pipelines.create(secured_pipeline(name, sasl))

    status = pipelines.wait_ready(name)["status"]
    assert status["topics"] == sorted(wanted)
    # the same broker seen through its PLAINTEXT listener: the topics are really there
    topics = kafka.topics()
    assert topics[f"{name}.early-sn"] == 2 and topics[f"{name}-deadletter"] == 1
    assert topics[f"{name}-progress"] == 1


def test_a_wrong_password_is_a_condition_naming_the_credentials_and_a_corrected_secret_heals(
    sasl: KafkaSasl,
    put_secret: Callable[[dict[str, str]], None],
    pipelines: Pipelines,
    start_operator: OperatorFactory,
    kafka: Kafka,
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    leftovers["topics"] += [f"{name}.early-sn", f"{name}-deadletter", f"{name}-progress"]
    put_secret({**sasl.settings(), "sasl.password": "not-the-password"})
    start_operator("--max-backoff", "3")
    pipelines.create(secured_pipeline(name, sasl))

    condition = pipelines.wait_reason(name, "TopicsReady", "KafkaAuthenticationFailed")
    assert condition["status"] == "False"
    message = condition["message"]
    assert f"Kafka at {sasl.bootstrap} refused the connection's credentials" in message
    assert "SASL authentication error" in message and "invalid credentials" in message
    assert "sasl.password" in message  # what to check
    assert pipelines.condition(name)["status"] == "False"
    assert f"{name}.early-sn" not in kafka.topics()

    put_secret(sasl.settings())  # the resource is not touched: the retry finds the new Secret
    pipelines.wait_ready(name, timeout=60)
    assert f"{name}.early-sn" in kafka.topics()
