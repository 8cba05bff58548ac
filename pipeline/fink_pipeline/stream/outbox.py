"""Filter-topic messages, encoded by the tasks that computed their alerts.

The driver sends a batch's messages in one Kafka transaction, after the tasks
and on one core, while the other cores wait for the next batch. Encoding there
(plain Python values, then Avro: about 70 µs per alert that passed a filter)
made that wait a tenth of a light stream's time. So each task encodes the
alerts of its chunks that passed a filter, in parallel, and hands the driver an
outbox (`OUTBOX_SCHEMA`): per alert, its key, its value in each layout its
topics need, the filters it passed and its source timestamp. The driver only
fans the outbox out to the filters' topics (`FilterEncoder.messages`): the
fink-client layout's partitions are asked of Kafka once per batch there.

The ScienceFilters' flags are final in the tasks (a call that failed passed
nothing: live_filters), so what the tasks encode is what the batch publishes.
Values are converted as the driver used to see them, through Arrow as pyspark
converts pandas (`arrow_columns`). The `fink` layout is then encoded a column
at a time (avro_columns.py: about 10 µs per alert where fastavro, record by
record, took 60), fink-client's nested layout record by record with fastavro;
either way a message's bytes are what they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fink_pipeline.alerts.columns import ALERT_ID, OBJECT_ID
from fink_pipeline.stream import fink_client_layout
from fink_pipeline.stream.enriched import FILTERS_FIELD, EnrichedCodec
from fink_pipeline.stream.fink_client_layout import FinkClientCodec, object_partition
from fink_pipeline.stream.science_step import ScienceStep, arrow_array, arrow_type, pass_column
from fink_pipeline.stream.sinks import OutgoingMessage

SOURCE_TIMESTAMP_HEADER = "fink-source-timestamp-ms"
FINK_LAYOUT = "fink"

OUTBOX_SCHEMA = pa.schema(
    [
        ("key", pa.binary()),  # the object's id (filter_message_keys)
        ("fink", pa.binary()),  # the value in the `fink` layout; null if no topic needs it
        ("fink_client", pa.binary()),  # in fink-client's layout; null if no topic needs it
        ("filters", pa.list_(pa.string())),  # the filters the alert passed, in the plan's order
        ("timestamp_ms", pa.int64()),  # the source message's timestamp
    ]
)


@dataclass(frozen=True)
class FilterEncoder:
    """What a batch's filter messages need: built on the driver, run in the tasks too.

    Picklable (the codecs hold parsed schemas only), so it rides in the tasks'
    function (task_outputs.SplitStep).
    """

    survey: str
    columns: Mapping[str, str]  # the alert's and the modules' columns, Spark SQL types
    filters: tuple[tuple[str, str], ...]  # (filter, topic), in the plan's order
    layouts: Mapping[str, str]  # topic -> layout
    codec: EnrichedCodec
    client_codec: FinkClientCodec | None

    @classmethod
    def of(
        cls,
        step: ScienceStep,
        layouts: Mapping[str, str],
        codec: EnrichedCodec,
        client_codec: FinkClientCodec | None,
    ) -> FilterEncoder:
        """The step's filters with their topics' layouts (a topic not named: `fink`)."""
        filters = tuple((f.name, topic) for f, topic in step.plan.filters)
        layout_of = {topic: layouts.get(topic, FINK_LAYOUT) for _, topic in filters}
        if fink_client_layout.LAYOUT in layout_of.values() and client_codec is None:
            raise ValueError("a topic has the fink-client layout: its codec is needed")
        return cls(
            step.plan.survey, dict(step.alert_columns), filters, layout_of, codec, client_codec
        )

    def client_topics(self) -> list[str]:
        return [t for t, layout in self.layouts.items() if layout == fink_client_layout.LAYOUT]

    def encode(self, good: pd.DataFrame) -> pa.Table:
        """The outbox of enriched alerts: one row per alert that passed a filter."""
        names = [name for name, _ in self.filters]
        flags = np.zeros((len(good), len(names)), dtype=bool)
        for j, name in enumerate(names):
            flags[:, j] = good[pass_column(name)].fillna(False).to_numpy(bool)
        selected = np.flatnonzero(flags.any(axis=1))
        if not len(selected):
            return OUTBOX_SCHEMA.empty_table()
        rows, flags = good.iloc[selected], flags[selected]
        columns = arrow_columns(rows, self.columns)
        passed = passed_lists(flags, names)
        keys = filter_message_keys(columns[OBJECT_ID[self.survey]], columns[ALERT_ID[self.survey]])
        # each alert is encoded once per layout its topics need
        layouts = np.array([self.layouts[topic] for _, topic in self.filters])
        values = _layout_values(
            columns,
            passed,
            (flags & (layouts == FINK_LAYOUT)).any(axis=1),
            self.codec.encode_columns,
        )
        client_values = _layout_values(
            columns,
            passed,
            (flags & (layouts == fink_client_layout.LAYOUT)).any(axis=1),
            self._client_values,
        )
        stamps = pa.array(rows["_timestamp_ms"].to_numpy(dtype=np.int64))
        values_arrays = [pa.array(v, pa.binary()) for v in (values, client_values)]
        return pa.Table.from_arrays([keys, *values_arrays, passed, stamps], schema=OUTBOX_SCHEMA)

    def _client_values(self, columns: Mapping[str, pa.Array]) -> list[bytes]:
        """fink-client's nested layout, record by record with fastavro."""
        assert self.client_codec is not None  # FilterEncoder.of
        return [self.client_codec.encode(r) for r in pa.table(columns).to_pylist()]

    def messages(self, outbox: pa.Table, partitions: Mapping[str, int]) -> list[OutgoingMessage]:
        """The outbox fanned out to the filters' topics (the driver's side).

        `partitions`: per fink-client topic, its partition count now (fink-client's
        key is the schema: the partition follows the object's id instead).
        """
        topic_of = dict(self.filters)
        messages = []
        for key, value, client_value, names, stamp in zip(
            *(outbox.column(f.name).to_pylist() for f in OUTBOX_SCHEMA), strict=True
        ):
            for name in names:
                topic = topic_of[name]
                headers = [
                    ("fink-filter", name.encode()),
                    (SOURCE_TIMESTAMP_HEADER, str(stamp).encode()),
                ]
                if self.layouts[topic] == fink_client_layout.LAYOUT:
                    assert self.client_codec is not None
                    partition = object_partition(key, partitions[topic])
                    messages.append(
                        OutgoingMessage(
                            topic, client_value, self.client_codec.key, headers, partition
                        )
                    )
                else:
                    messages.append(OutgoingMessage(topic, value, key, headers))
        return messages


