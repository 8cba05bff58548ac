"""The pure parts of the stream, without servers: keys, cells, nights, the enriched codec, a
batch's science, the fault hook, the writer's bookkeeping and stop, the one-line failure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from fastavro.schema import fingerprint, to_parsing_canonical_form

from fink_core.connections import KafkaConnection
from fink_pipeline.science import plan_for
from fink_pipeline.stream import faults, rows, science_step
from fink_pipeline.stream.batch import BatchSinks, MicroBatchWriter, StopRequested
from fink_pipeline.stream.enriched import EnrichedCodec, enriched_schema
from fink_pipeline.stream.kafka_options import (
    SOURCE_FETCH_OPTIONS,
    java_client_settings,
    spark_source_options,
)
from fink_pipeline.stream.metrics import PipelineMetrics
from fink_pipeline.stream.runner import _finish_the_batch_in_flight, failure_message
from fink_pipeline.stream.science_step import HBaseTarget, ScienceStep, hbase_families
from fink_pipeline.stream.sinks import TransactionalKafka, dictionary_columns, readable_cause
from fink_pipeline.stream.task_outputs import BatchTally, driver_rows
from fink_pipeline.stream.thrift_mutations import binary_values


def cell_bytes(column: pd.Series) -> list[bytes | None]:
    """The cells the pipeline stores for one column, as Python bytes (None: not stored)."""
    return binary_values(rows.column_cells(column))


def test_row_keys_are_object_then_time_and_salting_is_stable() -> None:
    frame = pd.DataFrame(
        {"objectId": ["ZTF24abc", "ZTF24abd"], "jd": [2460000.51234567, 2460001.5]}
    )
    assert rows.row_keys(frame, "ztf") == [b"ZTF24abc_2460000.5123457", b"ZTF24abd_2460001.5000000"]
    salted = rows.row_keys(frame, "ztf", salt_digits=2)
    again = rows.row_keys(frame, "ztf", salt_digits=2)
    assert salted == again
    for key, plain in zip(salted, rows.row_keys(frame, "ztf"), strict=True):
        prefix, rest = key.split(b"_", 1)
        assert len(prefix) == 2 and prefix.isdigit() and rest == plain


def test_lsst_keys_fall_back_to_the_asteroid_or_the_source() -> None:
    frame = pd.DataFrame(
        {
            "diaObjectId": pd.array([42, None, None], dtype="Int64"),
            "ssObjectId": pd.array([None, 7, None], dtype="Int64"),
            "diaSourceId": [1, 2, 3],
            "midpointMjdTai": [60000.25, 60000.5, 60001.0],
        }
    )
    assert rows.row_keys(frame, "lsst") == [
        b"42_60000.2500000",
        b"sso7_60000.5000000",
        b"src3_60001.0000000",
    ]


def test_cells_are_text_and_nulls_are_not_stored() -> None:
    frame = pd.DataFrame(
        {
            "objectId": ["a"],
            "fid": np.array([2], dtype=np.int32),
            "magpsf": [18.25],
            "rb": [math.nan],
            "quality_ok": [True],
            "prv_magpsf": [np.array([19.0, np.nan])],
            "ssnamenr": [None],
        }
    )
    families = {
        "i": ["objectId", "fid", "magpsf", "rb", "prv_magpsf", "ssnamenr"],
        "d": ["quality_ok"],
    }
    (cells,) = rows.cells_by_row(rows.hbase_columns(frame, families), len(frame))
    assert cells == {
        b"i:objectId": b"a",
        b"i:fid": b"2",
        b"i:magpsf": b"18.25",
        b"i:prv_magpsf": b"[19.0, null]",
        b"d:quality_ok": b"true",
    }


def _every_kind_of_column() -> pd.DataFrame:
    """A column of each kind the alerts and the modules give the HBase rows."""
    return pd.DataFrame(
        {
            "f64": [18.25, math.nan, 1e-7, -0.0, math.inf, 2.0],
            "f32": np.array([0.1, 2.5, math.nan, 3.0, -1.0, 1e20], dtype=np.float32),
            "i64": np.array([1, -2, 3, 2**62, 0, 7], dtype=np.int64),
            "u8": np.array([0, 1, 2, 3, 255, 9], dtype=np.uint8),
            "flag": [True, False, True, False, True, False],
            "nullable_int": pd.array([1, None, 3, None, 5, 6], dtype="Int64"),
            "nullable_flag": pd.array([True, None, False, None, True, False], dtype="boolean"),
            "text": ["a", None, "é", "", "x", "y"],
            "history": [
                [19.0, 18.5],
                [19.0, math.nan],
                np.array([1.0, np.nan]),
                [1, None, True],
                [1e300, -2.5e-8, 3],
                [],
            ],
            "mixed": [1, 2.5, None, "s", np.float64(3.25), [math.inf]],
            # histories as the decoders give them: Python lists (None for a null) and
            # numpy arrays (NaN), which go through Arrow a column at a time
            "float_history": [
                [19.0, 18.5],
                [19.0, math.nan, None],
                np.array([1.0, np.nan]),
                np.array([0.1]),
                [],
                [2459000.123456789],
            ],
            "float32_history": [np.array([0.1, np.nan], dtype=np.float32)] * 3 + [[]] * 3,
            "int_history": [[1, 2], np.array([3], dtype=np.int32), [], [2**40], [0], [-1]],
            "int_among_floats": [[1.0], [2], [], [3.5], [], []],
        }
    )


def test_cells_built_a_column_at_a_time_are_the_bytes_of_cell_text() -> None:
    """The tasks' fast path must store exactly what the value-by-value rule says."""
    frame = _every_kind_of_column()
    for column in frame.columns:
        expected = [rows.cell_text(value) for value in frame[column].tolist()]
        assert cell_bytes(frame[column]) == expected, column
    # arrays take a fast path of their own inside cell_text: JSON as json.dumps writes it
    assert cell_bytes(frame["history"]) == [
        b"[19.0, 18.5]",
        b"[19.0, null]",
        b"[1.0, null]",
        b"[1, null, true]",
        b"[1e+300, -2.5e-08, 3]",
        b"[]",
    ]
    assert cell_bytes(frame["mixed"])[-1] == b"[Infinity]"
    for column in ("float_history", "float32_history", "int_history"):  # column-wide path
        column_wide = rows._json_array_texts(frame[column])
        assert column_wide is not None, column
        assert binary_values(column_wide) == cell_bytes(frame[column]), column
    assert cell_bytes(frame["float_history"])[1] == b"[19.0, null, null]"
    assert cell_bytes(frame["int_among_floats"])[1] == b"[2]"


