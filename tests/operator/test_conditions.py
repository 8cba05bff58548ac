"""Conditions keep their transition time while their status holds."""

from __future__ import annotations

from fink_operator.conditions import READY, TOPICS_READY, Condition, merge, overall, phase


def test_transition_time_moves_only_when_status_changes() -> None:
    first = merge(None, [Condition(TOPICS_READY, False, "KafkaUnreachable", "down")], 1, "t1")
    same = merge(first, [Condition(TOPICS_READY, False, "KafkaUnreachable", "still")], 2, "t2")
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["message"] == "still"
    assert same[0]["observedGeneration"] == 2
    flipped = merge(same, [Condition(TOPICS_READY, True, "Reconciled", "ok")], 2, "t3")
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["status"] == "True"


def test_other_conditions_are_kept_and_ordered() -> None:
    previous = [{"type": "JobRunning", "status": "True"}]
    merged = merge(
        previous,
        [Condition(READY, True, "R", "m"), Condition(TOPICS_READY, True, "R", "m")],
        1,
        "t",
    )
    assert [c["type"] for c in merged] == [TOPICS_READY, READY, "JobRunning"]


def test_ready_repeats_the_first_failing_part() -> None:
    ready = overall(
        [Condition("A", True, "R", "ok"), Condition("B", False, "HBaseUnreachable", "hbase down")]
    )
    assert (ready.type, ready.status, ready.reason) == (READY, False, "HBaseUnreachable")
    assert overall([Condition("A", True, "R", "ok")]).status is True


def test_phase() -> None:
    assert phase(Condition(READY, True, "", ""), waiting=False) == "Ready"
    assert phase(Condition(READY, False, "", ""), waiting=True) == "Waiting"
    assert phase(Condition(READY, False, "", ""), waiting=False) == "Degraded"
    assert phase(Condition(READY, None, "", ""), waiting=False) == "Pending"
