"""Everything a reconcile pass needs besides the resource: settings and adapter factories.

The operator builds one from its command line (cli.py) and hands it to kopf as
the operator's memo, so handlers receive it as an argument; a unit test builds
one with fakes and runs a whole pass without any server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fink_core.connections import Address, KafkaConnection, Reader
from fink_core.science import Catalogue, shipped_catalogue
from fink_operator.claims import ClaimStore
from fink_operator.config import OperatorConfig
from fink_operator.events import EventSink
from fink_operator.job.render import JobConfig
from fink_operator.reconcile import TableAdmin, TopicAdmin

# writes the new status of a pipeline (second argument) over the status the body carries
# (the last one written); False when the write failed, anything else when it landed
StatusWriter = Callable[[Mapping[str, Any], Mapping[str, Any]], bool | None]


class PipelineLocks:
    """One pass at a time per pipeline; a lock is dropped when its pipeline is gone."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, uid: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(uid, threading.Lock())
        with lock:
            yield

    def forget(self, uid: str) -> None:
        with self._guard:
            self._locks.pop(uid, None)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class OperatorContext:
    config: OperatorConfig
    claims: ClaimStore
    events: EventSink
    kafka_admin: Callable[[KafkaConnection], TopicAdmin]
    hbase_admin: Callable[[Address], TableAdmin]
    # namespace -> (read_configmap, read_secret)
    readers: Callable[[str], tuple[Reader, Reader]]
    catalogue: Catalogue = field(default_factory=shipped_catalogue)
    locks: PipelineLocks = field(default_factory=PipelineLocks)
    job_config: JobConfig = field(default_factory=lambda: JobConfig(enabled=False))
    jobs: Any = None  # job.kube.KubernetesJobs (or a fake): the Spark job's adapter
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # the status each pipeline's last pass wrote: the operator is the only writer, and a
    # body from a watch event or a handler may be older than its own last write
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    # uids of pipelines being deleted or deleted: never passed again (passes.PipelineGone)
    gone: set[str] = field(default_factory=set)
    # None: the caller writes the status a pass returns (unit tests read it from the result)
    write_status: StatusWriter | None = None
    # namespace -> the ScienceFilter documents in it (their status included)
    filter_documents: Callable[[str], list[Mapping[str, Any]]] = field(default=lambda _: [])
    # the sink cluster -> its control-topic client (filter_channel.FilterChannel); None: no
    # ScienceFilters are handed to pipelines (unit tests without Kafka)
    filter_channel: Callable[[KafkaConnection], Any] | None = None
