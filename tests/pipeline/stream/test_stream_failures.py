"""When something breaks mid-batch (docs/pipeline.md, "When something breaks").

Each test holds the pipeline at a known point of micro-batch 1 with the fault
hook, breaks something there (stops Kafka or HBase, or makes a module raise),
lets it go on, and checks the documented outcome: `run` exits 1 with one line
naming the batch and the cause, nothing of the batch is visible in Kafka (and,
where the batch had not reached them, in HBase and the archive), and a restart
after the repair delivers every alert exactly once.

The outage tests stop a server of the stack every test shares: `outage` starts
it again and waits for it whatever happens, even if the test fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from stream_world import (
    Run,
    World,
    assert_sinks_hold_exactly,
    assert_stopped_in,
    count_messages,
    outage,
)

from fink_pipeline.science.catalogue import SAMPLE_CATALOGUE
from fink_pipeline.stream.storage import HadoopFiles
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


@pytest.fixture
def world(stack: Endpoints, unique_name: str, tmp_path: Path) -> World:
    return World(stack=stack, name=unique_name, directory=tmp_path)


def error_line(world: World, run: Run) -> str:
    """The command's own error message: one line, never a traceback."""
    lines = [line for line in run.log().splitlines() if line.startswith("fink-pipeline: ")]
    assert len(lines) == 1, lines
    prefix = f"fink-pipeline: {world.name} failed: micro-batch 1 failed: "
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in lines[0]
    return lines[0][len(prefix) :]


@pytest.mark.exclusive
def test_kafka_unreachable_inside_the_transaction_fails_the_run_and_a_restart_completes_it(
    world: World,
) -> None:
    """Kafka stops while batch 1's transaction is open: exit 1, the transaction is never
    committed, and the restart sends the batch again, once.

    Stops the shared stack's Kafka; `outage` starts it again whatever happens.
    """
    values = world.produce(900, malformed=6, seed=13)
    first = world.start("--max-offsets-per-trigger", "300", fault="kafka-transaction@1:pause:300")
    world.wait_for_fault(first)
    assert count_messages(world, "read_uncommitted") > count_messages(world, "read_committed")
    with outage("kafka"):
        world.release(first)
        world.wait(first, timeout=300, expect=1)
    cause = error_line(world, first)
    assert cause.startswith(
        f"ConnectionError: Kafka at {world.stack.kafka_bootstrap}: the transaction "
        "(micro-batch 1) failed: "
    ), cause
    assert_stopped_in(world, 1, "kafka-transaction")

    second = world.start("--until-idle", "5")
    world.wait(second)
    assert min(second.batch_lines()) == 1
    assert_sinks_hold_exactly(world, values)


@pytest.mark.exclusive
def test_hbase_unreachable_mid_batch_fails_the_run_after_one_reconnection(world: World) -> None:
    """HBase stops as batch 1 starts: the tasks' puts reconnect once, then the batch fails;
    nothing of it is written anywhere, and the restart delivers it once.

    Stops the shared stack's HBase; `outage` starts it again whatever happens.
    """
    values = world.produce(900, malformed=6, seed=14)
    first = world.start("--max-offsets-per-trigger", "300", fault="batch@1:pause:300")
    world.wait_for_fault(first)
    with outage("hbase"):
        world.release(first)
        world.wait(first, timeout=300, expect=1)
    cause = error_line(world, first)
    thrift = f"{world.stack.hbase_thrift_host}:{world.stack.hbase_thrift_port}"
    assert cause.startswith(
        f"ConnectionError: HBase Thrift server {thrift} failed while writing table "
        f"{world.table} (micro-batch 1): "
    ), cause
    assert "HBase connection lost" in first.log() and "reconnecting once" in first.log()
    assert_stopped_in(world, 1, "batch")

    second = world.start("--until-idle", "5")
    world.wait(second)
    assert min(second.batch_lines()) == 1
    assert_sinks_hold_exactly(world, values)


def test_a_module_raising_fails_the_batch_and_after_the_fix_a_restart_loses_nothing(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    """The cross-match's catalogue goes bad as batch 1 starts, so the module raises in the
    tasks: exit 1 with the module's error, its traceback in the log, nothing of the batch
    written; with the catalogue repaired the restart (document from stdin) loses nothing.
    """
    catalogue = tmp_path / "catalogue.csv"
    shutil.copy(SAMPLE_CATALOGUE, catalogue)
    world = World(stack=stack, name=unique_name, directory=tmp_path, catalogue=str(catalogue))
    values = world.produce(900, malformed=6, seed=15)
    first = world.start("--max-offsets-per-trigger", "300", fault="batch@1:pause:300")
    world.wait_for_fault(first)
    good = catalogue.read_text()
    catalogue.write_text("RAJ2000,DEJ2000,VType\n10.0,20.0,EW\n")
    world.release(first)
    world.wait(first, expect=1)
    cause = error_line(world, first)
    assert cause.startswith(f"ValueError: catalogue {str(catalogue)!r} lacks column(s) ra, dec")
    log = first.log()
    assert "Traceback (most recent call last)" in log and "modules/crossmatch.py" in log

    catalogue.write_text(good)
    assert_stopped_in(world, 1, "batch")
    second = world.start("--until-idle", "5", stdin=True)
    world.wait(second)
    assert min(second.batch_lines()) == 1
    assert_sinks_hold_exactly(world, values)


@pytest.fixture
def small_archive_disk(world: World) -> Iterator[Path]:
    """The world's archive on a 16 MiB tmpfs of its own: a disk quota the test can fill."""
    world.archive.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "fink-test-archive", str(world.archive)],
        check=True,
    )
    try:
        yield world.archive
    finally:
        subprocess.run(["umount", "-l", str(world.archive)], check=False)


