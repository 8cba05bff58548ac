"""Running real pods on the stack's node from a test, and reading what they printed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client


@dataclass(frozen=True)
class PodRun:
    name: str
    phase: str
    node: str | None
    logs: str
    exit_code: int | None


def pod_manifest(
    name: str, image: str, command: list[str], env: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                }
            ],
        },
    }


def wait_for_pod(
    core: client.CoreV1Api, namespace: str, name: str, phases: tuple[str, ...], timeout: float
) -> Any:
    deadline = time.monotonic() + timeout
    pod = core.read_namespaced_pod(name, namespace)
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in phases:
            return pod
        time.sleep(0.5)
    raise AssertionError(
        f"pod {namespace}/{name} still {pod.status.phase} after {timeout:.0f}s: {pod.status}"
    )


def run_pod(
    kube: client.ApiClient,
    namespace: str,
    name: str,
    image: str,
    command: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> PodRun:
    """Run a pod to completion on the cluster; its logs come through apiserver -> kubelet."""
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(namespace, pod_manifest(name, image, command, env))
    pod = wait_for_pod(core, namespace, name, ("Succeeded", "Failed"), timeout)
    logs = core.read_namespaced_pod_log(name, namespace)
    terminated = pod.status.container_statuses[0].state.terminated
    return PodRun(
        name=name,
        phase=pod.status.phase,
        node=pod.spec.node_name,
        logs=logs,
        exit_code=terminated.exit_code if terminated else None,
    )