def test_a_packed_record_holds_the_values_of_the_rows_cells_as_one_json_object() -> None:
    """layout: packed stores what the columns layout stores, one JSON object per family."""
    frame = _every_kind_of_column()
    families = {"i": list(frame.columns[:6]), "d": list(frame.columns[6:])}
    by_cell = rows.cells_by_row(rows.hbase_columns(frame, families), len(frame))
    packed = rows.cells_by_row(rows.packed_records(frame, families), len(frame))
    for position, (cells, records) in enumerate(zip(by_cell, packed, strict=True)):
        assert set(records) == {b"i:record", b"d:record"}
        for family, columns in families.items():
            record = json.loads(records[f"{family}:record".encode()])
            expected = {}
            for column in columns:
                cell = cells.get(f"{family}:{column}".encode())
                if cell is None:
                    continue
                value = frame[column].iloc[position]
                if isinstance(value, str):
                    expected[column] = cell.decode()
                elif cell in (b"inf", b"-inf"):
                    expected[column] = float(cell)
                else:
                    expected[column] = json.loads(cell)
            assert record == expected, (position, family)
    # a row whose family has no value at all has no cell
    empty = pd.DataFrame({"a": [1.5, math.nan], "b": ["x", None]})
    (_, column), *_ = rows.packed_records(empty, {"d": ["a", "b"]})
    assert column == [b'{"a":1.5,"b":"x"}', None]
    quoted = pd.DataFrame({'say "hi"': ['a "quote", a \\ and é']})
    (_, (text,)), *_ = rows.packed_records(quoted, {"i": ['say "hi"']})
    assert json.loads(text) == {'say "hi"': 'a "quote", a \\ and é'}


