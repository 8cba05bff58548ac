"""Plans: grow and re-set what may change; refuse (completely) what cannot."""

from __future__ import annotations

from fink_core.resources import FamilyState, TableState, TopicState
from fink_operator.plan import plan_table, plan_topics

R = "retention.ms"


def topic(name: str = "t", partitions: int = 1, rf: int = 1, **config: str) -> TopicState:
    return TopicState(name, partitions, rf, {R: "100", **config})


def test_missing_topics_are_created() -> None:
    plan = plan_topics([topic("a"), topic("b")], {"a": topic("a")})
    assert [t.name for t in plan.create] == ["b"]
    assert plan.changes and not plan.refusals


def test_in_sync_topics_need_nothing() -> None:
    plan = plan_topics([topic("a", 3)], {"a": topic("a", 3)})
    assert not plan.changes and not plan.refusals


def test_partitions_grow() -> None:
    plan = plan_topics([topic("a", 4)], {"a": topic("a", 2)})
    assert plan.grow == (("a", 2, 4),)


def test_drifted_configs_are_set_again_and_only_managed_keys_compared() -> None:
    observed = TopicState("a", 1, 1, {R: "999"})  # cleanup.policy unknown: absent
    plan = plan_topics([topic("a", **{"cleanup.policy": "delete"})], {"a": observed})
    assert plan.reconfigure == (("a", {R: "100", "cleanup.policy": "delete"}),)


def test_partition_decrease_is_refused_and_nothing_else_applied_to_that_topic() -> None:
    observed = TopicState("a", 4, 1, {R: "1"})
    plan = plan_topics([topic("a", 2)], {"a": observed})
    assert not plan.changes
    (refusal,) = plan.refusals
    assert refusal.reason == "PartitionDecreaseNotSupported"
    assert "has 4 partitions" in refusal.message and "at least 4" in refusal.message


def test_replication_change_is_refused() -> None:
    plan = plan_topics([topic("a", rf=3)], {"a": topic("a", rf=1)})
    assert [r.reason for r in plan.refusals] == ["ReplicationFactorChangeNotSupported"]


def test_refusal_of_one_topic_does_not_block_others() -> None:
    plan = plan_topics([topic("a", 1), topic("b", 3)], {"a": topic("a", 2), "b": topic("b", 1)})
    assert plan.grow == (("b", 1, 3),)
    assert [r.subject for r in plan.refusals] == ["a"]


TABLE = TableState("tbl", (FamilyState("i"), FamilyState("d", 3, 60)))


def test_missing_table_is_created_and_no_table_wanted_means_nothing() -> None:
    assert plan_table(TABLE, None).create == TABLE
    assert plan_table(None, None).create is None


def test_matching_table_needs_nothing() -> None:
    plan = plan_table(TABLE, {"i": FamilyState("i"), "d": FamilyState("d", 3, 60)})
    assert plan.create is None and not plan.refusals


def test_family_changes_are_applied_in_place() -> None:
    current = FamilyState("d", 1, None)
    plan = plan_table(TABLE, {"i": FamilyState("i"), "d": current})
    assert plan.modify == ((current, FamilyState("d", 3, 60)),)
    assert not plan.refusals and plan.changes


def test_compression_and_bloom_filter_changes_are_modifications() -> None:
    wanted = TableState("tbl", (FamilyState("i", compression="GZ", bloom_filter="ROWCOL"),))
    plan = plan_table(wanted, {"i": FamilyState("i")})
    assert [new for _, new in plan.modify] == list(wanted.families)


def test_removed_family_is_refused_as_destructive() -> None:
    observed = {"i": FamilyState("i"), "d": FamilyState("d", 3, 60), "x": FamilyState("x")}
    (refusal,) = plan_table(TABLE, observed).refusals
    assert refusal.reason == "ColumnFamilyRemovalRefused"
    assert "destroy its data" in refusal.message
    assert "alter 'tbl', 'delete' => 'x'" in refusal.message


def test_added_family_is_added() -> None:
    plan = plan_table(TABLE, {"i": FamilyState("i")})
    assert plan.add == (FamilyState("d", 3, 60),) and not plan.refusals


def test_a_table_of_the_other_layout_is_refused_whole() -> None:
    desired = TableState(
        "t", (FamilyState("i"), FamilyState("d"), FamilyState("x")), layout="packed"
    )
    observed = {"i": FamilyState("i"), "d": FamilyState("d")}
    plan = plan_table(desired, observed, "columns")
    assert not plan.changes  # not even the new family
    (refusal,) = plan.refusals
    assert refusal.reason == "LayoutMismatch"
    assert "set spec.sinks.hbase.layout to columns, or name a new table" in refusal.message
    assert plan_table(desired, observed, "packed").add == (FamilyState("x"),)
