"""A scientist's ScienceFilter on the real stack: refused with line and column, or validated and handed over.

The operator runs as a process against the real API server and Kafka: the API
server refuses what the schema can tell (two code sources), the operator
refuses code it cannot run (Validated=False, the line and column), and a valid
filter gets its topic and is written to the pipeline's control topic, where a
running pipeline picks it up; deleting it takes it out again.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cluster import Kafka, Pipelines, wait_for
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kubernetes import client
from kubernetes.client.rest import ApiException
from pipeline_documents import with_filters

from fink_core.filter_control import ControlState, control_topic
from fink_pipeline.alerts import generator
from fink_pipeline.alerts.columns import ALERT_ID
from fink_pipeline.alerts.survey_encoder import SurveyEncoder
from fink_stack.endpoints import Endpoints

# the stream tests' world (a source topic, a pipeline document naming fresh sinks, readers)
sys.path.insert(0, str(Path(__file__).parents[1] / "pipeline" / "stream"))
from stream_world import (
    Run,
    World,
    assert_sinks_hold_exactly,
    enriched_codec,
    kill,
)

pytestmark = pytest.mark.stack

GROUP, VERSION, PLURAL = "fink.broker.dev", "v1alpha1", "sciencefilters"

GOOD = '''"""Bright, clean detections."""
import pandas as pd


def bright(magpsf: pd.Series, rb: pd.Series) -> pd.Series:
    return (magpsf < 18.5) & (rb > 0.5)
'''

# passes the dry run (made-up ids), raises on line 6 on real alerts
RAISES = """import pandas as pd


def broken(objectId: pd.Series, magpsf: pd.Series) -> pd.Series:
    if objectId.str.startswith("ZTF").any():
        raise ValueError("a real alert")
    return magpsf < 30
"""

# fails the dry run already: a division by a zero-sized count on line 5
FAILS_DRY_RUN = """import pandas as pd


def bright(magpsf: pd.Series) -> pd.Series:
    scale = 1 // len(magpsf[magpsf > 1000])
    return magpsf * scale < 18
"""

# line 5 reads a column no alert has (the parameter), which the operator points at
WRONG_COLUMN = """import pandas as pd


def bright(
    magnitude: pd.Series,
) -> pd.Series:
    return magnitude < 18.5