def test_texts_are_stored_and_quoted_as_value_by_value() -> None:
    """A column of texts goes through Arrow at once: its cells are the texts' UTF-8 bytes
    and its packed members json.dumps(text, ensure_ascii=False), for any text (quotes,
    backslashes, every control character, non-ASCII, astral), nulls not stored; a column
    mixing texts with anything else still goes value by value."""
    rng = np.random.default_rng(3)
    alphabet = [chr(c) for c in range(32)] + list('"\\/aZ é€😀\u2028\x7f')
    texts: list[Any] = [
        "".join(rng.choice(alphabet, size=int(rng.integers(0, 12)))) for _ in range(3_000)
    ]
    texts += ["ZTF26aaaaaaa"] * 50 + ["", None, math.nan]
    mixed = ["x", 1.5, b"raw", True]
    for values in (texts, texts[-53:], mixed):  # escapes, none, not only texts
        column = pd.Series(values, dtype=object)
        assert cell_bytes(column) == [rows.cell_text(v) for v in values]
        (_, records), *_ = rows.packed_records(pd.DataFrame({"t": column}), {"i": ["t"]})
        for value, record in zip(values, records, strict=True):
            member = rows._json_text(value)
            assert record == (None if member is None else f'{{"t":{member}}}'.encode()), value


def test_arrow_writes_every_float_as_repr_does() -> None:
    """Floats and histories are formatted by Arrow, whose texts differ from repr's in
    places (19 for 19.0, no exponent for 1e-05, one for 1.2e14); the mended texts must
    be repr's for any double: every decade of magnitude, random bit patterns (subnormals
    included), whole numbers, the edges of repr's fixed notation, NaN and infinities."""
    rng = np.random.default_rng(10)
    decades = rng.random(20_000) * 10.0 ** rng.integers(-320, 306, 20_000).astype(float)
    bits = rng.integers(0, 2**63, 20_000, dtype=np.int64).view(np.float64)
    whole = np.round(rng.normal(0, 1e9, 5_000))
    edges = [1e-4, np.nextafter(1e-4, 0), 1e16, np.nextafter(1e16, 0), 1e15 + 0.5, 5e-324]
    odd = [0.0, -0.0, math.nan, math.inf, -math.inf, 1.7976931348623157e308, 0.1 + 0.2]
    values = np.concatenate([decades, -decades, bits, whole, edges, odd, rng.normal(18, 2, 5_000)])
    assert cell_bytes(pd.Series(values)) == [rows.cell_text(v) for v in values]
    finite = values[np.isfinite(values)]
    histories = pd.Series([finite[i : i + 11] for i in range(0, len(finite), 11)])
    column_wide = rows._json_array_texts(histories)
    assert column_wide is not None
    assert binary_values(column_wide) == [rows.cell_text(h) for h in histories]
    # a packed record reads back as the very same doubles (NaN: no value; inf: Infinity)
    (_, records), *_ = rows.packed_records(pd.DataFrame({"x": values}), {"i": ["x"]})
    for value, record in zip(values.tolist(), records, strict=True):
        if math.isnan(value):
            assert record is None
        else:
            assert json.loads(record)["x"] == value, value


@pytest.mark.parametrize(
    ("jd", "night"),
    [
        (
            2460000.5,
            "20230224",
        ),  # 00:00 UTC on the 25th = 16:13 at Palomar on the 24th: that evening's night
        (2460000.95, "20230224"),  # 10:48 UTC = 03:00 at Palomar: still the night of the 24th
        (2460001.34, "20230225"),  # 20:10 UTC = noon at Palomar: the next night's date
    ],
)
def test_a_ztf_night_is_named_after_its_local_evening(jd: float, night: str) -> None:
    assert rows.nights(pd.DataFrame({"jd": [jd]}), "ztf").tolist() == [night]


def test_a_rubin_night_spanning_utc_midnight_is_one_night() -> None:
    evening = 60000.0 + 23.5 / 24  # 23:30 UTC = 19:30 in Chile
    morning = 60001.0 + 8.0 / 24  # 08:00 UTC = 04:00 in Chile, the same night
    frame = pd.DataFrame({"midpointMjdTai": [evening, morning]})
    assert rows.nights(frame, "lsst").nunique() == 1


def test_enriched_messages_carry_the_schema_fingerprint_and_round_trip() -> None:
    schema = enriched_schema(
        "ztf", {"objectId": "string", "prv_jd": "array<double>", "roid": "int"}
    )
    codec = EnrichedCodec(schema)
    record = {"objectId": "ZTF1", "prv_jd": [1.5, None], "roid": None, "fink_filters": ["x"]}
    message = codec.encode(record)
    expected = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    assert message[:2] == b"\xc3\x01" and message[2:10] == expected
    assert codec.decode(message) == record
    other = EnrichedCodec(enriched_schema("ztf", {"objectId": "string"}))
    with pytest.raises(ValueError, match="fingerprint"):
        other.decode(message)


