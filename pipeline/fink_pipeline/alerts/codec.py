"""Alerts to bytes and back, in the formats the surveys really use.

- ZTF ships each alert as an Avro Object Container File holding one record
  (header with the writer schema, one data block, sync markers).
- Rubin ships each alert in the Confluent wire format: byte 0x00, a 4-byte
  big-endian schema id from its schema registry, then the Avro body without a
  schema. The writer schema is found by that id in a schema registry when one
  is given (registry.py), else in Rubin's own package, whose ids are
  MAJOR*100 + MINOR (rubin_schemas.py); every official version is read.

`decode_batch` turns a micro-batch of Kafka values into the flat alert frame
(columns.columns_for(survey)) the science reads. It never raises on bad input:
a message that cannot be an alert of the survey becomes a `Reject` with a
stable category ("not-avro", "wrong-schema", "missing-field"), and its
neighbours decode as if it were not there.

Speed matters (every alert of the stream goes through here), so the schema in a
ZTF container's header is parsed once per distinct header and cached; each
message then costs one small header scan and one schemaless read of its block.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastavro import parse_schema, schemaless_reader, schemaless_writer, writer
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from fink_pipeline.alerts import rubin_schemas
from fink_pipeline.alerts.columns import CUTOUT_COLUMNS, columns_for
from fink_pipeline.alerts.registry import RegistryUnavailable, UnknownSchemaId, registry_at
from fink_pipeline.alerts.schemas import (
    RECORD_NAMES,
    canonical_form,
    parsed_schema,
    schema_text,
)

WIRE_MAGIC = 0
CONTAINER_MAGIC = b"Obj\x01"
SYNC_SIZE = 16
# Distinct container headers kept parsed; a real stream has one or two.
MAX_CACHED_HEADERS = 64

# The most one message may inflate to: a real alert is under 100 KB inflated
# (ZTF's gzipped stamps stay gzipped); a deflated block that would grow past this
# is a decompression bomb, refused before it costs the worker its memory.
MAX_INFLATED_BYTES = 4 * 1024 * 1024

NOT_AVRO = "not-avro"
WRONG_SCHEMA = "wrong-schema"
MISSING_FIELD = "missing-field"
TOO_LARGE = "too-large"
CATEGORIES = (NOT_AVRO, WRONG_SCHEMA, MISSING_FIELD, TOO_LARGE)

POSITION = "_position"


@dataclass(frozen=True)
class Reject:
    """A message that is not a usable alert: where it was and why ("category: detail")."""

    position: int
    reason: str

    @property
    def category(self) -> str:
        return self.reason.split(":", 1)[0]


@dataclass
class DecodedBatch:
    """The flat alerts of a batch (plus `_position`) and the messages refused."""

    frame: pd.DataFrame
    rejects: list[Reject]
    # ZTF: the container prefixes (magic and metadata, up to the sync marker) of the
    # alerts read with exactly our schema and no codec: what the JVM can decode next time
    plain_prefixes: frozenset[bytes] = frozenset()


class _Refused(Exception):
    """Internal: a message refused, with its category and detail."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.reason = f"{category}: {detail}"


# --------------------------------------------------------------------------- encoding


def encode(
    alert: dict[str, Any],
    survey: str,
    *,
    schema_version: tuple[int, int] | None = None,
    schema_id: int | None = None,
) -> bytes:
    """One alert (nested dict per the survey's schema) as the survey ships it.

    Rubin alerts are written with the official schema `schema_version` (the
    package's latest by default; the alert must be laid out in it, see
    lsst_records.in_version) under `schema_id` (the id a registry gave that
    schema; the package's official id by default).
    """
    buffer = io.BytesIO()
    if survey == "ztf":
        writer(buffer, parsed_schema("ztf"), [alert], codec="null")
    elif survey == "lsst":
        version = schema_version or rubin_schemas.latest()
        header_id = rubin_schemas.official_id(version) if schema_id is None else schema_id
        buffer.write(struct.pack(">bI", WIRE_MAGIC, header_id))
        schemaless_writer(buffer, rubin_schemas.parsed_writer_schema(version), alert)
    else:
        raise ValueError(f"unknown survey {survey!r}; known surveys: ztf, lsst")
    return buffer.getvalue()


