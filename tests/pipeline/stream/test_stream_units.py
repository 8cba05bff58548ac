"""The pure parts of the stream, without servers: keys, cells, nights, the enriched codec, a batch's science."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from fink_pipeline.science import plan_for
from fink_pipeline.stream import rows
from fink_pipeline.stream.batch import source_ends
from fink_pipeline.stream.enriched import EnrichedCodec, enriched_schema
from fink_pipeline.stream.science_step import ScienceStep, hbase_families


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
    (cells,) = rows.hbase_cells(frame, families)
    assert cells == {
        b"i:objectId": b"a",
        b"i:fid": b"2",
        b"i:magpsf": b"18.25",
        b"i:prv_magpsf": b"[19.0, null]",
        b"d:quality_ok": b"true",
    }


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


def test_source_ends_are_one_past_the_last_offset_per_partition() -> None:
    frame = pd.DataFrame({"_topic": ["t", "t", "t"], "_partition": [0, 1, 0], "_offset": [5, 9, 7]})
    assert source_ends(frame) == {("t", 0): 8, ("t", 1): 10}


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
    assert set(timings) == {"decode", "quality_cuts", "lightcurve_features", "solar_system"}
    assert (out["_timestamp_ms"] == 1795608000000).all()
