"""One reconcile pass: desired state -> observe -> claim -> plan -> apply -> outcome.

No Kubernetes API and no real servers here: the Kafka and HBase adapters and
the claim store are passed in (real ones in the operator, fakes in unit
tests), and the outcome says everything the caller must write back:
conditions, owned topics and tables, events, and whether a server was
unreachable (retry). Kafka and HBase are handled independently: one being down
does not stop the other.

A topic or table is touched only once this pipeline holds its claim (see
ownership.py); an impossible change is refused with a reason and never
half-applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fink_core.errors import ServerRejected, ServerUnreachable
from fink_core.resources import FamilyState, ObservedTable, TableState, TopicState
from fink_operator.claims import ClaimStore
from fink_operator.conditions import TABLES_READY, TOPICS_READY, Condition, overall
from fink_operator.desired import DesiredState
from fink_operator.ownership import TABLE, TOPIC, Action, Claim, Verdict, decide
from fink_operator.plan import Refusal, plan_table, plan_topics


class TopicAdmin(Protocol):
    def cluster_id(self) -> str: ...
    def observe(
        self, names: Iterable[str], config_keys: Iterable[str]
    ) -> dict[str, TopicState]: ...
    def create(self, topics: Iterable[TopicState]) -> list[str]: ...
    def grow(self, changes: Iterable[tuple[str, int, int]]) -> None: ...
    def reconfigure(self, changes: Iterable[tuple[str, Mapping[str, str]]]) -> None: ...
    def delete(self, names: Iterable[str]) -> list[str]: ...


class TableAdmin(Protocol):
    def cluster_id(self) -> str: ...
    def observe(self, table: str) -> ObservedTable | None: ...
    def create(self, table: TableState, attributes: Mapping[str, str] | None = None) -> bool: ...
    def add_family(self, table: str, family: FamilyState) -> None: ...
    def modify_family(self, table: str, family: FamilyState) -> None: ...
    def drop(self, table: str) -> bool: ...


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """What a pass found and did; the caller turns it into status, events and metrics."""

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
    claims: ClaimStore,
    previously_owned: Mapping[str, Iterable[str]] | None = None,
) -> Outcome:
    """Bring Kafka and HBase to the desired state as far as this pipeline may, idempotently.

    `topics`/`tables` may be None when their connection could not even be set
    up; `previously_owned` (from status) is kept for a server that is unreachable.
    """
    previous = previously_owned or {}
    outcome = Outcome(
        topics=Condition(TOPICS_READY, None, "Pending", "not reconciled yet"),
        tables=Condition(TABLES_READY, None, "Pending", "not reconciled yet"),
    )
    mine = _Claims(claims, desired)
    if topics is not None:
        _reconcile_topics(desired, topics, mine, outcome, list(previous.get("topics", ())))
    if desired.resources.table is None:
        outcome.tables = Condition(TABLES_READY, True, "NoTable", "the spec declares no HBase sink")
        _release_tables(mine, outcome, keep=None)
    elif tables is not None:
        _reconcile_table(desired, tables, mine, outcome, list(previous.get("tables", ())))
    return outcome


class _Claims:
    """The claim store as one pass sees it: this pipeline's claims listed once."""

    def __init__(self, store: ClaimStore, desired: DesiredState) -> None:
        self.store = store
        self.me = desired.pipeline
        self.desired = desired
        self._owned: list[Claim] | None = None

    def owned(self) -> list[Claim]:
        if self._owned is None:
            self._owned = self.store.owned_by(self.me)
        return self._owned

    def verdict(
        self,
        kind: str,
        cluster: str,
        name: str,
        exists: bool,
        previously_owned: bool,
        look: bool = False,
    ) -> Verdict:
        """What this pipeline may do; `look` reads the store even for an absent resource.

        An absent resource that this pipeline has no claim on is most often new:
        the claim is then simply attempted (creating it is the atomic check), and
        only a refusal (409) makes the caller look at who holds it.
        """
        claim = next(
            (c for c in self.owned() if (c.kind, c.cluster, c.name) == (kind, cluster, name)),
            None,
        )
        if claim is None and (exists or look):
            claim = self.store.get(kind, cluster, name)
        alive = None
        if claim is not None and claim.owner.uid != self.me.uid:
            alive = self.store.owner_alive(claim.owner)
        adopt = self.desired.adopt.topics if kind == TOPIC else self.desired.adopt.tables
        return decide(
            kind,
            name,
            exists=exists,
            claim=claim,
            me=self.me,
            adopt_listed=name in adopt,
            previously_owned=previously_owned,
            owner_alive=alive,
        )

    def take(self, verdict: Verdict, cluster: str) -> bool:
        """Record the claim a verdict allows; False if another pipeline got there first."""
        if verdict.action is Action.MANAGE:
            return True
        claim = Claim(verdict.kind, cluster, verdict.name, self.me, adopted=verdict.adopted)
        if verdict.action is Action.TAKE_OVER and verdict.stale is not None:
            taken = self.store.replace(verdict.stale, claim)
        else:
            taken = self.store.create(claim)
        if taken and self._owned is not None:
            self._owned.append(claim)
        return taken


