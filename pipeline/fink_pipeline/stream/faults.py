"""A fault hook for tests: stop, crash or fail the pipeline at a named point of a micro-batch.

This is test machinery, like the operator's `--step-delay`: it does nothing
unless the environment variable FINK_PIPELINE_FAULT is set, and nothing sets it
outside the tests. It exists because "a crash inside the Kafka transaction is
aborted" or "HBase going away mid-batch leaves nothing half-written" can only be
tested if the test knows the crash landed there, not merely somewhere.

    FINK_PIPELINE_FAULT=<stage>[@<batch>]:<action>
    FINK_PIPELINE_FAULT_MARKER=<file>          (optional)

Stages, in the order a micro-batch reaches them:

- `batch`: in the driver, as micro-batch N starts, before its Spark tasks run;
- `hbase-write`: in a Spark task, after it sent its alerts' rows to HBase and
  before it returns them to the driver (so the rows are in HBase, the batch's
  Parquet file and Kafka transaction are not written yet);
- `kafka-transaction`: in the driver, inside the batch's Kafka transaction:
  the filter messages, dead letters and source offsets are sent and flushed to
  the broker, the commit is not (a read_uncommitted consumer sees them).

`@<batch>` fires the fault only from micro-batch <batch> on (default: the first
batch that gets there). Actions:

- `pause:SECONDS`: wait there up to SECONDS, or until a file named like the
  marker plus `.go` exists (the test's way of saying "go on"; it may instead
  kill the process meanwhile); once that file exists, later firings do not wait;
- `exit`: end the process there at once (os._exit), as a crash would;
- `raise`: raise FaultInjected there, as a failing call would.

With a marker file, every firing first appends one JSON line to it
(`{"stage": ..., "batch": ..., "pid": ...}`), so a test can wait until the
pipeline is exactly there and afterwards prove where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

ENV_FAULT = "FINK_PIPELINE_FAULT"
ENV_MARKER = "FINK_PIPELINE_FAULT_MARKER"
STAGES = ("batch", "hbase-write", "kafka-transaction")
EXIT_CODE = 86  # what `exit` ends the process with: not a code fink-pipeline uses


class FaultInjected(RuntimeError):
    """Raised by the `raise` action."""


@dataclass(frozen=True)
class Fault:
    stage: str
    action: str  # pause, exit, raise
    seconds: float = 0.0
    from_batch: int = 0


def parse(text: str) -> Fault:
    """`stage[@batch]:action`; ValueError saying what is wrong (a typo must not pass silently)."""
    where, _, action = text.partition(":")
    stage, _, batch = where.partition("@")
    if stage not in STAGES:
        raise ValueError(f"{ENV_FAULT}: unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    kind, _, argument = action.partition(":")
    if kind == "pause":
        seconds = float(argument)
    elif kind in ("exit", "raise") and not argument:
        seconds = 0.0
    else:
        raise ValueError(f"{ENV_FAULT}: action {action!r} is not pause:SECONDS, exit or raise")
    return Fault(stage, kind, seconds, int(batch) if batch else 0)


def configured() -> Fault | None:
    text = os.environ.get(ENV_FAULT)
    return parse(text) if text else None


def reached(stage: str, batch: int | None) -> None:
    """Called at each stage; does nothing unless a fault is configured for this stage and batch."""
    fault = configured()
    if fault is None or fault.stage != stage:
        return
    if batch is not None and batch < fault.from_batch:
        return
    marker = os.environ.get(ENV_MARKER)
    if marker:
        line = json.dumps({"stage": stage, "batch": batch, "pid": os.getpid()})
        with open(marker, "a") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())
    if fault.action == "exit":
        os._exit(EXIT_CODE)
    if fault.action == "raise":
        raise FaultInjected(f"fault injected at {stage} of micro-batch {batch}")
    go = release_file(marker) if marker else None
    deadline = time.monotonic() + fault.seconds
    while time.monotonic() < deadline and not (go and go.exists()):
        time.sleep(0.1)


def release_file(marker: str | os.PathLike[str]) -> Path:
    """The file whose existence ends a `pause` early."""
    return Path(f"{os.fspath(marker)}.go")
