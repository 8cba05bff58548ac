"""The enrichment core end to end on the real stack: Kafka in, Spark, Kafka/HBase/Parquet out.

Every test checks every sink's content against the science applied directly
(stream_world.assert_sinks_hold_exactly), dead letters included. The crash
tests use the pipeline's fault hook (fink_pipeline.stream.faults) to stop the
pipeline at a known point of a known micro-batch, prove it stopped there, kill
every process of it, and check the restart delivers exactly once.
"""

from __future__ import annotations

import gzip
import io
import signal
import socket
import struct
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from fink_filter_command import fink_filter
from stream_world import (
    MODULES,
    Expected,
    Run,
    World,
    assert_sinks_hold_exactly,
    assert_stopped_in,
    count_messages,
    expected,
    iter_until,
    kill,
)

from fink_core.connections import Address
from fink_core.hbase_admin import HBaseAdmin
from fink_pipeline.alerts import codec, generator, rubin_schemas
from fink_pipeline.alerts.survey_encoder import SurveyEncoder
from fink_pipeline.stream.observe import by_label, metric_sum, scrape_metrics
from fink_pipeline.stream.rows import row_keys
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


@pytest.fixture
def world(stack: Endpoints, unique_name: str, tmp_path: Path) -> World:
    return World(stack=stack, name=unique_name, directory=tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def watch_metrics(run: Run, port: int, timeout: float = 240) -> list[dict[str, float]]:
    """Every scrape of the run's metrics until it exits (0.25 s apart)."""
    readings = []
    for _ in iter_until(timeout, 0.25):
        if run.process.poll() is not None:
            break
        try:
            readings.append(scrape_metrics(port))
        except OSError:
            continue
    return readings


def test_alerts_flow_to_every_sink_exactly_once_and_bad_ones_to_dead_letters(
    world: World,
) -> None:
    values = world.produce(1200, malformed=24)
    port = free_port()
    started = time.time()
    # keep-warm after 2 s: its runs go on while the pipeline idles its last 6 s
    run = world.start(
        "--until-idle", "6", "--max-offsets-per-trigger", "400", "--keep-warm-after", "2",
        metrics_port=port,
    )  # fmt: skip
    readings = watch_metrics(run, port)
    world.wait(run)
    finished = time.time()

    want = assert_sinks_hold_exactly(world, values)
    assert len(want.bad) == 24
    assert_filters_select_their_classes(world, want, 1200, seed=7)
    assert_a_scientist_tries_a_filter_on_a_night_of_the_archive(world)
    assert_metrics_follow_from_the_run(world, readings, want, values, started, finished)
    # what the log says of each batch is what the checkpoint and the metrics say
    lines = run.batch_lines()
    assert set(lines) == world.commit_log() and not any("replay" in line for line in lines.values())


def assert_filters_select_their_classes(
    world: World, want: Expected, count: int, seed: int
) -> None:
    """Each filter selects what it is for in the generated sky (docs/alerts.md, the generator)."""
    labels = {
        int(alert["candidate"]["candid"]): kind
        for alert, kind in generator.generate_labelled(count, "ztf", seed)
    }
    classes = {name: Counter(labels[c] for c in ids) for name, ids in want.selected.items()}

    def share(name: str, kind: str) -> float:
        return classes[name][kind] / sum(classes[name].values())

    assert set(classes["new_sso_candidates"]) == {"asteroid"}, classes
    assert share("fast_transients", "fast_transient") >= 0.9, classes
    assert set(classes["early_sn_candidates"]) <= {"sn_like", "fast_transient"}, classes
    assert share("early_sn_candidates", "sn_like") >= 0.6, classes


def assert_a_scientist_tries_a_filter_on_a_night_of_the_archive(world: World) -> None:
    """docs/science-filters.md: `fink-filter test FILE --parquet` on a night's directory
    of a pipeline's archive reads every alert of that night (all its batches' files)."""
    archived = world.archive_frame()
    nights = archived["night"].astype(str)
    night = sorted(set(nights))[0]
    made = fink_filter("init", "bright-sn", cwd=world.directory)
    assert made.returncode == 0, made.stderr
    night_directory = str(world.archive / f"night={night}")
    tried = fink_filter("test", "bright-sn.py", "--parquet", night_directory, cwd=world.directory)
    assert tried.returncode == 0, tried.stderr
    assert f" of {int((nights == night).sum())} passed" in tried.stdout, tried.stdout


def assert_metrics_follow_from_the_run(
    world: World,
    readings: list[dict[str, float]],
    want: Expected,
    values: list[bytes],
    started: float,
    finished: float,
) -> None:
    """Every metric of docs/pipeline.md's table, with the value this run implies."""
    name = world.name
    assert len(readings) > 4, "too few scrapes of the metrics"
    last = readings[-1]
    offsets = world.offsets_log()
    batches = sorted(offsets)
    assert world.commit_log() == set(batches) and len(batches) >= 3

    # alerts_read: after each batch, exactly the messages up to where that batch read
    cumulative = {0.0} | {float(sum(offsets[b].values())) for b in batches}
    read = [metric_sum(r, "fink_pipeline_alerts_read_total", pipeline=name) for r in readings]
    assert set(read) <= cumulative, (sorted(set(read)), sorted(cumulative))
    assert len(set(read)) >= 3 and read == sorted(read), "alerts_read should rise batch by batch"
    assert read[-1] == len(values)

    alerts = len(want.enriched)
    delivered = sum(len(ids) for ids in want.selected.values())
    assert by_label(last, "fink_pipeline_alerts_written_total", "sink") == {
        "hbase": alerts,
        "parquet": alerts,
        "kafka": delivered,
        "dead_letter": len(want.bad),
    }
    reasons = Counter(str(r.reason).split(":")[0] for r in rejects_of(world, values))
    assert by_label(last, "fink_pipeline_alerts_rejected_total", "reason") == reasons
    assert by_label(last, "fink_pipeline_filter_passed_total", "filter") == {
        f: len(ids) for f, ids in want.selected.items()
    }

    # every good alert decoded once; from the second batch (400 messages) on, in Spark's JVM
    decoded = by_label(last, "fink_pipeline_alerts_decoded_total", "decoder")
    good = len(want.enriched)
    assert decoded["jvm"] + decoded["python"] == good, decoded
    assert 0 < decoded["python"] <= 400 and decoded["jvm"] >= good - 400, decoded

    # the idle end of the run kept the workers warm (warm_up.KeepWarm, --keep-warm-after 2)
    assert metric_sum(last, "fink_pipeline_workers_kept_warm_total", pipeline=name) >= 1
    modules = by_label(last, "fink_pipeline_module_seconds_total", "module")
    assert set(modules) == {*MODULES, "decode"} and min(modules.values()) > 0, modules
    stages = by_label(last, "fink_pipeline_stage_seconds_total", "stage")
    # science: the tasks' job (decode, modules, HBase, Parquet), as the driver waits for it;
    # hbase and encode (the filter messages): inside the tasks
    assert set(stages) == {"science", "hbase", "encode", "kafka"}, stages
    assert min(stages.values()) > 0, stages

    # one observation per batch; the driver's stages happen inside the batches' wall time
    count = metric_sum(last, "fink_pipeline_batch_duration_seconds_count", pipeline=name)
    total = metric_sum(last, "fink_pipeline_batch_duration_seconds_sum", pipeline=name)
    assert count == len(batches)
    driver = stages["science"] + stages["kafka"]
    assert driver <= total < finished - started
    inf = metric_sum(last, "fink_pipeline_batch_duration_seconds_bucket", pipeline=name, le="+Inf")
    assert inf == len(batches)
    assert by_label(last, "fink_pipeline_batches_total", "outcome") == {"written": len(batches)}
    # nothing was deleted from the source: nothing lost (test_source_retention.py counts a loss)
    assert by_label(last, "fink_pipeline_alerts_lost_total", "partition") == {}

    # lag: after each batch, the source head minus where that batch read, per partition
    heads = offsets[batches[-1]]
    possible = {tuple(heads[p] - offsets[b][p] for p in (0, 1)) for b in batches}
    seen = set()
    for reading in readings:
        lag = by_label(reading, "fink_pipeline_input_lag_messages", "partition")
        if lag:
            seen.add(tuple(int(lag[str(p)]) for p in (0, 1)))
    assert seen <= possible and (0, 0) in seen and len(seen) >= 2, (seen, possible)

    # served once the query runs: 1 from the first scrape; 0 (if seen) only as it stops
    running = [metric_sum(r, "fink_pipeline_running", pipeline=name) for r in readings]
    assert running[0] == 1.0 and set(running) <= {0.0, 1.0}
    assert running == sorted(running, reverse=True), running
    stamp = metric_sum(last, "fink_pipeline_last_batch_timestamp_seconds", pipeline=name)
    assert started < stamp < finished


def rejects_of(world: World, values: list[bytes]) -> list[codec.Reject]:
    return list(codec.decode_batch(values, world.survey).rejects)


def kill_inside_batch_2s_transaction_then_restart(
    world: World, values: list[bytes]
) -> tuple[int, int]:
    """Hold the driver inside batch 2's transaction (messages and offsets flushed, not
    committed), SIGKILL every process, restart: batch 2 is sent again, once. Returns the
    messages a read_uncommitted and a read_committed consumer saw at the kill."""
    first = world.start("--max-offsets-per-trigger", "300", fault="kafka-transaction@2:pause:300")
    hits = world.wait_for_fault(first)
    assert [(h["stage"], h["batch"]) for h in hits] == [("kafka-transaction", 2)]
    uncommitted = count_messages(world, "read_uncommitted")
    committed = count_messages(world, "read_committed")
    assert uncommitted > committed, "batch 2's messages should be sent, not committed"
    kill(first)
    assert_stopped_in(world, 2, "kafka-transaction")

    second = world.start("--until-idle", "6", "--max-offsets-per-trigger", "600")
    world.wait(second)
    lines = second.batch_lines()
    assert min(lines) == 2 and "replay" not in lines[2], lines  # sent again: never committed
    assert world.committed_offsets() == len(values)
    assert_sinks_hold_exactly(world, values)
    return uncommitted, committed


def lose_the_last_commit(world: World) -> int:
    """Delete Spark's commit log entry of the last batch (sinks written): it runs again."""
    commits = world.checkpoint / "commits"
    last = max(world.commit_log())
    (commits / str(last)).unlink()
    (commits / f".{last}.crc").unlink(missing_ok=True)
    return last


def test_killed_inside_the_kafka_transaction_then_restarted_delivers_exactly_once(
    world: World,
) -> None:
    """A transaction cut by a crash is aborted: the kill lands inside batch 2's transaction.

    The fault hook holds the driver after batch 2's messages and offsets went into
    its transaction and were flushed, before the commit; the test checks they are
    in the topics' logs but not committed, SIGKILLs every process, and restarts.
    """
    values = world.produce(1500, malformed=10, seed=8)
    uncommitted, committed = kill_inside_batch_2s_transaction_then_restart(world, values)
    # the cut transaction's messages stay in the logs, aborted: read_committed never shows them
    hidden = count_messages(world, "read_uncommitted") - count_messages(world, "read_committed")
    assert hidden == uncommitted - committed


def test_killed_inside_the_hbase_writes_then_restarted_delivers_exactly_once(
    world: World,
) -> None:
    """The kill lands while the tasks write batch 1's HBase rows; the restart rewrites them.

    The restart (batch 1 again, then the rest as batch 2) gets SIGTERM while batch
    2 is held inside its Kafka transaction: it must stop between micro-batches,
    that is finish batch 2 (its sinks and Spark's commit log), and exit 0 with
    its summary.
    """
    values = world.produce(1200, malformed=6, seed=12)
    first = world.start("--max-offsets-per-trigger", "300", fault="hbase-write@1:pause:300")
    hits = world.wait_for_fault(first)
    assert {(h["stage"], h["batch"]) for h in hits} == {("hbase-write", 1)}
    kill(first)
    # batch 1's rows are partly in HBase; nothing else of batch 1 is anywhere
    assert_stopped_in(world, 1, "hbase-write")

    second = world.start(fault="kafka-transaction@2:pause:300")
    assert [(h["stage"], h["batch"]) for h in world.wait_for_fault(second)] == [
        ("kafka-transaction", 2)
    ]
    second.process.send_signal(signal.SIGTERM)
    for _ in iter_until(30, 0.2):
        if "signal 15: stopping after the current micro-batch" in second.log():
            break
    # hold the batch a little longer: a stop that did not wait for the batch in flight
    # would now interrupt Spark, and the batch would miss its commit log entry
    time.sleep(3)
    world.release(second)
    world.wait(second, timeout=120)
    assert world.commit_log() == set(world.offsets_log()) == {0, 1, 2}
    assert world.committed_offsets() == len(values)
    assert sorted(second.batch_lines()) == [1, 2]
    before = sum(world.offsets_log()[0].values())
    assert f"{world.name}: {len(values) - before} messages in 2 micro-batches" in second.log()
    assert_sinks_hold_exactly(world, values)


def test_an_lsst_pipeline_runs_the_same_way(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    """Rubin alerts as Rubin publishes them: every official schema version in one stream,
    each registered with the stack's schema registry and written under the id it gave;
    their cutouts stored in HBase; keys salted (saltDigits: 2); rows packed (layout:
    packed, each family's values one JSON record, the layout recorded on the table); the
    document read from stdin (-f -)."""
    assert stack.schema_registry, "the stack's schema registry (component registry) is needed"
    versions = tuple(f"{major}.{minor}" for major, minor in rubin_schemas.versions())
    world = World(
        stack=stack,
        name=unique_name,
        directory=tmp_path,
        survey="lsst",
        salt_digits=2,
        schema_versions=versions,
        schema_registry=stack.schema_registry,
        cutouts="store",
        layout="packed",
    )
    values = world.produce(600, malformed=6, seed=9)
    ids = {struct.unpack(">I", v[1:5])[0] for v in values if len(v) > 5 and v[0] == 0}
    registered = set(SurveyEncoder("lsst", versions, stack.schema_registry).ids.values())
    assert len(registered) == len(versions) and registered <= ids  # one id per version
    world.wait(world.start("--until-idle", "5", stdin=True))
    want = assert_sinks_hold_exactly(world, values)  # every value, in the records
    rows = world.hbase_rows()
    alerts = want.enriched
    assert set(rows) == set(row_keys(alerts, "lsst", 2))
    assert {q for cells in rows.values() for q in cells} == {
        b"i:record",
        b"d:record",
        b"cutouts:science",
        b"cutouts:template",
        b"cutouts:difference",
    }
    admin_address = Address(stack.hbase_thrift_host, stack.hbase_admin_port)
    with HBaseAdmin(admin_address, timeout=10) as admin:
        assert admin.layout(world.table) == "packed"
    with_object = alerts[alerts["diaObjectId"].notna()].iloc[0]
    # the documented key, spelled out: crc32(object) mod 100, then object_time
    obj = str(int(with_object["diaObjectId"]))
    salt = zlib.crc32(obj.encode()) % 100
    assert f"{salt:02d}_{obj}_{with_object['midpointMjdTai']:.7f}".encode() in rows
    assert len({k.split(b"_", 1)[0] for k in rows}) > 10  # the salt spreads the keys
    assert len(want.bad) == 6


def test_stored_cutouts_are_in_each_alerts_row_byte_for_byte(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    """spec.sinks.hbase.cutouts: store. The table gets the family cutouts, and each
    alert's row its three stamps as produced (gzipped FITS that astropy opens);
    the filter topics and the archive carry no stamp."""
    fits = pytest.importorskip("astropy.io.fits")
    world = World(stack=stack, name=unique_name, directory=tmp_path, cutouts="store")
    values = world.produce(300, malformed=3, seed=11)
    world.wait(world.start("--until-idle", "4"))
    want = assert_sinks_hold_exactly(world, values)  # the family, and the stamps in each row
    assert len(want.stamps) == len(want.enriched) == 300
    assert all(len(cells) == 3 for cells in want.stamps.values())
    rows = world.hbase_rows()
    key = row_keys(want.enriched, "ztf")[0]
    candid = int(want.enriched.index[0])
    for cell in (b"cutouts:science", b"cutouts:template", b"cutouts:difference"):
        stamp = rows[key][cell]
        assert stamp == want.stamps[candid][cell]
        with fits.open(io.BytesIO(gzip.decompress(stamp))) as hdus:
            assert hdus[0].data.shape == (63, 63)
    assert not [c for c in world.archive_frame().columns if "cutout" in c.lower()]
    for name in world.filters:
        for message in world.read_topic(world.filter_topic(name)):
            # the enriched record: a few KB; with the three stamps it would be over 50 KB
            assert len(message.value()) < 8_000


def test_a_batch_whose_commit_was_lost_is_replayed_without_duplicates(world: World) -> None:
    """The crash Spark is built for: sinks written, the commit log entry not yet."""
    values = world.produce(600, malformed=4, seed=10)
    first = world.start("--until-idle", "4", "--max-offsets-per-trigger", "200")
    world.wait(first)
    last = lose_the_last_commit(world)

    port = free_port()
    second = world.start("--until-idle", "4", metrics_port=port)
    readings = watch_metrics(second, port)
    world.wait(second)
    # this run's log: the one batch it ran is the lost one, recognised as already delivered
    assert list(second.batch_lines()) == [last]
    assert "(replay: Kafka already had it)" in second.batch_lines()[last]
    assert not any("replay" in line for line in first.batch_lines().values())
    # metrics: a replay is counted as such, and its alerts are not read twice
    final = readings[-1]
    assert by_label(final, "fink_pipeline_batches_total", "outcome") == {"replayed": 1}
    assert metric_sum(final, "fink_pipeline_alerts_read_total", pipeline=world.name) == 0
    assert_sinks_hold_exactly(world, values)
    assert len(expected(world, values).bad) == 4


def test_source_on_another_kafka_cluster_is_delivered_exactly_once_across_crashes(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    """The survey's stream on its own cluster (the stack's upstream Kafka), the outputs on the
    broker's: the source offsets go to the sink cluster's progress topic inside each batch's
    transaction. Killed inside batch 2's transaction, restarted; then a batch whose commit
    Spark lost is recognised as delivered by the progress topic: every sink holds exactly
    the produced alerts.
    """
    assert stack.kafka_upstream_bootstrap, "the stack's upstream Kafka (component kafka)"
    world = World(
        stack=stack,
        name=unique_name,
        directory=tmp_path,
        source_bootstrap=stack.kafka_upstream_bootstrap,
    )
    values = world.produce(1500, malformed=10, seed=21)
    sink_cluster = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    assert world.source not in sink_cluster.list_topics(timeout=10).topics  # upstream only
    kill_inside_batch_2s_transaction_then_restart(world, values)

    last = lose_the_last_commit(world)  # Spark loses the last commit: the batch runs again
    third = world.start("--until-idle", "4")
    world.wait(third)
    assert list(third.batch_lines()) == [last]
    assert "(replay: Kafka already had it)" in third.batch_lines()[last]
    assert_sinks_hold_exactly(world, values)
