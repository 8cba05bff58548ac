"""Bring the local stack up, down, and report on it.

`up` is idempotent: artefacts already cached are reused, services already
running and healthy are left alone, and independent components start in
parallel. A failure names the service, the reason and the log to read.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from . import artefacts, process
from .endpoints import Endpoints
from .layout import HOST, PORTS, Layout
from .services import COMPONENTS, SERVICES, Service, port_open

ALL_COMPONENTS = ("kubernetes", "kafka", "hbase", "spark")

Report = Callable[[str], None]


class StackError(RuntimeError):
    """A component could not be built or started; the message says which and where to look."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    component: str
    pid: int | None
    healthy: bool
    log: str


def _services_of(components: Iterable[str]) -> list[Service]:
    wanted = set(components)
    unknown = wanted - set(ALL_COMPONENTS)
    if unknown:
        raise StackError(
            f"unknown component(s): {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(ALL_COMPONENTS)}"
        )
    return [s for s in SERVICES if s.component in wanted]


def _serialised(report: Report) -> Report:
    """Reports come from several threads; keep each line whole."""
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            report(line)

    return say


def prepare_artefacts(layout: Layout, components: Iterable[str], report: Report) -> None:
    """Build/download everything the components need, in parallel, reusing the cache."""
    report = _serialised(report)
    jobs: list[tuple[str, artefacts.Artefact]] = []
    for component in components:
        if component == "spark":
            jobs.append((component, artefacts.spark_connectors()))
        else:
            jobs.extend((component, a) for a in COMPONENTS[component])

    def build(component: str, artefact: artefacts.Artefact) -> None:
        if artefact.is_ready(layout.cache):
            return
        report(
            f"building {artefact.key} (first run only; log: "
            f"{layout.cache / 'logs' / (artefact.key + '.log')})"
        )
        started = time.monotonic()
        try:
            artefact.ensure(layout.cache)
        except artefacts.BuildError as error:
            raise StackError(f"{component}: {error}") from error
        report(f"built {artefact.key} in {time.monotonic() - started:.0f}s")

    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = [pool.submit(build, c, a) for c, a in jobs]
    errors = [f.exception() for f in futures if f.exception()]
    if errors:
        raise StackError("\n".join(str(e) for e in errors))


def up(
    layout: Layout, components: Iterable[str] = ALL_COMPONENTS, report: Report = print
) -> Endpoints:
    components = list(components)
    report = _serialised(report)
    with artefacts.file_lock(layout.state / "up.lock"):
        prepare_artefacts(layout, components, report)
        services = _services_of(components)
        futures: dict[str, Future[None]] = {}
        # one thread per service, so a service blocked on its dependencies never starves another
        with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
            for service in services:  # SERVICES lists dependencies before dependents
                deps = [futures[d] for d in service.needs if d in futures]
                futures[service.name] = pool.submit(_start_after, layout, service, deps, report)
        errors = [f.exception() for f in futures.values() if f.exception()]
        if errors:
            raise StackError(
                "\n".join(str(e) for e in errors if not isinstance(e, _DependencyFailed))
            )
    return endpoints(layout)


class _DependencyFailed(StackError):
    pass


def _start_after(
    layout: Layout, service: Service, deps: list[Future[None]], report: Report
) -> None:
    for dep in deps:
        if dep.exception() is not None:
            raise _DependencyFailed(service.name)
    start_service(layout, service, report)


def start_service(layout: Layout, service: Service, report: Report = print) -> None:
    pidfile = layout.pids / f"{service.name}.pid"
    running = process.read(pidfile)
    if running is None:
        if service.port is not None and port_open(service.port):
            raise StackError(
                f"{service.name}: port {HOST}:{service.port} is already taken by a process "
                "this stack did not start; stop it (see `ss -ltnp`) and run `fink-stack up` again"
            )
        service.prepare(layout)
        log = layout.log_of(service.name)
        running = process.spawn(
            service.argv(layout),
            log=log,
            pidfile=pidfile,
            marker=service.marker(layout),
            cwd=layout.state,
        )
        report(f"started {service.name} (pid {running.pid}, log {log})")
    elif service.probe(layout):
        return
    try:
        service.after_start(layout)
    except Exception as error:
        raise StackError(f"{service.name}: setting it up after start failed: {error}") from error
    _wait_healthy(layout, service, running)


def _wait_healthy(layout: Layout, service: Service, running: process.Running) -> None:
    deadline = time.monotonic() + service.startup_seconds
    log = layout.log_of(service.name)
    while time.monotonic() < deadline:
        if service.probe(layout):
            return
        if not process.alive(running):
            raise StackError(
                f"{service.name} exited during start-up; its log is {log}; last lines:\n"
                + process.tail(log)
            )
        time.sleep(0.5)
    raise StackError(
        f"{service.name} did not become healthy within {service.startup_seconds:.0f}s "
        f"(still running as pid {running.pid}); its log is {log}; last lines:\n" + process.tail(log)
    )


def down(
    layout: Layout,
    components: Iterable[str] = ALL_COMPONENTS,
    wipe: bool = False,
    report: Report = print,
) -> None:
    """Stop what `up` started (dependents first); with wipe, delete their data too."""
    services = _services_of(components)
    for service in reversed(services):
        if stop_service(layout, service):
            report(f"stopped {service.name}")
    if wipe:
        for service in services:
            for sub in service.data_dirs:
                shutil.rmtree(layout.data / sub, ignore_errors=True)
        report("wiped data of " + ", ".join(sorted({s.component for s in services})))


def stop_service(layout: Layout, service: Service) -> bool:
    return process.stop(layout.pids / f"{service.name}.pid")


def status(layout: Layout) -> list[ServiceStatus]:
    result = []
    for service in SERVICES:
        running = process.read(layout.pids / f"{service.name}.pid")
        result.append(
            ServiceStatus(
                name=service.name,
                component=service.component,
                pid=running.pid if running else None,
                healthy=bool(running) and service.probe(layout),
                log=str(layout.log_of(service.name)),
            )
        )
    return result


def endpoints(layout: Layout) -> Endpoints:
    connectors = artefacts.spark_connectors()
    jars = tuple(connectors.jars(layout.cache)) if connectors.is_ready(layout.cache) else ()
    return Endpoints(
        kubeconfig=layout.kubeconfig,
        kafka_bootstrap=f"{HOST}:{PORTS.kafka}",
        hbase_thrift_host=HOST,
        hbase_thrift_port=PORTS.hbase_thrift,
        spark_jars=jars,
        hbase_admin_port=PORTS.hbase_thrift2,
    )


def tool_dirs(layout: Layout) -> list[str]:
    """Directories holding kubectl, helm and kwok, to put on PATH."""
    from .services import HELM, KUBERNETES, KWOK

    return [
        str(KUBERNETES.binary(layout.cache, "kubectl").parent),
        str(HELM.binary(layout.cache).parent),
        str(KWOK.binary(layout.cache).parent),
    ]
