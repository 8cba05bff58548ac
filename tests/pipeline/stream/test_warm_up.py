"""The warm-up before the query: every slot's worker runs the science step (ZTF: then Spark's
JVM decoder too), nothing is written.

runner.run calls it between starting Spark and starting the query; the start-up
it moves out of the first micro-batch is measured by bench/pipeline_throughput.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import happybase
import pandas as pd
import pytest

from fink_core.filter_control import LiveFilter
from fink_pipeline.alerts import codec
from fink_pipeline.science import plan_for
from fink_pipeline.stream import science_step
from fink_pipeline.stream.live_filters import as_filter
from fink_pipeline.stream.science_step import HBaseTarget, ScienceStep, hbase_families
from fink_pipeline.stream.warm_up import (
    ALERTS_PER_SLOT,
    KeepWarm,
    dry_step,
    warm_up,
    warm_up_rows,
)
from fink_stack.endpoints import Endpoints

MODULES = ["quality_cuts", "lightcurve_features", "solar_system", "crossmatch", "snia_score"]
FILTERS = ["early_sn_candidates", "new_sso_candidates", "fast_transients"]
BRIGHT = "def bright(magpsf):\n    return magpsf < 18.5\n"
RAISER = "def raiser(magpsf):\n    raise ValueError('not on these alerts')\n"


def step_writing_to(host: str, port: int, table: str) -> ScienceStep:
    plan = plan_for("ztf", MODULES, FILTERS)
    families = tuple((f, tuple(c)) for f, c in hbase_families(plan, ["i", "d"]).items())
    return ScienceStep(plan, HBaseTarget(host, port, table, families), batch_id=7)


class RefusingWriter:
    def put(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("the warm-up wrote to HBase")


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_warm_up_alerts_are_good_alerts_of_the_survey(survey: str) -> None:
    """Rejected alerts would warm the decoder only, not the modules."""
    plan = plan_for(survey, [], [])
    rows = warm_up_rows(survey, 8)
    raw = pd.DataFrame(rows, columns=["value", "topic", "partition", "offset", "timestamp"])
    out = dry_step(ScienceStep(plan)).process(raw)
    assert len(out) == 8
    assert out["_reject"].isna().all(), out["_reject"].tolist()


def test_the_dry_step_runs_the_modules_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    step = step_writing_to("h", 1, "t")
    monkeypatch.setitem(science_step._HBASE_WRITERS, ("h", 1, "t"), RefusingWriter())
    raw = pd.DataFrame(
        warm_up_rows("ztf", 16), columns=["value", "topic", "partition", "offset", "timestamp"]
    )
    dry = dry_step(step)
    assert (dry.hbase, dry.batch_id, dry.schema_registry) == (None, None, None)
    out = dry.process(raw)
    assert out["_reject"].isna().all()
    assert set(step.plan.added_columns()) <= set(out.columns)
    # the modules answered (the cross-match finds few of 16 alerts in its catalogue)
    assert out[["quality_ok", "n_detections", "snia_score"]].notna().all().all()


@pytest.fixture
def table(stack: Endpoints, unique_name: str) -> Iterator[str]:
    name = unique_name.replace("-", "_")
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    connection.create_table(name, {"i": {}, "d": {}})
    try:
        yield name
    finally:
        connection.delete_table(name, disable=True)
        connection.close()


@pytest.mark.stack
@pytest.mark.parametrize("cutouts", [False, True], ids=["stamps-dropped", "stamps-stored"])
def test_in_spark_every_slot_runs_the_step_and_hbase_stays_empty(
    spark: Any, stack: Endpoints, table: str, cutouts: bool
) -> None:
    step = step_writing_to(stack.hbase_thrift_host, stack.hbase_thrift_port, table)
    assert step.hbase is not None
    step = replace(step, hbase=replace(step.hbase, cutouts=cutouts))
    done = warm_up(spark, step)
    assert done is not None
    assert done.slots == spark.sparkContext.defaultParallelism
    assert (done.alerts, done.rejected) == (ALERTS_PER_SLOT * done.slots, 0)
    # then once more through Spark's JVM decoder, which decoded every one of them
    assert done.jvm_decoded == done.alerts
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        assert list(connection.table(table).scan(limit=1)) == []
    finally:
        connection.close()


@pytest.mark.stack
def test_keep_warm_and_rubin_leave_the_jvm_decoder_alone(spark: Any) -> None:
    """Only ZTF is decoded in the JVM; KeepWarm exercises the Python workers only."""
    rubin = warm_up(spark, ScienceStep(plan_for("lsst", ["quality_cuts"], [])))
    ztf = warm_up(spark, ScienceStep(plan_for("ztf", ["quality_cuts"], [])), jvm_pass=False)
    assert rubin is not None and ztf is not None
    assert (rubin.rejected, rubin.jvm_decoded, ztf.jvm_decoded) == (0, 0, 0)


@pytest.mark.stack
def test_a_failing_warm_up_is_logged_and_does_not_stop_the_pipeline(
    spark: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # a survey the generator does not know makes the warm-up itself fail
    broken = ScienceStep(replace(plan_for("ztf", [], []), survey="unknown"))
    assert warm_up(spark, broken) is None
    assert "warming the Python workers up failed" in caplog.text


@pytest.mark.stack
def test_live_science_filters_start_in_the_workers_sandboxes_before_the_query(
    spark: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The warm-up runs the step the first batch would: with the ScienceFilters live at the
    start, each in its worker's sandbox; a filter failing there is logged, nothing more."""
    bright = LiveFilter("bright", 1, BRIGHT, "bright", ("magpsf",), "t-bright")
    raiser = LiveFilter("raiser", 1, RAISER, "raiser", ("magpsf",), "t-raiser")
    plan = plan_for("ztf", ["quality_cuts"], [])
    sandboxed = tuple((as_filter(f, "ztf", (30.0, 1024)), f.topic) for f in (bright, raiser))
    done = warm_up(spark, ScienceStep(replace(plan, filters=sandboxed)))

    assert done is not None
    values = [row[0] for row in warm_up_rows("ztf", done.alerts)]  # the same synthetic alerts
    magnitudes = codec.decode_batch(values, "ztf").frame["magpsf"]
    expected = int((magnitudes < 18.5).sum())
    assert 0 < expected < done.alerts, "some warm-up alerts should be bright, not all"
    assert done.passed == {"bright": expected, "raiser": 0}
    assert list(done.stopped) == ["raiser"]
    assert "not on these alerts" in done.stopped["raiser"]
    assert "ScienceFilter raiser failed on the warm-up's synthetic alerts" in caplog.text


