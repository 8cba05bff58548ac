"""ZTF alerts decoded in Spark's JVM (spark-avro's from_avro), before a Python worker sees them.

Decoding in the Python workers costs 120-150 core-µs per alert, and every
message's bytes (61 KB for a full-size ZTF packet, cutouts included) cross from
the JVM to Python first; from_avro in the JVM into the pipeline's flat columns
costs about half (bench/jvm_decode.py, docs/pipeline.md). A ZTF message is an
Avro container holding one record: magic and metadata (the writer schema
travels in every message), a sync marker, the record count, the block's size,
the record's body, the sync marker again. SQL can skip to the body when the
container's prefix (magic and metadata) is one the JVM may trust: the writer
schema exactly ours and no codec, so our schema reads the body as written.

Those prefixes are learned from the stream, never assumed: the Python decoder
reports the prefixes of the containers it read with exactly our schema
(codec.DecodedBatch.plain_prefixes), and from the next micro-batch on the JVM
decodes every message that starts with one of them, is whole (one record, a
block size that matches the message's length, the sync marker at both ends)
and that from_avro reads (its permissive mode gives null otherwise). Every
other message (another writer schema, a deflated block, a cut container,
Rubin's wire format) reaches the Python decoder with its bytes, as before,
which decodes it or refuses it with its reason for the dead letters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fink_pipeline.alerts.codec import SYNC_SIZE, schema_json, typed_column
from fink_pipeline.alerts.columns import CUTOUT_COLUMNS, columns_for

DECODED = "_decoded"  # true when the JVM decoded the row's alert (its value is then not sent)
ALERT = "_alert"  # the decoded record, between the two projections
MAX_PREFIXES = 8  # distinct trusted prefixes kept; a real stream has one or two
SOURCE_COLUMNS = ("value", "topic", "partition", "offset", "timestamp")
_TOP_LEVEL = {"objectId", "candid"}

log = logging.getLogger(__name__)


class JvmDecoder:
    """The driver's side: which prefixes the JVM trusts, and the micro-batch's columns."""

    def __init__(self, survey: str, cutouts: bool = False) -> None:
        self.survey = survey
        self.cutouts = cutouts
        self.prefixes: list[bytes] = []
        self.unavailable = False  # set when Spark has no spark-avro: Python decodes all

    @property
    def active(self) -> bool:
        return bool(self.prefixes) and not self.unavailable  # learn() keeps ZTF's only

    def learn(self, prefixes: Iterable[bytes]) -> list[bytes]:
        """Trust these prefixes from the next batch on; returns the ones new to us."""
        if self.survey != "ztf":
            return []
        new = [p for p in dict.fromkeys(prefixes) if p not in self.prefixes]
        self.prefixes = (self.prefixes + new)[-MAX_PREFIXES:]
        return new

    def columns(self, raw: Any) -> Any:
        """The micro-batch as the tasks take it: the source's columns, plus, once a
        prefix is trusted, the JVM's flat columns and `_decoded` (value null when set)."""
        if not self.active:
            return raw
        from pyspark.sql.avro.functions import from_avro
        from pyspark.sql.functions import expr

        body = expr(body_expression(self.prefixes))
        try:
            options = {"mode": "PERMISSIVE", "avroSchema": reader_schema(self.cutouts)}
            alert = from_avro(body, schema_json("ztf"), options).alias(ALERT)
            decoded = raw.select(*SOURCE_COLUMNS, alert)
        except Exception as error:  # Spark analyses the plan here: no spark-avro, no from_avro
            self.unavailable = True
            log.warning(
                "Spark cannot decode Avro (is the spark-avro jar on its classpath?); "
                "the Python workers decode every alert: %s",
                str(error).splitlines()[0],
            )
            return raw
        return decoded.selectExpr(*projection(self.cutouts))


def body_expression(prefixes: Iterable[bytes]) -> str:
    """Spark SQL for the record's body of a whole one-record container with a trusted
    prefix, else null."""
    cases = [_body_case(prefix) for prefix in prefixes]
    return cases[0] if len(cases) == 1 else f"coalesce({', '.join(cases)})"


def _body_case(prefix: bytes) -> str:
    """The body behind one prefix (1-based positions: prefix, sync, count, size, body)."""
    sync = len(prefix) + 1
    count = sync + SYNC_SIZE
    first = count + 1  # the block size's first byte, a zig-zag varint of 1 to 3 bytes

    def byte(k: int) -> str:
        return f"cast(conv(hex(substring(value, {k}, 1)), 16, 10) as int)"

    b1, b2, b3 = byte(first), byte(first + 1), byte(first + 2)
    digits = f"case when {b1} < 128 then 1 when {b2} < 128 then 2 when {b3} < 128 then 3 end"
    varint = (
        f"case {digits} when 1 then {b1} when 2 then {b1} - 128 + {b2} * 128 "
        f"when 3 then {b1} - 128 + ({b2} - 128) * 128 + {b3} * 16384 end"
    )
    # even: a positive size (zig-zag); the message holds exactly the block and a sync
    whole = (
        f"{varint} % 2 = 0 and length(value) = {first - 1} + {digits} + {varint} div 2 + "
        f"{SYNC_SIZE}"
    )
    return (
        f"case when substring(value, 1, {len(prefix)}) = X'{prefix.hex()}' "
        f"and substring(value, {count}, 1) = X'02' "
        f"and substring(value, -{SYNC_SIZE}, {SYNC_SIZE}) = "
        f"substring(value, {sync}, {SYNC_SIZE}) "
        f"and {whole} then substring(value, {first} + {digits}) end"
    )


