"""The filter messages a batch's tasks encode (outbox.py), decoded back.

The tasks encode the alerts that passed a filter; the driver only fans them out to
the filters' topics. These tests run one real processed batch (processed_batch.py)
through the encoder and read every value back with the codecs consumers use. The
stream tests (test_stream_e2e.py, test_stream_science_filters.py) run the same
encoder inside Spark's tasks and count what reaches a real Kafka.
"""

from __future__ import annotations

import math
import pickle
import zlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
from processed_batch import FAST, SSO, document, science

from fink_core import spec as model
from fink_pipeline.stream.enriched import SINGLE_OBJECT_MARKER, EnrichedCodec, enriched_schema
from fink_pipeline.stream.fink_client_layout import FinkClientCodec
from fink_pipeline.stream.outbox import (
    OUTBOX_SCHEMA,
    SOURCE_TIMESTAMP_HEADER,
    FilterEncoder,
    passed_counts,
)
from fink_pipeline.stream.science_step import ScienceStep, pass_column


def both_layouts() -> model.PipelineSpec:
    """SSO to a fink-client topic, fast transients to a `fink` one."""
    return model.parse_pipeline(
        document(
            "ztf",
            [
                {"name": SSO, "topic": "sso", "layout": "fink-client"},
                {"name": FAST, "topic": "fast"},
            ],
        )
    )


def encoder_for(step: ScienceStep, spec: model.PipelineSpec) -> FilterEncoder:
    return FilterEncoder.of(
        step,
        {f.topic: f.layout for f in spec.filters},
        EnrichedCodec(enriched_schema(spec.survey, step.alert_columns)),
        FinkClientCodec(spec.survey, step.alert_columns),
    )


def encoded(count: int, seed: int) -> tuple[ScienceStep, pd.DataFrame, FilterEncoder]:
    """A processed batch's step, its good alerts and the encoder of its filters."""
    spec = both_layouts()
    step, frame = science("ztf", spec, count, seed=seed)
    good = frame[frame["_reject"].isna()].reset_index(drop=True)
    return step, good, encoder_for(step, spec)


def as_spark_holds_it(value: Any) -> Any:
    """A task's pandas value as Spark's column would hold it: NaN and NA are nulls."""
    if isinstance(value, np.ndarray | list):
        return [as_spark_holds_it(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def test_the_outbox_holds_each_passing_alert_once_with_its_filters_and_values() -> None:
    step, good, encoder = encoded(300, seed=5)

    outbox = encoder.encode(good)

    sso = good[pass_column(SSO)].to_numpy(bool)
    fast = good[pass_column(FAST)].to_numpy(bool)
    assert sso.any() and fast.any()
    expected = good[sso | fast]
    assert outbox.schema == OUTBOX_SCHEMA
    assert outbox.num_rows == len(expected)
    assert passed_counts(outbox, [SSO, FAST]) == {SSO: int(sso.sum()), FAST: int(fast.sum())}
    for row, (_, alert) in zip(outbox.to_pylist(), expected.iterrows(), strict=True):
        names = [n for n in (SSO, FAST) if alert[pass_column(n)]]
        assert row["filters"] == names
        assert row["key"] == alert["objectId"].encode()
        assert row["timestamp_ms"] == alert["_timestamp_ms"]
        # a value in each layout its topics need, and only those
        assert (row["fink"] is not None) == (FAST in names)
        assert (row["fink_client"] is not None) == (SSO in names)
        if row["fink"] is None:
            continue
        record = encoder.codec.decode(row["fink"])
        assert record["fink_filters"] == names
        for name, kind in step.alert_columns.items():
            want = as_spark_holds_it(alert[name])
            if kind == "float" and want is not None:  # Avro float: 32 bits
                assert record[name] == pytest.approx(want, rel=1e-6), name
            else:
                assert record[name] == want, name


def test_the_driver_fans_the_outbox_out_to_each_filters_topic() -> None:
    _, good, encoder = encoded(300, seed=5)
    outbox = encoder.encode(good)

    messages = encoder.messages(outbox, {"sso": 4})

    # per alert, in order, one message per filter it passed
    expected = [(r, n) for r in outbox.to_pylist() for n in r["filters"]]
    assert len(messages) == len(expected)
    assert sum(m.topic == "sso" for m in messages) == good[pass_column(SSO)].sum()
    assert sum(m.topic == "fast" for m in messages) == good[pass_column(FAST)].sum()
    assert encoder.client_codec is not None
    for message, (row, name) in zip(messages, expected, strict=True):
        headers = dict(message.headers)
        assert headers["fink-filter"] == name.encode()
        assert headers[SOURCE_TIMESTAMP_HEADER] == str(row["timestamp_ms"]).encode()
        if name == FAST:
            assert message.topic == "fast" and message.partition is None
            assert message.key == row["key"] and message.value == row["fink"]
            assert message.value.startswith(SINGLE_OBJECT_MARKER)
        else:  # fink-client's key is the schema; the partition follows the object's id
            assert message.topic == "sso" and message.key == encoder.client_codec.key
            assert message.value == row["fink_client"]
            assert message.partition == zlib.crc32(row["key"]) % 4


def test_the_encoder_survives_the_trip_to_the_tasks() -> None:
    _, good, encoder = encoded(120, seed=9)
    shipped = pickle.loads(pickle.dumps(encoder))
    assert shipped.encode(good).equals(encoder.encode(good))


def test_a_batch_where_nothing_passed_has_an_empty_outbox() -> None:
    _, good, encoder = encoded(60, seed=5)
    for name in (SSO, FAST):
        good[pass_column(name)] = pd.array([False] * len(good), dtype="boolean")
    outbox = encoder.encode(good)
    assert outbox.num_rows == 0 and outbox.schema == OUTBOX_SCHEMA
    assert passed_counts(outbox, [SSO, FAST]) == {SSO: 0, FAST: 0}


def test_a_fink_client_topic_needs_its_codec() -> None:
    step, _, _ = encoded(10, seed=5)
    codec = EnrichedCodec(enriched_schema("ztf", step.alert_columns))
    with pytest.raises(ValueError, match="fink-client layout"):
        FilterEncoder.of(step, {"sso": "fink-client"}, codec, None)
