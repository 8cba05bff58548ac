"""Avro by columns (avro_columns.py) writes fastavro's bytes, record for record.

Each test encodes the same Arrow columns twice: by columns, and with fastavro's
schemaless writer from `to_pylist()` records, and compares the bytes. Real chunks
of both surveys (processed_batch.py), then every edge the encoding has.
"""

from __future__ import annotations

import io
import math
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pytest
from processed_batch import FAST, SSO, document, science

from fink_core import spec as model
from fink_pipeline.stream.avro_columns import ColumnarAvro
from fink_pipeline.stream.enriched import (
    FILTERS_FIELD,
    SINGLE_OBJECT_MARKER,
    EnrichedCodec,
    enriched_schema,
)
from fink_pipeline.stream.outbox import plain_records
from fink_pipeline.stream.science_step import arrow_array, arrow_type


def by_fastavro(schema: dict[str, Any], columns: dict[str, pa.Array], prefix: bytes) -> list[bytes]:
    parsed = fastavro.parse_schema(schema)
    records = pa.table(columns).to_pylist()
    out = []
    for record in records:
        buffer = io.BytesIO()
        buffer.write(prefix)
        fastavro.schemaless_writer(buffer, parsed, record)
        out.append(buffer.getvalue())
    return out


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_a_real_chunks_enriched_alerts_are_fastavros_bytes(survey: str) -> None:
    filters = [{"name": FAST, "topic": "fast"}] + (
        [{"name": SSO, "topic": "sso"}] if survey == "ztf" else []
    )
    spec = model.parse_pipeline(document(survey, filters))
    step, frame = science(survey, spec, 400, seed=3)
    good = frame[frame["_reject"].isna()].reset_index(drop=True)
    kinds = step.alert_columns
    columns = {name: arrow_array(good[name], arrow_type(kind)) for name, kind in kinds.items()}
    columns[FILTERS_FIELD] = pa.array([["a", "b"][: i % 3] for i in range(len(good))])
    codec = EnrichedCodec(enriched_schema(survey, kinds))

    encoded = ColumnarAvro(codec.schema).encode(columns, codec.header)

    assert encoded == by_fastavro(codec.schema, columns, codec.header)
    # and what the codec reads back is the alert (as plain_records makes it)
    plain = plain_records(good, kinds)
    assert any(v is None for r in plain for v in r.values())  # nulls were there to encode
    for message, record in zip(encoded, plain, strict=True):
        decoded = codec.decode(message)
        decoded.pop(FILTERS_FIELD)
        assert _same(decoded, record)


def _same(left: dict[str, Any], right: dict[str, Any]) -> bool:
    def norm(value: Any) -> Any:
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, float):
            return "nan" if math.isnan(value) else round(value, 5)
        return value

    return {k: norm(v) for k, v in left.items()} == {k: norm(v) for k, v in right.items()}


def edge_schema() -> dict[str, Any]:
    def nullable(kind: Any) -> list[Any]:
        return ["null", kind]

    fields = [
        ("flag", nullable("boolean")),
        ("small", nullable("int")),
        ("big", nullable("long")),
        ("ratio", nullable("float")),
        ("value", nullable("double")),
        ("name", nullable("string")),
        ("series", nullable({"type": "array", "items": nullable("double")})),
        ("counts", nullable({"type": "array", "items": nullable("long")})),
        ("labels", {"type": "array", "items": "string"}),
        ("plain", "long"),
        ("nothing", "null"),
    ]
    return {"type": "record", "name": "edge", "fields": [{"name": n, "type": t} for n, t in fields]}


def edge_columns(rows: int, seed: int) -> dict[str, pa.Array]:
    rng = np.random.default_rng(seed)
    longs = [0, 1, -1, 63, 64, -64, -65, 2**31 - 1, -(2**31), 2**62, 2**63 - 1, -(2**63)]
    doubles = [0.0, -0.0, 1.5, float("nan"), float("inf"), float("-inf"), 1e-300, 5e-324]
    texts = ["", "a", "é🌌", "x" * 130, "ZTF24aaaaaab"]

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.2 else value

    def series(pool: list[Any]) -> Any:
        size = int(rng.choice([0, 1, 3, 64, 200]))
        return maybe([maybe(pool[int(rng.integers(len(pool)))]) for _ in range(size)])

    return {
        "flag": pa.array([maybe(bool(rng.integers(2))) for _ in range(rows)], pa.bool_()),
        "small": pa.array(
            [maybe(int(rng.choice([0, 1, -1, 2**31 - 1, -(2**31)]))) for _ in range(rows)],
            pa.int32(),
        ),
        "big": pa.array([maybe(longs[int(rng.integers(len(longs)))]) for _ in range(rows)]),
        "ratio": pa.array([maybe(float(rng.normal())) for _ in range(rows)], pa.float32()),
        "value": pa.array([maybe(doubles[int(rng.integers(len(doubles)))]) for _ in range(rows)]),
        "name": pa.array([maybe(texts[int(rng.integers(len(texts)))]) for _ in range(rows)]),
        "series": pa.array([series(doubles) for _ in range(rows)], pa.list_(pa.float64())),
        "counts": pa.array([series(longs) for _ in range(rows)], pa.list_(pa.int64())),
        "labels": pa.array([texts[: int(rng.integers(4))] for _ in range(rows)]),
        "plain": pa.array([longs[int(rng.integers(len(longs)))] for _ in range(rows)]),
        "nothing": pa.nulls(rows),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_edge_is_encoded_as_fastavro_encodes_it(seed: int) -> None:
    schema = edge_schema()
    columns = edge_columns(300, seed)
    assert ColumnarAvro(schema).encode(columns) == by_fastavro(schema, columns, b"")


def test_slices_and_empty_chunks_are_encoded_too() -> None:
    schema = edge_schema()
    columns = edge_columns(120, seed=7)
    sliced = {name: column.slice(17, 50) for name, column in columns.items()}
    assert ColumnarAvro(schema).encode(sliced, SINGLE_OBJECT_MARKER) == by_fastavro(
        schema, sliced, SINGLE_OBJECT_MARKER
    )
    empty = {name: column.slice(0, 0) for name, column in columns.items()}
    assert ColumnarAvro(schema).encode(empty) == []


def test_schemas_and_columns_it_does_not_cover_are_refused() -> None:
    with pytest.raises(ValueError, match="not encoded by columns"):
        ColumnarAvro({"type": "record", "name": "r", "fields": [{"name": "m", "type": "bytes"}]})
    nested = {"type": "array", "items": {"type": "array", "items": "long"}}
    with pytest.raises(ValueError, match="arrays of arrays"):
        ColumnarAvro({"type": "record", "name": "r", "fields": [{"name": "m", "type": nested}]})
    plain = ColumnarAvro({"type": "record", "name": "r", "fields": [{"name": "m", "type": "long"}]})
    with pytest.raises(ValueError, match="a null in a column of non-null type long"):
        plain.encode({"m": pa.array([1, None])})