def passed_counts(outbox: pa.Table, filters: list[str]) -> dict[str, int]:
    """Per filter, how many alerts of the outbox passed it (every filter named, 0 too)."""
    counts = Counter(name for names in outbox.column("filters").to_pylist() for name in names)
    return {name: counts[name] for name in filters}


def passed_lists(flags: np.ndarray, names: list[str]) -> pa.ListArray:
    """Per alert (a row of `flags`, a column per filter), the names of the filters it
    passed, in the plan's order."""
    _, which = np.nonzero(flags)  # row after row, each row's filters in order
    offsets = np.concatenate([[0], np.cumsum(flags.sum(axis=1))]).astype(np.int32)
    passed = pa.array(np.array(names, dtype=object)[which], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), passed)


def _layout_values(
    columns: Mapping[str, pa.Array],
    passed: pa.ListArray,
    wanted: np.ndarray,
    encode: Callable[[Mapping[str, pa.Array]], list[bytes]],
) -> list[bytes | None]:
    """Per alert, its value in one layout where `wanted`, else None."""
    values: list[bytes | None] = [None] * len(passed)
    if not wanted.any():
        return values
    mask = pa.array(wanted)
    subset = {name: column.filter(mask) for name, column in columns.items()}
    subset[FILTERS_FIELD] = passed.filter(mask)
    for position, value in zip(np.flatnonzero(wanted).tolist(), encode(subset), strict=True):
        values[position] = value
    return values


def arrow_columns(frame: pd.DataFrame, columns: Mapping[str, str]) -> dict[str, pa.Array]:
    """The frame's columns as Spark's would hold them, typed as `columns` says.

    Converted as pyspark converts pandas to Arrow (science_step.arrow_array: NaN
    and missing values are nulls, nested ones too, casts unchecked), whatever
    dtypes the modules left.
    """
    return {name: arrow_array(frame[name], arrow_type(kind)) for name, kind in columns.items()}


def plain_records(frame: pd.DataFrame, columns: Mapping[str, str]) -> list[dict[str, Any]]:
    """The rows as the plain Python values fastavro writes (arrow_columns, to_pylist)."""
    return pa.table(arrow_columns(frame, columns)).to_pylist()


def filter_message_keys(object_ids: pa.Array, alert_ids: pa.Array) -> pa.Array:
    """Per alert, the object's id, so its alerts share a partition, in order; the alert's
    id where it has no object. As text: a string id as it is, an integer in decimal.

    Every message has a key: a compacted topic refuses a message without one, and with
    it the whole transaction of the batch. (A Rubin diaSource of a known asteroid has
    no diaObject.)
    """
    texts = pc.coalesce(pc.cast(object_ids, pa.string()), pc.cast(alert_ids, pa.string()))
    return texts.cast(pa.binary())
