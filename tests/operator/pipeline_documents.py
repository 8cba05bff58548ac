"""BrokerPipeline documents for tests (imported by name: tests/operator is on sys.path)."""

from __future__ import annotations

from typing import Any


def minimal(name: str = "p1", namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    """The smallest valid pipeline, with `spec` fields overridden."""
    body: dict[str, Any] = {
        "apiVersion": "fink.broker.dev/v1alpha1",
        "kind": "BrokerPipeline",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "spec": {"survey": "ztf", "source": {"kafka": {"topic": "alerts"}}},
    }
    body["spec"].update(spec)
    return body


MODULES = [{"name": "quality_cuts"}, {"name": "lightcurve_features"}, {"name": "solar_system"}]
FILTERS = ["early_sn_candidates", "new_sso_candidates", "fast_transients"]


def with_filters(name: str, count: int, **spec: Any) -> dict[str, Any]:
    """A pipeline running the built-in science with `count` filters (at most 3), each writing
    to a topic named after the pipeline: {name}.f0, {name}.f1, ... with i+1 partitions."""
    assert count <= len(FILTERS), "there are only three built-in ZTF filters"
    filters = [
        {"name": FILTERS[i], "topic": f"{name}.f{i}", "partitions": i + 1} for i in range(count)
    ]
    return minimal(name=name, modules=MODULES, filters=filters, **spec)
