"""Generated alerts survive encode -> decode_batch; bad messages become categorised rejects."""

from __future__ import annotations

import io
import math
from typing import Any

import fastavro
import numpy as np
import pandas as pd
import pytest

from fink_pipeline.alerts import codec
from fink_pipeline.alerts.columns import CUTOUT_COLUMNS, columns_for
from fink_pipeline.alerts.generator import generate_alerts
from fink_pipeline.alerts.malformed import malformed_messages
from fink_pipeline.alerts.schemas import parsed_schema
from fink_pipeline.alerts.survey_encoder import SurveyEncoder


def close(decoded: Any, expected: Any) -> bool:
    if expected is None:
        return decoded is None or (isinstance(decoded, float) and math.isnan(decoded))
    if isinstance(expected, float):  # many ZTF fields are Avro floats (32 bits)
        return math.isclose(decoded, expected, rel_tol=1e-6, abs_tol=1e-6)
    return bool(decoded == expected)


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_round_trip_gives_back_the_flat_values(survey: str) -> None:
    alerts = generate_alerts(300, survey, seed=3)
    batch = codec.decode_batch([codec.encode(a, survey) for a in alerts], survey)
    assert batch.rejects == []
    frame = batch.frame
    assert list(frame.columns) == [*columns_for(survey), "_position"]
    assert frame["_position"].tolist() == list(range(300))
    for alert, row in zip(alerts, frame.to_dict("records"), strict=True):
        main = alert["candidate"] if survey == "ztf" else alert["diaSource"]
        history = (alert["prv_candidates"] if survey == "ztf" else alert["prvDiaSources"]) or []
        for column in columns_for(survey):
            if column.startswith("prv_"):
                values = [p[column[4:]] for p in history]
                assert len(row[column]) == len(values)
                assert all(close(d, e) for d, e in zip(row[column], values, strict=True)), column
            else:
                expected = alert[column] if column in ("objectId",) else main[column]
                assert close(row[column], expected), (column, row[column], expected)


def test_ztf_columns_have_pandas_types_and_upper_limits_keep_their_place() -> None:
    alerts = generate_alerts(500, "ztf", seed=4)
    frame = codec.decode_batch([codec.encode(a, "ztf") for a in alerts], "ztf").frame
    assert frame["jd"].dtype == np.float64 and frame["candid"].dtype == np.int64
    limits = [
        (jd, mag)
        for jds, mags in zip(frame["prv_jd"], frame["prv_magpsf"], strict=True)
        for jd, mag in zip(jds, mags, strict=True)
        if mag is None
    ]
    assert limits, "ZTF histories carry upper limits"
    assert all(jd > 0 for jd, _ in limits)
    empty = [a for a in alerts if a["prv_candidates"] is None]
    assert empty and all(
        len(row) == 0 for row in frame["prv_jd"][[a["prv_candidates"] is None for a in alerts]]
    )


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_bad_messages_are_rejected_by_category_and_neighbours_decode(survey: str) -> None:
    good = [codec.encode(a, survey) for a in generate_alerts(60, survey, seed=5)]
    bad = malformed_messages(40, survey, seed=5)
    # every category but too-large (a 4 MiB bomb: its own test below)
    assert {category for _, category in bad} == set(codec.CATEGORIES) - {codec.TOO_LARGE}
    values: list[bytes | None] = []
    expected: dict[int, str] = {}
    good_positions = []
    for i in range(100):
        if i % 5 in (1, 3) and bad:
            data, category = bad.pop()
            expected[len(values)] = category
            values.append(data)
        else:
            good_positions.append(len(values))
            values.append(good.pop())
    values.append(None)
    expected[len(values) - 1] = codec.NOT_AVRO
    batch = codec.decode_batch(values, survey)
    got = {r.position: r.reason for r in batch.rejects}
    assert {p: reason.split(": ", 1)[0] for p, reason in got.items()} == expected
    assert all(": " in reason and len(reason.split(": ", 1)[1]) > 5 for reason in got.values())
    assert batch.frame["_position"].tolist() == good_positions


def test_reasons_name_the_fault() -> None:
    reasons = [
        r.reason
        for r in codec.decode_batch(
            [m for m, _ in malformed_messages(16, "ztf", seed=1)], "ztf"
        ).rejects
    ]
    assert "missing-field: candidate.jd is null" in reasons
    assert "missing-field: objectId is missing" in reasons
    assert any(r.startswith("wrong-schema: Confluent wire-format") for r in reasons)
    assert any("weather.reading" in r for r in reasons)
    lsst = codec.decode_batch([b"\x00\x00\x00\x27\x0f" + b"\x02" * 30], "lsst").rejects
    assert lsst[0].reason == (
        "wrong-schema: unknown schema id 9999 (no registry configured; "
        "Rubin's official ids run from 300 to 1101)"
    )


def test_cutouts_are_decoded_only_when_asked_as_their_stamp_bytes() -> None:
    heavy = generate_alerts(40, "ztf", seed=4)
    light = generate_alerts(3, "ztf", seed=4, cutouts=False)
    messages = [codec.encode(a, "ztf") for a in heavy + light]
    messages.insert(7, b"garbage")
    default = codec.decode_batch(messages, "ztf").frame
    assert list(default.columns) == [*columns_for("ztf"), "_position"]  # never the stamps

    batch = codec.decode_batch(messages, "ztf", cutouts=True)
    assert [r.position for r in batch.rejects] == [7]
    frame = batch.frame
    assert list(frame.columns) == [*columns_for("ztf"), *CUTOUT_COLUMNS, "_position"]
    assert frame.drop(columns=list(CUTOUT_COLUMNS)).equals(default)
    for alert, row in zip(heavy + light, frame.to_dict("records"), strict=True):
        for name in CUTOUT_COLUMNS:
            cutout = alert[name]
            assert row[name] == (None if cutout is None else cutout["stampData"]), name
    assert all(
        isinstance(row[name], bytes)
        for row in frame.iloc[:40].to_dict("records")
        for name in CUTOUT_COLUMNS
    )
    empty = codec.decode_batch([], "ztf", cutouts=True).frame
    assert list(empty.columns) == [*columns_for("ztf"), *CUTOUT_COLUMNS, "_position"]