def _claim_all(
    mine: _Claims,
    kind: str,
    cluster: str,
    names: Sequence[str],
    existing: set[str],
    previous: set[str],
) -> list[Verdict]:
    """Verdicts for every name; refusals if any; claims taken only when none is refused."""
    verdicts = [mine.verdict(kind, cluster, n, n in existing, n in previous) for n in names]
    if any(v.refused for v in verdicts):
        return [v for v in verdicts if v.refused]
    refused: list[Verdict] = []
    for verdict in verdicts:
        if mine.take(verdict, cluster):
            continue
        # someone holds it: look who (a rival, or a stale claim we may replace) and retry once
        name = verdict.name
        again = mine.verdict(kind, cluster, name, name in existing, name in previous, look=True)
        if not again.refused and mine.take(again, cluster):
            continue
        refused.append(again if again.refused else _lost(again))
    return refused


def _lost(verdict: Verdict) -> Verdict:
    """A claim lost twice in a row to concurrent changes: report it, the next pass retries."""
    return Verdict(
        verdict.kind,
        verdict.name,
        Action.CONFLICT,
        f"{verdict.kind} {verdict.name} is being claimed concurrently; retrying",
    )


def _refused_condition(kind: str, verdicts: Sequence[Verdict]) -> Condition:
    return Condition(kind, False, verdicts[0].reason, "; ".join(v.message for v in verdicts))


def _reconcile_topics(
    desired: DesiredState,
    admin: TopicAdmin,
    mine: _Claims,
    outcome: Outcome,
    previous: list[str],
) -> None:
    wanted = desired.resources.topics
    names = desired.topic_names
    keys = {k for t in wanted for k in t.config}
    observed: dict[str, TopicState] = {}
    try:
        observed = admin.observe(names, keys)
        cluster = admin.cluster_id()
        refused = _claim_all(mine, TOPIC, cluster, names, set(observed), set(previous))
        if refused:
            outcome.owned_topics = [
                c.name for c in mine.owned() if c.kind == TOPIC and c.name in names
            ]
            outcome.topics = _refused_condition(TOPICS_READY, refused)
            return
        plan = plan_topics(wanted, observed)
        created = admin.create(plan.create)
        admin.grow(plan.grow)
        admin.reconfigure(plan.reconfigure)
    except ServerUnreachable as error:
        outcome.unreachable.append(error)
        outcome.owned_topics = [t for t in previous if t in names]
        outcome.topics = Condition(TOPICS_READY, False, error.reason, str(error))
        return
    except ServerRejected as error:
        outcome.owned_topics = [t for t in names if t in observed]
        outcome.topics = Condition(TOPICS_READY, False, "KafkaRejected", str(error))
        outcome.events.append(Event("Warning", "KafkaRejected", str(error)))
        return
    outcome.changed |= plan.changes
    outcome.owned_topics = list(names)
    if created:
        described = ", ".join(
            f"{t.name} ({_partitions(t.partitions)})" for t in plan.create if t.name in created
        )
        outcome.events.append(Event("Normal", "TopicCreated", f"created topic(s) {described}"))
    changes = [f"{name}: {_partitions(before)} -> {after}" for name, before, after in plan.grow]
    changes += [
        f"{name}: set {', '.join(f'{k}={v}' for k, v in sorted(configs.items()))}"
        for name, configs in plan.reconfigure
    ]
    if changes:
        outcome.events.append(Event("Normal", "TopicChanged", "; ".join(changes)))
    _release_topics(mine, outcome, keep=set(names), cluster=cluster)
    outcome.topics = _refusal_condition(
        TOPICS_READY, plan.refusals, f"{len(wanted)} topic(s) exist as declared", outcome
    )


def _release_topics(mine: _Claims, outcome: Outcome, keep: set[str], cluster: str) -> None:
    """Claims of topics that left the spec are released: the topic stays, unmanaged."""
    released = []
    for claim in mine.owned():
        if claim.kind == TOPIC and (claim.cluster != cluster or claim.name not in keep):
            mine.store.release(claim)
            released.append(claim.name)
    if released:
        outcome.events.append(
            Event(
                "Normal",
                "TopicReleased",
                f"topic(s) {', '.join(sorted(released))} left the spec; kept, no longer managed",
            )
        )


