"""ZTF alerts decoded in Spark's JVM give the rows the Python decoder gives (real Spark, spark-avro).

The JVM decodes only containers whose prefix the Python decoder reported (our
schema exactly, no codec) and that are whole; every other message (cut, with a
bad sync marker, trailing bytes, deflated, another schema, garbage, empty)
reaches the Python decoder with its bytes, which decodes or refuses it as
before. Either way the science step's rows are the same.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastavro import writer

from fink_pipeline.alerts import codec, generator
from fink_pipeline.alerts.columns import CUTOUT_COLUMNS, columns_for
from fink_pipeline.alerts.malformed import malformed_messages
from fink_pipeline.alerts.schemas import parsed_schema
from fink_pipeline.science import plan_for
from fink_pipeline.stream import jvm_decode
from fink_pipeline.stream.jvm_decode import DECODED, JvmDecoder, decoded_frame
from fink_pipeline.stream.science_step import PREFIXES_KEY, ScienceStep
from fink_pipeline.stream.warm_up import RAW_SCHEMA

MODULES = ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch", "snia_score"]
FILTERS = ["early_sn_candidates", "new_sso_candidates", "fast_transients"]


def stream() -> tuple[list[bytes | None], int]:
    """Messages of a ZTF stream, and how many of them the JVM may decode (the first ones)."""
    light = generator.generate_alerts(30, "ztf", seed=11, cutouts=False)
    full = generator.generate_alerts(6, "ztf", seed=12, cutouts=True)
    whole = [codec.encode(a, "ztf") for a in [*light, *full]]
    deflated = io.BytesIO()
    writer(deflated, parsed_schema("ztf"), [light[0]], codec="deflate")
    bad_sync = bytearray(whole[1])
    bad_sync[-1] ^= 0xFF
    huge = copy.deepcopy(full[0])  # a block over 1 MiB: its size takes 4 varint bytes
    huge["cutoutScience"]["stampData"] = bytes(range(256)) * 4500
    others: list[bytes | None] = [
        whole[2] + b"trailing bytes",  # the Python decoder reads it; the JVM does not trust it
        bytes(bad_sync),  # refused: the container's end is not its sync marker
        deflated.getvalue(),  # our schema, deflated: Python's
        codec.encode(huge, "ztf"),  # read by Python, whole
        wrong_block_size(whole[3]),  # refused: ends with its sync, but not after its block
        *(m for m, _ in malformed_messages(24, "ztf", seed=5)),  # cut ones among them
        b"",
        None,
    ]
    return [*whole, *others], len(whole)


def wrong_block_size(container: bytes) -> bytes:
    """The container with its block's size 16 bytes short (the same varint length)."""
    size_at = container.index(container[-16:]) + 16 + 1  # after the header's sync and count
    size = container[size_at] & 0x7F
    size |= (container[size_at + 1] & 0x7F) << 7
    assert container[size_at + 1] < 0x80  # a two-byte varint: a light alert's block
    shorter = ((size >> 1) - 16) << 1
    varint = bytes([shorter & 0x7F | 0x80, shorter >> 7])
    return container[:size_at] + varint + container[size_at + 2 :]


def raw_records(spark: Any, values: list[bytes | None]) -> Any:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    rows = [(v, "src", i % 2, i, now) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, RAW_SCHEMA).repartition(2)


def rows(spark_rows: Any, step: ScienceStep) -> tuple[list[dict[str, Any]], list[Any]]:
    """The step's rows by offset, NaN made comparable; and the chunks' timings apart."""
    table = step.rows_of(spark_rows.mapInArrow(step, schema=step.spark_schema()).toArrow())
    timings = [t for t in table.column("_timings").to_pylist() if t is not None]
    records = [
        {k: comparable(v) for k, v in r.items()}
        for r in table.drop_columns(["_timings"]).to_pylist()
    ]
    return sorted(records, key=lambda r: r["_offset"]), timings


def test_the_jvm_decodes_what_the_python_decoder_vouched_for_and_the_rows_do_not_change(
    spark: Any,
) -> None:
    values, trusted = stream()
    source = raw_records(spark, values)
    step = ScienceStep(plan_for("ztf", MODULES, FILTERS))
    decoder = JvmDecoder("ztf")
    assert decoder.columns(source) is source  # nothing learned yet: every message to Python

    in_python, timings = rows(source, step)
    reported = {p for t in timings for p in json.loads(t).get(PREFIXES_KEY, [])}
    assert decoder.learn(bytes.fromhex(p) for p in reported)
    (prefix,) = decoder.prefixes  # the deflated one is not reported: a codec
    assert values[0] is not None and values[0].startswith(prefix) and len(prefix) > 1000
    assert not decoder.learn([prefix])  # known already

    decoded = decoder.columns(source)
    flags = {r["offset"]: r[DECODED] for r in decoded.select("offset", DECODED).collect()}
    assert [o for o, jvm in sorted(flags.items()) if jvm] == list(range(trusted))
    sent = decoded.where(f"{DECODED} and value is not null").count()
    assert sent == 0  # the bytes of a decoded alert stay in the JVM

    in_jvm, _ = rows(decoded, step)
    assert len(in_jvm) == len(values)
    rejects = [r["_reject"].split(":")[0] for r in in_jvm if r["_reject"] is not None]
    assert len(rejects) == len(values) - trusted - 3  # trailing bytes, deflated, huge: read
    assert in_jvm == in_python


