"""BrokerPipeline documents for tests (imported by name: tests/operator is on sys.path)."""

from __future__ import annotations

from typing import Any


def minimal(name: str = "p1", namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    """The smallest valid pipeline, with `spec` fields overridden."""
    body: dict[str, Any] = {
        "apiVersion": "fink.broker.dev/v1alpha1",
        "kind": "BrokerPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"survey": "ztf", "source": {"kafka": {"topic": "alerts"}}},
    }
    body["spec"].update(spec)
    return body
