"""The control topic: how the operator hands ScienceFilters to a running pipeline, and hears back.

Each pipeline with ScienceFilters attached has a compacted topic
`<pipeline>-filters` on its sink cluster. Two kinds of records share it, told
apart by their key:

- `filter/<name>`: written by the operator once a filter is validated; the
  value is the filter (code, entrypoint, columns, topic, generation). A
  tombstone (no value) takes the filter out (deleted or disabled).
- `status/<name>`: written by the pipeline inside each micro-batch's Kafka
  transaction, when something changed: the generation it runs, live or
  failed (and why), alerts passed so far and when one last passed. Being in
  the transaction, the counts are exact: a batch that is replayed counts once.

Why a topic and not the Kubernetes API: the pipeline already speaks to this
Kafka in every batch (the local one-process runner too, with no cluster), it
reads the topic at a micro-batch boundary in milliseconds, and a restarted
driver finds the whole state there. Pure encoding only; the clients live in
the operator and the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

CONTROL_SUFFIX = "-filters"
FILTER_PREFIX = "filter/"
STATUS_PREFIX = "status/"
LIVE = "live"
FAILED = "failed"


def control_topic(pipeline: str) -> str:
    return f"{pipeline}{CONTROL_SUFFIX}"


@dataclass(frozen=True)
class LiveFilter:
    """A validated ScienceFilter as a pipeline runs it."""

    name: str
    generation: int
    code: str
    entrypoint: str
    reads: tuple[str, ...]
    topic: str
    layout: str = "fink"

    def key(self) -> bytes:
        return f"{FILTER_PREFIX}{self.name}".encode()

    def value(self) -> bytes:
        return json.dumps({**asdict(self), "reads": list(self.reads)}, sort_keys=True).encode()

    @classmethod
    def from_value(cls, value: bytes) -> LiveFilter:
        doc = json.loads(value)
        return cls(
            name=doc["name"],
            generation=int(doc["generation"]),
            code=doc["code"],
            entrypoint=doc["entrypoint"],
            reads=tuple(doc["reads"]),
            topic=doc["topic"],
            layout=doc.get("layout", "fink"),
        )


@dataclass(frozen=True)
class FilterReport:
    """What a pipeline says of one filter: which generation runs, how it fares."""

    name: str
    generation: int
    state: str  # LIVE or FAILED
    alerts_passed: int = 0
    last_passed_ms: int | None = None
    reason: str = ""  # FAILED: a CamelCase cause (FilterRaised, FilterTimedOut, ...)
    message: str = ""  # FAILED: what happened, for the scientist

    def key(self) -> bytes:
        return f"{STATUS_PREFIX}{self.name}".encode()

    def value(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_value(cls, value: bytes) -> FilterReport:
        doc = json.loads(value)
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


@dataclass
class ControlState:
    """The topic read up to some offset: the latest record per key wins, tombstones remove."""

    filters: dict[str, LiveFilter] = field(default_factory=dict)
    reports: dict[str, FilterReport] = field(default_factory=dict)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        text = key.decode(errors="replace")
        if text.startswith(FILTER_PREFIX):
            name = text[len(FILTER_PREFIX) :]
            if value is None:
                self.filters.pop(name, None)
            else:
                self.filters[name] = LiveFilter.from_value(value)
        elif text.startswith(STATUS_PREFIX):
            name = text[len(STATUS_PREFIX) :]
            if value is None:
                self.reports.pop(name, None)
            else:
                self.reports[name] = FilterReport.from_value(value)


def read_state(records: Iterable[tuple[bytes | None, bytes | None]]) -> ControlState:
    state = ControlState()
    for key, value in records:
        state.apply(key, value)
    return state


def changes(
    published: Mapping[str, LiveFilter], wanted: Mapping[str, LiveFilter]
) -> list[tuple[bytes, bytes | None]]:
    """The records that turn what the topic holds into what is wanted (tombstones included)."""
    records: list[tuple[bytes, bytes | None]] = []
    for name, live in sorted(wanted.items()):
        if published.get(name) != live:
            records.append((live.key(), live.value()))
    for name in sorted(set(published) - set(wanted)):
        records.append((f"{FILTER_PREFIX}{name}".encode(), None))
    return records
