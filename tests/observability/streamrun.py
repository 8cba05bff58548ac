"""What the session's streaming run did and when (conftest.py runs it; the tests read it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Window:
    start: float
    end: float


@dataclass
class StreamedRun:
    """What happened when, for the tests to ask Prometheus about."""

    namespace: str
    pipeline: str  # the streaming pipeline
    broken: str  # the pipeline whose Secret is missing
    operator: str  # the operator's instance label (host:port)
    run_id: str  # label fink_test on the test copies of the rules
    started: float = 0.0
    ended: float = 0.0
    provoked: dict[str, Window] = field(default_factory=dict)  # the alert must fire in it
    fine: dict[str, Window] = field(default_factory=dict)  # the alert must not fire in it

    def variables(self, rate_interval: str = "30s") -> dict[str, str]:
        """The dashboard's template variables, as Grafana would fill them for this pipeline."""
        return {
            "namespace": self.namespace,
            "pipeline": self.pipeline,
            "datasource": "prometheus",
            "__rate_interval": rate_interval,
        }