def test_the_jvm_gives_the_columns_and_cutouts_as_the_python_decoder_types_them(
    spark: Any,
) -> None:
    values, trusted = stream()
    decoder = JvmDecoder("ztf", cutouts=True)
    python = codec.decode_batch(values, "ztf", cutouts=True)
    decoder.learn(python.plain_prefixes)
    table = decoder.columns(raw_records(spark, values).coalesce(1)).toArrow()
    batch = table.combine_chunks().to_batches()[0]
    offsets = batch.column("offset").to_pylist()
    jvm = decoded_frame(batch, "ztf", cutouts=True)
    assert jvm is not None and len(jvm) == trusted
    jvm["_position"] = [offsets[p] for p in jvm["_position"]]  # back to the stream's order
    jvm = jvm.sort_values("_position").reset_index(drop=True)
    expected = python.frame.iloc[:trusted].reset_index(drop=True)
    assert list(jvm.columns) == list(expected.columns)
    assert [*columns_for("ztf"), *CUTOUT_COLUMNS] == list(jvm.columns[:-1])
    for name in expected.columns:
        assert jvm[name].dtype == expected[name].dtype, name
        assert _same(jvm[name].tolist(), expected[name].tolist()), name
    # a history is a numpy array (as Spark's mapInPandas gives it) from the JVM, a list
    # from Python; a null in it (an upper limit's magnitude) NaN in one, None in the other
    histories = [name for name, kind in columns_for("ztf").items() if kind.startswith("array")]
    assert histories and all(isinstance(v, np.ndarray) for n in histories for v in jvm[n])
    assert all(isinstance(v, list) for n in histories for v in expected[n])
    assert any(None in v for v in expected["prv_magpsf"])  # the case is in the stream
    stamps = [len(s or b"") for s in jvm["cutoutScience"]]
    assert sum(size > 5_000 for size in stamps) == 6  # the full-size packets' real stamps


def _same(left: list[Any], right: list[Any]) -> bool:
    """Equal values, a null in a history being None in a list and NaN in a numpy array."""
    return [_history_nulls(comparable(v)) for v in left] == [
        _history_nulls(comparable(v)) for v in right
    ]


def _history_nulls(value: Any) -> Any:
    return ["NaN" if v is None else v for v in value] if isinstance(value, list) else value


def comparable(value: Any) -> Any:
    """NaN equal to NaN (a null magnitude of an upper limit, a module's NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list | np.ndarray):
        return [comparable(v) for v in list(value)]
    return value


def test_the_jvm_reads_only_the_fields_the_columns_come_from() -> None:
    light = json.loads(jvm_decode.reader_schema(cutouts=False))
    fields = {f["name"]: f["type"] for f in light["fields"]}
    assert list(fields) == ["objectId", "candid", "candidate", "prv_candidates"]
    current = {f["name"] for f in fields["candidate"]["fields"]}
    history = {f["name"] for f in fields["prv_candidates"][1]["items"]["fields"]}
    assert len(history) == 5  # of the 21 of each past detection ZTF sends
    assert {"objectId", "candid"} | current | {f"prv_{n}" for n in history} == set(
        columns_for("ztf")
    )
    full = json.loads(jvm_decode.reader_schema(cutouts=True))
    assert [f["name"] for f in full["fields"]] == [*fields, *CUTOUT_COLUMNS]
    assert full["fields"][4]["type"][1]["fields"] == [{"name": "stampData", "type": "bytes"}]


def test_only_ztf_prefixes_are_learned_and_only_the_last_few() -> None:
    rubin = JvmDecoder("lsst")
    assert rubin.learn([b"Obj\x01abc"]) == [] and not rubin.active
    ztf = JvmDecoder("ztf")
    prefixes = [b"Obj\x01" + bytes([i]) for i in range(jvm_decode.MAX_PREFIXES + 3)]
    assert ztf.learn(prefixes) == prefixes and ztf.active
    assert ztf.prefixes == prefixes[-jvm_decode.MAX_PREFIXES :]


WITHOUT_SPARK_AVRO = """
import os, sys
os.environ["PYSPARK_PYTHON"] = sys.executable
from pyspark.sql import SparkSession
from fink_pipeline.alerts import codec, generator
from fink_pipeline.stream.jvm_decode import JvmDecoder
from fink_pipeline.stream.warm_up import RAW_SCHEMA, warm_up_rows

spark = (
    SparkSession.builder.master("local[1]")
    .config("spark.ui.enabled", "false")
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.driver.bindAddress", "127.0.0.1")
    .getOrCreate()
)
rows = warm_up_rows("ztf", 3)
source = spark.createDataFrame(rows, RAW_SCHEMA)
decoder = JvmDecoder("ztf")
decoder.learn(codec.decode_batch([r[0] for r in rows], "ztf").plain_prefixes)
assert decoder.active
assert decoder.columns(source) is source and decoder.unavailable and not decoder.active
print("python decodes", source.count())
"""


def test_without_spark_avro_the_python_workers_decode_everything(stack: Any) -> None:
    """A Spark without the spark-avro jar (its own JVM: this session's has the jar)."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SPARK_AVRO],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "python decodes 3" in done.stdout
    assert "Spark cannot decode Avro (is the spark-avro jar on its classpath?)" in done.stderr
