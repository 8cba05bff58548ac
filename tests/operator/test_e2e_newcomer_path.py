"""The scientist's path of docs/science-filters.md, walked end to end on a running pipeline.

`fink-filter init`, the generated test under plain pytest, `fink-filter test`,
`fink-filter apply` (until Live), `fink-filter tail`, and fink-client's own
consumer reading the filter's topic: against the real API server, operator,
Kafka, HBase and a running Spark pipeline fed a steady stream. The whole path
must take under 10 minutes (it takes about 20 s); every other sink keeps every
alert exactly once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster import Kafka, Pipelines, wait_for
from fink_client.consumer import AlertConsumer
from kubernetes import client
from test_e2e_fink_filter import fink_filter_on
from test_e2e_science_filters import SteadySource, deployed_world, stop_once_drained

from fink_pipeline.alerts.columns import ALERT_ID
from fink_stack.endpoints import Endpoints

sys.path.insert(0, str(Path(__file__).parents[1] / "pipeline" / "stream"))
from stream_world import assert_sinks_hold_exactly, kill

pytestmark = pytest.mark.stack

NEWCOMER_BUDGET = 600.0  # seconds: the "under 10 minutes on a running stack"


def test_a_newcomer_goes_from_fink_filter_init_to_alerts_in_tail_and_fink_client(
    stack: Endpoints,
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    running_operator,  # type: ignore[no-untyped-def]
    kafka: Kafka,
    unique_name: str,
    tmp_path: Path,
    leftovers: dict,
) -> None:
    name = f"{unique_name}-sn"
    topic = f"fink_{name}_ztf"
    (tmp_path / "pipeline").mkdir()
    world, initial = deployed_world(
        stack, namespace, pipelines, unique_name, tmp_path / "pipeline", leftovers, (topic,)
    )
    home = tmp_path / "scientist"
    home.mkdir()

    run = world.start()
    try:
        with SteadySource(world) as source:
            wait_for(run.batch_lines, 180, "the pipeline's first batch")
            started = time.monotonic()

            # 1. a filter and its test from the template
            done = fink_filter_on(stack, "init", name, "--pipeline", world.name, cwd=home)
            assert done.returncode == 0, done.stderr
            assert {p.name for p in home.iterdir()} >= {f"{name}.py", f"test_{name}.py"}
            # 2. the scientist's own test, plain pytest, no cluster
            tested = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"test_{name}.py"],
                cwd=home,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert tested.returncode == 0, tested.stdout + tested.stderr
            # 3. the operator's checks and the sandbox on realistic alerts
            tried = fink_filter_on(stack, "test", f"{name}.py", cwd=home)
            assert tried.returncode == 0 and "passed" in tried.stdout, tried.stdout + tried.stderr
            # ... and on the survey's own alerts, read from the pipeline's source topic
            on_stream = fink_filter_on(
                stack, "test", f"{name}.py", "--topic", world.source, "--alerts", "150", cwd=home
            )
            assert on_stream.returncode == 0, on_stream.stdout + on_stream.stderr
            assert "of 150 passed" in on_stream.stdout and world.source in on_stream.stdout
            # 4. published, in the layout fink-client reads, followed until Live
            applied = fink_filter_on(
                stack,
                "apply",
                f"{name}.py",
                "-n",
                namespace,
                "--layout",
                "fink-client",
                "--wait",
                "180",
                cwd=home,
            )
            assert applied.returncode == 0, applied.stdout + applied.stderr
            assert f"live in pipeline {world.name}" in applied.stdout, applied.stdout
            # 5. the alerts it selects, as they arrive
            tail = fink_filter_on(
                stack,
                "tail",
                name,
                "-n",
                namespace,
                "--from-beginning",
                "--max",
                "3",
                "--timeout",
                "120",
                cwd=home,
            )
            assert tail.returncode == 0, tail.stdout + tail.stderr
            lines = [line for line in tail.stdout.splitlines() if line.startswith("ZTF")]
            assert len(lines) == 3, tail.stdout
            # 6. and with the tool Fink's users already have, configured as its docs say
            consumer = AlertConsumer(
                [topic],
                {"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"{name}-reader"},
                survey="ztf",
            )
            try:
                polled = wait_for(
                    lambda: (got := consumer.poll(timeout=2))[1] is not None and got,
                    60,
                    "an alert through fink-client",
                )
            finally:
                consumer.close()
            seconds = time.monotonic() - started
            print(f"\nnewcomer path, init -> alerts in tail and fink-client: {seconds:.1f} s")
            assert seconds < NEWCOMER_BUDGET
            received_topic, alert, _ = polled
            assert received_topic == topic
            assert name in alert["fink_filters"]
            assert alert["candidate"]["magpsf"] < 19 and alert["candidate"]["rb"] > 0.7
            assert alert["objectId"].startswith("ZTF")

        values = initial + source.values
        stop_once_drained(world, run, values)
    finally:
        if run.process.poll() is None:
            kill(run)

    # what the filter passed, batch by batch, is in the archive; every sink is exact
    archived = world.archive_frame().set_index(ALERT_ID[world.survey])
    flags = archived["pass_" + name]
    passed = set(archived.index[flags.notna() & flags.astype("boolean").fillna(False)])
    assert passed
    assert_sinks_hold_exactly(world, values, {name: passed})