"""


def science_filter(name: str, namespace: str, pipeline: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScienceFilter",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"pipelines": [pipeline], "survey": "ztf", "code": {"inline": GOOD}, **spec},
    }


class Filters:
    def __init__(self, kube: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(kube)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        status = found.get("status") or {}
        generation = found["metadata"]["generation"]
        for condition in status.get("conditions") or ():
            if condition["type"] == kind and condition.get("observedGeneration") == generation:
                return {**condition, "_status": status}
        return {}

    def wait(self, name: str, kind: str, reason: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (c := self.condition(name, kind)) and c["reason"] == reason and c,
            timeout,
            f"ScienceFilter {name}: {kind} with reason {reason}",
        )


def control_state(bootstrap: str, topic: str) -> ControlState:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-control-reader",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    state = ControlState()
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        while True:
            message = consumer.poll(10)
            assert message is not None, f"no end of {topic} within 10 s"
            if message.error() is not None:
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                return state
            state.apply(message.key(), message.value())
    finally:
        consumer.close()


def test_a_science_filter_is_refused_with_its_line_then_validated_and_handed_to_its_pipeline(
    stack: Endpoints,
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    kafka: Kafka,
    running_operator,  # type: ignore[no-untyped-def]
    unique_name: str,
    leftovers: dict,
) -> None:
    name = unique_name
    control = control_topic(name)
    filter_name = f"{name}-bright"
    topic = f"fink_{filter_name}_ztf"
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter", control, topic]
    pipelines.create(with_filters(name, 1))
    pipelines.wait_ready(name)
    filters = Filters(kube, namespace)

    # the API server refuses two code sources at once, naming both
    both = science_filter(
        filter_name,
        namespace,
        name,
        code={"inline": GOOD, "configMapRef": {"name": "somewhere"}},
    )
    with pytest.raises(ApiException) as refused:
        filters.create(both)
    assert refused.value.status == 422
    assert "either inline (spec.code.inline) or in a ConfigMap" in refused.value.body

    # a column no alert has: refused with the parameter's line and column, nothing created
    filters.create(science_filter(filter_name, namespace, name, code={"inline": WRONG_COLUMN}))
    wrong = filters.wait(filter_name, "Validated", "CodeRefused")
    assert "line 5, column 5" in wrong["message"], wrong["message"]
    assert "magnitude" in wrong["message"]
    assert topic not in kafka.topics()

    # it parses, but raises on the sample alerts: refused by the dry run, with the line
    filters.patch(filter_name, {"spec": {"code": {"inline": FAILS_DRY_RUN}}})
    dry = filters.wait(filter_name, "Validated", "DryRunFailed")
    assert "ZeroDivisionError" in dry["message"] and "line 5" in dry["message"], dry
    assert topic not in kafka.topics()

    # fixed: validated (the dry run ran in the sandbox), its topic and the control topic exist
    filters.patch(filter_name, {"spec": {"code": {"inline": GOOD}}})
    valid = filters.wait(filter_name, "Validated", "Validated")
    assert valid["_status"]["reads"] == ["magpsf", "rb"]
    assert valid["_status"]["entrypoint"] == "bright"
    assert "of 1000 passed" in valid["_status"]["dryRun"]
    wait_for(lambda: {topic, control} <= set(kafka.topics()), 60, "the filter's topics")
    state = wait_for(
        lambda: (s := control_state(stack.kafka_bootstrap, control)).filters and s,
        60,
        "the filter in the control topic",
    )
    handed = state.filters[filter_name]
    assert (handed.entrypoint, handed.reads, handed.topic) == ("bright", ("magpsf", "rb"), topic)
    assert handed.code == GOOD
    # no pipeline is running: Live says it waits for one to load it
    loading = filters.wait(filter_name, "Live", "Loading")
    assert name in loading["message"]
    assert topic in pipelines.get(name)["status"]["topics"]  # type: ignore[index]

    # deleted: a tombstone takes it out of the control topic; its topic and alerts stay
    filters.delete(filter_name)
    wait_for(
        lambda: not control_state(stack.kafka_bootstrap, control).filters,
        60,
        "the filter's tombstone",
    )
    assert topic in kafka.topics()


# --- a filter applied to a running pipeline ----------------------------------------------


class SteadySource:
    """Alerts into the source topic at a steady pace, in the background, until stopped."""

    def __init__(self, world: World, per_second: int = 100) -> None:
        self.world = world
        self.per_second = per_second
        self.values: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadySource:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        encoder = SurveyEncoder(self.world.survey)
        producer = Producer({"bootstrap.servers": self.world.source_cluster, "linger.ms": 20})
        seed = 1000
        while not self.stop.is_set():
            for alert in generator.generate_alerts(self.per_second // 2, self.world.survey, seed):
                value = encoder.encode(alert)
                producer.produce(self.world.source, value=value, partition=seed % 2)
                self.values.append(value)
            producer.flush(30)
            seed += 1
            self.stop.wait(0.5)


def deployed_world(
    stack: Endpoints,
    namespace: str,
    pipelines: Pipelines,
    name: str,
    directory: Path,
    leftovers: dict,
    filter_topics: tuple[str, ...],
) -> tuple[World, list[bytes]]:
    """A stream world's pipeline created in `namespace` and Ready, 200 alerts in its source;
    its topics (and the ScienceFilters' ones), control topic and table removed afterwards."""
    world = World(stack=stack, name=name, directory=directory)
    document = world.document()
    document["metadata"]["namespace"] = namespace
    leftovers["topics"] += [
        world.source,
        world.dead_letter_topic,
        *(world.filter_topic(f) for f in world.filters),
        control_topic(world.name),
        *filter_topics,
    ]
    leftovers["tables"].append(world.table)
    pipelines.create(document)
    pipelines.wait_ready(world.name)
    return world, world.produce(200)


def stop_once_drained(world: World, run: Run, values: list[bytes]) -> None:
    """Wait until the pipeline committed every produced message, then stop it gracefully."""
    wait_for(lambda: world.committed_offsets() == len(values), 180, "every alert processed")
    run.process.send_signal(signal.SIGTERM)  # stops after the batch in flight
    world.wait(run, timeout=120)


def test_a_filter_applied_to_a_running_pipeline_goes_live_in_seconds_and_every_sink_stays_exact(
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
    filter_name = f"{unique_name}-bright"
    topic = f"fink_{filter_name}_ztf"
    broken_name = f"{unique_name}-broken"
    world, initial = deployed_world(
        stack,
        namespace,
        pipelines,
        unique_name,
        tmp_path,
        leftovers,
        (topic, f"fink_{broken_name}_ztf"),
    )
    name = world.name
    filters = Filters(kube, namespace)

    run = world.start()  # runs until stopped
    try:
        with SteadySource(world) as source:
            wait_for(run.batch_lines, 180, "the pipeline's first batch")
            applied = time.monotonic()
            filters.create(science_filter(filter_name, namespace, name))
            first = wait_for(
                lambda: topic in kafka.topics() and world.read_topic(topic),
                120,
                "the filter's first alert",
            )
            to_first_alert = time.monotonic() - applied
            live = filters.wait(filter_name, "Live", "Live", timeout=60)
            print(f"\nScienceFilter apply -> first alert on its topic: {to_first_alert:.1f} s")
            assert first and "running in pipeline" in live["message"]

            # a filter that raises: stopped alone, said in its status and an event
            filters.create(science_filter(broken_name, namespace, name, code={"inline": RAISES}))
            failed = filters.wait(broken_name, "Live", "FilterRaised", timeout=120)
            assert "a real alert" in failed["message"] and "line 6" in failed["message"]
            assert any(
                e.reason == "FilterRaised" and e.type == "Warning"
                for e in pipelines.events(broken_name)
            )

            # a new version: generation 2 goes live, the old code stops
            filters.patch(filter_name, {"spec": {"code": {"inline": GOOD.replace("18.5", "19")}}})
            filters.wait(filter_name, "Live", "Live", timeout=90)
            # disabled: nothing more is published, the topic and its alerts stay
            filters.patch(filter_name, {"spec": {"enabled": False}})
            filters.wait(filter_name, "Live", "Disabled", timeout=60)
        values = initial + source.values
        stop_once_drained(world, run, values)
    finally:
        if run.process.poll() is None:
            kill(run)

    # the archive tells, alert by alert, whether the filter ran and what it answered
    archived = world.archive_frame().set_index(ALERT_ID[world.survey])
    ran = archived[archived["pass_" + filter_name].notna()]
    decoder = enriched_codec(world)
    published = Counter(
        int(decoder.decode(m.value())[ALERT_ID[world.survey]]) for m in world.read_topic(topic)
    )
    assert not [c for c, n in published.items() if n > 1], "delivered twice"
    assert set(published) == set(ran.index[ran["pass_" + filter_name].astype(bool)])
    # the count the pipeline reported in its transactions, read back by the operator (5 s)
    wait_for(
        lambda: (
            filters.condition(filter_name, "Live")["_status"].get("alertsPassed") == len(published)
        ),
        30,
        "status.alertsPassed to count every published alert",
    )
    # what each version selects: 18.5 first, then 19
    mags = ran["magpsf"]
    assert ((mags < 19) | ~ran["pass_" + filter_name].astype(bool)).all()
    # every other sink holds every alert exactly once, as without the filter
    broken = {
        int(decoder.decode(m.value())[ALERT_ID[world.survey]])
        for m in world.read_topic(f"fink_{broken_name}_ztf")
    }
    assert_sinks_hold_exactly(world, values, {filter_name: set(published), broken_name: broken})
