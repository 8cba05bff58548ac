"""A reconcile pass against in-memory Kafka, HBase and claims: fast proofs of the rules.

The end-to-end tests prove the same against real servers; these cover the
branches that are slow or awkward to provoke there (races, half-done passes).
"""

from __future__ import annotations

from fakes import FakeClaims, FakeHBase, FakeKafka, desired
from pipeline_documents import minimal

from fink_core.resources import FamilyState, TopicState
from fink_operator.ownership import TOPIC
from fink_operator.reconcile import cleanup, reconcile, release_all


def pipeline(name: str = "p1", namespace: str = "ns", **spec: object) -> dict:
    base = {"filters": [{"name": "a", "partitions": 2}], "sinks": {"hbase": {"table": "tbl"}}}
    base.update(spec)
    return minimal(name, namespace, **base)


def world() -> tuple[FakeKafka, FakeHBase, FakeClaims]:
    return FakeKafka(), FakeHBase(), FakeClaims()


def test_first_pass_claims_and_creates_everything_and_reports_ready() -> None:
    kafka, hbase, claims = world()
    outcome = reconcile(desired(pipeline()), kafka, hbase, claims)
    assert set(kafka.topics) == {"fink_a_ztf", "p1-deadletter"}
    assert kafka.topics["fink_a_ztf"].partitions == 2
    assert set(hbase.tables["tbl"]) == {"i", "d"}
    assert claims.names() == dict.fromkeys(["fink_a_ztf", "p1-deadletter", "tbl"], "uid-ns-p1")
    assert outcome.ready.status is True and outcome.changed
    assert outcome.owned_topics == ["fink_a_ztf", "p1-deadletter"]
    assert outcome.owned_tables == ["tbl"]
    assert sorted(e.reason for e in outcome.events) == ["TableCreated", "TopicCreated"]


def test_second_pass_changes_nothing_and_posts_no_events() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline()), kafka, hbase, claims)
    kafka.calls.clear()
    outcome = reconcile(desired(pipeline()), kafka, hbase, claims)
    assert kafka.calls == ["observe"]
    assert outcome.events == [] and not outcome.changed and outcome.ready.status is True


def test_grow_and_retention_change_are_applied() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline()), kafka, hbase, claims)
    changed = pipeline(filters=[{"name": "a", "partitions": 5, "retentionMs": 1000}])
    outcome = reconcile(desired(changed), kafka, hbase, claims)
    assert kafka.topics["fink_a_ztf"].partitions == 5
    assert kafka.topics["fink_a_ztf"].config["retention.ms"] == "1000"
    assert {e.reason for e in outcome.events} == {"TopicChanged"}


def test_shrink_is_refused_with_a_condition_and_the_topic_kept() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline()), kafka, hbase, claims)
    outcome = reconcile(desired(pipeline(filters=[{"name": "a"}])), kafka, hbase, claims)
    assert kafka.topics["fink_a_ztf"].partitions == 2
    assert outcome.topics.status is False
    assert outcome.topics.reason == "PartitionDecreaseNotSupported"
    assert outcome.ready.reason == "PartitionDecreaseNotSupported"
    assert not outcome.unreachable


def test_an_existing_unclaimed_topic_is_not_adopted_unless_listed() -> None:
    kafka, hbase, claims = world()
    kafka.topics["fink_a_ztf"] = TopicState("fink_a_ztf", 2, 1, {"retention.ms": "1"})
    outcome = reconcile(desired(pipeline()), kafka, hbase, claims)
    assert outcome.topics.reason == "AdoptionRequired"
    assert "spec.adopt.topics" in outcome.topics.message
    assert kafka.topics["fink_a_ztf"].config["retention.ms"] == "1"  # untouched
    assert "p1-deadletter" not in kafka.topics  # nothing of the topics part was done
    assert "fink_a_ztf" not in claims.names()

    adopting = pipeline(adopt={"topics": ["fink_a_ztf"]})
    outcome = reconcile(desired(adopting), kafka, hbase, claims)
    assert outcome.topics.status is True
    assert kafka.topics["fink_a_ztf"].config["retention.ms"] == "604800000"
    (claim,) = [c for c in claims.claims.values() if c.name == "fink_a_ztf"]
    assert claim.adopted


def test_a_topic_another_pipeline_owns_is_a_conflict_and_untouched() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline("a-team", "team-a")), kafka, hbase, claims)
    kafka.topics["fink_a_ztf"] = TopicState("fink_a_ztf", 2, 1, {"retention.ms": "5"})
    other = pipeline("b-team", "team-b", adopt={"topics": ["fink_a_ztf"]})
    outcome = reconcile(desired(other), kafka, hbase, claims)
    assert outcome.topics.reason == "Conflict"
    assert "belongs to pipeline team-a/a-team" in outcome.topics.message
    assert kafka.topics["fink_a_ztf"].config["retention.ms"] == "5"
    assert claims.names()["fink_a_ztf"] == "uid-team-a-a-team"
    # the table too: same name, other team
    assert outcome.tables.reason == "Conflict"


