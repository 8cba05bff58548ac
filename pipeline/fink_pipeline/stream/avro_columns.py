"""Avro binary encoding of a whole chunk of Arrow columns at once, record by record.

A filter topic's message is one enriched alert in Avro (enriched.py). fastavro
encodes a record from a dict of Python values: in a task, making those values
from the chunk's columns and walking them cost about 60 µs per alert that passed
a filter, a fifth of the Python workers' time on a light stream. The bytes of a
record are the bytes of its fields end to end, and those of one field can be
computed for every record at once from its Arrow column (a null union's branch,
a zigzag varint, an IEEE float, a string's length and UTF-8, an array's blocks),
then laid out record after record (`_joined`).

Only what the enriched schema uses is covered: fields that are a primitive, a
`["null", primitive]` union, or an array of either. `ColumnarAvro` refuses any
other schema (ValueError), so a caller can fall back to fastavro. The bytes are
fastavro's, byte for byte: test_avro_columns.py compares them on real chunks
and on every edge (nulls, NaN, extreme integers, empty and long arrays, UTF-8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa

_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "string")


@dataclass(frozen=True)
class _Part:
    """Some bytes of every record: each record's length, and the bytes end to end."""

    lengths: np.ndarray  # int64, one per record
    data: np.ndarray  # uint8

    @classmethod
    def fixed(cls, data: np.ndarray, width: int) -> _Part:
        """`width` bytes in every record (width > 0)."""
        return cls(np.full(len(data) // width, width, np.int64), data)


class ColumnarAvro:
    """Encodes the records of one Avro record schema from Arrow columns, all at once."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        if schema.get("type") != "record":
            raise ValueError("only a record schema is encoded by columns")
        self.fields = [(field["name"], _checked(field["type"])) for field in schema["fields"]]

    def encode(self, columns: Mapping[str, pa.Array], prefix: bytes = b"") -> list[bytes]:
        """Each record's bytes (`prefix` first), for columns holding every field.

        A column holds what fastavro would get from Arrow's `to_pylist()`: a null is
        an Avro null, NaN stays NaN."""
        count = len(columns[self.fields[0][0]]) if self.fields else 0
        parts = [_encoded(columns[name], kind) for name, kind in self.fields]
        if prefix:
            parts.insert(
                0, _Part.fixed(np.tile(np.frombuffer(prefix, np.uint8), count), len(prefix))
            )
        joined = _joined(parts, count)
        whole = joined.data.tobytes()
        ends = np.concatenate([[0], np.cumsum(joined.lengths)]).tolist()
        return [whole[start:end] for start, end in pairwise(ends)]


def _checked(kind: Any) -> Any:
    """The field's type, if this module encodes it."""
    if isinstance(kind, str) and kind in _PRIMITIVES:
        return kind
    if isinstance(kind, list) and len(kind) == 2 and kind[0] == "null" and kind[1] != "null":
        return ["null", _checked(kind[1])]
    if isinstance(kind, dict) and kind.get("type") == "array":
        items = _checked(kind["items"])
        if isinstance(items, dict):
            raise ValueError("arrays of arrays are not encoded by columns")
        return {"type": "array", "items": items}
    raise ValueError(f"Avro type {kind!r} is not encoded by columns")


def _encoded(column: pa.Array, kind: Any) -> _Part:
    if isinstance(kind, list):  # ["null", T]: branch 0 (null) or 1 (zigzag 2), then T
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        branch = _Part.fixed(np.where(valid, 2, 0).astype(np.uint8), 1)
        if valid.all():
            return _joined([branch, _encoded(column, kind[1])], len(column))
        present = _encoded(column.filter(pa.array(valid)), kind[1])
        return _joined([branch, _spread(present, valid)], len(column))
    if kind == "null":
        return _Part(np.zeros(len(column), np.int64), np.empty(0, np.uint8))
    if column.null_count:
        raise ValueError(f"a null in a column of non-null type {kind}")
    if isinstance(kind, dict):
        return _array(column, kind["items"])
    if kind == "boolean":
        return _Part.fixed(column.to_numpy(zero_copy_only=False).astype(np.uint8), 1)
    if kind in ("int", "long"):
        return _varints(column.to_numpy(zero_copy_only=False).astype(np.int64))
    if kind in ("float", "double"):
        width = 4 if kind == "float" else 8
        values = column.to_numpy(zero_copy_only=False).astype(f"<f{width}")
        return _Part.fixed(values.view(np.uint8), width)
    return _strings(column)


def _strings(column: pa.Array) -> _Part:
    """A string: its UTF-8 length as a long, then the bytes (Arrow's, as they are)."""
    texts = column.cast(pa.binary())
    _, offsets_buffer, data_buffer = texts.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32)[texts.offset : texts.offset + len(texts) + 1]
    data = (
        np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    )
    lengths = np.diff(offsets).astype(np.int64)
    body = _Part(lengths, data[offsets[0] : offsets[-1]] if len(offsets) else data[:0])
    return _joined([_varints(lengths), body], len(column))


def _array(column: pa.Array, items: Any) -> _Part:
    """An array: if not empty, one block (its count, then the items), then a 0 count."""
    offsets = column.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    counts = np.diff(offsets)
    values = column.flatten()  # the items of every array, end to end
    item_parts = _encoded(values, items)
    ends = np.concatenate([[0], np.cumsum(item_parts.lengths)])
    first = np.concatenate([[0], np.cumsum(counts)])
    item_bytes = _Part(ends[first[1:]] - ends[first[:-1]], item_parts.data)
    nonempty = counts > 0
    block_counts = _spread(_varints(counts[nonempty]), nonempty)
    end = _Part.fixed(np.zeros(len(column), np.uint8), 1)
    return _joined([block_counts, item_bytes, end], len(column))


def _varints(values: np.ndarray) -> _Part:
    """Avro's int and long: zigzag, then 7 bits a byte, low first, high bit = more follow."""
    zigzag = ((values << 1) ^ (values >> 63)).view(np.uint64)
    sizes = np.ones(len(values), np.int64)
    for k in range(1, 10):
        sizes += zigzag >= np.uint64(1 << (7 * k))
    width = int(sizes.max()) if len(values) else 1
    places = np.arange(width)
    groups = (zigzag[:, None] >> (places.astype(np.uint64) * np.uint64(7))[None, :]) & np.uint64(
        0x7F
    )
    groups |= (places[None, :] < sizes[:, None] - 1).astype(np.uint64) << np.uint64(7)
    return _Part(sizes, groups.astype(np.uint8)[places[None, :] < sizes[:, None]])


def _spread(part: _Part, present: np.ndarray) -> _Part:
    """A part of the records where `present`, as a part of all of them (none elsewhere)."""
    lengths = np.zeros(len(present), np.int64)
    lengths[present] = part.lengths
    return _Part(lengths, part.data)


def _joined(parts: Sequence[_Part], count: int) -> _Part:
    """The parts one after the other within each record, records end to end."""
    lengths = np.stack([p.lengths for p in parts], axis=1) if parts else np.zeros((count, 0))
    flat = lengths.ravel()
    starts = (np.cumsum(flat) - flat).reshape(lengths.shape)  # each part's place in the whole
    out = np.empty(int(flat.sum()), np.uint8)
    for j, part in enumerate(parts):
        if not len(part.data):
            continue
        if (part.lengths == part.lengths[0]).all():  # fixed width: a strided copy
            width = int(part.lengths[0])
            places = starts[:, j][:, None] + np.arange(width)[None, :]
            out[places.ravel()] = part.data
            continue
        sources = np.cumsum(part.lengths) - part.lengths
        places = np.repeat(starts[:, j] - sources, part.lengths) + np.arange(len(part.data))
        out[places] = part.data
    return _Part(lengths.sum(axis=1).astype(np.int64), out)