def python_workers() -> set[int]:
    """Spark's Python workers under this process: the pyspark daemon's forked children,
    descendants of this test process (whose Spark JVM started the daemon), not those of
    the pipelines other tests run beside it on the machine."""
    daemons, parents = set(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"pyspark.daemon" in command:
            daemons.add(int(entry.name))

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return {pid for pid in daemons if parents[pid] in daemons and ours(pid)}


@pytest.mark.stack
def test_keep_warm_runs_only_after_the_workers_were_idle_long_enough(spark: Any) -> None:
    asked: list[int] = []

    def step() -> ScienceStep:
        asked.append(1)
        return ScienceStep(plan_for("ztf", ["quality_cuts"], []))

    keeper = KeepWarm(spark, after=3600)
    assert not keeper.tick(step, busy_until=time.monotonic())
    assert asked == []  # the control topic is not read for nothing
    keeper = KeepWarm(spark, after=0.5, last_run=0.0)
    assert not keeper.tick(step, busy_until=time.monotonic())  # a batch just ended
    time.sleep(0.6)
    assert keeper.tick(step, busy_until=0.0) and keeper.runs == 1 and asked == [1]


@pytest.mark.stack
def test_kept_warm_workers_outlive_sparks_idle_minute(spark: Any) -> None:
    """Spark stops every Python worker idle for a minute; KeepWarm's runs keep the same
    ones alive, so a stream's first alerts after a quiet spell find them started."""
    step = ScienceStep(plan_for("ztf", ["quality_cuts", "crossmatch"], []))
    assert warm_up(spark, step) is not None
    started = python_workers()
    assert started, "the warm-up leaves started workers"
    keeper = KeepWarm(spark, after=20.0)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 85:  # Spark checks every 10 s for a minute idle
        keeper.tick(lambda: step, busy_until=quiet_since)
        time.sleep(1.0)
    assert keeper.runs >= 3
    assert started <= python_workers(), "a worker started by the warm-up was stopped"
