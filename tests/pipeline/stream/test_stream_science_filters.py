"""ScienceFilters in a real pipeline run: read from the control topic, run sandboxed, reported.

The operator's part (the topics and the filter records) is done by hand here,
exactly as fink_operator.filter_channel writes it, so these tests look at the
pipeline alone: real Kafka, HBase and Spark. The operator's part is tested in
tests/operator/test_e2e_science_filters.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import fink_filters
import pandas as pd
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from stream_world import World, assert_sinks_hold_exactly, enriched_codec, expected

from fink_core.filter_control import FAILED, LIVE, LiveFilter, control_topic, read_state
from fink_pipeline.alerts.columns import ALERT_ID
from fink_pipeline.stream.live_filters import MEMORY_ENV, SECONDS_ENV
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


LOOPER = """import pandas as pd


def looper(magpsf: pd.Series) -> pd.Series:
    while True:
        pass
"""

GLUTTON = """import numpy as np
import pandas as pd


def glutton(magpsf: pd.Series) -> pd.Series:
    hoard = np.ones(10 * 1024**3, dtype=np.uint8)
    return magpsf < hoard[0]
"""

READER = """import pandas as pd


def reader(magpsf: pd.Series) -> pd.Series:
    pd.read_csv("/etc/passwd")
    return magpsf < 30
"""

SPAWNER = """import pandas as pd


def spawner(magpsf: pd.Series) -> pd.Series:
    pd.io.common.os.system("true")
    return magpsf < 30
"""

# passes every alert, but raises in the call (one chunk of a batch) holding alert {0}
PICKY = """import pandas as pd


def picky(candid: pd.Series) -> pd.Series:
    if (candid == {0}).any():
        raise ValueError("not this one")
    return candid > 0
