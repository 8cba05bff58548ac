"""ScienceFilters in a real pipeline run: read from the control topic, run sandboxed, reported.

The operator's part (the topics and the filter records) is done by hand here,
exactly as fink_operator.filter_channel writes it, so these tests look at the
pipeline alone: real Kafka, HBase and Spark. The operator's part is tested in
tests/operator/test_e2e_science_filters.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from stream_world import World, assert_sinks_hold_exactly, enriched_codec, expected

from fink_core.filter_control import FAILED, LIVE, LiveFilter, control_topic, read_state
from fink_pipeline.alerts.columns import ALERT_ID
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack

BRIGHT = """import pandas as pd


def bright(magpsf: pd.Series, rb: pd.Series) -> pd.Series:
    return (magpsf < 18.5) & (rb > 0.5)
"""

# raises as soon as a chunk holds a faint alert: on some rows, not all
FAINT_HATER = """import pandas as pd


def faint_hater(magpsf: pd.Series) -> pd.Series:
    if (magpsf > 19.5).any():
        raise ValueError("a faint alert")
    return magpsf < 30
"""

# gets around the static checks: the sandbox refuses the connection at run time
NOSY = """import pandas as pd


def nosy(magpsf: pd.Series) -> pd.Series:
    pd.read_csv("http://127.0.0.1:9/catalogue.csv")
    return magpsf < 30
"""


@pytest.fixture
def world(stack: Endpoints, unique_name: str, tmp_path: Path) -> World:
    return World(stack=stack, name=unique_name, directory=tmp_path)


def hand_over(world: World, filters: list[LiveFilter]) -> None:
    """What the operator does once filters are validated: topics, then the filter records."""
    admin = AdminClient({"bootstrap.servers": world.stack.kafka_bootstrap})
    control = control_topic(world.name)
    topics = [
        NewTopic(control, 1, 1, config={"cleanup.policy": "compact"}),
        *(NewTopic(f.topic, 2, 1) for f in filters),
    ]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": world.stack.kafka_bootstrap})
    for live in filters:
        producer.produce(control, key=live.key(), value=live.value())
    assert producer.flush(30) == 0


def live(world: World, name: str, code: str, reads: tuple[str, ...]) -> LiveFilter:
    return LiveFilter(
        name=name,
        generation=1,
        code=code,
        entrypoint=name,
        reads=reads,
        topic=f"{world.name}.science.{name}",
    )


def ids_in(world: World, topic: str) -> list[int]:
    decoder = enriched_codec(world)
    return [int(decoder.decode(m.value())[ALERT_ID[world.survey]]) for m in world.read_topic(topic)]


def test_science_filters_run_from_the_control_topic_and_a_failing_one_is_stopped_alone(
    world: World,
) -> None:
    values = world.produce(400, malformed=6)
    bright = live(world, "bright", BRIGHT, ("magpsf", "rb"))
    faint_hater = live(world, "faint_hater", FAINT_HATER, ("magpsf",))
    nosy = live(world, "nosy", NOSY, ("magpsf",))
    hand_over(world, [bright, faint_hater, nosy])

    world.wait(world.start("--until-idle", "6", "--max-offsets-per-trigger", "150"))

    alerts = expected(world, values).enriched
    selected = alerts[(alerts["magpsf"] < 18.5) & (alerts["rb"] > 0.5)].index
    assert 0 < len(selected) < len(alerts), "the filter should select some alerts, not all"
    assert (alerts["magpsf"] > 19.5).any(), "faint_hater must meet a faint alert"
    # every sink holds what it would without ScienceFilters, alerts name `bright` too
    assert_sinks_hold_exactly(world, values, {"bright": set(selected)})

    got = ids_in(world, bright.topic)
    assert not [c for c, n in Counter(got).items() if n > 1], "delivered twice"
    assert set(got) == set(selected)
    # the failing filters are stopped in their first batch: nothing of theirs is published
    assert ids_in(world, faint_hater.topic) == []
    assert ids_in(world, nosy.topic) == []

    state = read_state((m.key(), m.value()) for m in world.read_topic(control_topic(world.name)))
    reports = state.reports
    assert (reports["bright"].state, reports["bright"].generation) == (LIVE, 1)
    assert reports["bright"].alerts_passed == len(selected)
    assert reports["bright"].last_passed_ms is not None
    assert reports["faint_hater"].state == FAILED
    assert reports["faint_hater"].reason == "FilterRaised"
    assert "a faint alert" in reports["faint_hater"].message
    assert reports["nosy"].state == FAILED
    assert reports["nosy"].reason == "FilterForbidden", reports["nosy"]
    assert "network" in reports["nosy"].message
    # the archive keeps the ScienceFilter's flag beside the built-in ones
    archived = world.archive_frame().set_index(ALERT_ID[world.survey])
    flagged = archived.index[archived["pass_bright"].astype(bool)]
    assert set(flagged) == set(selected)
