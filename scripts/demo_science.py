"""The demo's science case: a scientist's filter published to the running job, without a release.

Step 2b writes a filter with `fink-filter init` (once: later runs keep the
scientist's file), checks it with `fink-filter test` and publishes it with
`fink-filter apply`; the job on the node loads it at its next micro-batch.
After the alerts went through, step 5b shows its status (`kubectl get sf`) and
its first alerts (`fink-filter tail`). docs/science-filters.md tells the path.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from demo_shell import BIN, DemoError, kubectl, run, step

FILTER = "bright-demo"
LIVE_TIMEOUT_S = 60


def publish(state: Path, namespace: str, pipeline: str) -> None:
    step(f"2b. A scientist's filter {FILTER}, published to the running job (no image, no restart)")
    where = state / "science"
    where.mkdir(parents=True, exist_ok=True)
    code = where / f"{FILTER}.py"
    if not code.exists():
        run([str(BIN / "fink-filter"), "init", FILTER, "--pipeline", pipeline, "--dir", str(where)])
    run([str(BIN / "fink-filter"), "test", str(code), "--alerts", "500"])
    # the job loads it at its next micro-batch: with no alert yet, Live comes in step 5b
    run(
        [
            str(BIN / "fink-filter"), "apply", str(code), "-n", namespace,
            "--wait-validated-only",
        ]
    )  # fmt: skip


def show(namespace: str) -> dict[str, Any]:
    """Its status once Live (after the alerts went through) and a few of its alerts."""
    step(f"5b. The scientist's filter {FILTER}: live in the job, its alerts")
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = json.loads(kubectl("get", "sf", FILTER, "-n", namespace, "-o", "json", quiet=True))
        status = found.get("status") or {}
        live = _condition(status, "Live")
        if live.get("status") == "True" or live.get("reason", "").startswith("Filter"):
            break
        time.sleep(2)
    kubectl("get", "sf", "-n", namespace, "-o", "wide")
    live = _condition(status, "Live")
    if live.get("status") != "True":
        raise DemoError(f"ScienceFilter {FILTER} is not live: {live.get('reason')}: {live}")
    run(
        [
            str(BIN / "fink-filter"), "tail", FILTER, "-n", namespace, "--from-beginning",
            "--max", "3", "--timeout", "30",
        ]
    )  # fmt: skip
    return status


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c.get("type") == kind), {})