def test_an_archive_disk_that_fills_up_fails_the_batch_and_a_restart_after_cleanup_loses_nothing(
    world: World, small_archive_disk: Path
) -> None:
    """The archive's disk fills up as batch 1 starts: exit 1 naming the full disk, nothing of
    the batch in Kafka or the archive (no half-written file left behind); once space is
    freed, the restart delivers every alert exactly once.
    """
    values = world.produce(900, malformed=6, seed=16)
    first = world.start("--max-offsets-per-trigger", "300", fault="batch@1:pause:300")
    world.wait_for_fault(first)
    filler = small_archive_disk / ".filler"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:  # until the tmpfs refuses: the quota is reached
            handle.write(b"\0" * (1 << 16))
            handle.flush()
    # leave 16 KB: room for the night's directory and the start of the batch's file
    os.truncate(filler, filler.stat().st_size - (16 << 10))
    world.release(first)
    world.wait(first, expect=1)
    cause = error_line(world, first)
    assert cause.startswith("OSError: "), cause
    assert "No space left on device" in cause, cause
    assert f"archive {world.archive}: could not write batch 1 of tests.{world.name}: " in cause
    assert_stopped_in(world, 1, "parquet")
    # no file of the failed batch, whole or partial, stays behind
    files = [p for p in small_archive_disk.rglob("*") if p.is_file() and p != filler]
    stray = [p for p in files if p.name.endswith(".tmp") or p.parent.name == "batch=1"]
    assert not stray and files, files  # batch 0's files are there

    filler.unlink()
    second = world.start("--until-idle", "5")
    world.wait(second)
    assert min(second.batch_lines()) == 1
    assert_sinks_hold_exactly(world, values)


def set_space_quota(location: str, quota: int) -> None:
    """HDFS's space quota on a directory (bytes, -1 to clear it), as `hdfs dfsadmin
    -setSpaceQuota` sets it: the stack runs HDFS as this user, its superuser."""
    keep_name_quota = 2**63 - 1  # HdfsConstants.QUOTA_DONT_SET
    with HadoopFiles.launched() as files:
        path = files.jvm.org.apache.hadoop.fs.Path(location)
        path.getFileSystem(files.configuration).setQuota(path, keep_name_quota, quota)


def test_an_archive_url_over_its_quota_fails_the_batch_and_a_restart_after_cleanup_loses_nothing(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    """The archive at an hdfs:// URL, written by Spark's writer from the tasks: its space
    quota is cut to 1 MiB as batch 1 starts. Exit 1 naming the archive, the batch and
    HDFS's refusal; nothing of the batch in Kafka or the archive (Spark's staging
    directory gone too); once the quota is lifted, the restart delivers every alert once.
    """
    assert stack.hdfs.startswith("hdfs://"), "the stack's HDFS (component hdfs) is needed"
    archive = f"{stack.hdfs}/tests/{unique_name}/archive"  # the checkpoint stays local
    world = World(stack=stack, name=unique_name, directory=tmp_path, archive_path=archive)
    values = world.produce(900, malformed=6, seed=17)
    first = world.start("--max-offsets-per-trigger", "300", fault="batch@1:pause:300")
    world.wait_for_fault(first)
    # below one block: HDFS refuses the batch's first block (it reserves a whole one)
    set_space_quota(world.archive_location, 1 << 20)
    world.release(first)
    world.wait(first, expect=1)
    cause = error_line(world, first)
    assert cause.startswith(
        f"OSError: archive {world.archive_location}: could not write batch 1 of "
        f"tests.{world.name}: "
    ), cause
    # HDFS's own exception, not the RemoteException that carried it to the client
    assert f"tests.{world.name}: DSQuotaExceededException: The DiskSpace quota of " in cause, cause
    assert_stopped_in(world, 1, "parquet")
    staged = [p for p in world.local_archive().iterdir() if p.name.startswith(".spark-staging")]
    assert not staged, staged

    set_space_quota(world.archive_location, -1)
    second = world.start("--until-idle", "5")
    world.wait(second)
    assert min(second.batch_lines()) == 1
    assert_sinks_hold_exactly(world, values)
