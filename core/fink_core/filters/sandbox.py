"""Run scientists' filters in a separate process, with limits, and say what went wrong.

A `FilterSandbox` starts one child process (``python -P -m
fink_core.filters._child``) and keeps it: loading a filter compiles and runs
its module there once, and each call sends only the columns the filter reads
and gets one bool per alert back. One child serves many filters. When a call
kills or hangs the child (too long, too much memory, a crash), that filter's
call raises `FilterFailure`, and the next call starts a new child and loads the
other filters again, so they carry on.

Why a subprocess and not `multiprocessing`: the sandbox runs inside PySpark's
Python workers, which are forked daemon processes; a plain `subprocess.Popen`
works from there, multiprocessing's children of daemons do not.

Why this process never unpickles the child's answers: the child runs untrusted
code, which could write to the pipes; so answers are JSON headers and raw mask
bytes (see `fink_core.filters._child` for the protocol and the isolation).

This module imports neither pandas nor numpy when it is imported (the operator
may import it); `run` uses the numpy that the caller's DataFrame brought.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy
    import pandas

FailureKind = Literal["raised", "timeout", "memory", "forbidden", "bad-result", "crashed"]

_MAX_HEADER = 1 << 20  # a JSON answer is a few hundred bytes; more is a broken child


@dataclass(frozen=True)
class SandboxLimits:
    """What one filter call (or load) may use.

    `memory_bytes` is the child's whole address space (``RLIMIT_AS``), Python,
    numpy and pandas included (about 400 MiB of it), not only the filter's
    share. There is no CPU-time limit: a child lives for many calls, and a
    per-process CPU limit would add them up; wall-clock time per call covers it.
    """

    seconds_per_call: float = 10.0
    memory_bytes: int = 1 << 30
    seconds_per_load: float = 30.0  # the filter's top-level code, its imports included
    seconds_to_start: float = 60.0  # the child importing numpy and pandas on a busy node


class FilterFailure(Exception):
    """A filter failed on a batch of alerts, or could not be loaded; the others carry on.

    `kind` says what happened (one of `FailureKind`), `message` says it to the
    scientist, `line` is the line of their code where it happened, when known.
    """

    def __init__(
        self, filter_id: str, kind: FailureKind, message: str, line: int | None = None
    ) -> None:
        self.filter_id = filter_id
        self.kind = kind
        self.message = message
        self.line = line
        super().__init__(filter_id, kind, message, line)

    def __str__(self) -> str:
        return f"filter {self.filter_id} {self.message}"


class _ChildGone(Exception):
    """The child did not answer in time, died, or answered nonsense; it must be replaced."""

    def __init__(self, why: Literal["timeout", "died", "garbled"]) -> None:
        self.why = why
        super().__init__(why)


@dataclass(frozen=True)
class _Loaded:
    code: str
    entrypoint: str
    reads: tuple[str, ...]


class _Child:
    """One child process and its pipes; every read and write has a deadline."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "fink_core.filters._child", str(limits.memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=os.sep,
            env=_child_environment(),
            start_new_session=True,  # signals aimed at the Spark worker's group skip it
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.to_child = self.process.stdin.fileno()
        self.from_child = self.process.stdout.fileno()
        os.set_blocking(self.to_child, False)
        ready = self.receive(time.monotonic() + limits.seconds_to_start)
        if not ready.get("ok"):
            self.kill()
            raise _ChildGone("garbled")

    def send(self, request: tuple[Any, ...], deadline: float) -> None:
        payload = pickle.dumps(request, protocol=5)
        view = memoryview(len(payload).to_bytes(8, "big") + payload)
        poller = select.poll()
        poller.register(self.to_child, select.POLLOUT)
        while view:
            if not poller.poll(_remaining_ms(deadline)):
                raise _ChildGone("timeout")
            try:
                view = view[os.write(self.to_child, view) :]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise _ChildGone("died") from None

    def receive(self, deadline: float) -> dict[str, Any]:
        """The next JSON header; parsed without trusting the child (no pickle)."""
        size = int.from_bytes(self._read(8, deadline), "big")
        if size > _MAX_HEADER:
            raise _ChildGone("garbled")
        try:
            header = json.loads(self._read(size, deadline))
        except ValueError:
            raise _ChildGone("garbled") from None
        if not isinstance(header, dict):
            raise _ChildGone("garbled")
        return header

    def receive_mask(self, rows: int, deadline: float) -> bytes:
        if int.from_bytes(self._read(8, deadline), "big") != rows:
            raise _ChildGone("garbled")
        return self._read(rows, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, remaining = [], size
        poller = select.poll()
        poller.register(self.from_child, select.POLLIN)
        while remaining:
            if not poller.poll(_remaining_ms(deadline)):
                raise _ChildGone("timeout")
            chunk = os.read(self.from_child, min(remaining, 1 << 20))
            if not chunk:
                raise _ChildGone("died")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> int | None:
        """Stop the child (it may be in an endless loop) and return its exit status."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process stuck in the kernel
            return None
        finally:
            for pipe in (self.process.stdin, self.process.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass

    def exit_status(self) -> int | None:
        """The status of a child that died by itself (waits a moment for the kernel)."""
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return self.kill()


def _remaining_ms(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


def _child_environment() -> dict[str, str]:
    """A small environment: no credentials of the worker's, one thread per math library.

    The child sees the modules this process sees (sys.path as PYTHONPATH: Spark's
    workers add --py-files at run time), and never writes bytecode (refused).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
    }
    env.update(
        PYTHONPATH=os.pathsep.join(path for path in sys.path if path),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2",
    )
    return env


