"""One resolver for operator and pipeline: spec fields, then ConfigMap, then defaults."""

from __future__ import annotations

from typing import Any

import pytest

from fink_core.connections import (
    Address,
    Defaults,
    check_bootstrap,
    checked_security_settings,
    parse_address,
    resolve,
)
from fink_core.errors import CredentialsRefused, MissingReference, Retryable, SpecError
from fink_core.spec import parse_pipeline

DEFAULTS = Defaults("k0:9092", Address("h0", 9090), Address("h0", 9091))


def none(_: str) -> None:
    return None


def spec(**fields: Any) -> Any:
    document = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"survey": "ztf", "source": {"kafka": {"topic": "alerts"}}, **fields},
    }
    return parse_pipeline(document)


def test_defaults_apply_when_the_resource_names_nothing() -> None:
    c = resolve(spec(), DEFAULTS, none, none)
    assert (c.source.bootstrap, c.sink.bootstrap) == ("k0:9092", "k0:9092")
    assert (c.hbase, c.hbase_admin) == (Address("h0", 9090), Address("h0", 9091))
    assert c.sink.settings == {} and c.source.settings == {}


def test_configmap_then_explicit_fields_take_precedence() -> None:
    cm = {
        "kafka.bootstrapServers": "k1:9092",
        "hbase.thrift.host": "h1",
        "hbase.thrift.port": "9191",
        "hbase.thrift.adminPort": "9192",
    }
    sinks: dict[str, Any] = {"connectionsFrom": {"configMapRef": {"name": "conn"}}}
    c = resolve(spec(sinks=sinks), DEFAULTS, {"conn": cm}.get, none)
    assert (c.source.bootstrap, c.sink.bootstrap) == ("k1:9092", "k1:9092")
    assert (c.hbase, c.hbase_admin) == (Address("h1", 9191), Address("h1", 9192))
    sinks["kafka"] = {"bootstrapServers": "k2:9092"}
    sinks["hbase"] = {"table": "t", "thrift": {"port": 9292}}
    c = resolve(spec(sinks=sinks), DEFAULTS, {"conn": cm}.get, none)
    assert (c.source.bootstrap, c.sink.bootstrap) == ("k1:9092", "k2:9092")
    assert c.hbase == Address("h1", 9292)


def test_source_and_sink_credentials_come_from_their_own_secrets() -> None:
    secrets = {
        "survey": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"},
        "broker": {"sasl.username": "u", "sasl.password": "p"},
    }
    c = resolve(
        spec(
            source={"kafka": {"topic": "alerts", "credentialsSecretRef": {"name": "survey"}}},
            sinks={"kafka": {"credentialsSecretRef": {"name": "broker"}}},
        ),
        DEFAULTS,
        none,
        secrets.get,
    )
    assert c.source.settings == secrets["survey"]
    assert c.sink.settings == secrets["broker"]
    assert c.sink.client_config() == {"bootstrap.servers": "k0:9092", **secrets["broker"]}


@pytest.mark.parametrize(
    "settings",
    [
        {"ssl.ca.location": "/etc/passwd"},  # a file path
        {"bootstrap.servers": "elsewhere:9092"},  # another cluster
        {"socket.timeout.ms": "1"},  # client tuning
        {"sasl.mechanism": "GSSAPI"},  # needs a keytab file
    ],
)
def test_a_secret_may_only_hold_security_settings(settings: dict[str, str]) -> None:
    with pytest.raises(CredentialsRefused, match="Secret creds"):
        checked_security_settings(settings, "Secret creds")


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"sinks": {"connectionsFrom": {"configMapRef": {"name": "gone"}}}}, "ConfigMap"),
        ({"sinks": {"kafka": {"credentialsSecretRef": {"name": "gone"}}}}, "Secret"),
    ],
)
def test_a_missing_reference_says_which_object_and_is_retryable(
    fields: dict[str, Any], kind: str
) -> None:
    with pytest.raises(MissingReference, match=f"{kind} 'gone' in namespace ns not found") as e:
        resolve(spec(**fields), DEFAULTS, none, none)
    assert isinstance(e.value, Retryable)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("kafka", "has no port"), ("kafka:x", "invalid port"), ("h:70000", "invalid port")],
)
def test_an_address_without_a_port_is_a_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        parse_address(text, "FINK_HBASE_THRIFT")
    with pytest.raises(SpecError, match=fragment):
        check_bootstrap(f"ok:9092,{text}", "FINK_KAFKA_BOOTSTRAP")


def test_defaults_come_from_flags_then_environment() -> None:
    env = {"FINK_KAFKA_BOOTSTRAP": "envk:1", "FINK_HBASE_THRIFT": "envh:2"}
    d = Defaults.from_environment(env, hbase_admin="flag:3")
    assert (d.kafka_bootstrap, d.hbase_thrift, d.hbase_admin) == (
        "envk:1",
        Address("envh", 2),
        Address("flag", 3),
    )
    assert Defaults.from_environment({}, kafka_bootstrap="flag:9").kafka_bootstrap == "flag:9"
    with pytest.raises(SpecError, match="FINK_HBASE_THRIFT"):
        Defaults.from_environment({"FINK_HBASE_THRIFT": "nohost"})