def test_a_stale_claim_is_taken_over_only_under_the_adoption_rule() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline("old", "team-a")), kafka, hbase, claims)
    claims.alive["uid-team-a-old"] = False  # deleted while the operator was down
    newcomer = pipeline("new", "team-b")
    refused = reconcile(desired(newcomer), kafka, hbase, claims)
    assert refused.topics.reason == "AdoptionRequired"
    assert "its last owner, pipeline team-a/old, is gone" in refused.topics.message
    adopting = pipeline("new", "team-b", adopt={"topics": ["fink_a_ztf"], "tables": ["tbl"]})
    taken = reconcile(desired(adopting), kafka, hbase, claims)
    assert taken.topics.status is True and taken.tables.status is True
    assert claims.names()["fink_a_ztf"] == "uid-team-b-new"


def test_an_unknown_owner_is_respected_and_the_message_says_how_to_release() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline("a", "team-a")), kafka, hbase, claims)
    claims.alive["uid-team-a-a"] = None  # the operator may not read team-a's namespace
    outcome = reconcile(desired(pipeline("b", "team-b")), kafka, hbase, claims)
    assert outcome.topics.reason == "Conflict"
    assert "kubectl delete sinkclaim topic." in outcome.topics.message


def test_losing_the_race_for_a_claim_becomes_a_conflict() -> None:
    kafka, hbase, claims = world()
    state = desired(pipeline("late", "team-b"))
    original_create = claims.create

    def someone_else_first(claim):  # type: ignore[no-untyped-def]
        rival = desired(pipeline("early", "team-a")).pipeline
        from dataclasses import replace

        original_create(replace(claim, owner=rival))
        return original_create(claim)

    claims.create = someone_else_first  # type: ignore[method-assign]
    outcome = reconcile(state, kafka, hbase, claims)
    assert outcome.topics.reason == "Conflict"
    assert not kafka.topics


def test_a_filter_leaving_the_spec_releases_its_topic_and_keeps_it() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline()), kafka, hbase, claims)
    outcome = reconcile(desired(pipeline(filters=[])), kafka, hbase, claims)
    assert "fink_a_ztf" in kafka.topics
    assert "fink_a_ztf" not in claims.names()
    assert [e.reason for e in outcome.events] == ["TopicReleased"]


def test_kafka_down_keeps_hbase_going_and_says_which_server() -> None:
    kafka, hbase, claims = FakeKafka(down=True), FakeHBase(), FakeClaims()
    outcome = reconcile(
        desired(pipeline()), kafka, hbase, claims, {"topics": ["fink_a_ztf", "gone"]}
    )
    assert outcome.topics.reason == "KafkaUnreachable"
    assert "Kafka at k:9092 could not be reached" in outcome.topics.message
    assert outcome.tables.status is True and "tbl" in hbase.tables
    assert outcome.owned_topics == ["fink_a_ztf"]
    assert len(outcome.unreachable) == 1
    kafka.down = False
    assert reconcile(desired(pipeline()), kafka, hbase, claims).ready.status is True


def test_hbase_down_is_reported_as_hbase_unreachable() -> None:
    outcome = reconcile(desired(pipeline()), FakeKafka(), FakeHBase(down=True), FakeClaims())
    assert outcome.tables.reason == "HBaseUnreachable"
    assert outcome.ready.reason == "HBaseUnreachable"


def test_a_pipeline_without_hbase_is_ready_once_its_topics_are() -> None:
    hbase = FakeHBase(down=True)  # never asked
    outcome = reconcile(desired(minimal()), FakeKafka(), hbase, FakeClaims())
    assert outcome.tables.status is True and outcome.tables.reason == "NoTable"
    assert outcome.ready.status is True


def test_kafka_rejection_is_a_condition_not_a_retry() -> None:
    kafka = FakeKafka()
    kafka.reject = "Replication factor: 3 larger than available brokers: 1"
    outcome = reconcile(desired(pipeline()), kafka, FakeHBase(), FakeClaims())
    assert outcome.topics.reason == "KafkaRejected"
    assert "larger than available brokers" in outcome.topics.message
    assert not outcome.unreachable


