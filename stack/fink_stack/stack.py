"""Bring the local stack up, down, and report on it.

`up` is idempotent: artefacts already cached are reused, services already
running and healthy with the same command line are left alone (one whose
command line changed, e.g. after an upgrade of the stack, is restarted), and
independent components start in parallel. A failure names the service, the
reason and the log to read. With root, `up` first records the host's state
and creates the pod network's bridge (servers bind its host address); `down`
of the whole stack puts the host back as `up` found it.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from . import artefacts, hostpkgs, hoststate, images, netguard, node, podnet, process, prometheus
from .endpoints import Endpoints, KafkaSasl, PodEndpoints
from .layout import HOST, POD_NETWORK, PORTS, Layout
from .services import (
    COMPONENTS,
    KAFKA_SECRET,
    KAFKA_USERS_FILE,
    SERVICES,
    Service,
    hdfs_url,
    kafka_credentials,
    kafka_references,
    port_open,
    register_kwok_node,
    schema_registry_url,
)

ALL_COMPONENTS = (
    "kubernetes",
    "kafka",
    "hbase",
    "registry",
    "hdfs",
    "spark",
    "node",
    "monitoring",
)
PROGRESS_SECONDS = 30.0  # how often a long build says it is still going

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


def _with_dependencies(components: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(components))
    if "node" in wanted and "kubernetes" not in wanted:
        wanted.insert(0, "kubernetes")  # the kubelet registers with the apiserver
    if "monitoring" in wanted and "kubernetes" not in wanted:
        wanted.insert(0, "kubernetes")  # Prometheus discovers its targets through the apiserver
    return wanted


@contextlib.contextmanager
def _progress(report: Report, what: str, log: str, every: float = PROGRESS_SECONDS):
    """Say every `every` seconds that `what` is still being built, until the block ends."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            elapsed = int(time.monotonic() - started)
            report(f"still building {what} ({elapsed // 60}m{elapsed % 60:02d}s; log {log})")

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


def prepare_artefacts(layout: Layout, components: Iterable[str], report: Report) -> None:
    """Build/download everything the components need, in parallel, reusing the cache."""
    report = _serialised(report)
    components = _with_dependencies(components)
    if "node" in components:
        _host_packages(layout, report)
    jobs: list[tuple[str, artefacts.Artefact]] = []
    for component in components:
        if component == "spark":
            jobs.append((component, artefacts.spark_connectors()))
        else:
            jobs.extend((component, a) for a in COMPONENTS[component])
    one_compiler = threading.Lock()

    def build(component: str, artefact: artefacts.Artefact) -> None:
        try:
            if artefact.is_ready(layout.cache):
                return
            key = artefact.key
            log = str(layout.cache / "logs" / (key + ".log"))
            report(f"building {key} (first run only; log: {log})")
            started = time.monotonic()
            exclusive = one_compiler if artefact.compiles else contextlib.nullcontext()
            with exclusive, _progress(report, f"{key} ({component})", log):
                artefact.ensure(layout.cache)
        except (artefacts.BuildError, OSError, ValueError) as error:
            raise StackError(f"{component}: {error}") from error
        report(f"built {key} in {time.monotonic() - started:.0f}s")

    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = [pool.submit(build, c, a) for c, a in jobs]
    errors = [f.exception() for f in futures if f.exception()]
    if errors:
        raise StackError("\n".join(str(e) for e in errors))


def _host_packages(layout: Layout, report: Report) -> None:
    try:
        installed = hostpkgs.ensure(hostpkgs.NODE_PACKAGES, layout.cache / "logs" / "apt.log")
    except hostpkgs.HostPackageError as error:
        raise StackError(f"node: {error}") from error
    if installed:
        report(f"installed Debian packages for the node: {' '.join(installed)}")


def _pod_network(layout: Layout, components: list[str]) -> None:
    """Record the host, then make the bridge whose address servers bind for pods."""
    if not podnet.available():
        return
    hoststate.record_once(layout)
    try:
        podnet.ensure()
        if "node" in components:
            netguard.install()  # every `up` re-asserts it, before any node service is touched
    except (podnet.PodNetworkError, netguard.GuardError) as error:
        raise StackError(f"pod network: {error}") from error


