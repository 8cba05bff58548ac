"""The local schema registry is a real one speaking the Confluent Schema Registry REST API.

Rubin alerts come in the Confluent wire format (magic byte 0, a 4-byte big-endian
schema id, the Avro body): a consumer resolves the writer schema by that id. These
tests talk to the registry with plain HTTP, as any Confluent client does.
"""

from __future__ import annotations

import io
import json
import struct
import urllib.error
import urllib.request
from typing import Any

import fastavro
import pytest
from kubernetes import client
from podrun import run_pod

from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One request; the status and decoded JSON body, error statuses included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": CONTENT_TYPE}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _alert_schema(name: str, *extra_fields: str) -> dict[str, Any]:
    fields = [{"name": "diaSourceId", "type": "long"}, {"name": "ra", "type": "double"}]
    fields += [{"name": f, "type": ["null", "float"], "default": None} for f in extra_fields]
    return {"type": "record", "name": "alert", "namespace": f"test.{name}", "fields": fields}


def _register(registry: str, subject: str, schema: dict[str, Any]) -> int:
    status, body = _call(
        "POST", f"{registry}/subjects/{subject}/versions", {"schema": json.dumps(schema)}
    )
    assert status == 200, body
    return int(body["id"])


def _subject(unique_name: str) -> str:
    return unique_name.replace("-", "_") + "-value"


@pytest.fixture
def registry(stack: Endpoints) -> str:
    assert stack.schema_registry, "fink-stack exports no schema registry URL"
    return stack.schema_registry


def test_a_registered_schema_is_fetched_back_by_its_id(registry: str, unique_name: str) -> None:
    schema = _alert_schema(unique_name.replace("-", "_"))
    schema_id = _register(registry, _subject(unique_name), schema)

    status, body = _call("GET", f"{registry}/schemas/ids/{schema_id}")
    assert status == 200, body
    assert json.loads(body["schema"]) == schema


def test_registering_the_same_schema_again_returns_the_same_id(
    registry: str, unique_name: str
) -> None:
    schema = _alert_schema(unique_name.replace("-", "_"))
    first = _register(registry, _subject(unique_name), schema)
    assert _register(registry, _subject(unique_name), schema) == first
    # ids are global and follow the content, as in Confluent's registry
    assert _register(registry, "other_" + _subject(unique_name), schema) == first
    status, versions = _call("GET", f"{registry}/subjects/{_subject(unique_name)}/versions")
    assert (status, versions) == (200, [1])


def test_a_different_schema_gets_a_different_id(registry: str, unique_name: str) -> None:
    namespace = unique_name.replace("-", "_")
    first = _register(registry, _subject(unique_name), _alert_schema(namespace))
    second = _register(registry, _subject(unique_name), _alert_schema(namespace, "psfFlux"))
    assert second != first
    status, versions = _call("GET", f"{registry}/subjects/{_subject(unique_name)}/versions")
    assert (status, versions) == (200, [1, 2])


def test_an_unknown_id_is_a_404_with_confluent_error_code_40403(registry: str) -> None:
    status, body = _call("GET", f"{registry}/schemas/ids/2147483000")
    assert status == 404
    assert body["error_code"] == 40403


def test_a_confluent_framed_alert_is_decoded_with_the_schema_its_id_names(
    registry: str, unique_name: str
) -> None:
    """What a consumer of Rubin alerts does: read the id from the frame, fetch, decode."""
    schema = _alert_schema(unique_name.replace("-", "_"), "psfFlux")
    schema_id = _register(registry, _subject(unique_name), schema)
    alert = {"diaSourceId": 42, "ra": 150.25, "psfFlux": 1.5}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), alert)
    frame = struct.pack(">bI", 0, schema_id) + body.getvalue()

    magic, frame_id = struct.unpack(">bI", frame[:5])
    assert magic == 0
    status, fetched = _call("GET", f"{registry}/schemas/ids/{frame_id}")
    assert status == 200, fetched
    writer = fastavro.parse_schema(json.loads(fetched["schema"]))
    assert fastavro.schemaless_reader(io.BytesIO(frame[5:]), writer) == alert


def test_a_pod_fetches_a_schema_by_id_from_the_pod_address(
    stack: Endpoints, registry: str, kube: client.ApiClient, namespace: str, unique_name: str
) -> None:
    assert stack.pods is not None, "the stack has no pod network (is it running as root?)"
    schema = _alert_schema(unique_name.replace("-", "_"))
    schema_id = _register(registry, _subject(unique_name), schema)
    code = (
        "import json, urllib.request\n"
        f"url = '{stack.pods.schema_registry}/schemas/ids/{schema_id}'\n"
        "print(json.loads(urllib.request.urlopen(url, timeout=20).read())['schema'])\n"
    )
    run = run_pod(kube, namespace, "registry", stack.pods.pipeline_image, ["python", "-c", code])
    assert run.exit_code == 0, run.logs
    assert json.loads(run.logs.strip().splitlines()[-1]) == schema
