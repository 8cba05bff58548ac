"""Where a benchmark's CPU went: the pipeline's processes and each stack server.

On this machine the stack's servers (HBase, its Thrift gateway, Kafka) share the
two cores with the pipeline, so an alerts/s figure alone cannot say whether the
pipeline or a co-located server is the bound. CpuShare reads the kernel's
per-process CPU time (/proc/PID/stat, user + system) at the start and the end
of a phase, for a process tree (the pipeline: its Python driver, Spark's JVM and
the Python workers Spark starts) and for named stack services.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fink_stack import process
from fink_stack.layout import Layout

TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("kafka", "hbase-master", "hbase-thrift")
JVM = "pipeline: Spark JVM"
JIT = "pipeline: Spark JVM's JIT compiler"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    read = _stat(Path(f"/proc/{pid}/stat"))
    return read[1] if read else 0.0


def _stat(stat: Path) -> tuple[str, float] | None:
    """The name and user + system CPU seconds in a /proc stat file (a process's or a
    thread's); None once it is gone."""
    try:
        text = stat.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    name, _, rest = text[text.index("(") + 1 :].rpartition(")")
    fields = rest.split()
    return name, (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Compiling:
    """CPU seconds a JVM's just-in-time compiler threads (C1 and C2) spent since a
    moment, thread by thread.

    A JVM starts and stops compiler threads as its queue of methods grows and
    shrinks, and a thread that ends takes its CPU count with it: a sum of the live
    threads would drop, or miss a dead thread's work. So each thread counts from
    when it was first seen (from zero when it started after `since_now`) to when it
    was last seen; only what a thread did between its last sample and its end is
    lost.
    """

    pid: int
    since_now: bool = True
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _others: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.since_now:
            self._first = self._threads()
            self._last = dict(self._first)

    def _threads(self) -> dict[int, float]:
        """CPU seconds of each live compiler thread, by thread id (empty once the JVM is
        gone). The benchmark samples four times a second and a JVM runs hundreds of
        threads (HBase 250: 4 ms of CPU to read them all), so a thread once seen not to
        be a compiler is not read again: a JVM's threads keep their names."""
        try:
            threads = [int(task) for task in os.listdir(f"/proc/{self.pid}/task")]
        except (FileNotFoundError, ProcessLookupError):
            return {}
        compiling = {}
        for thread in threads:
            if thread in self._others:
                continue
            read = _stat(Path(f"/proc/{self.pid}/task/{thread}/stat"))
            if read is None:
                continue
            name, seconds = read
            if "CompilerThre" in name:
                compiling[thread] = seconds
            else:
                self._others.add(thread)
        return compiling

    def sample(self) -> None:
        for thread, seconds in self._threads().items():
            self._last[thread] = max(seconds, self._last.get(thread, 0.0))

    def seconds(self) -> float:
        return sum(seconds - self._first.get(thread, 0.0) for thread, seconds in self._last.items())


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS


def descendants(root: int) -> set[int]:
    """root and every process below it, now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def server_pids(names: tuple[str, ...] = SERVERS) -> dict[str, int]:
    """The stack services' processes, from the pid files `fink-stack up` writes."""
    pids = {}
    for name in names:
        running = process.read(Layout.default().pids / f"{name}.pid")
        if running is not None:
            pids[name] = running.pid
    return pids


@dataclass
class CpuShare:
    """CPU seconds of a process tree and of the stack's servers, sampled over a run.

    The tree is sampled while it runs (`sample`): a Spark worker that ends before
    the run does keeps the CPU it was last seen with; one first seen late counts
    from zero, its start belonging to the run. `mark` remembers the totals at a
    moment (the streaming query's start), so start-up can be told from the rest.
    Every JVM is split in two: its just-in-time compiler's threads and the rest.
    Spark's JVM compiles its hot code in the first minutes of a pipeline that runs
    for days, and so does each server of a freshly started stack (HBase, Kafka)
    that a production broker keeps up for months: a cost that fades, which would
    otherwise pass for a cost per alert.
    """

    root: int
    servers: dict[str, int] = field(default_factory=server_pids)
    _tree: dict[int, float] = field(default_factory=dict)
    _kinds: dict[int, str] = field(default_factory=dict)
    _compiling: dict[int, Compiling] = field(default_factory=dict)
    _servers_compiling: dict[str, Compiling] = field(default_factory=dict)
    _servers_start: dict[str, float] = field(default_factory=dict)
    _servers_now: dict[str, float] = field(default_factory=dict)
    _marks: dict[str, dict[str, float]] = field(default_factory=dict)
    _machine_start: float = 0.0
    _machine_now: float = 0.0

    def __post_init__(self) -> None:
        self._servers_start = {name: cpu_seconds(pid) for name, pid in self.servers.items()}
        self._servers_now = dict(self._servers_start)
        self._servers_compiling = {name: Compiling(pid) for name, pid in self.servers.items()}
        self._machine_start = self._machine_now = machine_busy_seconds()

    def sample(self) -> None:
        for pid in descendants(self.root):
            seconds = cpu_seconds(pid)
            self._tree[pid] = max(seconds, self._tree.get(pid, 0.0))
            self._kinds[pid] = self._kind(pid)  # as last seen: spark-submit execs java
            if self._kinds[pid] == JVM:  # started by the run: its compiling counts from zero
                self._compiling.setdefault(pid, Compiling(pid, since_now=False)).sample()
        for compiling in self._servers_compiling.values():
            compiling.sample()
        self._servers_now = {name: cpu_seconds(pid) for name, pid in self.servers.items()}
        self._machine_now = machine_busy_seconds()

    def _kind(self, pid: int) -> str:
        """Which part of the pipeline a process is: its driver, Spark's JVM, or a worker."""
        if pid == self.root:
            return "pipeline: driver (Python)"
        try:
            command = Path(f"/proc/{pid}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            command = ""
        return JVM if command == "java" else "pipeline: workers (Python)"

    def mark(self, moment: str) -> None:
        """Remember the totals now, under a name (e.g. the query's start)."""
        self.sample()
        self._marks[moment] = self.seconds()

    def seconds(self) -> dict[str, float]:
        """CPU seconds per part since the run began: the pipeline's driver, JVM and
        workers, each server, each JVM's compiler apart (`compiler_of`), and `other`
        (the rest of the machine: other stack servers, the benchmark itself)."""
        used: dict[str, float] = {}
        for pid, seconds in self._tree.items():
            kind = self._kinds.get(pid, "pipeline: workers (Python)")
            used[kind] = used.get(kind, 0.0) + seconds
        compiling = sum(c.seconds() for c in self._compiling.values())
        if compiling:
            used[JVM] -= compiling
            used[JIT] = compiling
        for name, start in self._servers_start.items():
            total = max(0.0, self._servers_now.get(name, start) - start)
            compiling = min(total, self._servers_compiling[name].seconds())
            used[name] = total - compiling
            used[compiler_of(name)] = compiling
        machine = self._machine_now - self._machine_start
        used["other"] = max(0.0, machine - sum(used.values()))
        return used

    def since(self, moment: str) -> dict[str, float]:
        """CPU seconds per part since the mark of that name (all of the run without one)."""
        now, before = self.seconds(), self._marks.get(moment, {})
        return {part: seconds - before.get(part, 0.0) for part, seconds in now.items()}


def compiler_of(server: str) -> str:
    """The part a server's just-in-time compiler threads are reported under."""
    return f"{server}'s JIT compiler"


def compiling_seconds(parts: dict[str, float]) -> float:
    """CPU seconds all the JVMs' just-in-time compilers (Spark's and the servers') took,
    in a CpuShare figure: a cost that fades as each JVM warms."""
    return sum(
        seconds
        for part, seconds in parts.items()
        if part == JIT or part.endswith("'s JIT compiler")
    )
