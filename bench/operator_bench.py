"""Benchmark the operator: N pipelines to all-Ready, then N idle pipelines, then one drift.

    .venv/bin/python bench/operator_bench.py --count 10 100 500 [--filters 2] [--tables both]

For each N (with and/or without an HBase table per pipeline): a fresh namespace
and a fresh operator process (so CPU and memory are its own), N pipelines
created as fast as the API server takes them (8 client threads), then:

- start-up: time until every one reports Ready for its generation, reconciles/s
  (the operator's own controller_runtime_reconcile_total), events posted, CPU
  seconds and peak RSS of the operator;
- steady state: an idle window (`--idle`, default 60 s) with nothing changing:
  the operator's CPU, the Kafka and HBase requests it sent (fink_backend_calls_total)
  and the events it posted, per minute;
- drift: one topic deleted behind the operator's back, and the time until it
  is back.

Baseline, measured in the same run: a script creating the very same topics and
tables directly (AdminClient and HBase's Thrift2 gateway, no Kubernetes at all)
with the same concurrency as the operator (8 pipelines at a time). The ratio
operator / direct is what declaring pipelines as resources costs over
provisioning by hand. Topics, tables and claims are deleted afterwards. Needs
a running local stack (`fink-stack up`).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic
from kubernetes import client, config

from fink_core import crd
from fink_core.connections import Address
from fink_core.hbase_admin import HBaseAdmin
from fink_core.resources import FamilyState, TableState
from fink_operator import claims
from fink_operator.install import install_crd
from fink_stack import api
from fink_stack.endpoints import Endpoints

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 600  # far above any figure measured: a stuck run says so
WORKERS = 8  # the operator's passes at once, and the baseline's
MODULES = [{"name": "quality_cuts"}, {"name": "lightcurve_features"}, {"name": "solar_system"}]
FILTERS = ["early_sn_candidates", "new_sso_candidates", "fast_transients"]


@dataclass
class Result:
    count: int
    tables: bool
    topics: int = 0
    seconds_to_ready: float = 0.0
    reconciles: float = 0.0
    events: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    settle_seconds: float = 0.0  # after all Ready, until no pass ran for 20 s
    idle_seconds: float = 0.0
    idle_cpu: float = 0.0
    idle_calls: dict[str, float] = field(default_factory=dict)
    idle_events: float = 0.0
    idle_passes: float = 0.0
    revert_seconds: float = 0.0
    direct_seconds: float = 0.0

    def lines(self) -> list[str]:
        per_minute = 60.0 / self.idle_seconds if self.idle_seconds else 0.0
        calls = ", ".join(f"{k} {v * per_minute:.1f}" for k, v in sorted(self.idle_calls.items()))
        return [
            f"{self.count:>4} pipelines, {'with' if self.tables else 'no'} tables "
            f"({self.topics} topics): all Ready in {self.seconds_to_ready:6.1f} s "
            f"(direct creation, {WORKERS} at a time: {self.direct_seconds:6.1f} s, ratio "
            f"{self.seconds_to_ready / self.direct_seconds:4.1f}x) | "
            f"{self.reconciles / self.seconds_to_ready:5.1f} reconciles/s | "
            f"{self.events:.0f} events ({self.events / self.count:.1f}/pipeline) | "
            f"CPU {self.cpu_seconds:5.1f} s ({100 * self.cpu_seconds / self.seconds_to_ready:3.0f}% "
            f"of a core) | peak RSS {self.peak_rss_mib:4.0f} MiB",
            f"      settled {self.settle_seconds:.0f} s after Ready; "
            f"then idle {self.idle_seconds:.0f} s: CPU {100 * self.idle_cpu / self.idle_seconds:4.1f}% "
            f"of a core | passes/min {self.idle_passes * per_minute:.1f} | events/min "
            f"{self.idle_events * per_minute:.1f} | backend requests/min: {calls or 'none'} | "
            f"deleted topic back in {self.revert_seconds:.1f} s",
        ]


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


def scrape(metrics_url: str) -> dict[str, float]:
    """Every sample of the operator's /metrics, keyed by series with labels."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


def backend_calls(samples: dict[str, float]) -> dict[str, float]:
    calls: dict[str, float] = {}
    for key, value in samples.items():
        match = re.match(r'fink_backend_calls_total\{backend="(\w+)",call="(\w+)"\}', key)
        if match:
            calls[match.group(1)] = calls.get(match.group(1), 0.0) + value
    return calls


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
            "modules": MODULES,
            "filters": [{"name": FILTERS[i], "topic": f"{name}.f{i}"} for i in range(filters)],
            "sinks": sinks,
        },
    }


def ready_count(custom: client.CustomObjectsApi, namespace: str) -> int:
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
    return ready


