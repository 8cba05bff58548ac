"""Helpers for tests that run real pods on the stack's real node."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from fink_stack import process
from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout


def _start_ticks(pid: int) -> int:
    """When a process started, in clock ticks since boot (/proc/PID/stat field 22)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19])


@pytest.fixture(scope="session")
def stack_owned_by_session(stack: Endpoints) -> bool:
    """Whether this test session started the stack (so it may take it down and up again).

    True when the apiserver started after this pytest process did; a stack a
    developer (or another session) runs is never cycled unless
    FINK_STACK_FULL_CYCLE=1 says so.
    """
    if os.environ.get("FINK_STACK_FULL_CYCLE") == "1":
        return True
    running = process.read(Layout.default().pids / "kube-apiserver.pid")
    return running is not None and _start_ticks(running.pid) >= _start_ticks(os.getpid())


@pytest.fixture(scope="session")
def kube(stack: Endpoints) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(stack.kubeconfig))


@pytest.fixture
def namespace(kube: client.ApiClient, unique_name: str) -> Iterator[str]:
    """A fresh namespace whose default service account exists (pods are refused before)."""
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique_name)))
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and not core.list_namespaced_service_account(
            unique_name, field_selector="metadata.name=default"
        ).items
    ):
        time.sleep(0.2)
    yield unique_name
    core.delete_namespace(unique_name)
