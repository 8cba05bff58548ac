"""A count of the requests the adapters send to Kafka and HBase, by call.

Served by whoever exposes the default Prometheus registry (the operator's
/metrics), so the cost of watching many pipelines is visible: with the drift
sweep, idle pipelines cost a few requests per sweep, not a few per pipeline.
"""

from __future__ import annotations

from prometheus_client import Counter

CALLS = Counter(
    "fink_backend_calls_total",
    "Requests sent to Kafka and HBase admin APIs, by backend and call",
    ["backend", "call"],
)


def count(backend: str, call: str, requests: int = 1) -> None:
    CALLS.labels(backend, call).inc(requests)
