"""Compare desired with observed state and decide what to do. Pure: no I/O.

A plan either applies a change completely or refuses it with a reason and a
message saying what the user can do: an impossible change (fewer partitions, a
removed column family) is never half-applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fink_core.resources import FamilyState, TableState, TopicState
from fink_core.spec import CUTOUTS_FAMILY


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
    operator manages. Only topics this pipeline owns reach this point (see
    ownership.py): whether a topic may be touched at all is decided before.
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
    add: tuple[FamilyState, ...] = ()
    modify: tuple[tuple[FamilyState, FamilyState], ...] = ()  # (current, wanted)
    refusals: tuple[Refusal, ...] = field(default_factory=tuple)

    @property
    def changes(self) -> bool:
        return bool(self.create or self.add or self.modify)


def plan_table(
    desired: TableState | None,
    observed: Mapping[str, FamilyState] | None,
    layout: str | None = None,
) -> TablePlan:
    """Create a missing table; add and alter families in place; refuse removing one.

    Through HBase's Thrift2 gateway a family's versions, TTL, compression and
    bloom filter change in place (new settings apply to new files; HBase
    rewrites old ones at its next major compaction) and families can be added.
    A family the spec no longer lists is refused, never dropped: that would
    destroy its data. Region splits only apply at creation.
    `layout` is the one recorded on the existing table: a spec asking for the other
    is refused, as rows of two layouts in one table would mislead its readers.
    """
    if desired is None:
        return TablePlan()
    if observed is None:
        return TablePlan(create=desired)
    mismatch = desired.layout_mismatch(layout)
    if mismatch:
        return TablePlan(refusals=(Refusal(desired.name, "LayoutMismatch", mismatch),))
    wanted = {f.name: f for f in desired.families}
    refusals = tuple(
        Refusal(
            desired.name,
            "ColumnFamilyRemovalRefused",
            f"table {desired.name} has column family {name!r} that the spec no longer "
            f"lists: removing it would destroy its data, so the operator refuses; "
            f"{_put_back(name)} (or drop it yourself in the HBase "
            f"shell: alter '{desired.name}', 'delete' => '{name}')",
        )
        for name in sorted(set(observed) - set(wanted))
    )
    add = tuple(f for name, f in wanted.items() if name not in observed)
    modify = tuple(
        (observed[name], f)
        for name, f in wanted.items()
        if name in observed and observed[name] != f
    )
    return TablePlan(add=add, modify=modify, refusals=refusals)


def _put_back(family: str) -> str:
    """How the spec keeps a family: the cutouts' one comes from spec.sinks.hbase.cutouts."""
    if family == CUTOUTS_FAMILY:
        return "set spec.sinks.hbase.cutouts back to store (the family holds the cutouts it stored)"
    return "put it back in spec.sinks.hbase.columnFamilies"