def reader_schema(cutouts: bool) -> str:
    """ZTF's schema cut down to the fields the pipeline's columns come from.

    Given to from_avro as the reader schema (Avro's schema resolution: the
    writer's other fields are skipped, not decoded). Every record from_avro
    decodes becomes a Spark row whose creation costs per field (Spark 4.2 reads
    its SQL configuration for each); a ZTF alert holds one per earlier
    detection or upper limit (about 11 in the generated alerts, dozens in real
    ones), and the pipeline reads 5 of their 21 fields.
    """
    history = {c[len("prv_") :] for c in columns_for("ztf") if c.startswith("prv_")}
    current = {c for c in columns_for("ztf") if c not in _TOP_LEVEL and not c.startswith("prv_")}
    schema = json.loads(schema_json("ztf"))
    fields = []
    for field in schema["fields"]:
        name = field["name"]
        if name in _TOP_LEVEL:
            fields.append(field)
        elif name == "candidate":
            fields.append({**field, "type": _pruned(field["type"], current)})
        elif name == "prv_candidates":
            null, array = field["type"]
            items = _pruned(array["items"], history)
            fields.append({**field, "type": [null, {**array, "items": items}]})
        elif name in CUTOUT_COLUMNS and cutouts:
            null, cutout = field["type"]
            if isinstance(cutout, dict):  # the first one defines the record, the others name it
                cutout = _pruned(cutout, {"stampData"})
            fields.append({**field, "type": [null, cutout]})
    return json.dumps({**schema, "fields": fields})


def _pruned(record: dict[str, Any], names: set[str]) -> dict[str, Any]:
    kept = [field for field in record["fields"] if field["name"] in names]
    missing = names - {field["name"] for field in kept}
    if missing:  # a column of ours the schema lacks: a bug of ours, not of the stream
        raise ValueError(f"ZTF's {record['name']} record has no field {sorted(missing)}")
    return {**record, "fields": kept}


def projection(cutouts: bool) -> list[str]:
    """The decoded record as the pipeline's flat ZTF columns (columns.ZTF_COLUMNS)."""
    selected = [
        f"case when {ALERT} is null then value end as value",
        *SOURCE_COLUMNS[1:],
        f"{ALERT} is not null as {DECODED}",
    ]
    for name in columns_for("ztf"):
        if name in _TOP_LEVEL:
            selected.append(f"{ALERT}.{name} as {name}")
        elif name.startswith("prv_"):  # no history: an empty list, as the Python decoder
            selected.append(f"coalesce({ALERT}.prv_candidates.{name[4:]}, array()) as {name}")
        else:
            selected.append(f"{ALERT}.candidate.{name} as {name}")
    if cutouts:
        selected += [f"{ALERT}.{name}.stampData as {name}" for name in CUTOUT_COLUMNS]
    return selected


def decoded_frame(batch: pa.RecordBatch, survey: str, cutouts: bool) -> pd.DataFrame | None:
    """The workers' side: the rows the JVM decoded, typed as the Python decoder types
    them (codec.decode_batch), with `_position` in the batch; None without a JVM decode."""
    if DECODED not in batch.schema.names:
        return None
    flags = batch.column(DECODED).fill_null(False)
    positions = np.flatnonzero(flags.to_numpy(zero_copy_only=False))
    rows = batch.filter(flags)
    kinds: Mapping[str, str] = {
        **columns_for(survey),
        **({name: "binary" for name in CUTOUT_COLUMNS} if cutouts else {}),
    }
    data: dict[str, Any] = {name: _typed(rows.column(name), kind) for name, kind in kinds.items()}
    data["_position"] = positions.astype(np.int64)
    return pd.DataFrame(data, copy=False)


def _typed(column: pa.Array, spark_type: str) -> Any:
    """codec.typed_column's types; numbers without nulls straight from Arrow's buffers,
    and a history as one numpy array per alert (_histories)."""
    if spark_type == "double" or (spark_type in ("int", "bigint") and not column.null_count):
        kind = np.float64 if spark_type == "double" else np.int64
        return column.to_numpy(zero_copy_only=False).astype(kind, copy=False)
    if spark_type in _HISTORY_TYPES and not column.null_count:
        return _histories(column, _HISTORY_TYPES[spark_type])
    return typed_column(column.to_pylist(), spark_type)


_HISTORY_TYPES = {"array<double>": np.float64, "array<int>": np.int64, "array<bigint>": np.int64}


def _histories(column: pa.ListArray, kind: type) -> Any:
    """Each alert's list as a numpy array, a view of the column's values: what Spark's
    mapInPandas hands over for an array column, and what the modules (history.ragged),
    the HBase cells and the Avro and Parquet sinks take as they take lists. A null
    inside a history (an upper limit's magnitude) is NaN here, None in a list the
    Python decoder made; both are a null for every sink. Building the Python lists
    instead cost a fifth of the Python workers' time.
    """
    cells = np.empty(len(column), dtype=object)
    if not len(column):
        return cells
    values = column.flatten()  # the values of this array's lists only, even when sliced
    if values.null_count and kind is not np.float64:
        return typed_column(column.to_pylist(), "array<int>")  # ints with nulls: as Python's
    flat = values.to_numpy(zero_copy_only=False).astype(kind, copy=False)
    offsets = column.offsets.to_numpy()
    offsets = offsets - offsets[0]
    for row, piece in enumerate(np.split(flat, offsets[1:-1])):
        cells[row] = piece
    return cells
