"""What `fink-stack` says when something is wrong, and its documented exit codes.

Each test uses a state directory of its own (FINK_STACK_HOME), so the running
stack is never touched: a port the shared stack holds is, for such a second
stack, "taken by a process this stack did not start".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fink_stack import process, stack
from fink_stack.layout import Layout
from fink_stack.services import Service, by_name

FINK_STACK = str(Path(sys.executable).with_name("fink-stack"))


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FINK_STACK, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FINK_STACK_HOME": str(home)},
    )


@pytest.mark.stack
def test_a_taken_port_is_named_with_what_to_do(stack: object, tmp_path: Path) -> None:
    result = run(tmp_path, "up", "kafka")
    assert result.returncode == 1
    assert "port 127.0.0.1:9092 is already taken by a process this stack did not start" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_service_dying_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    layout = Layout(cache=tmp_path / "cache", state=tmp_path / "state")
    broken = Service(
        "broken-server",
        "kafka",
        (),
        lambda _: [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(3)"],
        lambda _: False,
    )
    with pytest.raises(stack.StackError) as failed:
        stack.start_service(layout, broken, report=lambda _: None)
    message = str(failed.value)
    assert "broken-server exited during start-up" in message
    assert str(layout.log_of("broken-server")) in message
    assert "bad config line 3" in message  # the end of its log


def test_status_says_none_some_or_all_with_its_exit_code(tmp_path: Path) -> None:
    nothing = run(tmp_path, "status")
    assert nothing.returncode == 4, nothing.stdout
    layout = Layout(cache=Layout.default().cache, state=tmp_path)
    service = by_name("kwok")  # its health needs this state's kubeconfig: never healthy here
    running = process.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        log=layout.log_of(service.name),
        pidfile=layout.pids / f"{service.name}.pid",
        marker=service.marker(layout),
    )
    try:
        some = run(tmp_path, "status")
        assert some.returncode == 3, some.stdout
        assert "kwok" in some.stdout and "starting" in some.stdout
    finally:
        process.stop(layout.pids / f"{service.name}.pid", grace_seconds=5)
    assert running.pid > 0


@pytest.mark.stack
def test_status_is_zero_when_every_service_answers(stack: object) -> None:
    result = subprocess.run([FINK_STACK, "status"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