class FilterSandbox:
    """A child process that runs many scientists' filters, each call limited and isolated.

    Use as a context manager, or call `close()`. Not for several threads at once
    (calls are serialised by a lock).
    """

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self._filters: dict[str, _Loaded] = {}
        self._lost: dict[str, FilterFailure] = {}  # loaded once, failed to load again
        self._child: _Child | None = None
        self._lock = threading.Lock()

    # -- public ----------------------------------------------------------------

    @property
    def filters(self) -> dict[str, tuple[str, ...]]:
        """The loaded filters and the columns each reads."""
        return {filter_id: loaded.reads for filter_id, loaded in self._filters.items()}

    def load(self, filter_id: str, code: str, entrypoint: str) -> tuple[str, ...]:
        """Compile and run the filter's module in the child; return the columns it reads.

        Raises `FilterFailure` when its top-level code fails (and then the filter
        is not loaded). Loading an id again replaces that filter.
        """
        with self._lock:
            self._filters.pop(filter_id, None)
            self._lost.pop(filter_id, None)
            child = self._ready_child()
            reads = self._load_into(child, filter_id, code, entrypoint)
            self._filters[filter_id] = _Loaded(code, entrypoint, reads)
            return reads

    def run(self, filter_id: str, frame: pandas.DataFrame) -> numpy.ndarray:
        """One bool per row of FRAME: whether the alert passes the filter (nulls are False).

        Sends only the columns the filter reads, as Series with a 0..n-1 index.
        Raises `FilterFailure` when the filter fails on these alerts; the sandbox
        stays usable for every filter (a new child is started when needed).
        """
        import numpy as np

        with self._lock:
            if filter_id in self._lost:
                raise self._lost[filter_id]
            if filter_id not in self._filters:
                raise KeyError(f"no filter {filter_id!r} is loaded in this sandbox")
            loaded = self._filters[filter_id]
            rows = len(frame)
            missing = [name for name in loaded.reads if name not in frame.columns]
            if missing:
                raise FilterFailure(
                    filter_id,
                    "raised",
                    f"reads the column(s) {', '.join(missing)}, which these alerts do not "
                    "have; name only columns of the alerts as its parameters",
                )
            columns = [_column(frame[name], name) for name in loaded.reads]
            child = self._ready_child()
            if filter_id in self._lost:  # the new child could not load it again
                raise self._lost[filter_id]
            deadline = time.monotonic() + self.limits.seconds_per_call
            try:
                child.send(("run", filter_id, columns, rows), deadline)
                header = child.receive(deadline)
                mask = child.receive_mask(rows, deadline) if header.get("ok") else b""
            except _ChildGone as gone:
                raise self._replace(child, filter_id, gone, rows) from None
            if not header.get("ok"):
                raise _failure(filter_id, header)
            return np.frombuffer(mask, dtype=np.uint8).astype(bool)

    def unload(self, filter_id: str) -> None:
        """Forget a filter (its module stays in the child until the child is replaced)."""
        with self._lock:
            self._filters.pop(filter_id, None)
            self._lost.pop(filter_id, None)
            if self._child is not None and self._child.alive():
                deadline = time.monotonic() + self.limits.seconds_per_call
                try:
                    self._child.send(("unload", filter_id), deadline)
                    self._child.receive(deadline)
                except _ChildGone:
                    self._child.kill()
                    self._child = None

    def close(self) -> None:
        """Stop the child. The sandbox may be used again: the next call starts a new one."""
        with self._lock:
            if self._child is not None:
                self._child.kill()
                self._child = None

    def __enter__(self) -> FilterSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        child = getattr(self, "_child", None)
        if child is not None:
            child.kill()

    # -- the child -------------------------------------------------------------

    def _ready_child(self) -> _Child:
        """The running child; a new one (with every filter loaded again) if it is gone."""
        if self._child is not None and self._child.alive():
            return self._child
        if self._child is not None:
            self._child.kill()
        self._child = None
        for _ in range(2):
            try:
                child = _Child(self.limits)
            except _ChildGone:
                continue
            self._child = child
            break
        else:
            raise RuntimeError(
                "the filter sandbox's process could not start: see the stderr of this "
                "process (is fink_core importable by `python -m`, with numpy and pandas?)"
            )
        for filter_id, loaded in list(self._filters.items()):
            try:
                self._load_into(child, filter_id, loaded.code, loaded.entrypoint)
            except FilterFailure as failure:
                self._lost[filter_id] = failure
                if not child.alive():
                    return self._ready_child()
        return child

    def _load_into(
        self, child: _Child, filter_id: str, code: str, entrypoint: str
    ) -> tuple[str, ...]:
        deadline = time.monotonic() + self.limits.seconds_per_load
        try:
            child.send(("load", filter_id, code, entrypoint), deadline)
            header = child.receive(deadline)
        except _ChildGone as gone:
            raise self._replace(child, filter_id, gone, None) from None
        if not header.get("ok"):
            raise _failure(filter_id, header)
        reads = header.get("reads")
        if not isinstance(reads, list) or not all(isinstance(r, str) for r in reads):
            raise self._replace(child, filter_id, _ChildGone("garbled"), None)
        return tuple(reads)

    def _replace(
        self, child: _Child, filter_id: str, gone: _ChildGone, rows: int | None
    ) -> FilterFailure:
        """Stop the child that FILTER_ID broke and say why; the next call starts a new one."""
        on = f"on {rows} alerts" if rows is not None else "while loading"
        if gone.why == "timeout":
            child.kill()
            seconds = (
                self.limits.seconds_per_call if rows is not None else self.limits.seconds_per_load
            )
            failure = FilterFailure(
                filter_id, "timeout", f"ran longer than {seconds:g} s {on} and was stopped"
            )
        elif gone.why == "garbled":
            child.kill()
            failure = FilterFailure(
                filter_id,
                "crashed",
                f"broke the sandbox's pipes {on} (it wrote to them?) and was stopped",
            )
        else:
            status = child.exit_status()
            if status == -signal.SIGKILL:
                failure = FilterFailure(
                    filter_id,
                    "memory",
                    f"was killed by the system {on}, most likely for using too much memory",
                )
            elif status is not None and status < 0:
                name = signal.Signals(-status).name if -status in signal.valid_signals() else status
                failure = FilterFailure(filter_id, "crashed", f"crashed its process ({name}) {on}")
            else:
                failure = FilterFailure(
                    filter_id, "crashed", f"stopped its process (exit status {status}) {on}"
                )
            child.kill()
        if self._child is child:
            self._child = None
        return failure


