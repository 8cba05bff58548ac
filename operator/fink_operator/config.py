"""Operator-wide settings, filled from the command line before kopf starts the handlers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .connections import Defaults

GROUP = "fink.broker.dev"
FINALIZER = f"{GROUP}/cleanup"


@dataclass
class OperatorConfig:
    defaults: Defaults = field(default_factory=Defaults)
    drift_interval: float = 60.0  # seconds between drift checks of each pipeline
    server_timeout: float = 5.0  # per Kafka/HBase admin call
    max_backoff: float = 60.0  # ceiling of the retry delay when a server is down
    cleanup_timeout: float = 600.0  # give up deleting data of a gone cluster after this
    kubeconfig: str | None = None
    step_delay: float = 0.0  # test hook: pause between topic creations


CONFIG = OperatorConfig()


def backoff(retry: int, ceiling: float) -> float:
    """Retry delay in seconds: 1, 2, 4, ... up to the ceiling."""
    return float(min(ceiling, 2 ** min(retry, 16)))
