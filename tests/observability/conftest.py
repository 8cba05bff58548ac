"""One real streaming run that every observability test reads, through the local Prometheus.

A session fixture runs the story once (a few minutes), recording when each thing
happened; the tests then ask Prometheus about those moments. The story, on the real
node, with the operator as a host process (scraped through a file target) and the
driver scraped at its pod address (found by its prometheus.io annotations):

1. test copies of the chart's alerting rules are loaded (each `for` set to 0 so an
   alert fires at the first evaluation; the lag threshold lowered to fit a test);
2. the pipeline is created; once it streams its driver crashes (its processes killed),
   twice: two restarts (FinkDriverRestarting), with a pause after the first (one
   restart must not fire it);
3. a second pipeline names a Secret that does not exist: the operator's passes end in
   error and are retried (FinkOperatorReconcileErrors); before it, none did;
4. from then on a trickle of alerts flows, as a survey sends them; a burst of 1,000 is
   read 50 per micro-batch (FinkPipelineLagging), then only the trickle is left (a
   small lag: the alert resolves);
5. malformed messages arrive with good ones, in two rounds (FinkDeadLettersRising;
   before them the share of dead letters was 0).
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException
from kubernetes import client, config
from promapi import ROOT, Prometheus, rules, with_threshold
from streamrun import StreamedRun, Window

from fink_operator.install import install_crd
from fink_stack import prometheus as local_prometheus
from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout
from fink_stack.scratch import Scratch
from fink_stack.services import KUBERNETES

sys.path.insert(0, str(ROOT / "tests" / "operator"))  # job_world, cluster: the job tests' helpers

from cluster import HBase, Kafka, Pipelines, wait_for
from job_world import JobWorld, operator_flags


def _operator_helpers() -> Any:
    """tests/operator/conftest.py under another name: its OperatorProcess, not its fixtures."""
    spec = importlib.util.spec_from_file_location(
        "operator_test_helpers", ROOT / "tests" / "operator" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BURST = 1000  # alerts produced at once to a streaming job
PER_BATCH = 50  # spec.source.kafka.maxOffsetsPerTrigger: the burst takes twenty batches
TEST_LAG_THRESHOLD = 300  # the lag rule's 10,000 lowered to what the burst reaches
TRICKLE = (10, 2.0)  # alerts, seconds: the steady flow under everything else
CAUGHT_UP = 60  # lag below this with the trickle flowing: the burst is done
KUBECTL = KUBERNETES.binary(Layout.default().cache, "kubectl")
STREAM_TIMEOUT = 420  # the driver's JVM and Spark starting on 2 shared cores


@pytest.fixture(scope="session")
def prometheus(stack: Endpoints) -> Prometheus:
    assert stack.prometheus, "the local stack has no Prometheus (fink-stack up monitoring)"
    server = Prometheus(stack.prometheus)
    assert server.value("vector(1)") == 1
    return server


def rules_for_tests(run_id: str) -> dict[str, Any]:
    """The chart's rules as the tests load them: `for` 0, a lag threshold a test reaches."""
    lowered = {"FinkPipelineLagging": TEST_LAG_THRESHOLD}
    copies = []
    for rule in rules():
        copy = {**rule, "for": "0s", "labels": {**rule.get("labels", {}), "fink_test": run_id}}
        if rule["alert"] in lowered:
            copy["expr"] = with_threshold(rule["expr"], lowered[rule["alert"]])
        copies.append(copy)
    return {"groups": [{"name": f"fink-test-{run_id}", "rules": copies}]}


@contextlib.contextmanager
def loaded_rules(prometheus: Prometheus, run_id: str) -> Iterator[None]:
    layout = Layout.default()
    path = local_prometheus.rules_dir(layout) / f"fink-test-{run_id}.yaml"
    path.write_text(yaml.safe_dump(rules_for_tests(run_id), sort_keys=False))
    try:
        local_prometheus.reload(prometheus.url)
        groups = {g["name"]: g for g in prometheus.rule_groups()}
        assert f"fink-test-{run_id}" in groups, f"the test rules were not loaded: {groups}"
        yield
    finally:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            local_prometheus.reload(prometheus.url)


@contextlib.contextmanager
def scraped_operator(prometheus: Prometheus, address: str, run_id: str) -> Iterator[None]:
    """List a host-run operator among Prometheus's targets; wait until it is scraped."""
    layout = Layout.default()
    target = local_prometheus.write_targets(
        layout, f"fink-test-{run_id}", [address], {"fink_test": run_id}
    )
    try:
        prometheus.wait(
            f'up{{job="fink-host", instance="{address}"}}',
            lambda up: up == 1,
            60,
            "Prometheus to scrape the operator",
        )
        yield
    finally:
        target.unlink(missing_ok=True)