def run_one(
    stack: Endpoints, count: int, filters: int, table: bool, idle: float, log_dir: Path
) -> Result:
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
            "--hbase-admin", f"{stack.hbase_thrift_host}:{stack.hbase_admin_port}",
            "--metrics-address", "127.0.0.1", "--metrics-port", str(port),
            "--workers", str(WORKERS),
            "--no-jobs",  # topics and tables only: bench/job_bench.py measures the jobs
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    names = [f"p{i:04d}-{namespace}" for i in range(count)]
    result = Result(count=count, tables=table, topics=count * (filters + 1))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                scrape(metrics_url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        sampler = Sampler(operator.pid)
        sampler.start()
        cpu_before = sampler.cpu_seconds()
        started = time.monotonic()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(
                pool.map(
                    lambda n: custom.create_namespaced_custom_object(
                        crd.GROUP, crd.VERSION, namespace, crd.PLURAL, pipeline(n, filters, table)
                    ),
                    names,
                )
            )
        give_up = started + READY_TIMEOUT_S
        while ready_count(custom, namespace) < count:
            if operator.poll() is not None:
                raise SystemExit(f"the operator exited; see {log.name}")
            if time.monotonic() > give_up:
                raise SystemExit(
                    f"{count} pipelines not all Ready after {READY_TIMEOUT_S} s; see {log.name}"
                )
            time.sleep(0.5)
        result.seconds_to_ready = time.monotonic() - started
        result.cpu_seconds = sampler.cpu_seconds() - cpu_before
        ready = scrape(metrics_url)
        result.reconciles = total(ready, "controller_runtime_reconcile_total{")
        result.events = total(ready, "fink_operator_events_total{")

        # passes already under way when the last pipeline became Ready (the drift sweep's
        # first look at pipelines created meanwhile) finish before the idle window opens
        result.settle_seconds = settle(metrics_url)
        settled = scrape(metrics_url)

        # steady state: nothing changes; what does watching N pipelines cost?
        idle_cpu, idle_started = sampler.cpu_seconds(), time.monotonic()
        time.sleep(idle)
        after = scrape(metrics_url)
        result.idle_seconds = time.monotonic() - idle_started
        result.idle_cpu = sampler.cpu_seconds() - idle_cpu
        before_calls, after_calls = backend_calls(settled), backend_calls(after)
        result.idle_calls = {k: v - before_calls.get(k, 0.0) for k, v in after_calls.items()}
        result.idle_events = total(after, "fink_operator_events_total{") - total(
            settled, "fink_operator_events_total{"
        )
        result.idle_passes = total(after, "controller_runtime_reconcile_total{") - total(
            settled, "controller_runtime_reconcile_total{"
        )

        # drift: a topic deleted behind the operator's back
        admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        victim = f"{names[count // 2]}-deadletter"
        admin.delete_topics([victim])[victim].result(timeout=30)
        while victim in admin.list_topics(timeout=10).topics:
            time.sleep(0.1)
        deleted_at = time.monotonic()
        while victim not in admin.list_topics(timeout=10).topics:
            time.sleep(0.2)
        result.revert_seconds = time.monotonic() - deleted_at
        sampler.stopped.set()
        result.peak_rss_mib = sampler.peak_rss / 2**20
        return result
    finally:
        operator.terminate()
        operator.wait(90)  # under load a stop finishes the passes in flight first
        log.close()
        core.delete_namespace(namespace)
        cleanup(stack, names, table, api_client)


def settle(metrics_url: str, quiet: float = 20.0, limit: float = 180.0) -> float:
    """Seconds until no pass has run for `quiet` seconds (at most `limit`)."""
    started = time.monotonic()
    last, last_change = -1.0, started
    while time.monotonic() - started < limit:
        passes = total(scrape(metrics_url), "controller_runtime_reconcile_total{")
        now = time.monotonic()
        if passes != last:
            last, last_change = passes, now
        elif now - last_change >= quiet:
            return last_change - started
        time.sleep(1.0)
    return limit


def direct_creation(stack: Endpoints, count: int, filters: int, table: bool) -> float:
    """The baseline: the same topics and tables created by a plain script, 8 at a time."""
    names = [f"direct{i:04d}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    address = Address(stack.hbase_thrift_host, stack.hbase_admin_port)
    families = (FamilyState("i"), FamilyState("d"))

    def create(name: str) -> None:
        topics = [NewTopic(f"{name}.f{i}", 1, 1) for i in range(filters)]
        topics.append(NewTopic(f"{name}-deadletter", 1, 1))
        for future in admin.create_topics(topics).values():
            future.result(timeout=60)
        if table:
            with HBaseAdmin(address, timeout=60) as hbase:
                hbase.create(TableState(name.replace("-", "_"), families))

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(create, names))
        return time.monotonic() - started
    finally:
        cleanup(stack, names, table, None)


def cleanup(stack: Endpoints, names: list[str], table: bool, api_client: Any) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    prefixes = tuple(names)
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    for start in range(0, len(topics), 200):
        for future in admin.delete_topics(topics[start : start + 200]).values():
            future.result(timeout=60)
    if table:
        with HBaseAdmin(Address(stack.hbase_thrift_host, stack.hbase_admin_port), timeout=60) as h:
            for name in names:
                h.drop(name.replace("-", "_"))
    if api_client is not None:
        custom = client.CustomObjectsApi(api_client)
        wanted = set(names)
        for claim in custom.list_cluster_custom_object(claims.GROUP, claims.VERSION, claims.PLURAL)[
            "items"
        ]:
            if claim["spec"]["owner"]["name"] in wanted:
                custom.delete_cluster_custom_object(
                    claims.GROUP, claims.VERSION, claims.PLURAL, claim["metadata"]["name"]
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, nargs="+", default=[10, 100])
    parser.add_argument(
        "--filters", type=int, default=2, choices=[0, 1, 2, 3], help="filter topics per pipeline"
    )
    parser.add_argument("--tables", choices=["with", "without", "both"], default="both")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of steady state")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    stack = api.ensure_up(["kubernetes", "kafka", "hbase"], quiet=True)
    install_crd(str(stack.kubeconfig))
    variants = {"with": [True], "without": [False], "both": [False, True]}[args.tables]
    print(
        f"cores: {os.cpu_count()}, filters per pipeline: {args.filters}, "
        f"operator and baseline both {WORKERS} at a time, drift sweep every 15 s"
    )
    for count in args.count:
        for table in variants:
            result = run_one(stack, count, args.filters, table, args.idle, args.log_dir)
            result.direct_seconds = direct_creation(stack, count, args.filters, table)
            for line in result.lines():
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
