"""Benchmark the operator: apply N pipelines, time until all are Ready, watch CPU and memory.

    .venv/bin/python bench/operator_bench.py --count 10 100 500 [--filters 2] [--no-table]

For each N: a fresh namespace and a fresh operator process (so CPU and memory
are its own), N pipelines created as fast as the API server takes them, then
polling until every one reports Ready for its current generation. Prints the
time to all-Ready, the operator's CPU seconds and peak RSS, and reconciles per
second from the operator's own controller_runtime_reconcile_total.

Baseline, measured in the same run: a script creating the very same topics and
tables directly (AdminClient and happybase, one pipeline after another, no
Kubernetes at all). The ratio operator / direct is what declaring pipelines as
resources costs over provisioning by hand. Topics and tables are deleted
afterwards. Needs a running local stack (`fink-stack up`).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import happybase
from confluent_kafka.admin import AdminClient, NewTopic
from kubernetes import client, config

from fink_operator import crd
from fink_operator.install import install_crd
from fink_stack import api
from fink_stack.endpoints import Endpoints

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    count: int
    topics: int
    tables: int
    seconds_to_ready: float
    reconciles: float
    cpu_seconds: float
    peak_rss_mib: float
    direct_seconds: float = 0.0

    def line(self) -> str:
        return (
            f"{self.count:>5} pipelines ({self.topics} topics, {self.tables} tables): "
            f"all Ready in {self.seconds_to_ready:7.1f}s | "
            f"{self.reconciles / self.seconds_to_ready:6.1f} reconciles/s "
            f"({self.reconciles:.0f} passes) | "
            f"operator CPU {self.cpu_seconds:6.1f}s "
            f"({100 * self.cpu_seconds / self.seconds_to_ready:4.0f}% of a core) | "
            f"peak RSS {self.peak_rss_mib:5.0f} MiB | "
            f"direct creation {self.direct_seconds:6.1f}s, "
            f"ratio {self.seconds_to_ready / self.direct_seconds:4.1f}x"
        )


class Sampler(threading.Thread):
    """Reads the operator's CPU time and resident memory from /proc while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = 0
        self.stopped = threading.Event()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except FileNotFoundError:
                return
            match = re.search(r"VmRSS:\s+(\d+) kB", status)
            if match:
                self.peak_rss = max(self.peak_rss, int(match.group(1)) * 1024)


def reconcile_total(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("controller_runtime_reconcile_total{")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pipeline(name: str, filters: int, table: bool) -> dict[str, Any]:
    sinks: dict[str, Any] = {}
    if table:
        sinks["hbase"] = {"table": name.replace("-", "_")}
    return {
        "apiVersion": f"{crd.GROUP}/{crd.VERSION}",
        "kind": crd.KIND,
        "metadata": {"name": name},
        "spec": {
            "survey": "ztf",
            "source": {"kafka": {"topic": "ztf-alerts"}},
            "filters": [{"name": f"f{i}", "topic": f"{name}.f{i}"} for i in range(filters)],
            "sinks": sinks,
        },
    }


def all_ready(custom: client.CustomObjectsApi, namespace: str, count: int) -> bool:
    items = custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL)[
        "items"
    ]
    ready = 0
    for item in items:
        status = item.get("status") or {}
        if status.get("observedGeneration") != item["metadata"]["generation"]:
            continue
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        ready += conditions.get("Ready") == "True"
    return ready == count


def run_one(stack: Endpoints, count: int, filters: int, table: bool, log_dir: Path) -> Result:
    api_client = config.new_client_from_config(config_file=str(stack.kubeconfig))
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    namespace = f"bench-{count}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    port = free_port()
    log = (log_dir / f"operator-{namespace}.log").open("wb")
    operator = subprocess.Popen(
        [
            sys.executable, "-m", "fink_operator", "run",
            "--kubeconfig", str(stack.kubeconfig), "--namespace", namespace,
            "--kafka-bootstrap", stack.kafka_bootstrap,
            "--hbase-thrift", f"{stack.hbase_thrift_host}:{stack.hbase_thrift_port}",
            "--metrics-address", "127.0.0.1", "--metrics-port", str(port),
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    names = [f"p{i:04d}-{namespace}" for i in range(count)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reconcile_total(metrics_url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        sampler = Sampler(operator.pid)
        sampler.start()
        cpu_before = sampler.cpu_seconds()
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: custom.create_namespaced_custom_object(
                        crd.GROUP, crd.VERSION, namespace, crd.PLURAL, pipeline(n, filters, table)
                    ),
                    names,
                )
            )
        while not all_ready(custom, namespace, count):
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        cpu = sampler.cpu_seconds() - cpu_before
        sampler.stopped.set()
        return Result(
            count=count,
            topics=count * (filters + 1),
            tables=count if table else 0,
            seconds_to_ready=elapsed,
            reconciles=reconcile_total(metrics_url),
            cpu_seconds=cpu,
            peak_rss_mib=sampler.peak_rss / 2**20,
        )
    finally:
        operator.terminate()
        operator.wait(30)
        log.close()
        core.delete_namespace(namespace)
        cleanup(stack, names, table)


def direct_creation(stack: Endpoints, count: int, filters: int, table: bool) -> float:
    """The baseline: the same topics and tables created by a plain script, in seconds."""
    names = [f"direct{i:04d}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    started = time.monotonic()
    try:
        for name in names:
            topics = [NewTopic(f"{name}.f{i}", 1, 1) for i in range(filters)]
            topics.append(NewTopic(f"{name}-deadletter", 1, 1))
            for future in admin.create_topics(topics).values():
                future.result(timeout=60)
            if table:
                connection.create_table(name.replace("-", "_"), {"i": {}, "d": {}})
        return time.monotonic() - started
    finally:
        connection.close()
        cleanup(stack, names, table)


def cleanup(stack: Endpoints, names: list[str], table: bool) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    prefixes = tuple(names)
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    for start in range(0, len(topics), 200):
        for future in admin.delete_topics(topics[start : start + 200]).values():
            future.result(timeout=60)
    if table:
        connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
        existing = set(connection.tables())
        for name in names:
            table_name = name.replace("-", "_")
            if table_name.encode() in existing:
                connection.delete_table(table_name, disable=True)
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--filters", type=int, default=2, help="filter topics per pipeline")
    parser.add_argument("--no-table", action="store_true", help="pipelines without HBase table")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    stack = api.ensure_up(["kubernetes", "kafka", "hbase"], quiet=True)
    install_crd(str(stack.kubeconfig))
    print(
        f"cores: {os.cpu_count()}, filters per pipeline: {args.filters}, tables: {not args.no_table}"
    )
    for count in args.count:
        result = run_one(stack, count, args.filters, not args.no_table, args.log_dir)
        result.direct_seconds = direct_creation(stack, count, args.filters, not args.no_table)
        print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