def test_an_empty_batch_has_the_columns() -> None:
    batch = codec.decode_batch([], "lsst")
    assert list(batch.frame.columns) == [*columns_for("lsst"), "_position"]
    assert len(batch.frame) == 0 and batch.rejects == []


def test_schema_json_is_the_schema() -> None:
    assert '"name": "alert"' in codec.schema_json("ztf")
    assert '"name": "lsst.v11_1.alert"' in codec.schema_json("lsst")


def test_each_survey_has_the_documented_columns() -> None:
    assert (len(columns_for("ztf")), len(columns_for("lsst"))) == (29, 15)


def test_wire_formats_are_a_one_record_container_and_confluents_framing() -> None:
    """ZTF: an Avro container, codec null, one record; LSST: 0x00, id 1101, the bare body."""
    ztf_alert, lsst_alert = generate_alerts(1, "ztf", 6)[0], generate_alerts(1, "lsst", 6)[0]
    ztf = codec.encode(ztf_alert, "ztf")
    assert ztf.startswith(b"Obj\x01")
    reader = fastavro.reader(io.BytesIO(ztf))
    assert reader.codec == "null"
    (record,) = list(reader)
    assert record["candid"] == ztf_alert["candid"]
    lsst = codec.encode(lsst_alert, "lsst")
    assert lsst[:5] == b"\x00" + (1101).to_bytes(4, "big")
    body = fastavro.schemaless_reader(io.BytesIO(lsst[5:]), parsed_schema("lsst"), None)
    assert body.keys() == lsst_alert.keys()
    assert body["diaSource"]["diaSourceId"] == lsst_alert["diaSourceId"]


def test_a_deflate_container_decodes_like_a_null_one() -> None:
    alerts = generate_alerts(20, "ztf", seed=8)
    deflated = []
    for alert in alerts:
        buffer = io.BytesIO()
        fastavro.writer(buffer, parsed_schema("ztf"), [alert], codec="deflate")
        deflated.append(buffer.getvalue())
    plain = codec.decode_batch([codec.encode(a, "ztf") for a in alerts], "ztf")
    batch = codec.decode_batch(deflated, "ztf")
    assert batch.rejects == []
    pd.testing.assert_frame_equal(batch.frame, plain.frame)


def test_parsed_container_headers_are_cached_at_most_64() -> None:
    """Each distinct header is parsed once and kept, at most 64 of them."""
    alert = generate_alerts(1, "ztf", seed=9)[0]
    values = []
    for i in range(codec.MAX_CACHED_HEADERS + 6):
        buffer = io.BytesIO()
        fastavro.writer(buffer, parsed_schema("ztf"), [alert], metadata={"n": str(i)})
        values.append(buffer.getvalue())
    batch = codec.decode_batch(values, "ztf")
    assert len(batch.frame) == len(values) and batch.rejects == []
    assert codec.MAX_CACHED_HEADERS == 64 and 0 < len(codec._HEADERS) <= 64


def test_a_decompression_bomb_is_refused_as_too_large_and_neighbours_decode() -> None:
    """A deflate container whose block inflates past the cap never reaches the worker's memory."""
    alerts = generate_alerts(3, "ztf", seed=12)
    good = [codec.encode(a, "ztf") for a in alerts]
    bomb_alert = dict(alerts[0])
    padding = b"\0" * (codec.MAX_INFLATED_BYTES + 1024)  # deflates to a few KB
    bomb_alert["cutoutScience"] = {"fileName": "bomb.fits.gz", "stampData": padding}
    buffer = io.BytesIO()
    fastavro.writer(buffer, parsed_schema("ztf"), [bomb_alert], codec="deflate")
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    decoded = codec.decode_batch([good[0], bomb, good[1], good[2]], "ztf")
    assert [r.position for r in decoded.rejects] == [1]
    assert decoded.rejects[0].category == "too-large"
    assert "inflates past 4194304 bytes" in decoded.rejects[0].reason
    assert decoded.frame["candid"].tolist() == [a["candid"] for a in alerts]


def test_rubin_cutouts_are_read_only_when_asked_in_every_version() -> None:
    """Rubin's cutouts are bare bytes fields: with cutouts=True they are the columns, in
    every official version (cutoutScience came with 6.1: null before); else skipped."""
    alerts = generate_alerts(6, "lsst", seed=4)
    assert all(isinstance(a["cutoutScience"], bytes) for a in alerts)
    encoder = SurveyEncoder("lsst", ["11.1", "6.0", "3.0"])
    messages = [encoder.encode(a) for a in alerts]
    default = codec.decode_batch(messages, "lsst").frame
    assert list(default.columns) == [*columns_for("lsst"), "_position"]
    frame = codec.decode_batch(messages, "lsst", cutouts=True).frame
    assert list(frame.columns) == [*columns_for("lsst"), *CUTOUT_COLUMNS, "_position"]
    assert frame.drop(columns=list(CUTOUT_COLUMNS)).equals(default)
    for i, (alert, row) in enumerate(zip(alerts, frame.to_dict("records"), strict=True)):
        assert row["cutoutTemplate"] == alert["cutoutTemplate"]
        assert row["cutoutDifference"] == alert["cutoutDifference"]
        assert row["cutoutScience"] == (alert["cutoutScience"] if i % 3 == 0 else None)
