"""Fixtures for end-to-end operator tests: the CRD, a namespace each, the operator as a process.

Every test gets its own namespace and its own operator subprocess watching only
that namespace, so tests never see each other's pipelines and a test may kill
its operator without disturbing the others.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster import HBase, Kafka, Pipelines
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from fink_core import crd
from fink_operator import claims
from fink_operator.install import install_crd
from fink_stack.endpoints import Endpoints


@pytest.fixture(scope="session")
def kube(stack: Endpoints) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(stack.kubeconfig))


@pytest.fixture(scope="session")
def crd_installed(stack: Endpoints) -> None:
    install_crd(str(stack.kubeconfig))


NamespaceFactory = Callable[[str], str]


@pytest.fixture
def make_namespace(
    kube: client.ApiClient, crd_installed: None, unique_name: str
) -> Iterator[NamespaceFactory]:
    """Create namespaces for this test (named after it); all are cleaned up at the end."""
    core = client.CoreV1Api(kube)
    made: list[str] = []

    def make(suffix: str = "") -> str:
        name = f"{unique_name}{suffix}"[:63].rstrip("-")
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        made.append(name)
        return name

    yield make
    for name in made:
        _release_namespace(kube, name)


@pytest.fixture
def namespace(make_namespace: NamespaceFactory) -> str:
    return make_namespace("")


def _release_namespace(kube: client.ApiClient, name: str) -> None:
    """The operators are gone by now: release finalizers and claims, delete the namespace."""
    core = client.CoreV1Api(kube)
    custom = client.CustomObjectsApi(kube)
    for item in custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, name, crd.PLURAL)[
        "items"
    ]:
        if item["metadata"].get("finalizers"):
            try:
                custom.patch_namespaced_custom_object(
                    crd.GROUP,
                    crd.VERSION,
                    name,
                    crd.PLURAL,
                    item["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )
            except ApiException as error:
                if error.status != 404:
                    raise
    core.delete_namespace(name)
    # claims are cluster-scoped: release those of this test's pipelines
    for claim in custom.list_cluster_custom_object(claims.GROUP, claims.VERSION, claims.PLURAL)[
        "items"
    ]:
        if claim["spec"]["owner"]["namespace"] == name:
            try:
                custom.delete_cluster_custom_object(
                    claims.GROUP, claims.VERSION, claims.PLURAL, claim["metadata"]["name"]
                )
            except ApiException as error:
                if error.status != 404:
                    raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    """`python -m fink_operator run` as a real subprocess, watching one namespace."""

    def __init__(self, stack: Endpoints, namespace: str, log: Path, *extra: str) -> None:
        self.port = _free_port()
        self.log = log
        self.command = [
            sys.executable,
            "-m",
            "fink_operator",
            "run",
            "--kubeconfig",
            str(stack.kubeconfig),
            "--namespace",
            namespace,
            "--kafka-bootstrap",
            stack.kafka_bootstrap,
            "--hbase-thrift",
            f"{stack.hbase_thrift_host}:{stack.hbase_thrift_port}",
            "--hbase-admin",
            f"{stack.hbase_thrift_host}:{stack.hbase_admin_port}",
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
            "--drift-interval",
            "2",
            "--max-backoff",
            "3",
            "--server-timeout",
            "3",
            "--verbose",
            *(extra if "--jobs" in extra else ("--no-jobs", *extra)),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> OperatorProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited early; see {self.log}")
            try:
                urllib.request.urlopen(self.metrics_url, timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"operator did not serve metrics in 30s; see {self.log}")

    def metrics(self) -> str:
        return urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like a node dying under the operator."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> bool:
        """SIGTERM; False when it had to be killed after 15 s."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
                return False
        return True


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(stack: Endpoints, namespace: str, tmp_path: Path) -> Iterator[OperatorFactory]:
    """Start an operator for this test's namespace (extra CLI flags allowed); stopped at the end.

    `watch=` names another namespace to watch instead (a second team's operator).
    """
    started: list[OperatorProcess] = []

    def start(*extra: str, watch: str | None = None) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        operator = OperatorProcess(stack, watch or namespace, log, *extra).start()
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()


@pytest.fixture
def running_operator(start_operator: OperatorFactory) -> OperatorProcess:
    return start_operator()


@pytest.fixture
def pipelines(kube: client.ApiClient, namespace: str) -> Pipelines:
    return Pipelines(kube, namespace)


@pytest.fixture(scope="session")
def kafka(stack: Endpoints) -> Kafka:
    return Kafka(stack)


@pytest.fixture(scope="session")
def hbase(stack: Endpoints) -> HBase:
    return HBase(stack)


@pytest.fixture
def leftovers(kafka: Kafka, hbase: HBase) -> Iterator[dict[str, list[str]]]:
    """Topics and tables a test leaves behind on purpose (Retain); removed afterwards."""
    found: dict[str, list[str]] = {"topics": [], "tables": []}
    yield found
    for topic in found["topics"]:
        with contextlib.suppress(Exception):
            kafka.delete(topic)
    for table in found["tables"]:
        with contextlib.suppress(Exception):
            hbase.drop(table)
