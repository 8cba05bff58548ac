"""Pure functions from enriched alerts to what the HBase and Parquet sinks store.

HBase rows: one row per alert under a deterministic key, so writing a batch
again (a restart replays the micro-batch it was in) rewrites the same cells
instead of adding rows. Cells hold UTF-8 text (numbers as Python writes them,
booleans as true/false, arrays as JSON) so that `hbase shell`, happybase and
any Thrift client read them without our code. Nulls are not stored.

With spec.sinks.hbase.layout `packed` a row holds one cell per family instead,
`family:record`, the family's fields as one JSON object with the same texts
(strings quoted): HBase's cost per row is set by its number of cells, and a light
alert has about 40.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fink_core.spec import CUTOUTS_FAMILY, PACKED_QUALIFIER
from fink_pipeline.alerts.columns import OBJECT_ID, TIME
from fink_pipeline.stream.thrift_mutations import CellColumn, binary_values

# each decoded cutout column -> its cell in the cutouts family of the alert's row
CUTOUT_QUALIFIERS = {
    "cutoutScience": f"{CUTOUTS_FAMILY}:science".encode(),
    "cutoutTemplate": f"{CUTOUTS_FAMILY}:template".encode(),
    "cutoutDifference": f"{CUTOUTS_FAMILY}:difference".encode(),
}

# Observatory longitudes (degrees east): a night is named after the local date
# on which it starts, so one night's alerts never straddle two partitions.
LONGITUDE_DEG = {"ztf": -116.8650, "lsst": -70.7494}
UNIX_EPOCH_JD = 2440587.5
MJD_OFFSET = 2400000.5
_REPR_FIXED_FROM = 1e-4  # repr writes smaller non-zero floats with an exponent


def row_keys(frame: pd.DataFrame, survey: str, salt_digits: int = 0) -> list[bytes]:
    """objectId_time keys (time with 7 decimals: ~10 ms), optionally salted.

    With salt_digits > 0 a key starts with the object's CRC32 modulo 10**digits,
    spreading a hot night over regions while keeping an object's alerts together.
    """
    objects = _object_names(frame, survey)
    times = frame[TIME[survey]].to_numpy(np.float64)
    keys = [f"{o}_{t:.7f}" for o, t in zip(objects, times, strict=True)]
    if salt_digits > 0:
        modulo = 10**salt_digits
        keys = [
            f"{zlib.crc32(o.encode()) % modulo:0{salt_digits}d}_{k}"
            for o, k in zip(objects, keys, strict=True)
        ]
    return [k.encode() for k in keys]


def _object_names(frame: pd.DataFrame, survey: str) -> list[str]:
    if survey == "ztf":
        return [str(o) for o in frame[OBJECT_ID[survey]]]
    # a Rubin diaSource of a known asteroid has no diaObject: name it by its SSO
    names = []
    for obj, sso, source in zip(
        frame["diaObjectId"], frame["ssObjectId"], frame["diaSourceId"], strict=True
    ):
        if not _is_null(obj):
            names.append(str(int(obj)))
        elif not _is_null(sso):
            names.append(f"sso{int(sso)}")
        else:
            names.append(f"src{int(source)}")
    return names


def hbase_columns(frame: pd.DataFrame, families: Mapping[str, Sequence[str]]) -> list[CellColumn]:
    """Each stored column's b"family:column" and its cells' bytes, one per row
    (None: a null, not stored); `families` maps a family to its columns.

    The same bytes as `cell_text` value by value, but a column at a time: the tasks
    build ~40 cells per alert, and per-value type dispatch cost about 100 µs of
    each alert's time in a task. They stay columns up to the Thrift call
    (thrift_mutations.py), with no object per cell on the way.
    """
    return [
        (f"{family}:{column}".encode(), column_cells(frame[column]))
        for family, columns in families.items()
        for column in columns
    ]


def packed_records(frame: pd.DataFrame, families: Mapping[str, Sequence[str]]) -> list[CellColumn]:
    """Each family's b"family:record" and its cells, one JSON object per row holding the
    row's non-null values of the family's columns (None: no value at all, not stored).

    Built a column at a time in Arrow, as hbase_columns' texts are: each column's
    `,"name":value` members (empty for a null), then every row's members end to end,
    its first comma cut. (Arrow's own null skipping while joining drops the rows whose
    members are all null, so the nulls are emptied first.)
    """
    records = []
    for family, columns in families.items():
        members = [
            pc.fill_null(
                pc.binary_join_element_wise(
                    f",{json.dumps(column)}:", _json_texts(frame[column]), ""
                ),
                "",
            )
            for column in columns
        ]
        texts = pa.nulls(len(frame), pa.string())
        if members and len(frame):
            joined = pc.binary_join_element_wise(*members, "")
            wrapped = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(joined, 1), "}", "")
            texts = pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), wrapped)
        records.append((f"{family}:{PACKED_QUALIFIER}".encode(), binary_values(texts)))
    return records


def _json_texts(column: pd.Series) -> pa.Array:
    """Each value's JSON text (null where nothing is stored): a number, true/false or an
    array as its cell in the columns layout, a string quoted."""
    kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else None
    if kind == "f":
        numbers = pa.array(column.to_numpy(np.float64), from_pandas=True)
        texts = _number_texts(numbers)
        if pc.any(pc.is_inf(numbers)).as_py():  # repr's inf: JSON readers know Infinity
            texts = pc.replace_substring_regex(texts, "^(-?)inf$", r"\1Infinity")
        return texts
    if kind in ("i", "u"):
        return pc.cast(pa.array(column.to_numpy()), pa.string())
    if kind == "b":
        return pc.if_else(pa.array(column.to_numpy()), "true", "false")
    histories = _json_array_texts(column)
    if histories is not None:
        return histories.cast(pa.string())
    strings = _strings(column)
    if strings is not None:
        return _json_strings(strings)
    return pa.array([_json_text(value) for value in column.tolist()], pa.string())


def _strings(column: pd.Series) -> pa.Array | None:
    """A column of texts (and nulls) as an Arrow string array; None when it holds
    anything else (numbers, lists, bytes that are not UTF-8), which goes value by value."""
    values = column.to_numpy(dtype=object)
    if not len(values):
        return None
    try:
        return pa.array(values, pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):  # a lone surrogate: as before
        return None


_JSON_ESCAPED = r'[\x00-\x1f"\\]'  # what json.dumps escapes when ensure_ascii=False


def _json_strings(strings: pa.Array) -> pa.Array:
    """json.dumps(text, ensure_ascii=False) of every text, nulls kept: quotes around it,
    and json.dumps itself for the few texts holding a quote, a backslash or a control."""
    quoted = pc.binary_join_element_wise('"', strings, '"', "")
    escaped = pc.fill_null(pc.match_substring_regex(strings, _JSON_ESCAPED), False)
    if not pc.any(escaped).as_py():
        return quoted
    texts = quoted.to_pylist()
    originals = strings.to_pylist()
    for position in np.flatnonzero(escaped.to_numpy(zero_copy_only=False)).tolist():
        texts[position] = json.dumps(originals[position], ensure_ascii=False)
    return pa.array(texts, pa.string())


def _json_text(value: Any) -> str | None:
    if _is_null(value):
        return None
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return json.dumps(value.decode("utf-8", "replace"), ensure_ascii=False)
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return json.dumps(float(value))  # Infinity, -Infinity
    text = cell_text(value)
    return None if text is None else text.decode()


def cells_by_row(columns: Sequence[CellColumn], rows: int) -> list[dict[bytes, bytes]]:
    """The cells of each row as {b"family:column": value}: what a reader of the table sees."""
    cells: list[dict[bytes, bytes]] = [{} for _ in range(rows)]
    for qualifier, values in columns:
        texts = binary_values(values) if isinstance(values, pa.Array) else values
        for row, value in zip(cells, texts, strict=True):
            if value is not None:
                row[qualifier] = value
    return cells


def column_cells(column: pd.Series) -> pa.Array:
    """cell_text of every value of one column, as Arrow texts (null: not stored), with one
    dispatch on its dtype; they stay in Arrow up to the Thrift call (thrift_mutations.py)."""
    kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else None
    if kind == "f":  # NaN: a null, not stored
        return _number_texts(pa.array(column.to_numpy(np.float64), from_pandas=True))
    if kind in ("i", "u"):
        return pc.cast(pa.array(column.to_numpy()), pa.string())
    if kind == "b":
        return pc.if_else(pa.array(column.to_numpy()), "true", "false")
    histories = _json_array_texts(column)
    if histories is not None:
        return histories
    strings = _strings(column)
    if strings is not None:
        return strings
    return pa.array([cell_text(value) for value in column.tolist()], pa.binary())


def _json_array_texts(column: pd.Series) -> pa.Array | None:
    """_json_array of every cell of a column of number lists (a history), or None when
    the column is not that (cell_text then goes value by value).

    Arrow lays the lists end to end and finds the nulls (None and NaN) for the whole
    column at once; only the numbers' texts are made one by one. Value by value, the
    histories' JSON cost about 45 µs of each light alert's time in a task.
    """
    cells = column.to_numpy(dtype=object)
    if not len(cells) or not all(isinstance(c, list | np.ndarray) for c in cells):
        return None
    try:
        lists = pa.array(cells, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed or non-numeric elements
        return None
    if not pa.types.is_list(lists.type):
        return None
    element = lists.type.value_type
    if not (pa.types.is_floating(element) or pa.types.is_integer(element)):
        return None  # e.g. lists that are all empty (null elements), or strings
    values = lists.flatten()
    if pa.types.is_floating(element):
        if np.isinf(values.to_numpy(zero_copy_only=False)).any():
            return None  # json.dumps writes Infinity
        if any(type(v) is int for cell in cells if isinstance(cell, list) for v in cell):
            return None  # an int among floats keeps its own text, as value by value
    texts = pc.fill_null(_number_texts(values), "null")
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, texts), ", ")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _number_texts(values: pa.Array) -> pa.Array:
    """Each number's text as repr() writes a float and str() an int, nulls kept.

    Arrow formats the whole array at once, with the shortest digits that read back
    as the same double, as repr does; where their texts differ it is mended: a whole
    float gets repr's ".0", and what Arrow writes with an exponent, what repr writes
    with one (below 1e-4), NaN and infinities are written by repr itself. Per value,
    repr cost most of the time spent on a light alert's HBase cells.
    """
    if pa.types.is_integer(values.type):
        return pc.cast(values, pa.string())
    doubles = pc.cast(values, pa.float64())
    texts = pc.cast(doubles, pa.string())
    numbers = doubles.to_numpy(zero_copy_only=False)  # a null is NaN here
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(numbers)
        by_repr = ~np.isfinite(numbers) | ((magnitude < _REPR_FIXED_FROM) & (magnitude != 0))
    by_repr &= ~doubles.is_null().to_numpy(zero_copy_only=False)
    by_repr |= pc.fill_null(pc.match_substring(texts, "e"), False).to_numpy(zero_copy_only=False)
    whole = pc.invert(pc.match_substring(texts, "."))  # Arrow writes 19.0 as 19
    if pc.any(whole).as_py():
        texts = pc.if_else(whole, pc.binary_join_element_wise(texts, ".0", ""), texts)
    if not by_repr.any():
        return texts
    patched = texts.to_pylist()
    for position in np.flatnonzero(by_repr).tolist():
        patched[position] = repr(float(numbers[position]))
    return pa.array(patched, pa.string())


def cutout_columns(stamps: pd.DataFrame) -> list[CellColumn]:
    """The stamps' cells in family "cutouts" of each alert's row: their bytes as they
    came (gzipped FITS), an absent cutout not stored."""
    return [
        (qualifier, [None if stamp is None else bytes(stamp) for stamp in stamps[column].tolist()])
        for column, qualifier in CUTOUT_QUALIFIERS.items()
    ]


def cell_text(value: Any) -> bytes | None:
    """The bytes stored for one value; None for a null, which is not stored."""
    if _is_null(value):
        return None
    if isinstance(value, bool | np.bool_):
        return b"true" if value else b"false"
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list | tuple | np.ndarray):
        return _json_array(value)
    if isinstance(value, float | np.floating):
        return repr(float(value)).encode()
    if isinstance(value, int | np.integer):
        return str(int(value)).encode()
    return str(value).encode()


def _json_array(value: list[Any] | tuple[Any, ...] | np.ndarray) -> bytes:
    """A JSON array; nulls and NaN as null.

    A light curve's history, finite floats and ints only (x - x == 0 rules out NaN
    and infinities), is written as json.dumps would write it, at a third of its cost.
    """
    items = value.tolist() if isinstance(value, np.ndarray) else list(value)
    if all((type(v) is float or type(v) is int) and v - v == 0 for v in items):
        return ("[" + ", ".join(map(repr, items)) + "]").encode()
    return json.dumps([_json_value(v) for v in items]).encode()


def _json_value(value: Any) -> Any:
    if _is_null(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def nights(frame: pd.DataFrame, survey: str) -> pd.Series:
    """The observing night (YYYYMMDD, local date at dusk) of each alert."""
    times = frame[TIME[survey]].to_numpy(np.float64)
    jd = times if survey == "ztf" else times + MJD_OFFSET
    # local solar time = UT + longitude/15 h; the night started on the local date 12 h earlier
    days = np.floor(jd - UNIX_EPOCH_JD + LONGITUDE_DEG[survey] / 360.0 - 0.5)
    dates = days.astype("int64").astype("datetime64[D]")
    return pd.Series(np.datetime_as_string(dates), index=frame.index).str.replace("-", "")
