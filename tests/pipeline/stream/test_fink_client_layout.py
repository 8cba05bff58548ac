"""A filter topic with `layout: fink-client` is read by the real fink-client, unchanged.

fink-client (12.3.0, the dev extra) decodes a message with the Avro schema its key
carries (fink_client_layout.py says what it expects and why). The unit tests decode
the pipeline's messages with fink-client's own message path
(`AlertConsumer.process_message`); the stack test writes a real micro-batch through
the pipeline's transactional Kafka sink and reads it with fink-client's
`AlertConsumer`, configured as its documentation gives (`bootstrap.servers`,
`group.id`; no credentials, so PLAINTEXT to the stack's Kafka).
"""

from __future__ import annotations

import io
import time
import zlib
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from fink_client.consumer import AlertConsumer
from processed_batch import FAST, SSO, document, science

from fink_core import spec as model
from fink_core.connections import KafkaConnection
from fink_core.errors import SpecError
from fink_pipeline.stream.batch import BatchSinks, MicroBatchWriter
from fink_pipeline.stream.enriched import EnrichedCodec, enriched_schema
from fink_pipeline.stream.fink_client_layout import FinkClientCodec, object_partition
from fink_pipeline.stream.metrics import PipelineMetrics
from fink_pipeline.stream.observe import read_committed
from fink_pipeline.stream.outbox import plain_records
from fink_pipeline.stream.science_step import ScienceStep, pass_column
from fink_pipeline.stream.sinks import TransactionalKafka
from fink_stack.endpoints import Endpoints


def writer_for(step: ScienceStep, spec: model.PipelineSpec, kafka: Any) -> MicroBatchWriter:
    """As runner.build_writer makes it: topic -> layout from spec.filters."""
    return MicroBatchWriter(
        spec.name,
        step,
        EnrichedCodec(enriched_schema(spec.survey, step.alert_columns)),
        BatchSinks(kafka=kafka, archive=None, dead_letter_topic="dead"),
        PipelineMetrics(spec.name),
        {f.topic: f.layout for f in spec.filters},
    )


def filter_messages(writer: MicroBatchWriter, step: ScienceStep, good: Any) -> list[Any]:
    """The messages of a batch's alerts, encoded as the tasks encode them."""
    encoder = writer.encoder(step)
    return writer.filter_messages(encoder, encoder.encode(good))


class Message:
    """What confluent_kafka hands fink-client: only the methods it calls."""

    def __init__(self, topic: str, key: bytes, value: bytes) -> None:
        self._topic, self._key, self._value = topic, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


class PartitionedFakeKafka:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def partition_count(self, topic: str) -> int:
        return self.partitions


