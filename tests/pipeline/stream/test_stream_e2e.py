"""The enrichment core end to end on the real stack: Kafka in, Spark, Kafka/HBase/Parquet out."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import pytest
from stream_world import (
    World,
    enriched_codec,
    expected_selection,
    iter_until,
    kill,
    topic_alert_ids,
)

from fink_pipeline.alerts import codec
from fink_pipeline.alerts.columns import ALERT_ID
from fink_pipeline.stream.observe import metric_sum, scrape_metrics
from fink_pipeline.stream.rows import nights, row_keys
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


@pytest.fixture
def world(stack: Endpoints, unique_name: str, tmp_path: Path) -> World:
    return World(stack=stack, name=unique_name, directory=tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_sinks_hold_exactly(world: World, values: list[bytes]) -> None:
    decoded, selected = expected_selection(world, values)
    alerts = len(decoded)
    alert_id = ALERT_ID[world.survey]

    rows = world.hbase_rows()
    assert len(rows) == alerts and set(rows) == set(row_keys(decoded, world.survey))
    if world.survey == "ztf":  # the documented key, spelled out
        objects, times = decoded["objectId"], decoded["jd"]
        assert set(rows) == {f"{o}_{t:.7f}".encode() for o, t in zip(objects, times, strict=True)}
    some = next(iter(rows.values()))
    assert f"i:{alert_id}".encode() in some and b"d:quality_ok" in some

    archived = world.archive_frame()
    assert len(archived) == alerts
    assert archived[alert_id].is_unique
    # partitioned by observing night, each alert under its own night
    assert Counter(archived["night"].astype(str)) == Counter(nights(decoded, world.survey))

    decoder = enriched_codec(world)
    assert any(selected.values()), "the generated alerts should pass some filter"
    for name in world.filters:
        got = topic_alert_ids(world, decoder, world.filter_topic(name), name)
        duplicates = [c for c, n in Counter(got).items() if n > 1]
        assert not duplicates, f"{name}: delivered twice: {duplicates[:5]}"
        assert set(got) == selected[name], f"{name}: topic differs from the filter applied directly"


def test_alerts_flow_to_every_sink_exactly_once_and_bad_ones_to_dead_letters(
    world: World,
) -> None:
    values = world.produce(1200, malformed=24)
    port = free_port()
    process = world.start(
        "--until-idle", "6", "--max-offsets-per-trigger", "400", metrics_port=port
    )

    seen: list[float] = []
    for _ in iter_until(240):
        if process.poll() is not None:
            break
        try:
            samples = scrape_metrics(port)
        except OSError:
            continue
        read = metric_sum(samples, "fink_pipeline_alerts_read_total", pipeline=world.name)
        if not seen or read > seen[-1]:
            seen.append(read)
    world.wait(process)
    # the counters moved while it ran: several distinct, increasing readings
    assert len(seen) >= 2 and seen[-1] > seen[0], f"alerts_read readings: {seen}"

    assert_sinks_hold_exactly(world, values)

    dead = world.read_topic(world.dead_letter_topic)
    assert len(dead) == 24
    reasons = Counter(dict(m.headers())["fink-error"].decode().split(":")[0] for m in dead)
    assert set(reasons) <= {"not-avro", "wrong-schema", "missing-field"} and len(reasons) >= 2
    bad = {v for v in values if codec.decode_batch([v], "ztf").rejects}
    assert {m.value() for m in dead} == bad


def test_killed_mid_stream_then_restarted_delivers_exactly_once(world: World) -> None:
    values = world.produce(2000, malformed=10, seed=8)
    first = world.start("--max-offsets-per-trigger", "150")
    for _ in iter_until(240):
        if world.committed_offsets() >= 450 or first.poll() is not None:
            break
    assert first.poll() is None, f"the pipeline stopped by itself:\n{world.log()}"
    kill(first)
    committed = world.committed_offsets()
    assert 0 < committed < len(values), "the kill should land mid-stream"

    second = world.start("--until-idle", "6", "--max-offsets-per-trigger", "600")
    world.wait(second)
    assert world.committed_offsets() == len(values)
    assert_sinks_hold_exactly(world, values)
    assert len(world.read_topic(world.dead_letter_topic)) == 10


def test_an_lsst_pipeline_runs_the_same_way(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    world = World(stack=stack, name=unique_name, directory=tmp_path, survey="lsst")
    values = world.produce(400, malformed=6, seed=9)
    world.wait(world.start("--until-idle", "5"))
    assert_sinks_hold_exactly(world, values)
    decoded, _ = expected_selection(world, values)
    with_object = decoded[decoded["diaObjectId"].notna()].iloc[0]
    key = f"{int(with_object['diaObjectId'])}_{with_object['midpointMjdTai']:.7f}".encode()
    assert key in world.hbase_rows()
    assert len(world.read_topic(world.dead_letter_topic)) == 6


def test_a_batch_whose_commit_was_lost_is_replayed_without_duplicates(world: World) -> None:
    """The crash Spark is built for: sinks written, the commit log entry not yet."""
    values = world.produce(600, malformed=4, seed=10)
    world.wait(world.start("--until-idle", "4", "--max-offsets-per-trigger", "200"))
    commits = world.checkpoint / "commits"
    last = max((p for p in commits.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    last.unlink()
    (commits / f".{last.name}.crc").unlink(missing_ok=True)

    world.wait(world.start("--until-idle", "4"))
    assert f"batch {last.name}:" in world.log() and "replay: Kafka already had it" in world.log()
    assert_sinks_hold_exactly(world, values)
    assert len(world.read_topic(world.dead_letter_topic)) == 4