def test_family_changes_are_applied_and_removal_refused() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline()), kafka, hbase, claims)
    families = [{"name": "i"}, {"name": "d", "maxVersions": 5, "compression": "GZ"}, {"name": "x"}]
    changed = pipeline(sinks={"hbase": {"table": "tbl", "columnFamilies": families}})
    outcome = reconcile(desired(changed), kafka, hbase, claims)
    assert outcome.tables.status is True
    assert hbase.tables["tbl"]["d"] == FamilyState("d", 5, None, "GZ")
    assert "x" in hbase.tables["tbl"]
    assert [e.reason for e in outcome.events] == ["TableChanged"]
    removed = pipeline(sinks={"hbase": {"table": "tbl", "columnFamilies": [{"name": "i"}]}})
    refused = reconcile(desired(removed), kafka, hbase, claims)
    assert refused.tables.reason == "ColumnFamilyRemovalRefused"
    assert set(hbase.tables["tbl"]) == {"i", "d", "x"}


def test_stored_cutouts_get_their_family_and_dropping_them_again_is_refused() -> None:
    kafka, hbase, claims = world()
    stored = pipeline(sinks={"hbase": {"table": "tbl", "cutouts": "store"}})
    reconcile(desired(stored), kafka, hbase, claims)
    assert set(hbase.tables["tbl"]) == {"i", "d", "cutouts"}
    assert hbase.tables["tbl"]["cutouts"] == FamilyState("cutouts")

    kafka, hbase, claims = world()
    reconcile(desired(pipeline()), kafka, hbase, claims)
    assert set(hbase.tables["tbl"]) == {"i", "d"}  # drop, the default: no family
    outcome = reconcile(desired(stored), kafka, hbase, claims)  # store on a live table
    assert set(hbase.tables["tbl"]) == {"i", "d", "cutouts"}
    assert [e.reason for e in outcome.events] == ["TableChanged"]
    refused = reconcile(desired(pipeline()), kafka, hbase, claims)
    assert refused.tables.reason == "ColumnFamilyRemovalRefused"
    assert "set spec.sinks.hbase.cutouts back to store" in refused.tables.message
    assert set(hbase.tables["tbl"]) == {"i", "d", "cutouts"}


def test_tables_are_pre_split_along_the_salt() -> None:
    kafka, hbase, claims = world()
    salted = pipeline(sinks={"hbase": {"table": "tbl", "saltDigits": 2, "regions": 4}})
    reconcile(desired(salted), kafka, hbase, claims)
    assert hbase.splits["tbl"] == ("25", "50", "75")


def test_cleanup_deletes_only_what_the_pipeline_claimed_and_is_idempotent() -> None:
    kafka, hbase, claims = world()
    state = desired(pipeline(deletionPolicy="Delete"))
    reconcile(state, kafka, hbase, claims)
    kafka.topics["someone-elses"] = TopicState("someone-elses", 1, 1)
    done = cleanup(state, kafka, hbase, claims)
    assert set(kafka.topics) == {"someone-elses"} and hbase.tables == {}
    assert done.dropped_tables == ["tbl"]
    assert claims.claims == {}
    again = cleanup(state, kafka, hbase, claims)
    assert again.dropped_tables == [] and again.deleted_topics == []


def test_cleanup_of_a_conflicted_pipeline_deletes_nothing_of_the_owner() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline("a", "team-a")), kafka, hbase, claims)
    intruder = desired(pipeline("b", "team-b", deletionPolicy="Delete"))
    reconcile(intruder, kafka, hbase, claims)
    cleanup(intruder, kafka, hbase, claims)
    assert set(kafka.topics) == {"fink_a_ztf", "a-deadletter"}  # the owner's, intact
    assert "tbl" in hbase.tables
    assert claims.names()["tbl"] == "uid-team-a-a"


def test_release_all_frees_a_retained_pipelines_claims_and_keeps_data() -> None:
    kafka, hbase, claims = world()
    state = desired(pipeline())
    reconcile(state, kafka, hbase, claims)
    released = release_all(claims, state)
    assert {c.name for c in released} == {"fink_a_ztf", "p1-deadletter", "tbl"}
    assert claims.claims == {} and "tbl" in hbase.tables and "fink_a_ztf" in kafka.topics
    assert {c.kind for c in released} >= {TOPIC}


def test_a_stale_claim_on_a_deleted_topic_is_replaced_without_adoption() -> None:
    kafka, hbase, claims = world()
    reconcile(desired(pipeline("old", "team-a")), kafka, hbase, claims)
    claims.alive["uid-team-a-old"] = False
    kafka.topics.clear()
    hbase.tables.clear()
    outcome = reconcile(desired(pipeline("new", "team-b")), kafka, hbase, claims)
    assert outcome.ready.status is True
    assert claims.names()["fink_a_ztf"] == "uid-team-b-new"
    assert claims.names()["tbl"] == "uid-team-b-new"
