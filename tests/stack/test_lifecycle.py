"""`down` stops exactly what `up` started and keeps data; `up` is idempotent."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from fink_stack import api, process
from fink_stack.endpoints import Endpoints
from fink_stack.layout import PORTS, Layout
from fink_stack.services import port_open
from fink_stack.stack import status as stack_status

pytestmark = pytest.mark.stack  # (the last tests need no stack, only processes of their own)


@pytest.mark.exclusive
def test_stopping_kafka_keeps_its_topics(stack: Endpoints, unique_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(unique_name, num_partitions=2, replication_factor=1)])[
        unique_name
    ].result(timeout=30)

    api.stop_component("kafka")
    try:
        assert not port_open(PORTS.kafka)
        assert not api.is_up(["kafka"])
    finally:
        api.start_component("kafka")
    assert api.is_up(["kafka"])
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    assert unique_name in admin.list_topics(timeout=10).topics


@pytest.mark.exclusive
def test_up_is_idempotent(stack: Endpoints) -> None:
    def pids() -> dict[str, int | None]:
        return {s.name: s.pid for s in stack_status(Layout.default())}

    before = pids()
    assert all(before.values()), f"some services are not running: {before}"
    api.ensure_up(quiet=True)
    assert pids() == before, "a second `up` restarted running services"
    # the console script runs as python3.11, `make demo`'s script as python: the
    # services' command lines must not depend on which name started them
    components = sorted({s.component for s in stack_status(Layout.default())})
    for python in ("python", "python3.11"):
        up = [str(Path(sys.prefix) / "bin" / python), "-m", "fink_stack.cli", "up", *components]
        done = subprocess.run(up, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "restarting" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert pids() == before, "an `up` from another interpreter name restarted services"


def test_stop_never_signals_a_process_it_did_not_start(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile = tmp_path / "x.pid"
        pidfile.write_text(f'{{"pid": {stranger.pid}, "marker": "fink-stack/x@{tmp_path}"}}')
        assert process.read(pidfile) is None
        assert process.stop(pidfile) is False
        assert stranger.poll() is None, "a process without our marker was killed"
    finally:
        stranger.kill()


def test_spawned_service_is_stopped_by_its_pidfile(tmp_path: Path) -> None:
    pidfile = tmp_path / "svc.pid"
    running = process.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        log=tmp_path / "svc.log",
        pidfile=pidfile,
        marker=f"test@{tmp_path}",
    )
    # until the child's exec has set up its environment, /proc shows no marker yet
    deadline = time.monotonic() + 10
    while process.read(pidfile) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.read(pidfile) == running
    assert process.stop(pidfile, grace_seconds=5) is True
    assert not process.is_ours(running)
    assert not pidfile.exists()


def test_a_log_grown_past_the_limit_is_rotated_when_its_server_starts(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_bytes(b"old run\n" * 100)
    assert process.rotate(log, limit=10_000) is False  # 800 bytes: kept
    (tmp_path / "svc.log.1").write_bytes(b"older run\n")
    log.write_bytes(b"x" * (process.LOG_ROTATE_BYTES + 1))
    running = process.spawn(
        [sys.executable, "-c", "print('new run')"],
        log=log,
        pidfile=tmp_path / "svc.pid",
        marker=f"test@{tmp_path}",
    )
    deadline = time.monotonic() + 10
    while process.alive(running) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "svc.log.1").stat().st_size == process.LOG_ROTATE_BYTES + 1
    assert log.read_text().strip().endswith("new run")
    assert log.stat().st_size < 1_000


def test_a_running_process_without_the_marker_is_alive_but_not_ours(tmp_path: Path) -> None:
    """What a just-spawned server looks like until its exec completes: start-up must wait."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = process.Running(pid=stranger.pid, marker=f"test@{tmp_path}")
        assert process.alive(running) and not process.is_ours(running)
        stranger.kill()
        stranger.wait()
        assert not process.alive(running)
    finally:
        stranger.kill()


def test_up_restarts_a_service_whose_command_line_changed(tmp_path: Path) -> None:
    """After an upgrade of the stack, `up` must not leave a server running the old flags."""
    from fink_stack.service import Service
    from fink_stack.stack import start_service, stop_service

    layout = Layout(cache=tmp_path / "cache", state=tmp_path / "state")
    flags = ["--first"]

    def argv(_: Layout) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(60)", *flags]

    service = Service("sleeper", "test", (), argv, lambda _: True, startup_seconds=10)
    lines: list[str] = []
    try:
        start_service(layout, service, lines.append)
        first = process.read(layout.pids / "sleeper.pid")
        start_service(layout, service, lines.append)  # same command line: left alone
        assert process.read(layout.pids / "sleeper.pid") == first
        flags[0] = "--second"
        start_service(layout, service, lines.append)
        second = process.read(layout.pids / "sleeper.pid")
        assert first is not None and second is not None and second.pid != first.pid
        assert not process.is_ours(first)
        assert process.command_line(second.pid)[-1] == "--second"
        assert "restarting sleeper: its command line changed" in lines
    finally:
        stop_service(layout, service)


def test_a_long_build_says_it_is_still_going() -> None:
    from fink_stack.stack import _progress

    lines: list[str] = []
    with _progress(lines.append, "kubelet-v1", "/tmp/k.log", every=0.1):
        time.sleep(0.35)
    assert len(lines) >= 2
    assert lines[0] == "still building kubelet-v1 (0m00s; log /tmp/k.log)"
