"""A scientist's ScienceFilter on the real stack: refused with line and column, or validated and handed over.

The operator runs as a process against the real API server and Kafka: the API
server refuses what the schema can tell (two code sources), the operator
refuses code it cannot run (Validated=False, the line and column), and a valid
filter gets its topic and is written to the pipeline's control topic, where a
running pipeline picks it up; deleting it takes it out again.
"""

from __future__ import annotations

from typing import Any

import pytest
from cluster import Kafka, Pipelines, wait_for
from confluent_kafka import Consumer, KafkaError, TopicPartition
from kubernetes import client
from kubernetes.client.rest import ApiException
from pipeline_documents import with_filters

from fink_core.filter_control import ControlState, control_topic
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack

GROUP, VERSION, PLURAL = "fink.broker.dev", "v1alpha1", "sciencefilters"

GOOD = '''"""Bright, clean detections."""
import pandas as pd


def bright(magpsf: pd.Series, rb: pd.Series) -> pd.Series:
    return (magpsf < 18.5) & (rb > 0.5)
'''

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
