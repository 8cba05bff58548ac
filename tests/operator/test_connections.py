"""Connection settings: resource, then ConfigMap, then operator defaults."""

from __future__ import annotations

import pytest

from fink_operator.connections import Defaults, MissingReference, resolve

DEFAULTS = Defaults("k0:9092", "h0", 9090)


def none(_: str) -> None:
    return None


def test_defaults_apply_when_the_resource_names_nothing() -> None:
    c = resolve({}, DEFAULTS, none, none)
    assert (c.kafka_bootstrap, c.hbase_host, c.hbase_port) == ("k0:9092", "h0", 9090)
    assert c.kafka_settings == {}


def test_configmap_then_explicit_fields_take_precedence() -> None:
    cm = {
        "kafka.bootstrapServers": "k1:9092",
        "hbase.thrift.host": "h1",
        "hbase.thrift.port": "9191",
    }
    spec = {"sinks": {"connectionsFrom": {"configMapRef": {"name": "conn"}}}}
    c = resolve(spec, DEFAULTS, {"conn": cm}.get, none)
    assert (c.kafka_bootstrap, c.hbase_host, c.hbase_port) == ("k1:9092", "h1", 9191)
    spec["sinks"]["kafka"] = {"bootstrapServers": "k2:9092"}
    spec["sinks"]["hbase"] = {"table": "t", "thrift": {"port": 9292}}
    c = resolve(spec, DEFAULTS, {"conn": cm}.get, none)
    assert (c.kafka_bootstrap, c.hbase_host, c.hbase_port) == ("k2:9092", "h1", 9292)


def test_kafka_credentials_come_from_the_secret() -> None:
    secret = {"sasl.username": "u", "sasl.password": "p", "bootstrap.servers": "ignored"}
    spec = {"sinks": {"kafka": {"credentialsSecretRef": {"name": "creds"}}}}
    c = resolve(spec, DEFAULTS, none, {"creds": secret}.get)
    assert c.kafka_settings == {"sasl.username": "u", "sasl.password": "p"}


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ({"sinks": {"connectionsFrom": {"configMapRef": {"name": "gone"}}}}, "ConfigMap"),
        ({"sinks": {"kafka": {"credentialsSecretRef": {"name": "gone"}}}}, "Secret"),
    ],
)
def test_a_missing_reference_says_which_object(spec: dict, kind: str) -> None:
    with pytest.raises(MissingReference, match=f"{kind} 'gone' not found"):
        resolve(spec, DEFAULTS, none, none)