def schema_json(survey: str) -> str:
    """The survey's Avro schema as JSON text (what `fink-alerts schema` prints)."""
    return schema_text(survey)


# --------------------------------------------------------------------------- container


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at pos, and the position after it."""
    shift = 0
    value = 0
    while True:
        if pos >= len(data):
            raise _Refused(NOT_AVRO, "truncated Avro container header")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise _Refused(NOT_AVRO, "corrupt varint in Avro container header")


def _read_metadata(data: bytes, pos: int) -> tuple[dict[str, bytes], int]:
    metadata: dict[str, bytes] = {}
    while True:
        count, pos = _read_long(data, pos)
        if count == 0:
            return metadata, pos
        if count < 0:
            count = -count
            _, pos = _read_long(data, pos)  # block size in bytes, not needed
        for _ in range(count):
            key_size, pos = _read_long(data, pos)
            key = data[pos : pos + key_size]
            pos += key_size
            value_size, pos = _read_long(data, pos)
            value = data[pos : pos + value_size]
            pos += value_size
            if key_size < 0 or value_size < 0 or pos > len(data):
                raise _Refused(NOT_AVRO, "truncated Avro container header")
            metadata[key.decode("utf-8", "replace")] = value


@dataclass(frozen=True)
class _Header:
    """What one distinct container header means for decoding."""

    schema: dict[str, Any] | None  # parsed writer schema
    decompress: Callable[[bytes], bytes] | None
    exact: bool  # the writer schema is ours: no field checks needed
    refusal: str | None  # set when every message with this header is refused


_HEADERS: dict[bytes, _Header] = {}


def _identity(block: bytes) -> bytes:
    return block


def _raw_deflate(block: bytes) -> bytes:
    inflater = zlib.decompressobj(-15)
    inflated = inflater.decompress(block, MAX_INFLATED_BYTES)
    if inflater.unconsumed_tail:
        raise _Refused(
            TOO_LARGE,
            f"deflated block of {len(block)} bytes inflates past "
            f"{MAX_INFLATED_BYTES} bytes (a decompression bomb?)",
        )
    return inflated


def _understand_header(metadata: dict[str, bytes], survey: str) -> _Header:
    codec = metadata.get("avro.codec", b"null").decode("utf-8", "replace")
    decompress = {"null": _identity, "deflate": _raw_deflate}.get(codec)
    try:
        raw = json.loads(metadata["avro.schema"])
        schema = parse_schema(raw)
        canonical = str(to_parsing_canonical_form(raw))
    except KeyError:
        return _Header(None, None, False, f"{NOT_AVRO}: container header has no avro.schema")
    except Exception as error:  # a broken schema in a header: refuse its messages
        return _Header(None, None, False, f"{NOT_AVRO}: unreadable schema in header ({error})")
    name = schema.get("name") if isinstance(schema, dict) else None
    if name != RECORD_NAMES[survey]:
        return _Header(
            None,
            None,
            False,
            f"{WRONG_SCHEMA}: container holds {name or 'a non-record'} records, "
            f"expected {RECORD_NAMES[survey]}",
        )
    if decompress is None:
        return _Header(
            None,
            None,
            False,
            f"{WRONG_SCHEMA}: container codec {codec!r} (expected null or deflate)",
        )
    return _Header(schema, decompress, canonical == canonical_form(survey), None)


def _container_record(data: bytes, survey: str) -> tuple[dict[str, Any], bool, bytes | None]:
    """The one record of a container, whether its writer schema is exactly ours, and
    its prefix (magic and metadata) when that schema is exactly ours without a codec."""
    if len(data) < len(CONTAINER_MAGIC) or data[:4] != CONTAINER_MAGIC:
        if len(data) > 5 and data[0] == WIRE_MAGIC:
            (schema_id,) = struct.unpack(">I", data[1:5])
            raise _Refused(
                WRONG_SCHEMA,
                f"Confluent wire-format message (schema id {schema_id}), "
                "expected an Avro container file",
            )
        raise _Refused(NOT_AVRO, "does not start with the Avro container magic 'Obj\\x01'")
    metadata_start = len(CONTAINER_MAGIC)
    metadata, pos = _read_metadata(data, metadata_start)
    prefix_end = pos
    key = data[metadata_start:pos]
    header = _HEADERS.get(key)
    if header is None:
        header = _understand_header(metadata, survey)
        if len(_HEADERS) >= MAX_CACHED_HEADERS:
            _HEADERS.clear()
        _HEADERS[key] = header
    if header.refusal is not None:
        category, detail = header.refusal.split(": ", 1)
        raise _Refused(category, detail)
    sync = data[pos : pos + SYNC_SIZE]
    pos += SYNC_SIZE
    count, pos = _read_long(data, pos)
    if count != 1:
        raise _Refused(WRONG_SCHEMA, f"container holds {count} records, expected one alert")
    size, pos = _read_long(data, pos)
    block = data[pos : pos + size]
    if size < 0 or len(block) != size or data[pos + size : pos + size + SYNC_SIZE] != sync:
        raise _Refused(NOT_AVRO, "truncated Avro container (data block or sync marker cut)")
    assert header.decompress is not None and header.schema is not None
    try:
        body = io.BytesIO(header.decompress(block))
        record = schemaless_reader(body, header.schema, None)
    except _Refused:
        raise
    except Exception as error:
        raise _Refused(NOT_AVRO, f"corrupt Avro data block ({type(error).__name__})") from None
    if not isinstance(record, dict):
        raise _Refused(WRONG_SCHEMA, "container record is not a record")
    plain = header.exact and header.decompress is _identity
    return record, header.exact, data[:prefix_end] if plain else None


@dataclass(frozen=True)
class _WireReaders:
    """How to read messages of one schema id: the writer schema and our projection of it."""

    writer: dict[str, Any] | None
    reader: dict[str, Any] | None
    refusal: str | None  # set when every message with this id is refused


# (registry URL or "", schema id, cutouts) -> readers; a schema id never changes meaning.
_WIRE_READERS: dict[tuple[str, int, bool], _WireReaders] = {}
LSST_SOURCE_FIELDS = tuple(c for c in columns_for("lsst") if not c.startswith("prv_"))


def _wire_readers(schema_id: int, registry: str | None, cutouts: bool) -> _WireReaders:
    key = (registry or "", schema_id, cutouts)
    found = _WIRE_READERS.get(key)
    if found is None:
        found = _WIRE_READERS[key] = _resolve_wire_schema(schema_id, registry, cutouts)
    return found


def _resolve_wire_schema(schema_id: int, registry: str | None, cutouts: bool) -> _WireReaders:
    if registry:
        try:
            writer_raw = json.loads(registry_at(registry).schema_text(schema_id))
        except UnknownSchemaId:
            return _WireReaders(
                None, None, f"{WRONG_SCHEMA}: schema id {schema_id} is not in the registry"
            )
        except ValueError as error:
            return _WireReaders(None, None, f"{WRONG_SCHEMA}: schema id {schema_id}: {error}")
    else:
        version = rubin_schemas.version_of_id(schema_id)
        if version is None:
            first, last = rubin_schemas.versions()[0], rubin_schemas.versions()[-1]
            return _WireReaders(
                None,
                None,
                f"{WRONG_SCHEMA}: unknown schema id {schema_id} (no registry configured; "
                f"Rubin's official ids run from {rubin_schemas.official_id(first)} to "
                f"{rubin_schemas.official_id(last)})",
            )
        writer_raw = rubin_schemas.writer_schema(version)
    if not rubin_schemas.is_alert_schema(writer_raw):
        name = rubin_schemas.full_name(writer_raw)
        return _WireReaders(
            None,
            None,
            f"{WRONG_SCHEMA}: schema id {schema_id} is {name or 'not a record'}, not a Rubin alert",
        )
    try:
        writer_schema = parse_schema(writer_raw)
        reader = parse_schema(rubin_schemas.projection(writer_raw, LSST_SOURCE_FIELDS, cutouts))
    except Exception as error:
        return _WireReaders(None, None, f"{WRONG_SCHEMA}: schema id {schema_id}: {error}")
    return _WireReaders(writer_schema, reader, None)


def _wire_record(data: bytes, registry: str | None, cutouts: bool = False) -> dict[str, Any]:
    """The diaSource and prvDiaSources of a Rubin alert in the Confluent wire format."""
    if data[:4] == CONTAINER_MAGIC:
        raise _Refused(WRONG_SCHEMA, "an Avro container file (ZTF's format), expected wire format")
    if len(data) < 5 or data[0] != WIRE_MAGIC:
        raise _Refused(NOT_AVRO, "not in the Confluent wire format (magic byte 0 + schema id)")
    (schema_id,) = struct.unpack(">I", data[1:5])
    readers = _wire_readers(schema_id, registry, cutouts)
    if readers.refusal is not None:
        category, detail = readers.refusal.split(": ", 1)
        raise _Refused(category, detail)
    body = io.BytesIO(data)
    body.seek(5)
    try:
        record = schemaless_reader(body, readers.writer, readers.reader)
    except Exception as error:
        raise _Refused(
            NOT_AVRO, f"truncated or corrupt Avro body ({type(error).__name__})"
        ) from None
    if body.tell() != len(data):
        raise _Refused(NOT_AVRO, f"{len(data) - body.tell()} bytes left after the alert record")
    return record  # type: ignore[return-value]


# --------------------------------------------------------------------------- flattening

# (flat column, field in the alert's main record); top-level fields come first
ZTF_TOP = ("objectId", "candid")
ZTF_CANDIDATE = tuple(
    c for c in columns_for("ztf") if not c.startswith("prv_") and c not in ZTF_TOP
)
ZTF_HISTORY = tuple(c[4:] for c in columns_for("ztf") if c.startswith("prv_"))
LSST_SOURCE = LSST_SOURCE_FIELDS
LSST_HISTORY = tuple(c[4:] for c in columns_for("lsst") if c.startswith("prv_"))

# fields a usable alert must have, beyond what the schema forces: checked on
# records whose writer schema is not exactly ours (and on nullable fields)
ZTF_REQUIRED_TOP = ("objectId", "candid", "candidate")
ZTF_REQUIRED_CANDIDATE = ("jd", "fid", "ra", "dec", "magpsf", "sigmapsf", "candid", "programid")
LSST_REQUIRED_SOURCE = ("psfFlux",)


def _require(record: dict[str, Any], fields: Sequence[str], where: str) -> None:
    for name in fields:
        if name not in record:
            raise _Refused(MISSING_FIELD, f"{where}{name} is missing")
        if record[name] is None:
            raise _Refused(MISSING_FIELD, f"{where}{name} is null")


def _check_ztf(record: dict[str, Any]) -> None:
    _require(record, ZTF_REQUIRED_TOP, "")
    if not isinstance(record["candidate"], dict):
        raise _Refused(WRONG_SCHEMA, "candidate is not a record")
    _require(record["candidate"], ZTF_REQUIRED_CANDIDATE, "candidate.")
    if not validate(record, parsed_schema("ztf"), raise_errors=False):
        raise _Refused(WRONG_SCHEMA, "ztf.alert record whose fields do not fit our ZTF schema")


class _Columns:
    """Column values gathered message by message, then typed once per batch."""

    def __init__(self, survey: str, cutouts: bool = False) -> None:
        self.survey = survey
        self.cutouts = cutouts
        self.values: dict[str, list[Any]] = {c: [] for c in columns_for(survey)}
        if cutouts:
            self.values.update({c: [] for c in CUTOUT_COLUMNS})
        self.positions: list[int] = []
        self.lists = list(self.values.values())  # in column order

    def add_ztf(self, record: dict[str, Any], position: int) -> None:
        candidate = record["candidate"]
        history = record.get("prv_candidates") or ()
        row = [record["objectId"], record["candid"]]
        row += [candidate.get(name) for name in ZTF_CANDIDATE]
        row += [[point.get(name) for point in history] for name in ZTF_HISTORY]
        if self.cutouts:
            row += [_stamp(record.get(name), name) for name in CUTOUT_COLUMNS]
        self._append(row, position)  # a whole row or nothing: columns stay aligned

    def add_lsst(self, record: dict[str, Any], position: int) -> None:
        source = record["diaSource"]
        history = record.get("prvDiaSources") or ()
        row = [source.get(name) for name in LSST_SOURCE]
        row += [[point.get(name) for point in history] for name in LSST_HISTORY]
        if self.cutouts:  # Rubin's cutouts are bare bytes fields of the alert
            row += [record.get(name) for name in CUTOUT_COLUMNS]
        self._append(row, position)

    def _append(self, row: list[Any], position: int) -> None:
        for column, value in zip(self.lists, row, strict=True):
            column.append(value)
        self.positions.append(position)

    def frame(self) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for name, spark_type in columns_for(self.survey).items():
            data[name] = typed_column(self.values[name], spark_type)
        if self.cutouts:
            for name in CUTOUT_COLUMNS:
                data[name] = typed_column(self.values[name], "binary")
        data[POSITION] = np.asarray(self.positions, dtype=np.int64)
        return pd.DataFrame(data, copy=False)


def _stamp(cutout: Any, name: str) -> bytes | None:
    """The stampData of a ZTF cutout record (gzipped FITS), None when the alert has none."""
    if cutout is None:
        return None
    if not isinstance(cutout, dict) or not isinstance(cutout.get("stampData"), bytes):
        raise _Refused(WRONG_SCHEMA, f"{name} is not a cutout record with bytes stampData")
    return cutout["stampData"]


def typed_column(values: list[Any], spark_type: str) -> Any:
    """A column as pandas likes it: float64 (NaN for null), int64 (Int64 with nulls)...

    The decoded frame's types wherever it is built (here, and from the JVM's
    Arrow columns in stream/jvm_decode.py)."""
    if spark_type == "double":
        return np.asarray(values, dtype=np.float64)
    if spark_type in ("int", "bigint"):
        try:
            return np.asarray(values, dtype=np.int64)
        except TypeError:  # nulls among the values
            return pd.array(values, dtype="Int64")
    if spark_type.startswith("array<"):
        column = np.empty(len(values), dtype=object)
        for i, cell in enumerate(values):
            column[i] = cell
        return column
    return np.asarray(values, dtype=object)


def decode_batch(
    values: Sequence[bytes | None],
    survey: str,
    registry: str | None = None,
    *,
    cutouts: bool = False,
) -> DecodedBatch:
    """Decode a batch of Kafka message values into flat alerts; refuse the unusable ones.

    `registry` is the Confluent-compatible URL of the schema registry Rubin's
    schema ids come from; without one, the official ids of lsst-alert-packet.
    Raises RegistryUnavailable (the batch is retried) when the registry does
    not answer: that is no message's fault.

    With `cutouts` the frame also has the CUTOUT_COLUMNS, the bytes of each
    cutout (ZTF: its stampData; Rubin: the field itself; None when absent),
    after the alert's columns; without, it never holds them (Rubin's are not
    even read: the projection skips them).
    """
    columns_for(survey)  # an unknown survey is our caller's bug: raise now
    gathered = _Columns(survey, cutouts)
    rejects: list[Reject] = []
    plain_prefixes: set[bytes] = set()
    for position, data in enumerate(values):
        try:
            if data is None or len(data) == 0:
                raise _Refused(NOT_AVRO, "empty message")
            data = bytes(data)
            if survey == "ztf":
                record, exact, prefix = _container_record(data, survey)
                if not exact:
                    _check_ztf(record)
                gathered.add_ztf(record, position)
                if prefix is not None:
                    plain_prefixes.add(prefix)
            else:
                record = _wire_record(data, registry, cutouts)
                _require(record["diaSource"], LSST_REQUIRED_SOURCE, "diaSource.")
                gathered.add_lsst(record, position)
        except _Refused as refused:
            rejects.append(Reject(position, refused.reason))
        except RegistryUnavailable:
            raise
        except Exception as error:  # never let one message sink the batch
            rejects.append(Reject(position, f"{NOT_AVRO}: {type(error).__name__}: {error}"))
    return DecodedBatch(gathered.frame(), rejects, frozenset(plain_prefixes))
