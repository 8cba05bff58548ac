"""`make demo` itself, on a small alert count: it runs to the end and its summary adds up.

The demo is what a newcomer runs first (the README's first command). This runs
its script as the Makefile does (after the stack is up), then reads the summary
table it prints: this run's alerts reached HBase and the archive, its malformed
messages became dead letters, and the job streams.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fink_stack.endpoints import Endpoints

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py
ROOT = Path(__file__).parents[1]
ALERTS, MALFORMED = 300, 3


def summary_row(output: str, label: str) -> tuple[str, str]:
    """(this run, all runs) of a summary row."""
    match = re.search(rf"^{re.escape(label)}\s+(\S+)\s+(.*)$", output, re.MULTILINE)
    assert match, f"no summary row {label!r} in:\n{output[-3000:]}"
    return match.group(1), match.group(2).strip()


def test_the_demo_runs_end_to_end_and_its_summary_adds_up(stack: Endpoints) -> None:
    assert stack.pods is not None, "the demo runs its pipeline on the real node"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "demo.py"),
            "--alerts",
            str(ALERTS),
            "--malformed",
            str(MALFORMED),
            "--rate",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "FINK_DEMO_READY_TIMEOUT": "400"},
        cwd=ROOT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "=== 6. Summary" in output
    assert summary_row(output, "alerts produced")[0] == str(ALERTS)
    assert summary_row(output, "messages read by the pipeline")[0] == str(ALERTS + MALFORMED)
    assert summary_row(output, "dead letters")[0] == str(MALFORMED)
    assert summary_row(output, "HBase rows")[0] == str(ALERTS)
    this_run, archive = summary_row(output, "Parquet rows")
    assert this_run == str(ALERTS)
    # the archive's files, counted on the node's volume, hold at least this run's alerts
    match = re.fullmatch(r"(\d+) in the archive", archive)
    assert match and int(match.group(1)) >= ALERTS, archive
    assert summary_row(output, "job")[0] == "Streaming"
    for name in ("early_sn_candidates", "new_sso_candidates"):
        this_run, total = summary_row(output, f"filter {name}")
        assert int(this_run) >= 0 and re.match(r"\d+ in fink_", total), total
    # the scientist's filter, published to the running job without a restart
    this_run, total = summary_row(output, "science filter bright-demo")
    assert int(this_run) > 0, output[-3000:]
    assert re.match(r"\d+ in fink_bright-demo_ztf", total), total
    assert "=== 5b." in output and "bright-demo" in output
    assert "demo failed" not in output
