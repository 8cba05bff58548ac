"""Operator-wide settings: built once from the command line, passed to every handler.

Nothing here is a mutable global: `cli.py` builds an OperatorConfig, the
operator context (`context.py`) carries it to the handlers through kopf's memo,
and a unit test builds its own with fakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fink_core.connections import Defaults
from fink_core.spec import API_GROUP
from fink_operator.job.render import JobConfig

GROUP = API_GROUP
FINALIZER = f"{GROUP}/cleanup"


@dataclass(frozen=True)
class OperatorConfig:
    defaults: Defaults = field(default_factory=Defaults)
    drift_interval: float = 15.0  # seconds between drift sweeps over every pipeline
    server_timeout: float = 5.0  # per Kafka/HBase admin call
    max_backoff: float = 60.0  # ceiling of the retry delay when a server is down
    cleanup_timeout: float = 600.0  # give up deleting data of a gone cluster after this
    kubeconfig: str | None = None
    step_delay: float = 0.0  # test hook: pause between topic creations
    workers: int = 8  # passes run at once
    jobs: JobConfig = field(default_factory=JobConfig)  # the pipelines' Spark jobs


def backoff(retry: int, ceiling: float) -> float:
    """Retry delay in seconds: 1, 2, 4, ... up to the ceiling."""
    return float(min(ceiling, 2 ** min(retry, 16)))
