"""One reconcile pass: desired state -> observe -> plan -> apply -> outcome. No Kubernetes here.

The adapters are passed in (real ones in the operator, fakes in unit tests), and
the outcome says everything the handler must write back: conditions, owned
topics and tables, events, and whether a server was unreachable (retry).
Kafka and HBase are handled independently: one being down does not stop the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .conditions import TABLES_READY, TOPICS_READY, Condition, overall
from .desired import DesiredState, FamilyState, TableState, TopicState
from .errors import ServerRejected, ServerUnreachable
from .plan import Refusal, plan_table, plan_topics


class TopicAdmin(Protocol):
    def observe(
        self, names: Iterable[str], config_keys: Iterable[str]
    ) -> dict[str, TopicState]: ...
    def create(self, topics: Iterable[TopicState]) -> list[str]: ...
    def grow(self, changes: Iterable[tuple[str, int, int]]) -> None: ...
    def reconfigure(self, changes: Iterable[tuple[str, Mapping[str, str]]]) -> None: ...
    def delete(self, names: Iterable[str]) -> list[str]: ...


class TableAdmin(Protocol):
    def families(self, table: str) -> dict[str, FamilyState] | None: ...
    def create(self, table: TableState) -> bool: ...
    def drop(self, table: str) -> bool: ...


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """What a pass found and did; the handler turns it into status, events and metrics."""

    topics: Condition
    tables: Condition
    owned_topics: list[str] = field(default_factory=list)
    owned_tables: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    unreachable: list[ServerUnreachable] = field(default_factory=list)
    changed: bool = False

    @property
    def ready(self) -> Condition:
        return overall([self.topics, self.tables])


def reconcile(
    desired: DesiredState,
    topics: TopicAdmin | None,
    tables: TableAdmin | None,
    previously_owned: Mapping[str, Iterable[str]] | None = None,
) -> Outcome:
    """Bring Kafka and HBase to the desired state as far as possible, idempotently.

    `topics`/`tables` may be None when their connection could not even be set
    up; `previously_owned` (from status) is kept for a server that is unreachable.
    """
    previous = previously_owned or {}
    outcome = Outcome(
        topics=Condition(TOPICS_READY, None, "Pending", "not reconciled yet"),
        tables=Condition(TABLES_READY, None, "Pending", "not reconciled yet"),
    )
    if topics is not None:
        _reconcile_topics(desired, topics, outcome, list(previous.get("topics", ())))
    if tables is not None:
        _reconcile_table(desired, tables, outcome, list(previous.get("tables", ())))
    return outcome


def _reconcile_topics(
    desired: DesiredState, admin: TopicAdmin, outcome: Outcome, previous: list[str]
) -> None:
    keys = {k for t in desired.topics for k in t.config}
    observed: dict[str, TopicState] = {}
    try:
        observed = admin.observe(desired.topic_names, keys)
        plan = plan_topics(desired.topics, observed)
        created = admin.create(plan.create)
        admin.grow(plan.grow)
        admin.reconfigure(plan.reconfigure)
    except ServerUnreachable as error:
        outcome.unreachable.append(error)
        outcome.owned_topics = [t for t in previous if t in desired.topic_names]
        outcome.topics = Condition(TOPICS_READY, False, error.reason, str(error))
        return
    except ServerRejected as error:
        outcome.owned_topics = [t for t in desired.topic_names if t in observed]
        outcome.topics = Condition(TOPICS_READY, False, "KafkaRejected", str(error))
        outcome.events.append(Event("Warning", "KafkaRejected", str(error)))
        return
    outcome.changed |= plan.changes
    outcome.owned_topics = list(desired.topic_names)
    for name in created:
        topic = next(t for t in plan.create if t.name == name)
        outcome.events.append(
            Event(
                "Normal", "TopicCreated", f"created topic {name} ({_partitions(topic.partitions)})"
            )
        )
    for name, before, after in plan.grow:
        outcome.events.append(
            Event("Normal", "TopicChanged", f"topic {name}: {_partitions(before)} -> {after}")
        )
    for name, configs in plan.reconfigure:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(configs.items()))
        outcome.events.append(Event("Normal", "TopicChanged", f"topic {name}: set {settings}"))
    for name in sorted(set(previous) - set(desired.topic_names)):
        outcome.events.append(
            Event("Normal", "TopicReleased", f"topic {name} left the spec; it is kept, unmanaged")
        )
    outcome.topics = _refusal_condition(
        TOPICS_READY,
        plan.refusals,
        f"{len(desired.topics)} topic(s) exist as declared",
        outcome,
    )


def _reconcile_table(
    desired: DesiredState, admin: TableAdmin, outcome: Outcome, previous: list[str]
) -> None:
    if desired.table is None:
        outcome.tables = Condition(TABLES_READY, True, "NoTable", "the spec declares no HBase sink")
        return
    name = desired.table.name
    try:
        plan = plan_table(desired.table, admin.families(name))
        if plan.create is not None and admin.create(plan.create):
            outcome.changed = True
            families = ", ".join(f.name for f in plan.create.families)
            outcome.events.append(
                Event("Normal", "TableCreated", f"created table {name} (families {families})")
            )
    except ServerUnreachable as error:
        outcome.unreachable.append(error)
        outcome.owned_tables = [t for t in previous if t == name]
        outcome.tables = Condition(TABLES_READY, False, error.reason, str(error))
        return
    except ServerRejected as error:
        outcome.tables = Condition(TABLES_READY, False, "HBaseRejected", str(error))
        outcome.events.append(Event("Warning", "HBaseRejected", str(error)))
        return
    outcome.owned_tables = [name]
    outcome.tables = _refusal_condition(
        TABLES_READY, plan.refusals, f"table {name} exists as declared", outcome
    )


def _refusal_condition(
    kind: str, refusals: Iterable[Refusal], ok_message: str, outcome: Outcome
) -> Condition:
    refusals = list(refusals)
    if not refusals:
        return Condition(kind, True, "Reconciled", ok_message)
    for refusal in refusals:
        outcome.events.append(Event("Warning", refusal.reason, refusal.message))
    return Condition(
        kind, False, refusals[0].reason, "; ".join(refusal.message for refusal in refusals)
    )


@dataclass
class Cleanup:
    deleted_topics: list[str] = field(default_factory=list)
    dropped_tables: list[str] = field(default_factory=list)


def cleanup(
    desired: DesiredState,
    topics: TopicAdmin | None,
    tables: TableAdmin | None,
    owned: Mapping[str, Iterable[str]],
) -> Cleanup:
    """Delete what a pipeline with deletionPolicy Delete owns; raises ServerUnreachable to retry.

    Idempotent: a topic or table already gone counts as deleted, so a pass
    interrupted half-way finishes the job when retried.
    """
    result = Cleanup()
    names = sorted(set(desired.topic_names) | set(owned.get("topics", ())))
    if topics is not None and names:
        result.deleted_topics = topics.delete(names)
    table_names = set(owned.get("tables", ()))
    if desired.table is not None:
        table_names.add(desired.table.name)
    if tables is not None:
        result.dropped_tables = [t for t in sorted(table_names) if tables.drop(t)]
    return result


def _partitions(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"