def test_chunk_tallies_add_up_to_the_batch_and_its_ends_are_one_past_the_last_offset() -> None:
    frame = pd.DataFrame(
        {
            "_topic": ["t", "t", "t", "t", "t"],
            "_partition": [0, 1, 0, 1, 0],
            "_offset": [5, 9, 7, 10, 3],
            "_reject": [None, "corrupt", None, None, None],
        }
    )
    whole = BatchTally.of(frame)
    assert (whole.read, whole.good) == (5, 4)
    assert whole.ends() == {("t", 0): 8, ("t", 1): 11}
    assert whole.first == {("t", 0): 3, ("t", 1): 9}
    # the tasks' chunks, tallied apart and added on the driver: the same as the whole
    chunks = [BatchTally.of(frame.iloc[:2]), BatchTally.of(frame.iloc[2:]), BatchTally()]
    assert sum(chunks, BatchTally()) == whole
    assert BatchTally.of(frame.iloc[:0]) == BatchTally()


def test_the_driver_gets_rejects_and_timings_only() -> None:
    # alerts passing a filter reach it encoded, in the chunk's outbox (test_outbox.py)
    out = pd.DataFrame(
        {
            "_reject": [None, None, "corrupt", None, None],
            "_timings": ['{"decode": 0.1}', None, None, None, None],
            "pass_a": pd.array([False, True, None, False, False], dtype="boolean"),
        }
    )
    assert list(driver_rows(out).index) == [0, 2]


def test_alert_columns_go_to_the_first_family_science_to_the_second() -> None:
    plan = plan_for(
        "ztf", ["quality_cuts", "solar_system", "lightcurve_features"], ["fast_transients"]
    )
    two = hbase_families(plan, ["i", "d"])
    assert (
        "candid" in two["i"]
        and two["d"][0] == "quality_ok"
        and two["d"][-1] == "pass_fast_transients"
    )
    assert not set(two["i"]) & set(two["d"])
    one = hbase_families(plan, ["all"])
    assert set(one) == {"all"} and "candid" in one["all"] and "quality_ok" in one["all"]


def test_a_chunk_gives_one_row_per_message_good_or_rejected() -> None:
    generator = pytest.importorskip("fink_pipeline.alerts.generator")
    codec = pytest.importorskip("fink_pipeline.alerts.codec")
    plan = plan_for(
        "ztf", ["quality_cuts", "lightcurve_features", "solar_system"], ["new_sso_candidates"]
    )
    step = ScienceStep(plan)
    good = [codec.encode(a, "ztf") for a in generator.generate_alerts(40, "ztf", seed=3)]
    values = [*good[:20], b"not avro at all", *good[20:], None]
    raw = pd.DataFrame(
        {
            "value": values,
            "topic": "src",
            "partition": np.int32(1),
            "offset": np.arange(100, 100 + len(values), dtype=np.int64),
            "timestamp": pd.Timestamp("2026-11-25T12:00:00"),
        }
    )
    out = step.process(raw)
    assert list(out.columns) == list(step.output_columns)
    assert len(out) == len(values)
    assert sorted(out["_offset"]) == list(range(100, 100 + len(values)))
    rejected = out[out["_reject"].notna()]
    assert set(rejected["_offset"]) == {120, 100 + len(values) - 1}
    assert rejected.set_index("_offset").loc[120, "_raw"] == b"not avro at all"
    accepted = out[out["_reject"].isna()]
    assert accepted["candid"].notna().all() and accepted["pass_new_sso_candidates"].notna().all()
    timings = json.loads(out["_timings"].dropna().iloc[0])
    modules = {"decode", "quality_cuts", "lightcurve_features", "solar_system"}
    # and the prefix of the good containers, which the JVM may decode from the next batch
    assert set(timings) == {*modules, science_step.PREFIXES_KEY, science_step.DECODED_KEY}
    assert timings[science_step.DECODED_KEY] == {"jvm": 0, "python": 40}
    (prefix,) = timings[science_step.PREFIXES_KEY]
    assert values[0].startswith(bytes.fromhex(prefix)) and prefix.startswith(b"Obj\x01".hex())
    assert (out["_timestamp_ms"] == 1795608000000).all()

    # what the task hands Spark: the same rows, as one Arrow IPC value the driver opens
    (chunk,) = list(step(iter([pa.RecordBatch.from_pandas(raw, preserve_index=False)])))
    assert chunk.schema.names == [science_step.CHUNK_COLUMN] and chunk.num_rows == 1
    collected = step.rows_of(pa.table({science_step.CHUNK_COLUMN: [chunk.column(0)[0]] * 2}))
    assert collected.schema == step.arrow_schema() and collected.num_rows == 2 * len(values)
    back = collected.to_pandas(integer_object_nulls=True).iloc[: len(values)]

    def plain(column: pd.Series) -> list[Any]:
        return [None if v is None or v is pd.NA else v for v in column.tolist()]

    assert back["_offset"].tolist() == out["_offset"].tolist()
    assert back["_reject"].tolist() == out["_reject"].tolist()
    assert plain(back["pass_new_sso_candidates"]) == plain(out["pass_new_sso_candidates"])
    assert plain(back["candid"]) == plain(out["candid"])  # nullable Int64: nulls kept
    magnitudes = back["magpsf"].to_numpy(np.float64)
    assert np.array_equal(magnitudes, out["magpsf"].to_numpy(np.float64), equal_nan=True)
    assert step.rows_of(
        pa.table({science_step.CHUNK_COLUMN: pa.array([], pa.binary())})
    ).schema == (step.arrow_schema())


