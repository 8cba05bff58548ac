"""Status conditions in the Kubernetes style, kept pure so they are easy to test.

lastTransitionTime only moves when a condition's status changes, so a user can
tell how long a pipeline has been (not) ready; reason and message always say
why, in words that name what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TOPICS_READY = "TopicsReady"
TABLES_READY = "TablesReady"
READY = "Ready"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return {True: "True", False: "False", None: "Unknown"}[self.status]


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge(
    previous: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """New condition list: updated entries replace old ones, others are kept as they were."""
    old = {c.get("type"): dict(c) for c in previous or ()}
    merged = dict(old)
    for condition in updates:
        before = old.get(condition.type) or {}
        changed = before.get("status") != condition.status_text
        merged[condition.type] = {
            "type": condition.type,
            "status": condition.status_text,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": now if changed else before.get("lastTransitionTime", now),
            **({"observedGeneration": generation} if generation is not None else {}),
        }
    return [merged[key] for key in sorted(merged, key=_order)]


ORDER = [TOPICS_READY, TABLES_READY, "SparkSubmitted", "DriverRunning", "Streaming", READY]


def _order(kind: str | None) -> tuple[int, str]:
    known = ORDER
    return (known.index(kind), "") if kind in known else (len(known), kind or "")


def overall(parts: Iterable[Condition]) -> Condition:
    """Ready is True when every part is; otherwise it repeats the first part that is not.

    The parts are those the pipeline has (a pipeline without an HBase sink has a
    TablesReady part that is True with reason NoTable), so Ready never waits on
    something the spec does not ask for.
    """
    parts = list(parts)
    for part in parts:
        if part.status is not True:
            return Condition(READY, part.status, part.reason, part.message)
    return Condition(READY, True, "Reconciled", "; ".join(p.message for p in parts))


def transitions(
    previous: Iterable[Mapping[str, Any]] | None, current: Iterable[Condition]
) -> list[Condition]:
    """Conditions whose status or reason differs from before: what deserves an event."""
    old = {c.get("type"): (c.get("status"), c.get("reason")) for c in previous or ()}
    return [c for c in current if old.get(c.type) != (c.status_text, c.reason)]


def phase(ready: Condition, waiting: bool) -> str:
    if ready.reason == "Suspended":
        return "Suspended"
    if ready.status is True:
        return "Ready"
    if waiting:
        return "Waiting"
    return "Degraded" if ready.status is False else "Pending"
