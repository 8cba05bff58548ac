"""Benchmark the operator's Spark jobs: submissions at scale on kwok, and latency on the real node.

    .venv/bin/python bench/job_bench.py --kwok 100 500        # drivers created and Running
    .venv/bin/python bench/job_bench.py --node                # apply -> first alert; roll -> streaming

--kwok N: N pipelines whose drivers land on kwok's fake node (no containers run:
this measures the operator and the API server, not Spark). Prints the time until
every driver pod exists, until every pipeline reports DriverRunning, and until
every one is Ready, the submissions per minute, and the operator's CPU and peak
memory. For scale: Kubeflow's spark-operator publishes about 130-150 submitted
applications per minute per instance, on 36 cores (it runs spark-submit, a JVM,
for each; this operator creates the driver pod itself).

--node: one pipeline on the real node (real Spark, one executor): the time from
`kubectl apply` to the first alert on a filter topic, and from a spec change to
the rolled job streaming again (a new alert on the filter topic).

Needs a running local stack (`fink-stack up`).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

from fink_core import crd
from fink_operator.install import install_crd
from fink_stack import api
from fink_stack.endpoints import Endpoints

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KWOK = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
    "executor": {"instances": 0},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Usage(threading.Thread):
    """CPU seconds and peak resident memory of a process, from /proc."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_rss, self.stopped = pid, 0, threading.Event()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
            except FileNotFoundError:
                return


def start_operator(stack: Endpoints, namespace: str, log: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable, "-m", "fink_operator", "run",
            "--kubeconfig", str(stack.kubeconfig), "--namespace", namespace,
            "--metrics-address", "127.0.0.1", "--metrics-port", str(free_port()),
            "--jobs", *flags,
        ],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def conditions_of(item: dict[str, Any]) -> dict[str, str]:
    status = item.get("status") or {}
    if status.get("observedGeneration") != item["metadata"]["generation"]:
        return {}
    return {c["type"]: c["status"] for c in status.get("conditions") or []}


def kwok(stack: Endpoints, count: int, log_dir: Path) -> None:
    api_client = config.new_client_from_config(config_file=str(stack.kubeconfig))
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    namespace = f"jobbench-{count}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    operator = start_operator(
        stack,
        namespace,
        log_dir / f"operator-{namespace}.log",
        "--kafka-bootstrap", stack.kafka_bootstrap,
        "--spark-image", "fink-k8s/pipeline:dev",
        "--pipeline-volume", "host-path:/var/lib/fink-bench",
        "--workers", "8",
    )  # fmt: skip
    usage = Usage(operator.pid)
    usage.start()
    time.sleep(3)  # the operator's start-up, not what is measured
    names = [f"j{i:04d}" for i in range(count)]

    def body(name: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{crd.GROUP}/{crd.VERSION}",
            "kind": crd.KIND,
            "metadata": {"name": name},
            "spec": {
                "survey": "ztf",
                "source": {"kafka": {"topic": "ztf-alerts"}},
                "sinks": {"kafka": {"deadLetterTopic": f"{namespace}.{name}.dlq"}},
                "spark": KWOK,
            },
        }

    try:
        cpu_before, started = usage.cpu(), time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: custom.create_namespaced_custom_object(
                        crd.GROUP, crd.VERSION, namespace, crd.PLURAL, body(n)
                    ),
                    names,
                )
            )
        created_at = running_at = None
        while True:
            drivers = core.list_namespaced_pod(namespace, label_selector="spark-role=driver").items
            if created_at is None and len(drivers) >= count:
                created_at = time.monotonic() - started
            items = custom.list_namespaced_custom_object(
                crd.GROUP, crd.VERSION, namespace, crd.PLURAL
            )["items"]
            seen = [conditions_of(i) for i in items]
            if running_at is None and sum(c.get("DriverRunning") == "True" for c in seen) >= count:
                running_at = time.monotonic() - started
            if sum(c.get("Ready") == "True" for c in seen) >= count:
                ready_at = time.monotonic() - started
                break
            if operator.poll() is not None:
                raise SystemExit("the operator exited")
            time.sleep(0.5)
        cpu = usage.cpu() - cpu_before
        assert created_at is not None and running_at is not None
        print(
            f"kwok, {count} pipelines: every driver pod created in {created_at:6.1f} s "
            f"({60 * count / created_at:6.0f} submissions/min), all DriverRunning in "
            f"{running_at:6.1f} s, all Ready in {ready_at:6.1f} s | operator CPU {cpu:5.1f} s "
            f"({100 * cpu / ready_at:3.0f}% of a core), peak RSS {usage.peak_rss / 2**20:4.0f} MiB",
            flush=True,
        )
    finally:
        usage.stopped.set()
        operator.terminate()
        operator.wait(90)  # under load a stop finishes the passes in flight first
        core.delete_namespace(namespace)


def node(stack: Endpoints, log_dir: Path) -> None:
    """Apply -> first alert on a filter topic, and spec change -> streaming again, on the node."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "operator"))
    from job_world import JobWorld  # the same world the node tests use

    pods = stack.pods
    if pods is None:
        raise SystemExit("the real node is not up: fink-stack up node")
    api_client = config.new_client_from_config(config_file=str(stack.kubeconfig))
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    namespace = f"jobbench-node-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    volume = Path(tempfile.mkdtemp(prefix="fink-bench-volume-"))
    operator = start_operator(
        stack,
        namespace,
        log_dir / f"operator-{namespace}.log",
        "--kafka-bootstrap", pods.kafka_bootstrap,
        "--hbase-thrift", pods.hbase_thrift,
        "--hbase-admin", pods.hbase_admin,
        "--spark-image", pods.pipeline_image,
        "--image-pull-policy", "Never",
        "--pipeline-volume", f"host-path:{volume}",
    )  # fmt: skip
    world = JobWorld(stack, f"bench-{uuid.uuid4().hex[:6]}", namespace, volume)
    world.create_source()
    world.produce(200)
    try:
        time.sleep(3)
        started = time.monotonic()
        custom.create_namespaced_custom_object(
            crd.GROUP, crd.VERSION, namespace, crd.PLURAL, world.document()
        )
        first = _first_alert(world, started)
        print(f"node: kubectl apply -> first alert on a filter topic in {first:5.1f} s", flush=True)
        seen = len(world.topic_ids("fast_transients"))
        started = time.monotonic()
        custom.patch_namespaced_custom_object(
            crd.GROUP,
            crd.VERSION,
            namespace,
            crd.PLURAL,
            world.name,
            {"spec": {"spark": {"triggerInterval": "3 seconds"}}},
        )
        world.produce(200)
        again = _first_alert(world, started, after=seen)
        print(f"node: spec change -> the rolled job's first new alert in {again:5.1f} s")
    finally:
        operator.terminate()
        operator.wait(90)  # under load a stop finishes the passes in flight first
        core.delete_namespace(namespace)


def _first_alert(world: Any, started: float, after: int = 0, timeout: float = 600) -> float:
    while time.monotonic() - started < timeout:
        try:
            if len(world.topic_ids("fast_transients")) > after:
                return time.monotonic() - started
        except LookupError:  # the topic does not exist yet
            pass
        time.sleep(0.5)
    raise SystemExit("no alert reached the filter topic in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kwok", type=int, nargs="*", default=[], help="pipeline counts")
    parser.add_argument("--node", action="store_true", help="latencies on the real node")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    stack = api.ensure_up(quiet=True)
    install_crd(str(stack.kubeconfig))
    print(f"cores: {os.cpu_count()}")
    for count in args.kwok:
        kwok(stack, count, args.log_dir)
    if args.node:
        node(stack, args.log_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
