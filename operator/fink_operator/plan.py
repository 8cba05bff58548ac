"""Compare desired with observed state and decide what to do. Pure: no I/O.

A plan either applies a change completely or refuses it with a reason and a
message saying what the user can do: an impossible change (fewer partitions, a
removed column family) is never half-applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .desired import FamilyState, TableState, TopicState


@dataclass(frozen=True)
class Refusal:
    """A change the operator will not make; the user must edit the spec (or act by hand)."""

    subject: str  # topic or table name
    reason: str  # CamelCase, used as the condition reason
    message: str


@dataclass(frozen=True)
class TopicPlan:
    create: tuple[TopicState, ...] = ()
    grow: tuple[tuple[str, int, int], ...] = ()  # (topic, current, wanted) partitions
    reconfigure: tuple[tuple[str, Mapping[str, str]], ...] = ()  # (topic, configs to set)
    refusals: tuple[Refusal, ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.create or self.grow or self.reconfigure)


def plan_topics(desired: Iterable[TopicState], observed: Mapping[str, TopicState]) -> TopicPlan:
    """Decide topic by topic: create what is missing, grow, re-set drifted configs, or refuse.

    `observed` holds the topics that exist, with the values of the configs the
    operator manages; a topic that exists but is absent from the operator's
    records is adopted, as Strimzi does.
    """
    create: list[TopicState] = []
    grow: list[tuple[str, int, int]] = []
    reconfigure: list[tuple[str, Mapping[str, str]]] = []
    refusals: list[Refusal] = []
    for topic in desired:
        current = observed.get(topic.name)
        if current is None:
            create.append(topic)
            continue
        refused = _topic_refusals(topic, current)
        if refused:
            refusals.extend(refused)
            continue
        if topic.partitions > current.partitions:
            grow.append((topic.name, current.partitions, topic.partitions))
        drifted = {k: v for k, v in topic.config.items() if current.config.get(k) != v}
        if drifted:
            reconfigure.append((topic.name, drifted))
    return TopicPlan(tuple(create), tuple(grow), tuple(reconfigure), tuple(refusals))


def _topic_refusals(topic: TopicState, current: TopicState) -> list[Refusal]:
    refusals = []
    if topic.partitions < current.partitions:
        refusals.append(
            Refusal(
                topic.name,
                "PartitionDecreaseNotSupported",
                f"topic {topic.name} has {current.partitions} partitions and the spec asks "
                f"for {topic.partitions}: Kafka cannot remove partitions; set partitions to "
                f"at least {current.partitions}",
            )
        )
    if topic.replication_factor != current.replication_factor:
        refusals.append(
            Refusal(
                topic.name,
                "ReplicationFactorChangeNotSupported",
                f"topic {topic.name} has replication factor {current.replication_factor} and "
                f"the spec asks for {topic.replication_factor}: changing it needs a partition "
                f"reassignment, which the operator does not do; set it back to "
                f"{current.replication_factor}",
            )
        )
    return refusals


@dataclass(frozen=True)
class TablePlan:
    create: TableState | None = None
    refusals: tuple[Refusal, ...] = field(default_factory=tuple)


def plan_table(desired: TableState | None, observed: Mapping[str, FamilyState] | None) -> TablePlan:
    """Create a missing table; refuse any family change an existing table would need.

    HBase's Thrift gateway (what happybase speaks) cannot modify a table, and a
    removed family would lose its data, so every difference becomes a refusal
    whose message gives the HBase shell command that makes it true. Once the
    table matches, the next drift check clears the condition.
    """
    if desired is None:
        return TablePlan()
    if observed is None:
        return TablePlan(create=desired)
    refusals: list[Refusal] = []
    wanted = {f.name: f for f in desired.families}
    for name in sorted(set(observed) - set(wanted)):
        refusals.append(
            Refusal(
                desired.name,
                "ColumnFamilyRemovalRefused",
                f"table {desired.name} has column family {name!r} that the spec no longer "
                f"lists: removing it would destroy its data, so the operator refuses; put it "
                f"back in spec.sinks.hbase.columnFamilies (or drop it yourself in the HBase "
                f"shell: alter '{desired.name}', 'delete' => '{name}')",
            )
        )
    for name, family in wanted.items():
        current = observed.get(name)
        if current is None:
            refusals.append(
                Refusal(
                    desired.name,
                    "ColumnFamilyAdditionNotSupported",
                    f"table {desired.name} has no column family {name!r}: the HBase Thrift "
                    f"gateway cannot add one; run in the HBase shell: "
                    f"alter '{desired.name}', {_shell_family(family)}",
                )
            )
        elif current != family:
            refusals.append(
                Refusal(
                    desired.name,
                    "ColumnFamilyChangeNotSupported",
                    f"column family {name!r} of table {desired.name} has "
                    f"{_describe(current)}, the spec asks for {_describe(family)}: the HBase "
                    f"Thrift gateway cannot modify a table; run in the HBase shell: "
                    f"alter '{desired.name}', {_shell_family(family)}",
                )
            )
    return TablePlan(refusals=tuple(refusals))


def _describe(family: FamilyState) -> str:
    ttl = "no TTL" if family.ttl_seconds is None else f"TTL {family.ttl_seconds}s"
    return f"maxVersions {family.max_versions} and {ttl}"


def _shell_family(family: FamilyState) -> str:
    ttl = "'FOREVER'" if family.ttl_seconds is None else str(family.ttl_seconds)
    return f"{{NAME => '{family.name}', VERSIONS => {family.max_versions}, TTL => {ttl}}}"
