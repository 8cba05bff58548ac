"""What a test session or a benchmark run makes in the shared local stack, and its removal
when it ends.

Every test session runs against the same stack state (`~/.local/state/fink-stack`),
so the topics and tables its tests make stay there unless something removes them:
a stack that served a few dozen `make test` runs held thousands of partitions and
hundreds of tables, gigabytes of disk, and an HBase and a Kafka busier for it. A
session draws a random token for each name it makes (`Scratch.name`) and, at its
end, removes the Kafka topics (of both clusters), HBase tables and HDFS directories
(those right under `/tests`, where tests put their archives and checkpoints) whose
names carry one of its tokens as a part (`test-x-1a2b3c.dead-letters`,
`test_x_1a2b3c`, `job_1a2b3c`), and nothing else: another session's names and a
developer's own topics carry no token of this session.

A benchmark run does the same through `removed_at_exit`, whichever way it ends: a
bench that failed midway once left its 850 MB source topic, its table and its
work directory behind.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import urllib.parse
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .endpoints import Endpoints
from .layout import PORTS

HDFS_TESTS = "/tests"  # tests' HDFS directories: /tests/<unique name>/...
STORES = ("kafka", "hbase", "hdfs")  # the stack's components a run may leave names in

_PARTS = re.compile(r"[-_.]")


def carries(name: str, tokens: set[str] | frozenset[str]) -> bool:
    """Whether one of the dash, underscore or dot separated parts of name is a token."""
    return not tokens.isdisjoint(_PARTS.split(name))


@dataclass
class Removed:
    """What `Scratch.remove` deleted, and what it could not reach (one line each)."""

    topics: int = 0
    tables: int = 0
    directories: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Scratch:
    """The tokens a test session put in the names of what it made."""

    tokens: set[str] = field(default_factory=set)

    def token(self) -> str:
        token = uuid.uuid4().hex[:6]
        self.tokens.add(token)
        return token

    def name(self, stem: str) -> str:
        """stem-<token>: a name no other test uses, removed at the session's end."""
        return f"{stem}-{self.token()}"

    def remove(self, endpoints: Endpoints, stores: Collection[str] = STORES) -> Removed:
        """Delete the topics, tables and HDFS directories carrying one of the tokens, in
        the stores (stack components) named; a server that does not answer is reported
        in `failures`, never raised: the tests already ran."""
        removed = Removed()
        if not self.tokens:
            return removed
        clusters = [endpoints.kafka_bootstrap, endpoints.kafka_upstream_bootstrap]
        for bootstrap in filter(None, clusters if "kafka" in stores else []):
            try:
                removed.topics += _remove_topics(bootstrap, self.tokens)
            except Exception as error:
                removed.failures.append(f"Kafka {bootstrap}: {error}")
        if "hbase" in stores:
            try:
                removed.tables += _remove_tables(endpoints, self.tokens)
            except Exception as error:
                removed.failures.append(
                    f"HBase {endpoints.hbase_thrift_host}:{endpoints.hbase_thrift_port}: {error}"
                )
        if endpoints.hdfs and "hdfs" in stores:
            host = urllib.parse.urlsplit(endpoints.hdfs).hostname or ""
            try:
                removed.directories += _remove_hdfs_directories(host, self.tokens)
            except Exception as error:
                removed.failures.append(f"HDFS {host}:{PORTS.hdfs_namenode_http}: {error}")
        return removed


@contextmanager
def removed_at_exit(
    endpoints: Endpoints,
    work: Path | None = None,
    *,
    stores: Collection[str] = STORES,
    keep: bool = False,
    report: Callable[[str], None] = print,
) -> Iterator[Scratch]:
    """A run's scratch names, whose topics, tables and HDFS directories in stores (the
    components the run brought up: another one, stopped, would only be reported) and
    work directory are removed when the block ends, by an error or an interrupt too,
    unless keep; the block's own error, if any, is the one raised."""
    scratch = Scratch()
    try:
        yield scratch
    finally:
        if keep:
            kept = ", ".join(sorted(scratch.tokens)) or "none"
            report(f"kept: what is named after {kept}" + (f", files {work}" if work else ""))
        else:
            removed = scratch.remove(endpoints, stores)
            for failure in removed.failures:
                report(f"left behind, not removed: {failure}")
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)


def _remove_topics(bootstrap: str, tokens: set[str]) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=15).topics if carries(t, tokens)]
    for start in range(0, len(topics), 200):  # one request per 200 topics
        for future in admin.delete_topics(topics[start : start + 200]).values():
            future.result(timeout=60)
    return len(topics)


def _remove_tables(endpoints: Endpoints, tokens: set[str]) -> int:
    import happybase

    connection = happybase.Connection(
        endpoints.hbase_thrift_host, endpoints.hbase_thrift_port, timeout=60_000
    )
    try:
        tables = [t for t in connection.tables() if carries(t.decode(), tokens)]
        for table in tables:
            connection.delete_table(table, disable=True)  # disables it first if enabled
        return len(tables)
    finally:
        connection.close()


def webhdfs(host: str, method: str, path: str, op: str, **params: str) -> tuple[int, bytes]:
    """One WebHDFS call to the NameNode (operations on names only: no data, no redirect)."""
    connection = http.client.HTTPConnection(host, PORTS.hdfs_namenode_http, timeout=60)
    try:
        query = urllib.parse.urlencode({"op": op, **params})
        connection.request(method, f"/webhdfs/v1{path}?{query}")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _remove_hdfs_directories(host: str, tokens: set[str]) -> int:
    status, body = webhdfs(host, "GET", HDFS_TESTS, "LISTSTATUS")
    if status == 404:  # no test wrote to HDFS yet
        return 0
    if status != 200:
        raise OSError(f"LISTSTATUS {HDFS_TESTS}: HTTP {status} {body[:200]!r}")
    entries = json.loads(body)["FileStatuses"]["FileStatus"]
    names = [e["pathSuffix"] for e in entries if carries(e["pathSuffix"], tokens)]
    for name in names:
        status, body = webhdfs(host, "DELETE", f"{HDFS_TESTS}/{name}", "DELETE", recursive="true")
        if status != 200:
            raise OSError(f"DELETE {HDFS_TESTS}/{name}: HTTP {status} {body[:200]!r}")
    return len(names)
