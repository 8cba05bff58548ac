"""ScienceFilters in a running pipeline: loaded at micro-batch boundaries, run sandboxed, reported.

The driver reads the pipeline's control topic (fink_core.filter_control) before
each micro-batch; the filters found there join the batch's plan, so a filter
applied, changed, disabled or deleted takes effect at the next batch, with no
new image and no restart. A batch runs with one set of filters from start to
end: the built-in filters and every sink are untouched by the change, and
exactly-once holds (a replayed batch was either never committed or is skipped).

In the tasks, each filter runs in the Python worker's sandbox process
(fink_core.filters.sandbox): a filter that raises, loops, eats memory or reaches
for the network, files or programs is stopped there; the others carry on. The
tasks tell the driver through the chunk's timings. The call that failed passes
nothing (false flags); its other calls of the batch stand, so its topic gets
what the archive's `pass_<name>` says it passed: one truth, written by the tasks
before the driver knows of the failure. The driver then stops running it until
its next generation and reports it failed. Reports (generation, state, alerts passed,
last pass) go to the control topic inside the batch's Kafka transaction.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from fink_core.filter_control import (
    FAILED,
    LIVE,
    ControlState,
    FilterReport,
    LiveFilter,
    control_topic,
)
from fink_pipeline.science.registry import Filter

log = logging.getLogger(__name__)

FAILURE_TIMING = "failed:"  # timings key prefix a task uses to report a stopped filter
# the limits of one call of a filter on one chunk (Arrow batch) of alerts, in the sandbox;
# the driver reads them from its environment and ships them with the filters to the tasks
SECONDS_ENV = "FINK_SCIENCE_FILTER_SECONDS"
MEMORY_ENV = "FINK_SCIENCE_FILTER_MEMORY_MIB"
TOPIC_CHECK_SECONDS = 2.0  # how often a pipeline without a control topic looks for one
SECONDS_PER_CALL = 30.0
MEMORY_MIB = 2048
_FAILURE_REASONS = {
    "raised": "FilterRaised",
    "timeout": "FilterTimedOut",
    "memory": "FilterOutOfMemory",
    "forbidden": "FilterForbidden",
    "bad-result": "FilterBadResult",
    "crashed": "FilterCrashed",
}

# per Python worker: the sandbox process and the failures of the current chunk
_SANDBOX: Any = None
_LOADED: dict[str, int] = {}
CHUNK_FAILURES: dict[str, str] = {}


@dataclass(frozen=True)
class SandboxedFilter:
    """Picklable: what a task calls for one ScienceFilter (the Filter's function)."""

    name: str
    generation: int
    code: str
    entrypoint: str
    reads: tuple[str, ...]
    seconds_per_call: float = SECONDS_PER_CALL
    memory_mib: int = MEMORY_MIB

    def __call__(self, frame: pd.DataFrame) -> pd.Series:
        from fink_core.filters.sandbox import FilterFailure

        try:
            sandbox = _sandbox(self.seconds_per_call, self.memory_mib)
            if _LOADED.get(self.name) != self.generation:
                sandbox.load(self.name, self.code, self.entrypoint)
                _LOADED[self.name] = self.generation
            mask = sandbox.run(self.name, frame[list(self.reads)])
        except FilterFailure as failure:
            _LOADED.pop(self.name, None)
            CHUNK_FAILURES[self.name] = f"{failure.kind}: {failure.message}"
            return pd.Series(np.zeros(len(frame), dtype=bool), index=frame.index)
        return pd.Series(np.asarray(mask, dtype=bool), index=frame.index)


def _sandbox(seconds_per_call: float, memory_mib: int) -> Any:
    """The worker's sandbox; a new one when the limits changed (a restarted driver's)."""
    global _SANDBOX
    from fink_core.filters.sandbox import FilterSandbox, SandboxLimits

    limits = SandboxLimits(seconds_per_call=seconds_per_call, memory_bytes=memory_mib * 1024**2)
    if _SANDBOX is None or _SANDBOX.limits != limits:
        if _SANDBOX is not None:
            _SANDBOX.close()
        _SANDBOX = FilterSandbox(limits)
        _LOADED.clear()
    return _SANDBOX


def limits_from_environment(environ: Mapping[str, str]) -> tuple[float, int]:
    """(seconds per call, MiB) from the driver's environment, with the defaults."""
    seconds = float(environ.get(SECONDS_ENV) or SECONDS_PER_CALL)
    memory = int(environ.get(MEMORY_ENV) or MEMORY_MIB)
    if seconds <= 0 or memory <= 0:
        raise ValueError(f"{SECONDS_ENV} and {MEMORY_ENV} must be positive")
    return seconds, memory


def take_chunk_failures() -> dict[str, str]:
    """The filters stopped while this chunk ran (name -> "kind: message"), then forgotten."""
    failures = dict(CHUNK_FAILURES)
    CHUNK_FAILURES.clear()
    return failures


def stopped_in(timings: Iterable[str | None]) -> dict[str, str]:
    """ScienceFilters the tasks stopped, from their chunks' `_timings`: name -> "kind: message"."""
    stopped: dict[str, str] = {}
    for text in timings:
        if text is None:
            continue
        for key, value in json.loads(text).items():
            if key.startswith(FAILURE_TIMING):
                stopped.setdefault(key[len(FAILURE_TIMING) :], str(value))
    return stopped


def as_filter(live: LiveFilter, survey: str, limits: tuple[float, int]) -> Filter:
    return Filter(
        name=live.name,
        description=f"ScienceFilter {live.name} (generation {live.generation})",
        surveys=(survey,),
        reads=live.reads,
        function=SandboxedFilter(
            live.name, live.generation, live.code, live.entrypoint, live.reads, *limits
        ),
    )


class LiveFilters:
    """The driver's reader of the control topic and keeper of the filters' reports."""

    def __init__(
        self,
        pipeline: str,
        client_config: Mapping[str, str],
        limits: tuple[float, int] = (SECONDS_PER_CALL, MEMORY_MIB),
        timeout: float = 10.0,
    ):
        self.topic = control_topic(pipeline)
        self.limits = limits
        self.client_config = dict(client_config)
        self.timeout = timeout
        self.state = ControlState()
        self._consumer: Any = None
        self._topic_exists = False
        self._checked_at = -TOPIC_CHECK_SECONDS
        self._next_offset = 0
        self._stopped: dict[str, int] = {}  # name -> generation that failed: not run again

    def refresh(self) -> None:
        """Read what the operator added since the last batch; nothing if there is no topic yet."""
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        if self._consumer is None:
            self._consumer = Consumer(
                {
                    **self.client_config,
                    "group.id": f"{self.topic}-reader",  # never committed: assign() only
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                    # the end of the partition is told after the fetch wait: librdkafka's
                    # default (500 ms) would hold every batch that finds a new filter
                    "fetch.wait.max.ms": 10,
                }
            )
        if not self._topic_exists:
            # until the operator creates it (a pipeline with no ScienceFilter yet), ask the
            # broker at most every TOPIC_CHECK_SECONDS, with the one client kept open
            if time.monotonic() - self._checked_at < TOPIC_CHECK_SECONDS:
                return
            self._checked_at = time.monotonic()
            metadata = self._consumer.list_topics(self.topic, timeout=self.timeout)
            found = metadata.topics.get(self.topic)
            if found is None or found.error is not None:
                return
            self._topic_exists = True
        consumer = self._consumer
        partition = TopicPartition(self.topic, 0, self._next_offset)
        low, high = consumer.get_watermark_offsets(partition, timeout=self.timeout)
        if self._next_offset >= high:
            return
        partition.offset = max(self._next_offset, low)
        consumer.assign([partition])
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = consumer.poll(max(0.1, deadline - time.monotonic()))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._next_offset = message.offset()
                    break
                raise RuntimeError(f"control topic {self.topic}: {error}")
            self.state.apply(message.key(), message.value())
            self._next_offset = message.offset() + 1
        consumer.unassign()

    def running(self) -> list[LiveFilter]:
        """The filters the next batch runs: published, and not stopped in this generation."""
        return [
            f
            for name, f in sorted(self.state.filters.items())
            if self._stopped.get(name) != f.generation
        ]

    def plan_with(self, plan: Any) -> Any:
        """The pipeline's plan with the running ScienceFilters after its own filters."""
        extra = tuple((as_filter(f, plan.survey, self.limits), f.topic) for f in self.running())
        return replace(plan, filters=(*plan.filters, *extra)) if extra else plan

    def reports(
        self,
        ran: list[LiveFilter],
        passed: Mapping[str, int],
        failures: Mapping[str, str],
        now_ms: int,
    ) -> list[tuple[bytes, bytes]]:
        """Control-topic records for this batch (only what changed); also stops failed filters."""
        records = []
        for live in ran:
            old = self.state.reports.get(live.name)
            count = (old.alerts_passed if old else 0) + int(passed.get(live.name, 0))
            last = now_ms if passed.get(live.name) else (old.last_passed_ms if old else None)
            if live.name in failures:
                kind, _, message = failures[live.name].partition(": ")
                report = FilterReport(
                    live.name,
                    live.generation,
                    FAILED,
                    count,
                    last,
                    reason=_FAILURE_REASONS.get(kind, "FilterFailed"),
                    message=message,
                )
                self._stopped[live.name] = live.generation
                log.warning(
                    "ScienceFilter %s (generation %d) stopped: %s; the call that failed "
                    "passed nothing, and it runs again once its code changes",
                    live.name,
                    live.generation,
                    failures[live.name],
                )
            else:
                report = FilterReport(live.name, live.generation, LIVE, count, last)
            if report != old:
                records.append((report.key(), report.value()))
        return records

    def committed(self, records: list[tuple[bytes, bytes]]) -> None:
        """The batch's transaction committed: its reports are now the topic's."""
        for key, value in records:
            self.state.apply(key, value)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
