"""A test session or a benchmark run removes what it named after its tokens, and only that,
on the real servers."""

from __future__ import annotations

from pathlib import Path

import happybase
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from fink_stack.endpoints import Endpoints
from fink_stack.layout import HOST
from fink_stack.scratch import HDFS_TESTS, Scratch, carries, removed_at_exit, webhdfs


def test_a_token_counts_only_as_a_whole_part_of_a_name() -> None:
    tokens = {"1a2b3c"}
    assert carries("test-x-1a2b3c.dead-letters", tokens)
    assert carries("test_x_1a2b3c", tokens)
    assert carries("job_1a2b3c", tokens)
    assert carries("1a2b3c", tokens)
    assert not carries("test-x-1a2b3cd", tokens)
    assert not carries("ztf-alerts", tokens)
    assert not carries("test-x-ff1a2b3c", tokens)


def _topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15).topics)


def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        future.result(30)


@pytest.mark.stack
def test_remove_deletes_the_sessions_topics_and_tables_on_both_clusters(
    stack: Endpoints,
) -> None:
    assert stack.kafka_upstream_bootstrap, "the stack runs no upstream Kafka"
    session, other = Scratch(), Scratch()
    mine, theirs = session.name("scratch"), other.name("scratch")
    _create_topics(stack.kafka_bootstrap, [f"{mine}-alerts", f"{mine}.sso", f"{theirs}-alerts"])
    _create_topics(stack.kafka_upstream_bootstrap, [f"{mine}-upstream"])
    hbase = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        for table in (mine.replace("-", "_"), f"job_{mine[-6:]}", theirs.replace("-", "_")):
            hbase.create_table(table, {"i": {}})
        hbase.disable_table(f"job_{mine[-6:]}")  # a disabled table goes too

        removed = session.remove(stack)

        assert removed.failures == []
        assert (removed.topics, removed.tables) == (3, 2)
        assert not {f"{mine}-alerts", f"{mine}.sso"} & _topics(stack.kafka_bootstrap)
        assert f"{mine}-upstream" not in _topics(stack.kafka_upstream_bootstrap)
        assert f"{theirs}-alerts" in _topics(stack.kafka_bootstrap)
        tables = {t.decode() for t in hbase.tables()}
        assert not {mine.replace("-", "_"), f"job_{mine[-6:]}"} & tables
        assert theirs.replace("-", "_") in tables
    finally:
        other.remove(stack)
        hbase.close()


@pytest.mark.stack
def test_remove_deletes_the_sessions_hdfs_directories_and_only_those(stack: Endpoints) -> None:
    assert stack.hdfs, "the stack runs no HDFS"
    session, other = Scratch(), Scratch()
    mine, theirs = session.name("scratch"), other.name("scratch")
    for path in (f"{mine}/archive/night=20261128", f"{mine}-other/checkpoint", theirs):
        status, body = webhdfs(HOST, "PUT", f"{HDFS_TESTS}/{path}", "MKDIRS")
        assert status == 200, body
    try:
        removed = session.remove(stack)

        assert removed.failures == []
        assert removed.directories == 2
        for gone in (mine, f"{mine}-other"):
            assert webhdfs(HOST, "GET", f"{HDFS_TESTS}/{gone}", "GETFILESTATUS")[0] == 404
        assert webhdfs(HOST, "GET", f"{HDFS_TESTS}/{theirs}", "GETFILESTATUS")[0] == 200
    finally:
        other.remove(stack)
    assert webhdfs(HOST, "GET", f"{HDFS_TESTS}/{theirs}", "GETFILESTATUS")[0] == 404


def _nowhere(tmp_path: Path, hdfs: str = "") -> Endpoints:
    """A stack whose servers all refuse: ports and an address where nothing listens."""
    return Endpoints(
        kubeconfig=tmp_path / "kubeconfig",
        kafka_bootstrap="127.0.0.1:1",
        hbase_thrift_host="127.0.0.1",
        hbase_thrift_port=1,
        spark_jars=(),
        hdfs=hdfs,
    )


def test_an_unreachable_server_is_reported_not_raised(tmp_path: Path) -> None:
    session = Scratch()
    session.token()
    # HDFS on a loopback address where no NameNode listens
    removed = session.remove(_nowhere(tmp_path, hdfs="hdfs://127.0.0.2:8020"))
    assert [f.split(":")[0] for f in removed.failures] == [
        "Kafka 127.0.0.1",
        "HBase 127.0.0.1",
        "HDFS 127.0.0.2",
    ]


def _run_objects(stack: Endpoints, name: str, work: Path) -> tuple[set[str], set[str]]:
    """What a benchmark run makes: its source and sink topics, its table, its files;
    the topics and tables are returned."""
    topics = {f"{name}-light-alerts", f"{name}-light.dead-letters"}
    table = f"{name}-light".replace("-", "_")
    _create_topics(stack.kafka_bootstrap, sorted(topics))
    hbase = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        hbase.create_table(table, {"i": {}})
    finally:
        hbase.close()
    (work / "light" / "checkpoint").mkdir(parents=True)
    return topics, {table}


def _left(stack: Endpoints, name: str) -> tuple[set[str], set[str]]:
    topics = {t for t in _topics(stack.kafka_bootstrap) if t.startswith(name)}
    hbase = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        prefix = name.replace("-", "_")
        return topics, {t.decode() for t in hbase.tables() if t.decode().startswith(prefix)}
    finally:
        hbase.close()


@pytest.mark.stack
def test_a_run_that_fails_midway_leaves_nothing_behind_and_its_error_goes_on(
    stack: Endpoints, tmp_path: Path
) -> None:
    work, reports = tmp_path / "bench", []
    with (
        pytest.raises(SystemExit, match="the pipeline read 0 of 100 alerts"),
        # the stores the run brought up, as a bench passes them
        removed_at_exit(stack, work, stores=("kafka", "hbase"), report=reports.append) as scratch,
    ):
        name = scratch.name("bench")
        made = _run_objects(stack, name, work)
        assert _left(stack, name) == made
        raise SystemExit("the pipeline read 0 of 100 alerts")
    assert _left(stack, name) == (set(), set())
    assert not work.exists()
    assert reports == []


@pytest.mark.stack
def test_a_kept_run_leaves_everything_and_says_what(stack: Endpoints, tmp_path: Path) -> None:
    work, reports = tmp_path / "bench", []
    with removed_at_exit(stack, work, keep=True, report=reports.append) as scratch:
        name = scratch.name("bench")
        made = _run_objects(stack, name, work)
    try:
        assert _left(stack, name) == made
        assert (work / "light" / "checkpoint").is_dir()
        assert reports == [f"kept: what is named after {name[-6:]}, files {work}"]
    finally:
        scratch.remove(stack)


def test_a_run_reports_what_it_could_not_remove_without_raising(tmp_path: Path) -> None:
    elsewhere = _nowhere(tmp_path)
    work, reports = tmp_path / "bench", []
    work.mkdir()
    with removed_at_exit(elsewhere, work, report=reports.append) as scratch:
        scratch.token()
    assert [r.split(":")[0] for r in reports] == [
        "left behind, not removed",
        "left behind, not removed",
    ]
    assert "Kafka 127.0.0.1" in reports[0] and "HBase 127.0.0.1" in reports[1]
    assert not work.exists()

    reports.clear()  # a run that brought up Kafka alone is not told about HBase
    with removed_at_exit(elsewhere, stores=("kafka", "spark"), report=reports.append) as scratch:
        scratch.token()
    assert len(reports) == 1 and "Kafka 127.0.0.1" in reports[0]
