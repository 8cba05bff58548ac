"""The leader gauge says what a replica is from the first scrape on.

A standby scraped as a leader, even for the moment between opening its metrics
endpoint and standing by, looks like two active operators during a rolling
upgrade (the chart's upgrade test counts leaders by scraping every pod).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from fink_operator import cli, handlers, metrics


@pytest.fixture(autouse=True)
def _logging_as_it_was(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's kopf.configure gives the root logger a handler on the stream pytest
    captures for this test, closed after it: left there, it took py4j's INFO line at the
    interpreter's exit and printed a "Logging error" at the end of every run."""
    for logger in (logging.getLogger(), logging.getLogger("asyncio")):
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
        monkeypatch.setattr(logger, "propagate", logger.propagate)
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def _gauge_when_served(monkeypatch: pytest.MonkeyPatch, before: float, *flags: str) -> float:
    """The gauge's value as the endpoint opens, after an earlier run left it at `before`."""
    seen: list[float] = []

    def serve(port: int, address: str) -> None:
        value = REGISTRY.get_sample_value("fink_operator_leader")
        assert value is not None, "the gauge is not registered"
        seen.append(value)
        raise OSError(98, "stop here")  # the run ends before any lease or kopf

    monkeypatch.setattr(handlers, "make_runtime", lambda config: SimpleNamespace())
    monkeypatch.setattr(metrics, "serve", serve)
    metrics.LEADER.set(before)
    assert cli.main(["run", "--metrics-port", "18080", *flags]) == cli.EXIT_USAGE
    assert len(seen) == 1
    return seen[0]


def test_a_replica_waiting_for_the_lease_is_never_scraped_as_leader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _gauge_when_served(monkeypatch, 1, "--leader-election") == 0


def test_a_replica_without_leader_election_is_the_leader(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _gauge_when_served(monkeypatch, 0) == 1