def test_every_type_a_module_or_an_alert_column_may_have_crosses_to_the_driver() -> None:
    from fink_core.science.catalogue import SPARK_TYPES
    from fink_pipeline.alerts.columns import columns_for

    kinds = {*SPARK_TYPES, *columns_for("ztf").values(), *columns_for("lsst").values()}
    for kind in kinds:
        assert science_step.arrow_type(kind) is not None
    assert science_step.arrow_type("array<double>") == pa.list_(pa.float64())
    with pytest.raises(ValueError, match="map<string,int>"):
        science_step.arrow_type("map<string,int>")


class CapturingWriter:
    """Stands for HBaseWriter: keeps the rows a task would put."""

    def __init__(self) -> None:
        self.rows: dict[bytes, dict[bytes, bytes]] = {}

    def put(self, keys: Any, columns: Any, batch_id: int | None = None) -> None:
        self.rows.update(zip(keys, rows.cells_by_row(columns, len(keys)), strict=True))


@pytest.mark.parametrize("stored", [True, False], ids=["store", "drop"])
def test_stored_cutouts_go_to_the_alerts_row_and_never_into_the_output(
    monkeypatch: pytest.MonkeyPatch, stored: bool
) -> None:
    from fink_pipeline.alerts import codec, generator

    plan = plan_for("ztf", ["quality_cuts"], [])
    families = tuple((f, tuple(c)) for f, c in hbase_families(plan, ["i", "d"]).items())
    target = HBaseTarget("h", 1, f"t_{stored}", families, cutouts=stored)
    writer = CapturingWriter()
    monkeypatch.setitem(science_step._HBASE_WRITERS, ("h", 1, f"t_{stored}"), writer)
    alerts = generator.generate_alerts(12, "ztf", seed=5)
    alerts += generator.generate_alerts(2, "ztf", seed=6, cutouts=False)
    values = [codec.encode(a, "ztf") for a in alerts]
    raw = pd.DataFrame(
        {
            "value": values,
            "topic": "src",
            "partition": np.int32(0),
            "offset": np.arange(len(values), dtype=np.int64),
            "timestamp": pd.Timestamp("2026-11-25T12:00:00"),
        }
    )
    step = ScienceStep(plan, target)
    out = step.process(raw)
    assert list(out.columns) == list(step.output_columns)  # the enriched schema did not grow
    assert out["_raw"].isna().all()
    assert len(writer.rows) == len(alerts)
    for alert in alerts:
        key = f"{alert['objectId']}_{alert['candidate']['jd']:.7f}".encode()
        row = writer.rows[key]
        assert row[b"i:candid"] == str(alert["candidate"]["candid"]).encode()
        stamps = {k: v for k, v in row.items() if k.startswith(b"cutouts:")}
        wanted = {}
        if stored and alert["cutoutScience"] is not None:
            wanted = {
                b"cutouts:science": alert["cutoutScience"]["stampData"],
                b"cutouts:template": alert["cutoutTemplate"]["stampData"],
                b"cutouts:difference": alert["cutoutDifference"]["stampData"],
            }
        assert stamps == wanted


