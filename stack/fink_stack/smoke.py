"""A one-minute tour proving each server of the running stack is real and reachable.

`fink-stack smoke` creates throw-away objects in each system, reads them back,
prints what it saw, and removes them again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from .endpoints import Endpoints


def run(endpoints: Endpoints, say: Callable[[str], None] = print) -> None:
    suffix = uuid.uuid4().hex[:6]
    _kubernetes(endpoints, suffix, say)
    topic = f"smoke-{suffix}"
    _kafka(endpoints, topic, say)
    _hbase(endpoints, f"smoke_{suffix}", say)
    _spark(endpoints, topic, say)
    _delete_topic(endpoints, topic)


def _delete_topic(endpoints: Endpoints, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap})
    admin.delete_topics([topic])[topic].result(30)


def _kubernetes(endpoints: Endpoints, suffix: str, say: Callable[[str], None]) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(endpoints.kubeconfig))
    version = client.VersionApi(api).get_code()
    core = client.CoreV1Api(api)
    name = f"smoke-{suffix}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    namespaces = [ns.metadata.name for ns in core.list_namespace().items]
    core.delete_namespace(name)
    say(f"kubernetes  {version.git_version}: created namespace {name}; namespaces: {namespaces}")


def _kafka(endpoints: Endpoints, topic: str, say: Callable[[str], None]) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": endpoints.kafka_bootstrap})
    for i in range(10):
        producer.produce(topic, value=f"alert {i}".encode())
    producer.flush(30)
    consumer = Consumer(
        {
            "bootstrap.servers": endpoints.kafka_bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    received: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(received) < 10 and time.monotonic() < deadline:
        received += [m.value() for m in consumer.consume(10, timeout=1.0) if not m.error()]
    consumer.close()
    say(
        f"kafka       {endpoints.kafka_bootstrap}: topic {topic}, produced 10, consumed {len(received)}"
    )


def _hbase(endpoints: Endpoints, table_name: str, say: Callable[[str], None]) -> None:
    import happybase

    connection = happybase.Connection(endpoints.hbase_thrift_host, endpoints.hbase_thrift_port)
    try:
        connection.create_table(table_name, {"i": {}, "d": {}})
        table = connection.table(table_name)
        table.put(b"ZTF18aaaaaaa_2458000.5", {b"i:magpsf": b"18.2", b"d:rf_snia": b"0.9"})
        rows = list(table.scan())
        connection.delete_table(table_name, disable=True)
    finally:
        connection.close()
    say(
        f"hbase       thrift {endpoints.hbase_thrift_host}:{endpoints.hbase_thrift_port}: "
        f"table {table_name}, rows read back: {rows}"
    )


def _spark(endpoints: Endpoints, topic: str, say: Callable[[str], None]) -> None:
    import os

    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("fink-stack-smoke")
        .config("spark.jars", ",".join(str(p) for p in endpoints.spark_jars))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    count = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", endpoints.kafka_bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .count()
    )
    say(
        f"spark       {spark.version} local[2]: read {count} messages of {topic} "
        "through the Kafka connector"
    )
    spark.stop()