def _column(series: pandas.Series, name: str) -> tuple[str, str, Any]:
    """What to send of one column: a numpy array when that loses nothing, else the Series."""
    import numpy as np

    if isinstance(series.dtype, np.dtype):
        return ("array", name, series.to_numpy())
    return ("series", name, series.reset_index(drop=True))


def _failure(filter_id: str, header: dict[str, Any]) -> FilterFailure:
    kind = header.get("kind")
    if kind not in ("raised", "timeout", "memory", "forbidden", "bad-result", "crashed"):
        kind = "crashed"
    line = header.get("line")
    return FilterFailure(
        filter_id,
        kind,
        str(header.get("message", "failed")),
        line if isinstance(line, int) else None,
    )


@dataclass(frozen=True)
class DryRunReport:
    """What a filter does to a sample of alerts, before it is published."""

    total: int
    passed: int
    seconds_per_alert: float
    examples: list[int] = field(default_factory=list)  # positions of the first 5 passing rows


def dry_run(
    code: str,
    entrypoint: str,
    frame: pandas.DataFrame,
    limits: SandboxLimits | None = None,
    filter_id: str = "dry-run",
) -> DryRunReport:
    """Load and run a filter once on FRAME in a fresh sandbox; raise `FilterFailure` if it fails."""
    import numpy as np

    with FilterSandbox(limits) as sandbox:
        sandbox.load(filter_id, code, entrypoint)
        started = time.perf_counter()
        mask = sandbox.run(filter_id, frame)
        elapsed = time.perf_counter() - started
    passing = np.flatnonzero(mask)
    return DryRunReport(
        total=len(mask),
        passed=int(mask.sum()),
        seconds_per_alert=elapsed / len(mask) if len(mask) else 0.0,
        examples=[int(i) for i in passing[:5]],
    )
