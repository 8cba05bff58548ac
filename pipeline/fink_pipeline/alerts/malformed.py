"""Messages a broker must refuse, each labelled with the category it should get."""

from __future__ import annotations

import copy
import io
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
from fastavro import parse_schema, writer

from fink_pipeline.alerts import codec
from fink_pipeline.alerts.generator import generate_alerts
from fink_pipeline.alerts.rubin_schemas import CUTOUT_FIELDS as LSST_CUTOUTS
from fink_pipeline.alerts.schemas import raw_schema

UNRELATED_SCHEMA = parse_schema(
    {
        "type": "record",
        "name": "reading",
        "namespace": "weather",
        "fields": [{"name": "station", "type": "string"}, {"name": "celsius", "type": "double"}],
    }
)


def _container(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    writer(buffer, parse_schema(schema), [record], codec="null")
    return buffer.getvalue()


def _ztf_variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema = copy.deepcopy(raw_schema("ztf"))
    change(schema)
    return schema


def _nullable_jd(schema: dict[str, Any]) -> None:
    candidate = next(f for f in schema["fields"] if f["name"] == "candidate")["type"]
    jd = next(f for f in candidate["fields"] if f["name"] == "jd")
    jd["type"] = ["null", "double"]


def _without_object_id(schema: dict[str, Any]) -> None:
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "objectId"]


def malformed_messages(
    count: int,
    survey: str,
    seed: int = 0,
    encode: Callable[[dict[str, Any]], bytes] | None = None,
) -> list[tuple[bytes, str]]:
    """`count` messages a broker must refuse, each with the category it should get.

    A mix of garbage (not-avro), cut messages (not-avro), the other survey's
    alerts and unrelated Avro records (wrong-schema), and alerts lacking a
    required field (missing-field). `encode` writes the alerts that are cut or
    lack a field (default codec.encode): a stream whose Rubin ids come from a
    registry passes its own encoder, so those still carry a known id.
    """
    rng = np.random.default_rng(seed + 1_000_003)
    other = "lsst" if survey == "ztf" else "ztf"
    encode_good = encode or (lambda alert: codec.encode(alert, survey))
    goods = generate_alerts(8, survey, seed=seed + 77)
    others = generate_alerts(2, other, seed=seed + 78)
    messages: list[tuple[bytes, str]] = []
    for i in range(count):
        kind = i % 4
        alert = copy.deepcopy(goods[i % len(goods)])
        if kind == 0:
            if i % 8 == 0:
                junk = b'{"objectId": "ZTF24abcdefg", "jd": 2460400.7}'
            else:
                junk = bytes(rng.integers(1, 256, int(rng.integers(1, 400)), dtype=np.uint8))
            messages.append((junk, codec.NOT_AVRO))
        elif kind == 1:
            whole = encode_good(alert)
            # a Rubin alert ends with its cutouts (bare bytes): a cut inside the last
            # one leaves a shorter stamp the Avro reader cannot tell from a whole one
            # (docs/alerts.md), so cut before the stamps
            stamps = sum(len(alert.get(name) or b"") for name in LSST_CUTOUTS)
            end = len(whole) - 1 - (stamps if survey == "lsst" else 0)
            cut = int(rng.integers(1, max(2, end)))
            messages.append((whole[:cut], codec.NOT_AVRO))
        elif kind == 2:
            choice = (i // 4) % 3
            if choice == 0:
                data = codec.encode(others[i % 2], other)
            elif choice == 1:
                record = {"station": "Palomar", "celsius": 11.5}
                data = _container(UNRELATED_SCHEMA, record)
                if survey == "lsst":  # wire format, but a schema id that is not ours
                    data = struct.pack(">bI", 0, 9999) + data[-20:]
            else:
                data = _container(UNRELATED_SCHEMA, {"station": "Cerro Pachon", "celsius": 9.0})
            messages.append((data, codec.WRONG_SCHEMA))
        else:
            if survey == "ztf":
                if (i // 4) % 2 == 0:
                    alert["candidate"]["jd"] = None
                    data = _container(_ztf_variant(_nullable_jd), alert)
                else:
                    del alert["objectId"]
                    data = _container(_ztf_variant(_without_object_id), alert)
            else:
                alert["diaSource"]["psfFlux"] = None
                data = encode_good(alert)
            messages.append((data, codec.MISSING_FIELD))
    return messages
