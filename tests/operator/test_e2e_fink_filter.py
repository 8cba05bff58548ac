"""`fink-filter apply` and `tail` against the real API server, operator and Kafka.

A scientist publishes a filter to an existing pipeline (no job runs here, so
the command stops at Validated), gets a broken version refused with the line
and column, then reads alerts from the filter's topic. The alerts are
produced by the test in the `fink` layout with the codec the pipeline itself
builds for its plan: the full path with a running pipeline is another test's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from cluster import Kafka, Pipelines, wait_for
from confluent_kafka import Producer
from fink_filter_command import fink_filter
from kubernetes import client
from pipeline_documents import with_filters

from fink_core.spec import parse_pipeline
from fink_pipeline.science import plan_science
from fink_pipeline.stream.enriched import EnrichedCodec, enriched_schema
from fink_pipeline.stream.science_step import ScienceStep
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack

GOOD = '''"""Bright, clean detections."""
import pandas as pd


def bright(magpsf: pd.Series, rb: pd.Series) -> pd.Series:
    return (magpsf < 18.5) & (rb > 0.5)
'''

# line 5, column 5: a parameter naming a column no alert has
BROKEN = """import pandas as pd


def bright(
    magnitude: pd.Series,
) -> pd.Series:
    return magnitude < 18.5
"""


def fink_filter_on(stack: Endpoints, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`fink-filter` against the stack's API server and Kafka."""
    env = {"KUBECONFIG": str(stack.kubeconfig), "FINK_KAFKA_BOOTSTRAP": stack.kafka_bootstrap}
    return fink_filter(*args, cwd=cwd, env=env)


def enriched_record(codec: EnrichedCodec, **values: Any) -> dict[str, Any]:
    record: dict[str, Any] = {f["name"]: None for f in codec.schema["fields"]}
    record["fink_filters"] = []
    record.update(values)
    return record


def test_a_scientist_applies_a_filter_gets_the_refusal_with_its_line_then_tails_its_topic(
    stack: Endpoints,
    kube: client.ApiClient,
    namespace: str,
    pipelines: Pipelines,
    kafka: Kafka,
    running_operator,  # type: ignore[no-untyped-def]
    unique_name: str,
    leftovers: dict,
    tmp_path: Path,
) -> None:
    name = unique_name
    filter_name = f"{name}-bright"
    topic = f"fink_{filter_name}_ztf"
    leftovers["topics"] += [f"{name}.f0", f"{name}-deadletter", f"{name}-filters", topic]
    pipelines.create(with_filters(name, 1))
    pipelines.wait_ready(name)

    source = tmp_path / f"{filter_name}.py"
    source.write_text(GOOD)
    applied = fink_filter_on(
        stack,
        "apply",
        source.name,
        "--pipeline",
        name,
        "--namespace",
        namespace,
        "--wait-validated-only",
        "--wait",
        "90",
        cwd=tmp_path,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "validated: reads magpsf, rb" in applied.stdout
    assert f"publishes to {topic}" in applied.stdout
    found = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "fink.broker.dev", "v1alpha1", namespace, "sciencefilters", filter_name
    )
    assert found["spec"]["code"]["inline"] == GOOD
    assert found["spec"]["survey"] == "ztf"  # taken from the pipeline
    validated = {c["type"]: c for c in found["status"]["conditions"]}["Validated"]
    assert validated["status"] == "True"

    # the same filter broken: exit 1, the operator's refusal at the line and column
    source.write_text(BROKEN)
    refused = fink_filter_on(
        stack,
        "apply",
        source.name,
        "--pipeline",
        name,
        "-n",
        namespace,
        "--wait-validated-only",
        cwd=tmp_path,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "CodeRefused" in refused.stderr
    assert "line 5, column 5" in refused.stderr, refused.stderr
    assert "magnitude" in refused.stderr

    # two alerts in the filter's topic, encoded as the pipeline encodes them
    wait_for(lambda: topic in kafka.topics(), 60, f"topic {topic}")
    spec = parse_pipeline(pipelines.get(name))  # type: ignore[arg-type]
    step = ScienceStep(plan_science(spec))
    codec = EnrichedCodec(enriched_schema(spec.survey, step.alert_columns))
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for object_id, candid, magpsf in (("ZTF24aaaaaaa", 1, 17.5), ("ZTF24bbbbbbb", 2, 18.1)):
        record = enriched_record(
            codec,
            objectId=object_id,
            candid=candid,
            magpsf=magpsf,
            rb=0.9,
            fink_filters=[filter_name],
        )
        producer.produce(topic, key=object_id.encode(), value=codec.encode(record))
    assert producer.flush(30) == 0

    tailed = fink_filter_on(
        stack,
        "tail",
        filter_name,
        "-n",
        namespace,
        "--from-beginning",
        "--max",
        "2",
        "--timeout",
        "60",
        cwd=tmp_path,
    )
    assert tailed.returncode == 0, tailed.stdout + tailed.stderr
    lines = tailed.stdout.splitlines()
    assert len(lines) == 2, tailed.stdout
    assert "ZTF24aaaaaaa" in tailed.stdout and "ZTF24bbbbbbb" in tailed.stdout
    assert "magpsf=17.500" in tailed.stdout
    assert f"passed {filter_name}" in lines[0]

    # no such filter: bad input
    missing = fink_filter_on(stack, "tail", "no-such-filter", "-n", namespace, cwd=tmp_path)
    assert missing.returncode == 2, missing.stderr