def offline_consumer(survey: str) -> AlertConsumer:
    # no topics: nothing is subscribed, nothing connects; process_message is the decoding
    return AlertConsumer([], {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, survey)


# --- the spec ----------------------------------------------------------------------------


def test_the_layout_defaults_to_fink_and_refuses_unknown_values_and_compaction() -> None:
    parsed = model.parse_pipeline(
        document("ztf", [{"name": SSO}, {"name": FAST, "layout": "fink-client"}])
    )
    assert [f.layout for f in parsed.filters] == ["fink", "fink-client"]
    with pytest.raises(
        SpecError, match=r"spec.filters\[0\].layout must be one of fink, fink-client"
    ):
        model.parse_pipeline(document("ztf", [{"name": SSO, "layout": "avro"}]))
    compacted = {"name": SSO, "layout": "fink-client", "config": {"cleanup.policy": "compact"}}
    with pytest.raises(SpecError, match="cannot be compacted"):
        model.parse_pipeline(document("ztf", [compacted]))
    inherited = document("ztf", [{"name": SSO, "layout": "fink-client"}])
    inherited["spec"]["sinks"] = {
        "kafka": {"topicDefaults": {"config": {"cleanup.policy": "compact,delete"}}}
    }
    with pytest.raises(SpecError, match="cannot be compacted"):
        model.parse_pipeline(inherited)


# --- the layout, decoded by fink-client's own code ----------------------------------------


def test_fink_client_decodes_the_messages_of_a_fink_client_topic() -> None:
    spec = model.parse_pipeline(
        document("ztf", [{"name": SSO, "topic": "sso", "layout": "fink-client"}])
    )
    step, frame = science("ztf", spec, 300, seed=5)
    good = frame[frame["_reject"].isna()].reset_index(drop=True)
    writer = writer_for(step, spec, PartitionedFakeKafka(4))
    messages = filter_messages(writer, step, good)
    selected = good[good[pass_column(SSO)]]
    assert len(messages) == len(selected) > 0

    with offline_consumer("ztf") as consumer:
        decoded = [consumer.process_message(Message("sso", m.key, m.value)) for m in messages]
        parsed_name = consumer._parsed_schema["name"]
    assert parsed_name == "fink.ztf.fink_client.alert"
    for message, (topic, alert, key), (_, row) in zip(
        messages, decoded, selected.iterrows(), strict=True
    ):
        assert topic == "sso" and key == message.key.decode()
        # the partition follows the object's id, as the `fink` layout's key does
        object_key = row["objectId"].encode()
        assert message.partition == zlib.crc32(object_key) % 4
        assert alert["fink_filters"] == [SSO]
        assert alert["sso_flag"] == row["sso_flag"] and alert["roid"] == row["roid"]
        assert (alert["objectId"], alert["candid"]) == (row["objectId"], row["candid"])
        assert alert["candidate"]["candid"] == row["candid"]
        assert alert["candidate"]["jd"] == row["jd"]
        assert alert["candidate"]["magpsf"] == row["magpsf"]
        history = alert["prv_candidates"] or []
        assert [p["jd"] for p in history] == list(row["prv_jd"])
        assert [p["magpsf"] for p in history] == [_none(v) for v in row["prv_magpsf"]]


def test_fink_client_decodes_lsst_alerts_in_the_layout() -> None:
    # no science filter supports LSST yet: the codec alone, on a processed LSST batch
    spec = model.parse_pipeline(document("lsst", []))
    step, frame = science("lsst", spec, 300, seed=5)
    good = frame[frame["_reject"].isna()].reset_index(drop=True)
    layout = FinkClientCodec("lsst", step.alert_columns)
    records = plain_records(good, step.alert_columns)
    with offline_consumer("lsst") as consumer:
        for record, (_, row) in zip(records, good.iterrows(), strict=True):
            record["fink_filters"] = ["f"]
            value = layout.encode(record)
            _, alert, _ = consumer.process_message(Message("t", layout.key, value))
            assert alert["diaSourceId"] == row["diaSourceId"]
            assert alert["diaSource"]["midpointMjdTai"] == row["midpointMjdTai"]
            assert alert["quality_ok"] == row["quality_ok"] and alert["fink_filters"] == ["f"]
            assert alert["diaObject"] == {"diaObjectId": row["diaObjectId"]}
            history = alert["prvDiaSources"] or []
            assert [p["band"] for p in history] == list(row["prv_band"])
        # a known asteroid's diaSource has no diaObject
        record = {**records[0], "diaObjectId": None}
        _, alert, _ = consumer.process_message(Message("t", layout.key, layout.encode(record)))
        assert alert["diaObject"] is None and alert["diaSource"]["diaObjectId"] is None


def _none(value: Any) -> Any:
    return None if value is None or value != value else value


def test_each_alert_is_encoded_once_per_layout_its_topics_need(monkeypatch: Any) -> None:
    spec = model.parse_pipeline(
        document(
            "ztf",
            [
                {"name": SSO, "topic": "sso", "layout": "fink-client"},
                {"name": FAST, "topic": "fast"},
            ],
        )
    )
    step, frame = science("ztf", spec, 300, seed=5)
    good = frame[frame["_reject"].isna()].reset_index(drop=True)
    writer = writer_for(step, spec, PartitionedFakeKafka(2))
    calls = {"fink": 0, "fink-client": 0}
    by_columns, by_record = writer.codec.encode_columns, writer.client_codec.encode

    def fink_columns(columns: Any) -> list[bytes]:
        calls["fink"] += len(columns["fink_filters"])  # a record per value of a column
        return by_columns(columns)

    def client_record(record: Any) -> bytes:
        calls["fink-client"] += 1
        return by_record(record)

    monkeypatch.setattr(writer.codec, "encode_columns", fink_columns)
    monkeypatch.setattr(writer.client_codec, "encode", client_record)
    messages = filter_messages(writer, step, good)
    sso, fast = good[pass_column(SSO)], good[pass_column(FAST)]
    assert calls == {"fink": int(fast.sum()), "fink-client": int(sso.sum())}
    assert sso.sum() > 0
    by_topic = {t: [m for m in messages if m.topic == t] for t in ("sso", "fast")}
    assert all(m.value.startswith(b"\xc3\x01") and m.partition is None for m in by_topic["fast"])
    assert all(m.key == writer.client_codec.key for m in by_topic["sso"])


def test_object_partition_is_librdkafkas_default_partitioner() -> None:
    # librdkafka's consistent_random: CRC32 of the key; the stack test checks it on a broker
    assert object_partition(b"ZTF24aaaaaab", 1) == 0
    assert object_partition(b"abc", 7) == zlib.crc32(b"abc") % 7


def test_module_columns_that_clash_with_the_layout_are_refused() -> None:
    with pytest.raises(ValueError, match="clash"):
        FinkClientCodec("ztf", {"objectId": "string", "candidate": "string"})


# --- through the real Kafka, read by the real AlertConsumer --------------------------------


@pytest.mark.stack
def test_fink_client_alert_consumer_reads_a_pipeline_filter_topic(
    stack: Endpoints, unique_name: str
) -> None:
    source, topic, keyed = f"{unique_name}-src", f"{unique_name}-sso", f"{unique_name}-keyed"
    partitions = 3
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(source, num_partitions=1, replication_factor=1),
            NewTopic(topic, num_partitions=partitions, replication_factor=1),
            NewTopic(keyed, num_partitions=partitions, replication_factor=1),
        ]
    )
    for future in futures.values():
        future.result(timeout=30)
    spec = model.parse_pipeline(
        document("ztf", [{"name": SSO, "topic": topic, "layout": "fink-client"}])
    )
    step, frame = science("ztf", spec, 300, seed=21, source=source)
    kafka = TransactionalKafka(
        KafkaConnection(stack.kafka_bootstrap), f"tx-{unique_name}", f"group-{unique_name}"
    )
    try:
        report = writer_for(step, spec, kafka).write(frame, 0, time.monotonic())
    finally:
        kafka.close()
    good = frame[frame["_reject"].isna()]
    selected = good[good[pass_column(SSO)]]
    assert report.passed[SSO] == len(selected) > 0

    # fink-client as its documentation configures it, pointed at the stack's Kafka
    config = {"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"fc-{unique_name}"}
    received: list[tuple[str, dict[str, Any], str]] = []
    consumer = AlertConsumer([topic], config, survey="ztf")
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(selected) and time.monotonic() < deadline:
            for polled in consumer.consume(num_alerts=100, timeout=1):
                received.append(polled)
        # one more poll: nothing beyond the batch's alerts
        assert consumer.poll(timeout=2) == (None, None, None)
        raw = consumer._consumer  # where each message landed, for the partition check
        assigned = raw.assignment()
        assert sorted(p.partition for p in assigned) == list(range(partitions))
    finally:
        consumer.close()
    assert len(received) == len(selected)
    expected = {int(r["candid"]): r for _, r in selected.iterrows()}
    for got_topic, alert, _ in received:
        row = expected.pop(alert["candid"])
        assert got_topic == topic
        assert alert["objectId"] == row["objectId"]
        assert alert["candidate"]["jd"] == row["jd"] and alert["candidate"]["ra"] == row["ra"]
        assert alert["sso_flag"] == row["sso_flag"] and alert["fink_filters"] == [SSO]
    assert expected == {}

    # each object's partition is the one its id as the key gives (the `fink` layout):
    # librdkafka places the ids in a topic of as many partitions, and the messages agree
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    placed: dict[str, int] = {}

    def remember(error: Any, message: Any) -> None:
        assert error is None
        placed[message.key().decode()] = message.partition()

    for object_id in {a["objectId"] for _, a, _ in received}:
        producer.produce(keyed, value=b"", key=object_id.encode(), on_delivery=remember)
    assert producer.flush(30) == 0
    written = read_committed(stack.kafka_bootstrap, topic)
    assert len(written) == len(selected)
    for message in written:
        object_id = _object_of(message.value(), step)
        assert message.partition() == placed[object_id]
    assert len(set(placed.values())) > 1  # the objects spread over the partitions


def _object_of(value: bytes, step: ScienceStep) -> str:
    layout = FinkClientCodec("ztf", step.alert_columns)
    return fastavro.schemaless_reader(io.BytesIO(value), layout.parsed)["objectId"]