def _driver_pods(core: client.CoreV1Api, namespace: str) -> list[Any]:
    return [
        p
        for p in core.list_namespaced_pod(namespace, label_selector="spark-role=driver").items
        if p.metadata.deletion_timestamp is None
    ]


def _restarts(pipelines: Pipelines, name: str) -> int:
    status = (pipelines.get(name) or {}).get("status") or {}
    return int((status.get("job") or {}).get("restarts", 0))


HERE = Path(__file__).parent
# The story's live parts (trickle, operator, streaming job, namespace), closed as soon as
# the last test of this folder is done rather than at the end of the session: a session
# fixture would keep them streaming beside every later test (pytest's "package" scope is
# the session's in a folder without __init__.py).
_live = contextlib.ExitStack()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or HERE not in nextitem.path.parents:
        _live.close()


@pytest.fixture(scope="session")
def streamed(
    stack: Endpoints,
    prometheus: Prometheus,
    tmp_path_factory: pytest.TempPathFactory,
    scratch: Scratch,
) -> Iterator[StreamedRun]:
    with _live:
        yield _start_story(_live, stack, prometheus, tmp_path_factory, scratch)


def _start_story(
    live: contextlib.ExitStack,
    stack: Endpoints,
    prometheus: Prometheus,
    tmp_path_factory: pytest.TempPathFactory,
    scratch: Scratch,
) -> StreamedRun:
    """Play the story, leaving what must outlast it (and its clean-up) on `live`."""
    helpers = _operator_helpers()
    kube = config.new_client_from_config(config_file=str(stack.kubeconfig))
    core = client.CoreV1Api(kube)
    install_crd(str(stack.kubeconfig))
    run_id = scratch.token()
    namespace = f"observability-{run_id}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    volume = tmp_path_factory.mktemp("pipelines")
    world = JobWorld(stack, f"obs-{run_id}", namespace, volume)
    broken = f"obs-broken-{run_id}"
    pipelines = Pipelines(kube, namespace)
    operator = helpers.OperatorProcess(
        stack,
        namespace,
        tmp_path_factory.mktemp("operator") / "operator.log",
        *operator_flags(stack, volume),
    )
    run = StreamedRun(namespace, world.name, broken, f"127.0.0.1:{operator.port}", run_id)
    producer = Producer(world)
    # closed in reverse: the producer, the operator, the namespace, then the data
    live.callback(_drop_data, stack, world)
    live.callback(helpers._release_namespace, kube, namespace)
    live.callback(operator.stop)
    live.callback(producer.close)
    world.create_source()
    operator.start()
    live.enter_context(loaded_rules(prometheus, run_id))
    live.enter_context(scraped_operator(prometheus, run.operator, run_id))
    _story(run, world, producer, pipelines, core, prometheus)
    return run


class Producer:
    """The world's producer shared by the story and a background trickle of good alerts."""

    def __init__(self, world: JobWorld) -> None:
        self.world = world
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def produce(self, good: int, malformed: int = 0) -> None:
        with self.lock:
            self.world.produce(good, malformed=malformed)

    def malformed(self) -> int:
        with self.lock:
            return self.world.malformed

    def trickle(self) -> None:
        """A few alerts every few seconds, as a survey sends them, until stopped."""
        count, every = TRICKLE

        def run() -> None:
            while not self.stop.wait(every):
                self.produce(count)

        self.thread = threading.Thread(target=run, name="trickle", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)


