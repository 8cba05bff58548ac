"""`fink-filter tail`: the alerts a ScienceFilter selected, one line each, read from its topic.

Where: the topic is the filter's status.topic (what the operator created),
else the name its spec resolves to. How to read it depends on the layout:

- `fink` (the default): Avro single-object encoding; the schema is not in the
  message, only its fingerprint, so the schema is rebuilt from each attached
  pipeline's plan exactly as the pipeline builds it (`fink-pipeline schema`),
  and a message is decoded with the pipeline whose fingerprint it carries;
- `fink-client`: the writer's schema rides in every key (JSON), the value is
  bare Avro with the alert nested as Fink distributes it; it is flattened for
  printing.

Which Kafka: --bootstrap, else the pipeline's spec.sinks.kafka.bootstrapServers,
else what the operator and `fink-pipeline` use by default ($FINK_KAFKA_BOOTSTRAP,
else 127.0.0.1:9092: fink_core.connections.Defaults).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fink_core.connections import Defaults
from fink_core.errors import SpecError
from fink_core.science_filter import parse_science_filter
from fink_core.spec import parse_pipeline
from fink_pipeline.scientist.problems import BadInput, TimedOut, Unreachable

# printed for each alert, the first present of each group
IDENTIFIERS = (("objectId", "diaObjectId"), ("candid", "diaSourceId"))
BRIGHTNESS = ("magpsf", "psfFlux")


@dataclass(frozen=True)
class Target:
    """Where a filter's alerts are and how to read them."""

    topic: str
    layout: str
    bootstrap: str
    codecs: Mapping[bytes, Any]  # `fink` layout: single-object header -> EnrichedCodec


def enriched_codec(pipeline: Mapping[str, Any]) -> Any:
    """The codec the pipeline writes its filter topics with (runner.py builds the same)."""
    from fink_pipeline.science import plan_science
    from fink_pipeline.stream.enriched import EnrichedCodec, enriched_schema
    from fink_pipeline.stream.science_step import ScienceStep

    spec = parse_pipeline(pipeline)
    step = ScienceStep(plan_science(spec))
    return EnrichedCodec(enriched_schema(spec.survey, step.alert_columns))


def target(
    body: Mapping[str, Any],
    read_pipeline: Callable[[str, str], Mapping[str, Any] | None],
    bootstrap: str | None,
) -> Target:
    """The filter's topic, layout, Kafka and decoders, from the resource and its pipelines."""
    try:
        spec = parse_science_filter(body)
    except SpecError as error:
        raise BadInput(f"the ScienceFilter cannot be read: {error}") from None
    topic = (body.get("status") or {}).get("topic") or spec.topic_name()
    codecs: dict[bytes, Any] = {}
    sink_bootstrap: str | None = None
    for name in spec.pipelines:
        document = read_pipeline(spec.namespace, name)
        if document is None:
            continue
        try:
            codec = enriched_codec(document)
            sink_bootstrap = sink_bootstrap or parse_pipeline(document).kafka_sink.bootstrap_servers
        except SpecError:
            continue  # a pipeline that cannot run wrote nothing: its schema does not matter
        codecs[codec.header] = codec
    if spec.topic.layout == "fink" and not codecs:
        raise BadInput(
            f"no pipeline of {', '.join(spec.pipelines)} exists in {spec.namespace} to tell the "
            f"schema of {topic}'s alerts (the fink layout does not carry it)"
        )
    try:
        chosen = bootstrap or sink_bootstrap or Defaults.from_environment().kafka_bootstrap
    except SpecError as error:
        raise BadInput(str(error)) from None
    return Target(topic, spec.topic.layout, chosen, codecs)


def decode(target: Target, key: bytes | None, value: bytes | None) -> dict[str, Any]:
    """One message as a flat record; ValueError when it cannot be read."""
    if value is None:
        raise ValueError("empty message")
    if target.layout == "fink-client":
        import fastavro

        if key is None:
            raise ValueError("no schema in the key")
        schema = fastavro.parse_schema(json.loads(key))
        return flatten(fastavro.schemaless_reader(io.BytesIO(value), schema))
    codec = target.codecs.get(value[:10])
    if codec is None:
        raise ValueError(
            "written with a schema no attached pipeline has now (a pipeline changed its modules?)"
        )
    return codec.decode(value)


def flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    """fink-client's nested alert (candidate, diaSource, diaObject) as one flat record."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            for inner, item in value.items():
                flat.setdefault(inner, item)
        else:
            flat[key] = value
    return flat


def line(record: Mapping[str, Any]) -> str:
    """objectId, candid (or diaObjectId, diaSourceId), brightness, the filters it passed."""
    parts = []
    for group in IDENTIFIERS:
        found = next((record[c] for c in group if record.get(c) is not None), None)
        parts.append(str(found) if found is not None else "-")
    for column in BRIGHTNESS:
        if record.get(column) is not None:
            parts.append(f"{column}={record[column]:.3f}")
            break
    parts.append("passed " + ",".join(record.get("fink_filters") or []))
    return "  ".join(parts)


def follow(
    target: Target, from_beginning: bool, limit: int | None, timeout: float | None
) -> Iterator[dict[str, Any] | str]:
    """Records of the topic (a str for a message that cannot be read), until LIMIT or TIMEOUT.

    Reads committed messages only (what the pipeline's transactions published).
    Unreachable when Kafka does not answer or the topic does not exist; TimedOut
    when TIMEOUT passes before LIMIT messages came (no LIMIT: just stops).
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": target.bootstrap,
            "group.id": f"fink-filter-tail-{time.time_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    try:
        try:
            metadata = consumer.list_topics(target.topic, timeout=10).topics.get(target.topic)
        except KafkaException as error:
            raise Unreachable(f"Kafka at {target.bootstrap} does not answer: {error}") from None
        if metadata is None or metadata.error is not None:
            raise Unreachable(
                f"topic {target.topic} does not exist on {target.bootstrap} (yet: the operator "
                "creates it once the filter is Validated)"
            )
        start = -2 if from_beginning else -1  # OFFSET_BEGINNING, OFFSET_END
        consumer.assign([TopicPartition(target.topic, p, start) for p in metadata.partitions])
        seen = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while limit is None or seen < limit:
            if deadline is not None and time.monotonic() >= deadline:
                if limit is not None:
                    raise TimedOut(f"{seen} of {limit} alerts in {timeout:g} s on {target.topic}")
                return
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            seen += 1
            try:
                yield decode(target, message.key(), message.value())
            except Exception as error:  # one unreadable message is shown, not fatal
                yield f"partition {message.partition()} offset {message.offset()}: cannot read: {error}"
    finally:
        consumer.close()