"""

# fink-filters' own file, as its authors wrote it (the pandas UDF and its test block)
FINK_SSO = (
    Path(fink_filters.__file__).parent / "ztf/livestream/filter_sso_fink_candidates/filter.py"
).read_text()


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


def live(
    world: World, name: str, code: str, reads: tuple[str, ...], entrypoint: str = ""
) -> LiveFilter:
    return LiveFilter(
        name=name,
        generation=1,
        code=code,
        entrypoint=entrypoint or name,
        reads=reads,
        topic=f"{world.name}.science.{name}",
    )


def pass_flag(science_filter: LiveFilter) -> str:
    return f"pass_{science_filter.name}"


def passed_until_stopped(archived: pd.DataFrame, fails: Callable[[pd.DataFrame], bool]) -> set[int]:
    """What a filter passing every alert publishes when it raises in the calls `fails`
    picks: every call before the first batch with such a call, and that batch's others.

    One call per source partition and batch here (150 offsets a batch, far below the
    10,000 alerts of a chunk), so a call's alerts are the archive's rows of one
    (batch, _partition).
    """
    calls = list(archived.groupby(["batch", "_partition"]))
    failing = [batch for (batch, _), call in calls if fails(call)]
    assert failing, "the filter must fail in some call: a weak test"
    stop = min(failing)
    return {
        int(alert)
        for (batch, _), call in calls
        if batch < stop or (batch == stop and not fails(call))
        for alert in call.index
    }


def ids_in(world: World, topic: str) -> list[int]:
    decoder = enriched_codec(world)
    return [int(decoder.decode(m.value())[ALERT_ID[world.survey]]) for m in world.read_topic(topic)]


def test_science_filters_run_from_the_control_topic_and_failing_ones_are_stopped_alone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = world.produce(400, malformed=6)
    bright = live(world, "bright", BRIGHT, ("magpsf", "rb"))
    sso = live(world, "fink_sso", FINK_SSO, ("roid",), entrypoint="sso_fink_candidates")
    failing = {
        "faint_hater": (FAINT_HATER, "FilterRaised", "a faint alert"),
        "nosy": (NOSY, "FilterForbidden", "network"),
        "looper": (LOOPER, "FilterTimedOut", "3 s"),
        "glutton": (GLUTTON, "FilterOutOfMemory", "memory"),
        "reader": (READER, "FilterForbidden", "file"),
        "spawner": (SPAWNER, "FilterForbidden", "program"),
    }
    stopped = [live(world, name, code, ("magpsf",)) for name, (code, _, _) in failing.items()]
    alerts = expected(world, values).enriched
    unwanted = int(alerts.index[len(alerts) // 2])
    picky = live(world, "picky", PICKY.format(unwanted), ("candid",))
    hand_over(world, [bright, sso, *stopped, picky])
    monkeypatch.setenv(SECONDS_ENV, "3")
    monkeypatch.setenv(MEMORY_ENV, "1024")

    run = world.start("--until-idle", "6", "--max-offsets-per-trigger", "150")
    world.wait(run)
    # the warm-up ran the filters live at the start: the workers' sandboxes started then
    warmed = next(line for line in run.log().splitlines() if "warmed up on" in line)
    assert "'bright': " in warmed and "'looper': 0" in warmed, warmed
    assert "ScienceFilter looper failed on the warm-up's synthetic alerts" in run.log()

    selected = alerts[(alerts["magpsf"] < 18.5) & (alerts["rb"] > 0.5)].index
    assert 0 < len(selected) < len(alerts), "the filter should select some alerts, not all"
    assert (alerts["magpsf"] > 19.5).any(), "faint_hater must meet a faint alert"
    sso_selected = alerts[alerts["roid"] == 2].index
    assert len(sso_selected), "some alerts must be new SSO candidates"
    # a stopped filter passes what its calls passed up to its stop, its failing calls aside
    archived = world.archive_frame().set_index(ALERT_ID[world.survey])
    faint = passed_until_stopped(
        archived, lambda call: bool((alerts.loc[call.index, "magpsf"] > 19.5).any())
    )
    chosen = passed_until_stopped(archived, lambda call: unwanted in call.index)
    failed_in = int(archived.loc[unwanted, "batch"])
    in_that_batch = archived.index[archived["batch"] == failed_in]
    assert 0 < len(chosen.intersection(in_that_batch)) < len(in_that_batch), "a weak test"
    # every sink holds what it would without ScienceFilters, alerts name them too
    passes = {"bright": set(selected), "fink_sso": set(sso_selected), "faint_hater": faint}
    assert_sinks_hold_exactly(world, values, {**passes, "picky": chosen})
    # fink-filters' own code, unchanged, selects what the built-in filter of the same rule does
    assert set(ids_in(world, sso.topic)) == set(sso_selected)

    got = ids_in(world, bright.topic)
    assert not [c for c, n in Counter(got).items() if n > 1], "delivered twice"
    assert set(got) == set(selected)
    # the filters failing on every call are stopped in their first batch, having passed nothing;
    # picky's topic has its other call of the batch where it failed (the other partition's)
    for science_filter in [*stopped, picky]:
        passed = {"faint_hater": faint, "picky": chosen}.get(science_filter.name, set())
        assert sorted(ids_in(world, science_filter.topic)) == sorted(passed), science_filter.name
        # and the archive's flag says so: true exactly for what the topic got
        flags = archived[pass_flag(science_filter)]
        assert set(archived.index[flags.eq(True)]) == passed  # null: not run on it
    # not run after its stop: no flag at all in the later batches
    assert archived.loc[archived["batch"] > failed_in, pass_flag(picky)].isna().all()

    state = read_state((m.key(), m.value()) for m in world.read_topic(control_topic(world.name)))
    reports = state.reports
    assert (reports["bright"].state, reports["bright"].generation) == (LIVE, 1)
    assert reports["bright"].alerts_passed == len(selected)
    assert reports["bright"].last_passed_ms is not None
    assert reports["fink_sso"].alerts_passed == len(sso_selected)
    failing["picky"] = (PICKY, "FilterRaised", "not this one")
    for name, (_, reason, words) in failing.items():
        report = reports[name]
        assert (report.state, report.reason) == (FAILED, reason), report
        assert words in report.message, report
    assert reports["picky"].alerts_passed == len(chosen)
    # the archive keeps the ScienceFilter's flag beside the built-in ones
    flagged = archived.index[archived["pass_bright"].astype(bool)]
    assert set(flagged) == set(selected)