def up(
    layout: Layout, components: Iterable[str] = ALL_COMPONENTS, report: Report = print
) -> Endpoints:
    components = _with_dependencies(components)
    report = _serialised(report)
    if "node" in components and not podnet.available():
        # the rest of the stack runs without root; tests needing pods say what is missing
        report("skipping the real node: it needs root (bridge, cgroups, mounts, iptables)")
        components.remove("node")
    with artefacts.file_lock(layout.state / "up.lock"):
        prepare_artefacts(layout, components, report)
        _pod_network(layout, components)
        services = _services_of(components)
        # services' hooks import the Kubernetes client from several threads at once,
        # which that package does not survive (half-initialised modules): import it here
        import kubernetes.client
        import kubernetes.config  # noqa: F401

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
        if "kubernetes" in components:
            register_kwok_node(layout)  # create it, or re-assert its taint on an older stack
        if "node" in components:
            try:
                node.ensure_images(layout, report)
            except artefacts.BuildError as error:
                raise StackError(f"node: {error}") from error
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
    if running is not None and process.command_line(running.pid) != service.argv(layout):
        report(f"restarting {service.name}: its command line changed")
        stop_service(layout, service)
        running = None
        if service.port is not None:  # its listening socket may outlive it for a moment
            deadline = time.monotonic() + 10
            while port_open(service.port, service.host) and time.monotonic() < deadline:
                time.sleep(0.2)
    if running is None:
        if service.port is not None and port_open(service.port, service.host):
            raise StackError(
                f"{service.name}: port {service.host}:{service.port} is already taken by a "
                "process this stack did not start; stop it (see `ss -ltnp`) and run "
                "`fink-stack up` again"
            )
        try:
            service.prepare(layout)
        except Exception as error:
            raise StackError(f"{service.name}: not started: {error}") from error
        log = layout.log_of(service.name)
        running = process.spawn(
            service.argv(layout),
            log=log,
            pidfile=pidfile,
            marker=service.marker(layout),
            cwd=layout.state,
            env=service.environment(layout),
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
    """Stop what `up` started (dependents first); with wipe, delete their data too.

    It takes `up`'s lock: a `down` and an `up` from two sessions never interleave.
    """
    services = _services_of(components)
    with artefacts.file_lock(layout.state / "up.lock"):
        for service in reversed(services):
            if stop_service(layout, service):
                report(f"stopped {service.name}")
        if wipe:
            for service in services:
                for sub in service.data_dirs:
                    shutil.rmtree(layout.data / sub, ignore_errors=True)
            report("wiped data of " + ", ".join(sorted({s.component for s in services})))
        nothing_runs = not any(process.read(layout.pids / f"{s.name}.pid") for s in SERVICES)
        if nothing_runs and release_host(layout):
            report("host restored as `up` found it (bridge, sysctls, iptables, mounts, cgroups)")


def stop_service(layout: Layout, service: Service) -> bool:
    """Stop one service with its hooks: before_stop while it runs, after_stop once gone.

    after_stop runs even when the process was already gone (e.g. it crashed),
    so what it set up on the host is still undone.
    """
    pidfile = layout.pids / f"{service.name}.pid"
    running = process.read(pidfile) is not None
    if running:
        service.before_stop(layout)
    stopped = process.stop(pidfile)
    if running or _touched_host(layout, service):
        service.after_stop(layout)
    return stopped


def _touched_host(layout: Layout, service: Service) -> bool:
    """A node service may have left host changes behind if the host was ever recorded."""
    return service.component == "node" and hoststate.recorded(layout) is not None


def release_host(layout: Layout) -> bool:
    """With the whole stack stopped: remove the bridge if `up` made it, forget the record."""
    before = hoststate.recorded(layout)
    if before is None:
        return False
    links = before.get("links", [])
    if isinstance(links, list) and POD_NETWORK.bridge not in links:
        podnet.remove()
    hoststate.restore_sysctls(before)
    hoststate.remove_new_empty_tables(before)
    hoststate.forget(layout)
    return True


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
        pods=pod_endpoints(layout) if podnet.available() else None,
        prometheus=prometheus.URL,
        schema_registry=schema_registry_url(),
        kafka_sasl=kafka_sasl(layout),
        kafka_upstream_bootstrap=f"{HOST}:{PORTS.kafka_upstream}",
        hdfs=hdfs_url(),
    )


def kafka_sasl(layout: Layout) -> KafkaSasl | None:
    """The secured listener and the stack's user, once Kafka has been started with them."""
    if not (layout.pki / KAFKA_USERS_FILE).exists():
        return None
    username, password = kafka_credentials(layout)
    return KafkaSasl(
        bootstrap=f"{HOST}:{PORTS.kafka_sasl}",
        username=username,
        password=password,
        ca_file=layout.pki / "ca.crt",
        references=kafka_references(layout),
        secret_name=KAFKA_SECRET,
    )


def pod_endpoints(layout: Layout) -> PodEndpoints:
    net = POD_NETWORK
    return PodEndpoints(
        apiserver=f"https://{net.host}:{PORTS.apiserver}",
        kafka_bootstrap=f"{net.host}:{PORTS.kafka_pods}",
        hbase_thrift=f"{net.host}:{PORTS.hbase_thrift}",
        hbase_admin=f"{net.host}:{PORTS.hbase_thrift2}",
        schema_registry=schema_registry_url(net.host),
        kafka_sasl_bootstrap=f"{net.host}:{PORTS.kafka_pods_sasl}",
        hdfs=hdfs_url(net.host),
        dns=net.dns_service_ip,
        node_name=net.node_name,
        pipeline_image=images.PIPELINE.short_reference,
        operator_image=images.OPERATOR.short_reference,
        containerd_address=str(node.containerd_socket(layout)),
    )


def tool_dirs(layout: Layout) -> list[str]:
    """Directories holding kubectl, helm and kwok, to put on PATH."""
    from .node_artefacts import CONTAINERD, CRICTL
    from .services import HELM, KUBERNETES, KWOK

    return [
        str(KUBERNETES.binary(layout.cache, "kubectl").parent),
        str(HELM.binary(layout.cache).parent),
        str(KWOK.binary(layout.cache).parent),
        str(CONTAINERD.bin_dir(layout.cache)),  # ctr
        str(CRICTL.bin_dir(layout.cache)),
    ]