def test_a_packed_pipeline_writes_one_record_per_family_with_every_value_of_its_cells(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fink_pipeline.alerts import codec, generator

    plan = plan_for("ztf", ["quality_cuts"], [])
    families = tuple((f, tuple(c)) for f, c in hbase_families(plan, ["i", "d"]).items())
    written = {}
    for layout in ("columns", "packed"):
        writer = CapturingWriter()
        monkeypatch.setitem(science_step._HBASE_WRITERS, ("h", 1, layout), writer)
        step = ScienceStep(plan, HBaseTarget("h", 1, layout, families, cutouts=True, layout=layout))
        values = [codec.encode(a, "ztf") for a in generator.generate_alerts(20, "ztf", seed=8)]
        raw = pd.DataFrame({"value": values, "topic": "src", "partition": np.int32(0)})
        raw["offset"] = np.arange(len(values), dtype=np.int64)
        raw["timestamp"] = pd.Timestamp("2026-11-25T12:00:00")
        step.process(raw)
        written[layout] = writer.rows
    assert written["packed"].keys() == written["columns"].keys()
    for key, packed in written["packed"].items():
        cells = written["columns"][key]
        stamps = {q for q in cells if q.startswith(b"cutouts:")}
        assert set(packed) == {b"i:record", b"d:record", *stamps}  # the cutouts as they were
        for family in ("i", "d"):
            record = json.loads(packed[f"{family}:record".encode()])
            prefix = f"{family}:".encode()
            assert {f"{family}:{name}".encode() for name in record} == {
                q for q in cells if q.startswith(prefix)
            }
        assert json.loads(packed[b"i:record"])["candid"] == int(cells[b"i:candid"])


# --- the fault hook (test machinery, so it must do exactly what the tests rely on) ---------


def test_a_fault_names_a_stage_a_first_batch_and_an_action() -> None:
    assert faults.parse("kafka-transaction@2:pause:30") == faults.Fault(
        "kafka-transaction", "pause", 30.0, 2
    )
    assert faults.parse("hbase-write:exit") == faults.Fault("hbase-write", "exit", 0.0, 0)
    for wrong in ("kafka:exit", "batch:pause", "batch:sleep:3", "batch@x:exit"):
        with pytest.raises(ValueError):
            faults.parse(wrong)


def test_a_fault_fires_at_its_stage_from_its_batch_on_and_marks_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.jsonl"
    monkeypatch.setenv(faults.ENV_FAULT, "batch@2:raise")
    monkeypatch.setenv(faults.ENV_MARKER, str(marker))
    faults.reached("hbase-write", 5)  # another stage
    faults.reached("batch", 1)  # before its batch
    assert not marker.exists()
    with pytest.raises(faults.FaultInjected, match="batch of micro-batch 3"):
        faults.reached("batch", 3)
    assert [json.loads(line) for line in marker.read_text().splitlines()] == [
        {"stage": "batch", "batch": 3, "pid": os.getpid()}
    ]
    monkeypatch.delenv(faults.ENV_FAULT)
    faults.reached("batch", 4)  # not configured: nothing at all


def test_a_paused_fault_goes_on_when_released(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.jsonl"
    monkeypatch.setenv(faults.ENV_FAULT, "kafka-transaction:pause:60")
    monkeypatch.setenv(faults.ENV_MARKER, str(marker))
    threading.Timer(0.5, faults.release_file(marker).touch).start()
    started = time.monotonic()
    faults.reached("kafka-transaction", 0)
    assert 0.4 < time.monotonic() - started < 10
    started = time.monotonic()
    faults.reached("kafka-transaction", 1)  # released: later firings do not wait
    assert time.monotonic() - started < 1


def test_an_exit_fault_ends_the_process_there(tmp_path: Path) -> None:
    marker = tmp_path / "marker.jsonl"
    code = "from fink_pipeline.stream import faults; faults.reached('batch', 0); print('after')"
    env = {**os.environ, faults.ENV_FAULT: "batch:exit", faults.ENV_MARKER: str(marker)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == faults.EXIT_CODE and "after" not in done.stdout
    assert json.loads(marker.read_text())["stage"] == "batch"


# --- the micro-batch writer's bookkeeping --------------------------------------------------


class FakeKafka:
    def __init__(self) -> None:
        self.delivered: list[Any] = []

    def committed(self, ends: Any) -> dict[tuple[str, int], int]:
        return {}

    def deliver(self, messages: Any, ends: Any, batch_id: int | None = None) -> None:
        self.delivered.append((messages, ends, batch_id))

    def bounds(self, partitions: Any) -> dict[tuple[str, int], tuple[int, int]]:
        return {tp: (0, 0) for tp in partitions}


class FailingRaw:
    """A micro-batch whose science fails (as a raising module or an unreachable HBase would)."""

    def __init__(self) -> None:
        self.calls = 0
        # where the writer makes the tasks' accumulator: a plain holder of its value
        accumulator = types.SimpleNamespace
        self.sparkSession = types.SimpleNamespace(
            sparkContext=types.SimpleNamespace(
                accumulator=lambda value, _: accumulator(value=value)
            )
        )

    def mapInArrow(self, step: Any, schema: str) -> Any:
        self.calls += 1
        raise ConnectionError("HBase Thrift server 127.0.0.1:9090 failed while writing")


def a_writer() -> tuple[MicroBatchWriter, FakeKafka]:
    plan = plan_for("ztf", ["quality_cuts"], [])
    step = ScienceStep(plan)
    codec = EnrichedCodec(enriched_schema("ztf", step.alert_columns))
    kafka = FakeKafka()
    sinks = BatchSinks(kafka=kafka, archive=None, dead_letter_topic="dead")  # type: ignore[arg-type]
    return MicroBatchWriter("p", step, codec, sinks, PipelineMetrics("p")), kafka


def outcomes(writer: MicroBatchWriter) -> dict[str, float]:
    samples = {
        s.labels["outcome"]: s.value
        for metric in writer.metrics.batches.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
    return samples


def test_a_failed_batch_is_counted_and_remembered_for_the_error_message() -> None:
    writer, kafka = a_writer()
    with pytest.raises(ConnectionError):
        writer(FailingRaw(), 3)
    assert outcomes(writer) == {"failed": 1.0}
    assert writer.failure is not None and writer.failure[0] == 3
    assert not kafka.delivered


def test_an_empty_batch_is_counted_as_empty_and_writes_nothing() -> None:
    writer, kafka = a_writer()
    empty = pd.DataFrame({c: [] for c in writer.step.output_columns})
    report = writer.write(empty, 4, time.monotonic())
    assert (report.read, report.replayed) == (0, False)
    assert outcomes(writer) == {"empty": 1.0} and not kafka.delivered


def test_a_batch_starting_while_the_pipeline_stops_is_refused_untouched() -> None:
    writer, kafka = a_writer()
    writer.stop_requested.set()
    raw = FailingRaw()
    with pytest.raises(StopRequested):
        writer(raw, 7)
    assert raw.calls == 0 and writer.refused == 7 and writer.failure is None
    assert outcomes(writer) == {} and not kafka.delivered


class FakeQuery:
    """A query whose trigger stays active for `busy` status reads."""

    def __init__(self, busy: int) -> None:
        self.busy, self.isActive, self.reads = busy, True, 0

    @property
    def status(self) -> dict[str, bool]:
        self.reads += 1
        return {"isTriggerActive": self.reads <= self.busy}


def test_a_stop_waits_for_the_batch_in_flight_and_refuses_the_next() -> None:
    writer, _ = a_writer()
    query = FakeQuery(busy=3)
    _finish_the_batch_in_flight(writer, query)
    assert query.reads == 4 and writer.stop_requested.is_set()


def test_a_failed_batch_is_reported_in_one_line_with_the_workers_own_error() -> None:
    spark_text = (
        "[PYTHON_EXCEPTION] An exception was thrown from the Python worker.\n"
        "Traceback (most recent call last):\n"
        '  File "/x/science_step.py", line 127, in process\n'
        "    _hbase_writer(self.hbase).put(keys, cells, self.batch_id)\n"
        "ConnectionError: HBase Thrift server 127.0.0.1:9090 failed while writing table t "
        "(micro-batch 2): refused\n"
        "\tat org.apache.spark.api.python.BasePythonRunner(PythonRunner.scala:600)\n"
    )
    message = failure_message((2, RuntimeError(spark_text)), None)
    assert message == (
        "micro-batch 2 failed: ConnectionError: HBase Thrift server 127.0.0.1:9090 failed "
        "while writing table t (micro-batch 2): refused"
    )
    driver_side = ConnectionError("Kafka at h:1: the transaction (micro-batch 5) failed: x")
    assert failure_message((5, driver_side), None) == (
        "micro-batch 5 failed: ConnectionError: Kafka at h:1: the transaction (micro-batch 5) "
        "failed: x"
    )
    assert failure_message(None, RuntimeError("source lost\nat Spark...")) == (
        "the streaming query failed: source lost"
    )


# --- credentials for Spark's Java Kafka client ---------------------------------------------


@pytest.mark.parametrize(
    ("cause", "readable"),
    [
        (
            "org.apache.hadoop.ipc.RemoteException(org.apache.hadoop.hdfs.protocol."
            "DSQuotaExceededException): The DiskSpace quota of /a is exceeded: quota = 1 MB",
            "DSQuotaExceededException: The DiskSpace quota of /a is exceeded: quota = 1 MB",
        ),
        ("java.io.IOException: No space left on device", "IOException: No space left on device"),
        (
            "java.net.ConnectException: Call to h:9000 failed: java.net.ConnectException: refused",
            "ConnectException: Call to h:9000 failed: java.net.ConnectException: refused",
        ),
        ("org.apache.hadoop.fs.FileAlreadyExistsException", "FileAlreadyExistsException"),
        ("not a class: a.b.C", "not a class: a.b.C"),
    ],
)
def test_an_archive_error_names_the_stores_own_exception_without_java_packages(
    cause: str, readable: str
) -> None:
    assert readable_cause(cause) == readable


def test_sasl_and_pem_credentials_become_the_java_clients_settings() -> None:
    connection = KafkaConnection(
        "k:9093",
        {
            "security.protocol": "sasl_ssl",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "fink",
            "sasl.password": 'p"w\\d',
            "ssl.ca.pem": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----",
            "ssl.certificate.pem": "CERT",
            "ssl.key.pem": "KEY",
            "ssl.key.password": "kp",
        },
    )
    assert spark_source_options(connection) == {
        "kafka.bootstrap.servers": "k:9093",
        **SOURCE_FETCH_OPTIONS,
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule "
        'required username="fink" password="p\\"w\\\\d";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.certificates": connection.settings["ssl.ca.pem"],
        "kafka.ssl.keystore.type": "PEM",
        "kafka.ssl.keystore.certificate.chain": "CERT",
        "kafka.ssl.keystore.key": "KEY",
        "kafka.ssl.key.password": "kp",
    }
    plain = java_client_settings({"sasl.username": "u", "sasl.password": "p"})
    assert plain == {
        "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="u" password="p";'
    }
    assert spark_source_options(KafkaConnection("h:1")) == {
        "kafka.bootstrap.servers": "h:1",
        "kafka.max.partition.fetch.bytes": str(8 << 20),
        "kafka.fetch.max.bytes": str(32 << 20),
        "kafka.receive.buffer.bytes": str(2 << 20),
    }


# --- Kafka right after a broker restart --------------------------------------------------


class SettlingConsumer:
    """A group coordinator that is still loading for its first `settling` answers."""

    def __init__(self, settling: int, code: int = KafkaError.NOT_COORDINATOR) -> None:
        self.settling, self.code, self.asked = settling, code, 0

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked += 1
        if self.asked <= self.settling:
            raise KafkaException(KafkaError(self.code))
        return [TopicPartition(tp.topic, tp.partition, 42) for tp in partitions]


def a_kafka_sink(consumer: SettlingConsumer) -> TransactionalKafka:
    sink = TransactionalKafka.__new__(TransactionalKafka)  # no broker: the consumer is fake
    sink.bootstrap, sink.group_id, sink.consumer = "h:1", "g", consumer  # type: ignore[assignment]
    sink.progress, sink.source_consumer = None, consumer  # type: ignore[assignment]
    return sink


def test_committed_offsets_are_asked_again_while_the_coordinator_settles() -> None:
    consumer = SettlingConsumer(settling=2)
    assert a_kafka_sink(consumer).committed({("t", 0): 5}) == {("t", 0): 42}
    assert consumer.asked == 3


def test_other_kafka_errors_name_the_broker_at_once() -> None:
    consumer = SettlingConsumer(settling=5, code=KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(ConnectionError, match="Kafka at h:1: could not read the offsets"):
        a_kafka_sink(consumer).committed({("t", 0): 5})
    assert consumer.asked == 1


def test_a_local_archive_dictionary_encodes_its_texts_only() -> None:
    schema = pa.schema(
        [
            ("objectId", pa.string()),
            ("prv_band", pa.list_(pa.string())),
            ("prv_jd", pa.list_(pa.float64())),
            ("ra", pa.float64()),
            ("_raw", pa.binary()),
        ]
    )
    assert dictionary_columns(schema) == ["objectId", "prv_band.list.element", "_raw"]
