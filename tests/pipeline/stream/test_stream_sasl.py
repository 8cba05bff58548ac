"""A pipeline against Kafka as production runs it: SASL_SSL with SCRAM, credentials from Secrets.

The stack's secured listener (FINK_KAFKA_SASL_*, docs/stack.md) accepts only
TLS clients that sign in as its SCRAM user. The pipeline's source and sinks
name it in the spec with `credentialsSecretRef`, and `fink-pipeline run
--references` reads that Secret from a directory laid out as Kubernetes mounts
it (the stack writes one). The world produces and checks through the same
broker's PLAINTEXT listener.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from stream_world import World, assert_sinks_hold_exactly, iter_until

from fink_core.connections import KafkaConnection
from fink_pipeline.stream.kafka_options import spark_source_options
from fink_pipeline.stream.runner import failure_message
from fink_stack.endpoints import Endpoints, KafkaSasl

pytestmark = pytest.mark.stack


@pytest.fixture
def sasl(stack: Endpoints) -> KafkaSasl:
    assert stack.kafka_sasl is not None, "the stack exports no SASL_SSL listener (fink-stack env)"
    return stack.kafka_sasl


def secured(sasl: KafkaSasl, secret: str) -> dict[str, Any]:
    return {"bootstrapServers": sasl.bootstrap, "credentialsSecretRef": {"name": secret}}


def references_with(root: Path, secret: str, settings: dict[str, str]) -> Path:
    """A directory holding one Secret as Kubernetes mounts it: root/secrets/<name>/<key>."""
    folder = root / "secrets" / secret
    folder.mkdir(parents=True)
    for key, value in settings.items():
        (folder / key).write_text(value)
    return root


def test_source_and_sinks_behind_sasl_ssl_deliver_every_alert_exactly_once(
    stack: Endpoints, sasl: KafkaSasl, unique_name: str, tmp_path: Path
) -> None:
    # the stack's own references directory: Secret fink-stack-kafka, as `fink-stack env` says
    world = World(
        stack=stack,
        name=unique_name,
        directory=tmp_path,
        source_connection=secured(sasl, sasl.secret_name),
        sink_connection=secured(sasl, sasl.secret_name),
    )
    values = world.produce(400, malformed=12)
    run = world.start("--references", str(sasl.references), "--until-idle", "6")
    world.wait(run)

    want = assert_sinks_hold_exactly(world, values)
    assert len(want.bad) == 12
    assert f"{len(values)} messages in" in run.log()


def test_a_wrong_password_stops_the_run_at_once_naming_authentication(
    stack: Endpoints, sasl: KafkaSasl, unique_name: str, tmp_path: Path
) -> None:
    world = World(
        stack=stack,
        name=unique_name,
        directory=tmp_path,
        source_connection=secured(sasl, "kafka-credentials"),
        sink_connection=secured(sasl, "kafka-credentials"),
    )
    world.produce(10)
    wrong = {**sasl.settings(), "sasl.password": "not-the-password"}
    references = references_with(tmp_path / "mounted", "kafka-credentials", wrong)
    started = time.monotonic()
    run = world.start("--references", str(references))
    world.wait(run, timeout=120, expect=3)  # not ready: nothing was started

    assert time.monotonic() - started < 60
    log = run.log()
    assert f"Kafka at {sasl.bootstrap} refused the connection's credentials" in log, log[-3000:]
    assert "SASL authentication error" in log and "invalid credentials" in log


def test_a_spark_source_with_a_wrong_password_fails_naming_authentication(
    spark: Any, stack: Endpoints, sasl: KafkaSasl, unique_name: str, tmp_path: Path
) -> None:
    """Spark's Java client, with the options the pipeline gives it, fails rather than hangs."""
    world = World(stack=stack, name=unique_name, directory=tmp_path)
    world.produce(10)
    wrong = KafkaConnection(sasl.bootstrap, {**sasl.settings(), "sasl.password": "not-it"})
    query = (
        spark.readStream.format("kafka")
        .options(**spark_source_options(wrong))
        .option("subscribe", world.source)
        .option("startingOffsets", "earliest")
        .load()
        .writeStream.format("noop")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .start()
    )
    started = time.monotonic()
    try:
        for _ in iter_until(120, 0.5):
            if query.exception() is not None or not query.isActive:
                break
        failure = query.exception()
    finally:
        query.stop()
    assert failure is not None, "the query kept running with a wrong password"
    assert time.monotonic() - started < 60
    message = failure_message(None, failure)  # the line `fink-pipeline run` prints
    assert "SaslAuthenticationException" in message, message
    assert "Authentication failed" in message and "invalid credentials" in message, message