def _story(
    run: StreamedRun,
    world: JobWorld,
    producer: Producer,
    pipelines: Pipelines,
    core: client.CoreV1Api,
    prometheus: Prometheus,
) -> None:
    run.started = time.time()
    selector = f'namespace="{run.namespace}", pipeline="{run.pipeline}"'
    document = world.document(
        executor={"instances": 0}, driver={"cores": 1, "coreRequest": "250m", "memory": "1g"}
    )
    document["spec"]["source"]["kafka"]["maxOffsetsPerTrigger"] = PER_BATCH
    pipelines.create(document)
    pipelines.wait_ready(run.pipeline, timeout=STREAM_TIMEOUT)

    # the streaming driver crashes, twice (SIGKILL to its processes: exit 137, restarted);
    # a pause after the first: one restart must not fire
    def crash_driver() -> None:
        """Once Prometheus scrapes it (it streams), kill every process of it but its init."""
        (driver,) = _driver_pods(core, run.namespace)
        prometheus.wait(
            f'up{{job="kubernetes-pods", instance="{driver.status.pod_ip}:9464"}}',
            lambda up: up == 1,
            60,
            "Prometheus to scrape the driver",
        )
        kubectl = [str(KUBECTL), "--kubeconfig", str(world.stack.kubeconfig)]
        pod = ["-n", run.namespace, driver.metadata.name, "-c", "driver"]
        subprocess.run(
            [*kubectl, "exec", *pod, "--", "kill", "-9", "-1"],
            capture_output=True,
            timeout=60,
        )  # its exit status is the session's, cut short: what counts is the restart

    crash_driver()
    wait_for(lambda: _restarts(pipelines, run.pipeline) == 1, 120, "the first restart")
    prometheus.wait(
        f'sum(fink_operator_job_restarts_total{{pipeline="{run.pipeline}"}})',
        lambda restarts: restarts == 1,
        60,
        "Prometheus to see one restart",
    )
    once = time.time()
    time.sleep(3 * local_prometheus.SCRAPE_SECONDS)  # evaluations with one restart only
    pipelines.wait_ready(run.pipeline, timeout=STREAM_TIMEOUT)
    run.fine["FinkDriverRestarting"] = Window(once, time.time())
    crash_driver()
    wait_for(lambda: _restarts(pipelines, run.pipeline) == 2, 120, "the second restart")
    restarted = time.time()

    # a pipeline naming a missing Secret: its passes end in error, retried; none did before
    run.fine["FinkOperatorReconcileErrors"] = Window(run.started, time.time())
    pipelines.create(
        {
            "apiVersion": "fink.broker.dev/v1alpha1",
            "kind": "BrokerPipeline",
            "metadata": {"name": run.broken, "namespace": run.namespace},
            "spec": {
                "survey": "ztf",
                "source": {"kafka": {"topic": world.source}},
                "sinks": {"kafka": {"credentialsSecretRef": {"name": f"missing-{run.run_id}"}}},
            },
        }
    )
    broken_at = time.time()

    # the third driver streams a steady trickle; a burst is read PER_BATCH at a time (lag),
    # then only the trickle is left (a small lag: the alert resolves)
    pipelines.wait_ready(run.pipeline, timeout=STREAM_TIMEOUT)
    streaming = time.time()
    producer.trickle()
    producer.produce(BURST)
    prometheus.wait(
        f"sum(fink_pipeline_alerts_read_total{{{selector}}})",
        lambda read: read >= BURST,
        STREAM_TIMEOUT,
        "the burst to be read",
    )
    prometheus.wait(
        f"sum(fink_pipeline_input_lag_messages{{{selector}}})",
        lambda lag: lag < CAUGHT_UP,
        120,
        "the lag to fall back to the trickle's",
    )
    caught_up = time.time()
    run.provoked["FinkPipelineLagging"] = Window(streaming, caught_up)
    time.sleep(6 * local_prometheus.SCRAPE_SECONDS)
    run.fine["FinkPipelineLagging"] = Window(
        caught_up + 3 * local_prometheus.SCRAPE_SECONDS, time.time()
    )
    run.fine["FinkDeadLettersRising"] = Window(streaming, time.time())

    # malformed messages among good ones, in two rounds (the second moves every reason's rate)
    malformed_at = time.time()
    for good, bad in ((100, 30), (50, 20)):
        producer.produce(good, malformed=bad)
        bad_so_far = producer.malformed()
        prometheus.wait(
            f"sum(fink_pipeline_alerts_rejected_total{{{selector}}})",
            lambda rejected, bad_so_far=bad_so_far: rejected >= bad_so_far,
            STREAM_TIMEOUT,
            "the dead letters to be counted",
        )
    time.sleep(3 * local_prometheus.SCRAPE_SECONDS)  # a scrape and an evaluation after the last
    run.ended = time.time()
    run.provoked["FinkDriverRestarting"] = Window(restarted, run.ended)
    run.provoked["FinkOperatorReconcileErrors"] = Window(broken_at, run.ended)
    run.provoked["FinkDeadLettersRising"] = Window(malformed_at, run.ended)


def _create_source(world: JobWorld, timeout: float = 90) -> None:
    """The source topic, waiting out a broker just restarted (another test's outage):
    KRaft refuses new topics while it still counts the broker as fenced."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            world.create_source()
            return
        except (KafkaException, TimeoutError) as error:
            if isinstance(error, KafkaException) and (
                error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
            ):
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _drop_data(stack: Endpoints, world: JobWorld) -> None:
    kafka, hbase = Kafka(stack), HBase(stack)
    for topic in [*world.topics(), f"{world.name}.new_sso_candidates"]:
        with contextlib.suppress(Exception):
            kafka.delete(topic)
    with contextlib.suppress(Exception):
        hbase.drop(world.table)
