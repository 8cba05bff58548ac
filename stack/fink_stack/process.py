"""Background server processes tracked by pid file.

`up` spawns each server in its own session (so it outlives the CLI and can be
signalled as a group) and records its pid with a marker string from its command
line. `down` only signals a pid whose environment still carries that marker
(FINK_STACK_SERVICE, set at spawn), so a pid reused by an unrelated process
after a reboot is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER_VARIABLE = "FINK_STACK_SERVICE"
# a server's log past this size at its start becomes <name>.log.1 (the previous .1 goes):
# appended to run after run, Kafka's grew to 1.8 GB over a few dozen test sessions
LOG_ROTATE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Running:
    pid: int
    marker: str


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    pidfile: Path,
    marker: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Running:
    """Start argv detached from this process, appending its output to log (rotated
    first when it has grown past LOG_ROTATE_BYTES).

    The process inherits `marker` in its environment; see is_ours.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    rotate(log)
    with log.open("ab") as out:
        out.write(
            f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode()
        )
        out.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {}), MARKER_VARIABLE: marker},
            start_new_session=True,
        )
    running = Running(pid=process.pid, marker=marker)
    pidfile.write_text(json.dumps({"pid": running.pid, "marker": marker}))
    return running


def rotate(log: Path, limit: int = LOG_ROTATE_BYTES) -> bool:
    """Move a log past `limit` bytes to <log>.1, replacing the one before: only at a
    server's start, when nothing writes to it (a server never reopens its log)."""
    try:
        if log.stat().st_size <= limit:
            return False
    except FileNotFoundError:
        return False
    os.replace(log, log.with_name(log.name + ".1"))
    return True


def read(pidfile: Path) -> Running | None:
    """The process recorded in pidfile, if it is still alive and still ours."""
    try:
        record = json.loads(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None
    running = Running(pid=int(record["pid"]), marker=str(record["marker"]))
    return running if is_ours(running) else None


def alive(running: Running) -> bool:
    """The process still runs (a zombie does not), whatever its environment says.

    Right after spawn, until the child's exec completes, /proc/PID/environ still
    shows the parent's environment, without the marker: a just-started server is
    judged by this, not by is_ours.
    """
    try:
        status = Path(f"/proc/{running.pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return status.rsplit(")", 1)[-1].split()[0] != "Z"


def is_ours(running: Running) -> bool:
    if not alive(running):  # gone, or a zombie, which is gone for our purposes
        return False
    try:
        environ = Path(f"/proc/{running.pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return f"{MARKER_VARIABLE}={running.marker}".encode() in environ.split(b"\0")


def stop(pidfile: Path, *, grace_seconds: float = 30.0) -> bool:
    """Terminate the recorded process group (TERM, then KILL after grace); True if one ran."""
    running = read(pidfile)
    if running is None:
        pidfile.unlink(missing_ok=True)
        return False
    _signal_group(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and is_ours(running):
        time.sleep(0.2)
    if is_ours(running):
        _signal_group(running.pid, signal.SIGKILL)
        while is_ours(running):
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return True


def command_line(pid: int) -> list[str] | None:
    """The argv a process runs with, as the kernel reports it."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def find_marked(marker: str) -> list[int]:
    """Processes whose environment carries this marker (e.g. children a server left behind)."""
    wanted = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and alive(Running(int(entry.name), marker)):
            found.append(int(entry.name))
    return found


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, to put in an error message."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join(text.splitlines()[-lines:])