def _release_tables(mine: _Claims, outcome: Outcome, keep: str | None) -> None:
    for claim in mine.owned():
        if claim.kind == TABLE and claim.name != keep:
            mine.store.release(claim)
            outcome.events.append(
                Event(
                    "Normal",
                    "TableReleased",
                    f"table {claim.name} left the spec; kept, no longer managed",
                )
            )


def _reconcile_table(
    desired: DesiredState,
    admin: TableAdmin,
    mine: _Claims,
    outcome: Outcome,
    previous: list[str],
) -> None:
    table = desired.resources.table
    assert table is not None
    name = table.name
    observed: dict[str, FamilyState] | None = None
    try:
        found = admin.observe(name)
        observed = found.families if found is not None else None
        cluster = admin.cluster_id()
        refused = _claim_all(
            mine, TABLE, cluster, [name], {name} if observed is not None else set(), set(previous)
        )
        if refused:
            outcome.tables = _refused_condition(TABLES_READY, refused)
            return
        plan = plan_table(table, observed, found.layout if found is not None else None)
        if plan.create is not None:
            owner = desired.pipeline
            if admin.create(plan.create, {"fink.broker.dev/owner": f"{owner} ({owner.uid})"}):
                outcome.changed = True
                families = ", ".join(f.name for f in plan.create.families)
                regions = len(plan.create.split_keys) + 1
                outcome.events.append(
                    Event(
                        "Normal",
                        "TableCreated",
                        f"created table {name} (families {families}; {regions} region(s))",
                    )
                )
        elif not plan.refusals and (plan.add or plan.modify):
            for family in plan.add:
                admin.add_family(name, family)
            for _, family in plan.modify:
                admin.modify_family(name, family)
            outcome.changed = True
            described = [f"added family {f.name} ({f.describe()})" for f in plan.add]
            described += [
                f"family {new.name}: {old.describe()} -> {new.describe()}"
                for old, new in plan.modify
            ]
            outcome.events.append(
                Event("Normal", "TableChanged", f"{name}: {'; '.join(described)}")
            )
    except ServerUnreachable as error:
        outcome.unreachable.append(error)
        outcome.owned_tables = [t for t in previous if t == name]
        outcome.tables = Condition(TABLES_READY, False, error.reason, str(error))
        return
    except ServerRejected as error:
        outcome.owned_tables = [name] if observed is not None else []
        outcome.tables = Condition(TABLES_READY, False, "HBaseRejected", str(error))
        outcome.events.append(Event("Warning", "HBaseRejected", str(error)))
        return
    outcome.owned_tables = [name]
    _release_tables(mine, outcome, keep=name)
    outcome.tables = _refusal_condition(
        TABLES_READY, plan.refusals, f"table {name} exists as declared", outcome
    )


def _refusal_condition(
    kind: str, refusals: Iterable[Refusal], ok_message: str, outcome: Outcome
) -> Condition:
    refusals = list(refusals)
    if not refusals:
        return Condition(kind, True, "Reconciled", ok_message)
    return Condition(
        kind, False, refusals[0].reason, "; ".join(refusal.message for refusal in refusals)
    )


@dataclass
class Cleanup:
    deleted_topics: list[str] = field(default_factory=list)
    dropped_tables: list[str] = field(default_factory=list)
    deleted_claims: list[str] = field(default_factory=list)  # the job's volume


def cleanup(
    desired: DesiredState,
    topics: TopicAdmin | None,
    tables: TableAdmin | None,
    claims: ClaimStore,
) -> Cleanup:
    """Delete what a pipeline with deletionPolicy Delete owns, and only that; then release.

    Only topics and tables this pipeline holds a claim on are deleted, whatever
    its spec or status says. Idempotent: something already gone counts as
    deleted, so a pass interrupted half-way finishes when retried. Raises
    ServerUnreachable to retry.
    """
    result = Cleanup()
    owned = claims.owned_by(desired.pipeline)
    topic_claims = [c for c in owned if c.kind == TOPIC]
    table_claims = [c for c in owned if c.kind == TABLE]
    if topics is not None and topic_claims:
        cluster = topics.cluster_id()
        mine = [c for c in topic_claims if c.cluster == cluster]
        if mine:
            result.deleted_topics = topics.delete(sorted(c.name for c in mine))
        for claim in mine:
            claims.release(claim)
    if tables is not None and table_claims:
        cluster = tables.cluster_id()
        for claim in (c for c in table_claims if c.cluster == cluster):
            if tables.drop(claim.name):
                result.dropped_tables.append(claim.name)
            claims.release(claim)
    return result


def release_all(claims: ClaimStore, desired: DesiredState) -> list[Claim]:
    """A Retain pipeline is gone: its topics and tables stay, and become nobody's."""
    owned = claims.owned_by(desired.pipeline)
    for claim in owned:
        claims.release(claim)
    return owned


def _partitions(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"
