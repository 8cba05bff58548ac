"""The enriched alert as it leaves the pipeline: one flat Avro record per alert.

Filter topics carry every column of the decoded alert, every column the
pipeline's modules added, and the names of the filters it passed. Messages use
Avro's single-object encoding (two marker bytes, the schema's 64-bit Rabin
fingerprint, the binary record), so a consumer can tell which schema wrote a
message; `fink-pipeline schema` prints the schema of a pipeline.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

import fastavro
import pyarrow as pa
from fastavro.schema import fingerprint, to_parsing_canonical_form

from fink_pipeline.stream.avro_columns import ColumnarAvro

SINGLE_OBJECT_MARKER = b"\xc3\x01"
FILTERS_FIELD = "fink_filters"

_AVRO_OF_SPARK = {
    "string": "string",
    "bigint": "long",
    "int": "int",
    "double": "double",
    "float": "float",
    "boolean": "boolean",
}


def avro_type(spark_type: str) -> Any:
    """Avro type (always nullable) of a Spark SQL type used by alert columns."""
    if spark_type.startswith("array<") and spark_type.endswith(">"):
        items = _AVRO_OF_SPARK[spark_type[len("array<") : -1]]
        return ["null", {"type": "array", "items": ["null", items]}]
    try:
        return ["null", _AVRO_OF_SPARK[spark_type]]
    except KeyError:
        raise ValueError(f"no Avro type for Spark type {spark_type!r}") from None


def enriched_schema(survey: str, columns: Mapping[str, str]) -> dict[str, Any]:
    """The Avro schema of a pipeline's enriched alerts (alert then module columns)."""
    fields = [
        {"name": name, "type": avro_type(kind), "default": None} for name, kind in columns.items()
    ]
    fields.append(
        {
            "name": FILTERS_FIELD,
            "type": {"type": "array", "items": "string"},
            "doc": "the science filters this alert passed",
            "default": [],
        }
    )
    return {
        "type": "record",
        "name": "enriched_alert",
        "namespace": f"fink.{survey}",
        "doc": "An alert with the columns the pipeline's science modules added",
        "fields": fields,
    }


class EnrichedCodec:
    """Encodes enriched records with one schema; built once per pipeline run."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = dict(schema)
        self.parsed = fastavro.parse_schema(self.schema)
        self.header = SINGLE_OBJECT_MARKER + rabin_fingerprint(self.schema)
        self.columnar = ColumnarAvro(self.schema)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self.header)
        fastavro.schemaless_writer(out, self.parsed, record)
        return out.getvalue()

    def encode_columns(self, columns: Mapping[str, pa.Array]) -> list[bytes]:
        """The message of each record of the columns (one per field), fastavro's bytes
        made a column at a time (avro_columns.py): how the tasks encode a chunk."""
        return self.columnar.encode(columns, self.header)

    def decode(self, message: bytes) -> dict[str, Any]:
        """The record of a message this schema wrote; ValueError for any other message."""
        if not message.startswith(self.header):
            raise ValueError("not an enriched alert of this schema (fingerprint differs)")
        return fastavro.schemaless_reader(io.BytesIO(message[len(self.header) :]), self.parsed)

    def encode_all(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        return [self.encode(r) for r in records]


def rabin_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """CRC-64-AVRO of the schema's parsing canonical form, little-endian (Avro spec)."""
    canonical = to_parsing_canonical_form(json.loads(json.dumps(schema)))
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
