"""Stream synthetic alerts into Kafka the way a survey does: steadily or in bursts.

ZTF sends alerts as they come off the telescope; Rubin sends a visit's worth
(~10,000) at once every ~40 s. `produce` reproduces either pace with the
generator's stream, optionally mixing in malformed messages so the broker's
dead-letter path gets exercised. Messages are keyed by object id, so all the
alerts of an object land in one partition, in order; the producer is idempotent
so a retried send never duplicates an alert.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fink_pipeline.alerts.columns import OBJECT_ID
from fink_pipeline.alerts.generator import iter_alerts
from fink_pipeline.alerts.malformed import malformed_messages
from fink_pipeline.alerts.registry import RegistryUnavailable
from fink_pipeline.alerts.survey_encoder import SurveyEncoder

REACH_TIMEOUT_S = 10.0  # fail fast: an unreachable broker is a wrong address, not a slow one
FLUSH_TIMEOUT_S = 60.0
PROGRESS_EVERY_S = 2.0
# librdkafka logs every failed reconnect to stderr; our errors say it once, clearly
QUIET = {"log_level": 0, "reconnect.backoff.ms": 500}


class ProduceError(Exception):
    """Producing cannot start or did not deliver everything; the message says what to do."""


@dataclass(frozen=True)
class ProduceReport:
    """What reached the broker."""

    alerts: int
    malformed: int
    seconds: float

    @property
    def rate(self) -> float:
        """Alerts (malformed excluded) per second, over the whole run."""
        return self.alerts / self.seconds if self.seconds > 0 else float("inf")


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **QUIET})


def check_topic(bootstrap: str, topic: str, create: bool = False, partitions: int = 1) -> int:
    """The topic's partition count; creates it when asked. ProduceError if Kafka is unreachable."""
    admin = _admin(bootstrap)
    try:
        metadata = admin.list_topics(timeout=REACH_TIMEOUT_S)
    except KafkaException as error:
        raise ProduceError(
            f"Kafka at {bootstrap} is unreachable ({error.args[0].str()}); "
            "check --bootstrap-servers and that the broker is up (fink-stack status)"
        ) from None
    existing = metadata.topics.get(topic)
    if existing is not None and existing.error is None:
        return len(existing.partitions)
    if not create:
        raise ProduceError(
            f"topic {topic!r} does not exist on {bootstrap}: it is the survey's stream, "
            "which no BrokerPipeline creates; pass --create-topic --partitions N"
        )
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        future[topic].result(timeout=30)
    except KafkaException as error:
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise ProduceError(f"could not create topic {topic!r}: {error.args[0].str()}") from None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # visible in the metadata before we send
        if topic in admin.list_topics(topic, timeout=REACH_TIMEOUT_S).topics:
            break
        time.sleep(0.2)
    return partitions


def _object_key(alert: dict[str, Any], survey: str) -> bytes | None:
    if survey == "ztf":
        return str(alert[OBJECT_ID["ztf"]]).encode()
    object_id = alert["diaSource"].get("diaObjectId")
    return None if object_id is None else str(object_id).encode()


def produce(
    survey: str,
    topic: str,
    bootstrap: str = "127.0.0.1:9092",
    count: int = 1000,
    rate: float = 0.0,
    burst: int = 0,
    seed: int = 0,
    malformed: int = 0,
    create_topic: bool = False,
    partitions: int = 1,
    cutouts: bool = True,
    progress: Callable[[str], None] | None = None,
    schema_versions: Sequence[str] = (),
    schema_registry: str | None = None,
) -> ProduceReport:
    """Send `count` generated alerts (and `malformed` bad messages at random places).

    rate: alerts per second, 0 for as fast as possible. burst: send that many
    alerts at once every burst/rate seconds (Rubin's pace), 0 for a steady flow.
    cutouts: ZTF alerts carry their three stamps (~60-67 KB a message, as ZTF's).
    Rubin alerts cycle through `schema_versions` (official MAJOR.MINOR; default
    the latest), registered first with `schema_registry` when one is given.
    """
    if count < 0 or malformed < 0 or rate < 0 or burst < 0:
        raise ProduceError("--count, --malformed, --rate and --burst must not be negative")
    try:
        encoder = SurveyEncoder(survey, schema_versions, schema_registry)
    except (ValueError, RegistryUnavailable) as error:
        raise ProduceError(str(error)) from None
    check_topic(bootstrap, topic, create_topic, partitions)
    say = progress or (lambda _: None)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "message.timeout.ms": 30000,
            **QUIET,
        }
    )
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    def send(value: bytes, key: bytes | None) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                producer.poll(0)
                return
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.5)

    bad = malformed_messages(malformed, survey, seed) if malformed else []
    total = count + len(bad)
    bad_slots = set(
        np.random.default_rng(seed + 17).choice(total, len(bad), replace=False).tolist()
    )
    bad_iter = iter(bad)
    alerts = iter_alerts(survey, seed, cutouts=cutouts)
    if count:
        # the generator simulates the sky's first nights before its first alert: the
        # pace starts once that alert exists, or the first seconds' alerts would all
        # be overdue and go out at once
        alerts = itertools.chain([next(alerts)], alerts)
    group = burst if burst > 0 else 1

    def encoded() -> tuple[bytes, bytes | None]:
        alert, _ = next(alerts)
        return encoder.encode(alert), _object_key(alert, survey)

    # a burst is made before it is due, so that it goes out at once, as Rubin's do;
    # the pace counts from the moment the first one is ready
    ready: deque[tuple[bytes, bytes | None]] = deque()
    sent_alerts = sent_bad = 0

    def make_burst() -> None:
        ready.extend(encoded() for _ in range(min(group, count - sent_alerts)))

    if burst and rate > 0:
        make_burst()
    started = last_report = time.monotonic()
    for slot in range(total):
        if slot in bad_slots:
            send(next(bad_iter)[0], None)
            sent_bad += 1
            continue
        if rate > 0 and sent_alerts % group == 0:  # pace at the start of each group
            if burst and not ready:
                make_burst()
            due = started + (sent_alerts // group) * group / rate
            pause = due - time.monotonic()
            if pause > 0:
                producer.flush(pause) if burst else time.sleep(pause)
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        send(*(ready.popleft() if ready else encoded()))
        sent_alerts += 1
        now = time.monotonic()
        if now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            say(
                f"sent {sent_alerts}/{count} alerts, {sent_bad} malformed "
                f"({sent_alerts / (now - started):.0f} alerts/s)"
            )
    left = producer.flush(FLUSH_TIMEOUT_S)
    seconds = time.monotonic() - started
    if left or failures:
        detail = failures[0] if failures else f"{left} messages still queued"
        raise ProduceError(
            f"{len(failures) + left} of {total} messages were not delivered to {topic!r} "
            f"on {bootstrap}: {detail}"
        )
    return ProduceReport(alerts=sent_alerts, malformed=sent_bad, seconds=seconds)
