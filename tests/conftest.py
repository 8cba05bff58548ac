"""Session-wide access to the real local stack.

The `stack` fixture starts whatever part of the stack is not running (building
it on first use, which takes minutes) and stops at the end only what it started
itself, so a stack a developer already runs is left as it was. Before that, it
removes the topics and tables named after the session's `scratch` tokens
(`unique_name`), so the shared stack does not fill up run after run.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from short_lived_jvm import OPTIONS as SHORT_LIVED_JVM

from fink_stack import api
from fink_stack.endpoints import Endpoints
from fink_stack.scratch import Scratch

# Spark would otherwise bind its driver to the first non-loopback interface
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# every Spark JVM started on the host (pipelines, the in-process session, Hadoop's
# client): spark-submit adds these to the driver's command line (short_lived_jvm.py)
os.environ.setdefault("SPARK_SUBMIT_OPTS", SHORT_LIVED_JVM)


@pytest.fixture(scope="session")
def scratch() -> Scratch:
    """The tokens of this session's names (`unique_name`, or `scratch.name(stem)`)."""
    return Scratch()


@pytest.fixture(scope="session")
def stack(scratch: Scratch) -> Iterator[Endpoints]:
    # Stop at the end only a stack this session started from nothing: a stack that
    # merely looks unhealthy (another session testing an outage) is not ours to stop.
    started_here = api.is_down()
    # FINK_TEST_COMPONENTS=kubernetes,kafka,hbase,registry,spark limits what a session brings up
    # (a developer iterating on one part); `make test` brings up everything
    wanted = [c for c in os.environ.get("FINK_TEST_COMPONENTS", "").split(",") if c]
    endpoints = api.ensure_up(wanted, quiet=True) if wanted else api.ensure_up(quiet=True)
    yield endpoints
    removed = scratch.remove(endpoints)
    for failure in removed.failures:  # the tests ran: a leftover is not their failure
        warnings.warn(f"left behind by this session, not removed: {failure}", stacklevel=1)
    if started_here and os.environ.get("FINK_STACK_KEEP") != "1":
        api.down()


@pytest.fixture(scope="session")
def spark(stack: Endpoints) -> Iterator[Any]:
    """The test session's one in-process SparkSession, with the stack's Kafka connector.

    A JVM holds one SparkContext at a time and a later session would not see jars
    given to it after the JVM started, so every in-process Spark test shares this one.
    """
    # Python workers start as $PYSPARK_PYTHON (default: the first python3 on PATH, which
    # may lack our packages); spark.pyspark.python alone does not reach local mode
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    assert stack.spark_jars, "the stack provides no Spark connector jars"
    session = (
        SparkSession.builder.master("local[2]")
        .appName("fink-tests")
        .config("spark.jars", ",".join(str(p) for p in stack.spark_jars))
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs the tests two at a time (pytest-xdist, `--dist loadgroup`, see
    scripts/test.sh): a file's tests stay together on one worker, in their order, with its
    module fixtures built once. The files that run pipelines on the stack's one real node or
    read its Prometheus are marked `xdist_group("real-node")`: one of them runs at a time,
    as the node's pods and what Prometheus scrapes are then all theirs."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """A skipped check is a failure: every documented check must run (FINK_ALLOW_SKIPS=1 to
    iterate on part of the suite, e.g. with a stack that was already running)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped and os.environ.get("FINK_ALLOW_SKIPS") != "1":
        terminalreporter.write_line(
            f"{len(skipped)} test(s) skipped: a skipped check counts as a failure "
            "(set FINK_ALLOW_SKIPS=1 to allow skips while iterating)",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and os.environ.get("FINK_ALLOW_SKIPS") != "1" and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def unique_name(request: pytest.FixtureRequest, scratch: Scratch) -> str:
    """A name no other test uses (tests share one stack and must not collide); the
    topics and tables named after it are removed when the session ends."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:30].strip("-")
    return scratch.name(stem)
