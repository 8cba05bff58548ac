"""A reconcile pass against in-memory Kafka and HBase fakes: fast proofs of idempotence.

The end-to-end tests (test_operator_e2e.py) prove the same against real servers;
these cover the branches that are slow or awkward to provoke there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipeline_documents import minimal

from fink_operator.desired import FamilyState, TableState, TopicState, desired_state
from fink_operator.errors import ServerRejected, ServerUnreachable
from fink_operator.reconcile import cleanup, reconcile


class FakeKafka:
    def __init__(self, down: bool = False) -> None:
        self.topics: dict[str, TopicState] = {}
        self.down = down
        self.calls: list[str] = []
        self.reject: str | None = None

    def _check(self) -> None:
        if self.down:
            raise ServerUnreachable("Kafka", "k:9092", "connection refused")

    def observe(self, names: Iterable[str], config_keys: Iterable[str]) -> dict[str, TopicState]:
        self._check()
        keys = set(config_keys)
        return {
            n: TopicState(
                n,
                t.partitions,
                t.replication_factor,
                {k: v for k, v in t.config.items() if k in keys},
            )
            for n, t in self.topics.items()
            if n in set(names)
        }

    def create(self, topics: Iterable[TopicState]) -> list[str]:
        self._check()
        created = []
        for t in topics:
            if self.reject:
                raise ServerRejected("Kafka", t.name, self.reject)
            if t.name not in self.topics:
                self.topics[t.name] = t
                created.append(t.name)
        self.calls.append(f"create {created}")
        return created

    def grow(self, changes: Iterable[tuple[str, int, int]]) -> None:
        self._check()
        for name, _, wanted in changes:
            t = self.topics[name]
            self.topics[name] = TopicState(name, wanted, t.replication_factor, t.config)
            self.calls.append(f"grow {name}")

    def reconfigure(self, changes: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        self._check()
        for name, configs in changes:
            t = self.topics[name]
            self.topics[name] = TopicState(
                name, t.partitions, t.replication_factor, {**t.config, **configs}
            )
            self.calls.append(f"configure {name}")

    def delete(self, names: Iterable[str]) -> list[str]:
        self._check()
        names = list(names)
        for n in names:
            self.topics.pop(n, None)
        return names


class FakeHBase:
    def __init__(self, down: bool = False) -> None:
        self.tables: dict[str, dict[str, FamilyState]] = {}
        self.down = down

    def _check(self) -> None:
        if self.down:
            raise ServerUnreachable("HBase", "h:9090", "connection refused")

    def families(self, table: str) -> dict[str, FamilyState] | None:
        self._check()
        return self.tables.get(table)

    def create(self, table: TableState) -> bool:
        self._check()
        if table.name in self.tables:
            return False
        self.tables[table.name] = {f.name: f for f in table.families}
        return True

    def drop(self, table: str) -> bool:
        self._check()
        return self.tables.pop(table, None) is not None


def pipeline(**spec: object) -> dict:
    base = {"filters": [{"name": "a", "partitions": 2}], "sinks": {"hbase": {"table": "tbl"}}}
    base.update(spec)
    return minimal(**base)


def test_first_pass_creates_everything_and_reports_ready() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    outcome = reconcile(desired_state(pipeline()), kafka, hbase)
    assert set(kafka.topics) == {"fink_a_ztf", "p1-deadletter"}
    assert kafka.topics["fink_a_ztf"].partitions == 2
    assert set(hbase.tables["tbl"]) == {"i", "d"}
    assert outcome.ready.status is True and outcome.changed
    assert outcome.owned_topics == ["fink_a_ztf", "p1-deadletter"]
    assert outcome.owned_tables == ["tbl"]
    assert sorted(e.reason for e in outcome.events) == [
        "TableCreated",
        "TopicCreated",
        "TopicCreated",
    ]


def test_second_pass_changes_nothing_and_posts_no_events() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    reconcile(desired_state(pipeline()), kafka, hbase)
    kafka.calls.clear()
    outcome = reconcile(desired_state(pipeline()), kafka, hbase)
    assert kafka.calls == ["create []"]
    assert outcome.events == [] and not outcome.changed and outcome.ready.status is True


def test_grow_and_retention_change_are_applied() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    reconcile(desired_state(pipeline()), kafka, hbase)
    changed = pipeline(filters=[{"name": "a", "partitions": 5, "retentionMs": 1000}])
    outcome = reconcile(desired_state(changed), kafka, hbase)
    assert kafka.topics["fink_a_ztf"].partitions == 5
    assert kafka.topics["fink_a_ztf"].config["retention.ms"] == "1000"
    assert {e.reason for e in outcome.events} == {"TopicChanged"}


def test_shrink_is_refused_with_a_condition_and_the_topic_kept() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    reconcile(desired_state(pipeline()), kafka, hbase)
    outcome = reconcile(desired_state(pipeline(filters=[{"name": "a"}])), kafka, hbase)
    assert kafka.topics["fink_a_ztf"].partitions == 2
    assert outcome.topics.status is False
    assert outcome.topics.reason == "PartitionDecreaseNotSupported"
    assert outcome.ready.reason == "PartitionDecreaseNotSupported"
    assert not outcome.unreachable
    assert [e.type for e in outcome.events] == ["Warning"]


def test_existing_topic_is_adopted() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    kafka.topics["fink_a_ztf"] = TopicState("fink_a_ztf", 2, 1, {"retention.ms": "1"})
    outcome = reconcile(desired_state(pipeline()), kafka, hbase)
    assert "fink_a_ztf" in outcome.owned_topics
    assert kafka.topics["fink_a_ztf"].config["retention.ms"] == "604800000"


def test_kafka_down_keeps_hbase_going_and_says_which_server() -> None:
    kafka, hbase = FakeKafka(down=True), FakeHBase()
    outcome = reconcile(desired_state(pipeline()), kafka, hbase, {"topics": ["fink_a_ztf", "gone"]})
    assert outcome.topics.reason == "KafkaUnreachable"
    assert "Kafka at k:9092 could not be reached" in outcome.topics.message
    assert outcome.tables.status is True and "tbl" in hbase.tables
    assert outcome.owned_topics == ["fink_a_ztf"]
    assert len(outcome.unreachable) == 1
    kafka.down = False
    assert reconcile(desired_state(pipeline()), kafka, hbase).ready.status is True


def test_hbase_down_is_reported_as_hbase_unreachable() -> None:
    outcome = reconcile(desired_state(pipeline()), FakeKafka(), FakeHBase(down=True))
    assert outcome.tables.reason == "HBaseUnreachable"
    assert outcome.ready.reason == "HBaseUnreachable"


def test_kafka_rejection_is_a_condition_not_a_retry() -> None:
    kafka = FakeKafka()
    kafka.reject = "Replication factor: 3 larger than available brokers: 1"
    outcome = reconcile(desired_state(pipeline()), kafka, FakeHBase())
    assert outcome.topics.reason == "KafkaRejected"
    assert "larger than available brokers" in outcome.topics.message
    assert not outcome.unreachable


def test_family_change_is_refused_in_the_tables_condition() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    reconcile(desired_state(pipeline()), kafka, hbase)
    changed = pipeline(
        sinks={
            "hbase": {
                "table": "tbl",
                "columnFamilies": [{"name": "i"}, {"name": "d", "maxVersions": 5}],
            }
        }
    )
    outcome = reconcile(desired_state(changed), kafka, hbase)
    assert outcome.tables.reason == "ColumnFamilyChangeNotSupported"
    assert outcome.topics.status is True


def test_cleanup_deletes_owned_and_desired_and_is_idempotent() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    state = desired_state(pipeline(deletionPolicy="Delete"))
    reconcile(state, kafka, hbase)
    kafka.topics["released"] = TopicState("released", 1, 1)
    done = cleanup(state, kafka, hbase, {"topics": ["released"], "tables": ["tbl"]})
    assert kafka.topics == {} and hbase.tables == {}
    assert done.dropped_tables == ["tbl"]
    again = cleanup(state, kafka, hbase, {"topics": ["released"], "tables": ["tbl"]})
    assert again.dropped_tables == []
