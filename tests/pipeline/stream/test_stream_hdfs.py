"""A pipeline whose checkpoint and Parquet archive are on HDFS, and pipelines sharing an archive.

The stack's HDFS (component hdfs, FINK_HDFS) is a real NameNode and DataNode;
the pipeline reaches it at hdfs:// URLs with the Hadoop client pyspark bundles,
Spark for both the checkpoint and the archive (its writer runs in the tasks).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from stream_world import (
    ALERT_ID,
    World,
    assert_sinks_hold_exactly,
    count_messages,
    expected,
    kill,
)

from fink_pipeline.stream.batch import await_no_running_tasks
from fink_pipeline.stream.sinks import ParquetArchive
from fink_pipeline.stream.storage import HadoopFiles
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


def test_checkpoint_and_archive_on_hdfs_deliver_exactly_once_across_a_driver_restart(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    """Killed inside batch 1's Kafka transaction, after its Parquet file reached HDFS:
    the restart reads Spark's offset log back from HDFS, replays batch 1 and renames
    its new file over the old one; every sink holds every alert once."""
    assert stack.hdfs.startswith("hdfs://"), "the stack's HDFS (component hdfs) is needed"
    world = World(stack=stack, name=unique_name, directory=tmp_path, hdfs=stack.hdfs)
    values = world.produce(900, malformed=6, seed=21)
    first = world.start("--max-offsets-per-trigger", "300", fault="kafka-transaction@1:pause:300")
    assert [(h["stage"], h["batch"]) for h in world.wait_for_fault(first)] == [
        ("kafka-transaction", 1)
    ]
    committed_before = count_messages(world, "read_committed")
    kill(first)
    assert world.archive_batches() == {0, 1}  # batch 1's file is on HDFS, its transaction not
    with HadoopFiles.launched() as files:
        assert files.exists(f"{world.checkpoint_location}/offsets/1")
        assert not files.exists(f"{world.checkpoint_location}/commits/1")
    assert not world.checkpoint.exists()  # nothing of the checkpoint on the local disk

    second = world.start("--until-idle", "6", "--max-offsets-per-trigger", "600")
    world.wait(second)
    assert min(second.batch_lines()) == 1  # resumed from the checkpoint on HDFS: batch 1 again
    assert count_messages(world, "read_committed") > committed_before
    assert world.committed_offsets() == len(values)
    assert_sinks_hold_exactly(world, values)  # the archive read back from HDFS


@pytest.mark.parametrize("root", ["local", "hdfs"])
def test_pipelines_sharing_an_archive_path_never_overwrite_each_others_files(
    stack: Endpoints, unique_name: str, tmp_path: Path, root: str
) -> None:
    """Same alerts, same batch ids, same archive path, both pipelines running at once: each
    pipeline's files are under its pipeline=NAMESPACE.NAME, so both pipelines' batches are
    all there, each alert once per pipeline. A local root: the tasks write, and the driver discards, only under the
    pipeline's own directory; an hdfs:// root: Spark's dynamic overwrite replaces only the
    directories a batch writes."""
    if root == "hdfs":
        assert stack.hdfs.startswith("hdfs://"), "the stack's HDFS (component hdfs) is needed"
        shared = f"{stack.hdfs}/tests/{unique_name}/shared-archive"
    else:
        shared = str(tmp_path / "shared-archive")
    worlds = [
        World(
            stack=stack,
            name=f"{unique_name}-{n}",
            directory=tmp_path / str(n),
            archive_path=shared,
        )
        for n in (1, 2)
    ]
    for world in worlds:
        world.directory.mkdir()
        values = world.produce(400, malformed=2, seed=5)  # the same alerts in both sources
    # both at once, as two teams' pipelines would run
    runs = [w.start("--until-idle", "5", "--max-offsets-per-trigger", "200") for w in worlds]
    for world, run in zip(worlds, runs, strict=True):
        world.wait(run)

    alert_id = ALERT_ID["ztf"]
    want = sorted(expected(worlds[0], values).enriched.index)
    files = sorted(worlds[0].local_archive().glob("night=*/pipeline=*/batch=*/*.parquet"))
    batches = Counter((f.parent.parent.name, f.parent.name) for f in files)
    by_pipeline = Counter(pipeline for pipeline, _ in batches)
    assert set(by_pipeline) == {f"pipeline=tests.{w.name}" for w in worlds}, files
    assert len(set(by_pipeline.values())) == 1, by_pipeline  # as many batches each
    for world in worlds:
        own = [f for f in files if f.parent.parent.name == f"pipeline=tests.{world.name}"]
        ids = [i for f in own for i in pq.read_table(f).column(alert_id).to_pylist()]
        assert sorted(ids) == want, world.name


def test_a_failed_jobs_empty_staging_is_swept_and_anything_holding_a_file_stays(
    stack: Endpoints, unique_name: str
) -> None:
    """What tasks cancelled with a failed job leave on HDFS after Spark's abort, a staging
    directory of empty directories, goes; a staging directory holding a file (another
    pipeline's running job) and the archive's own directories stay."""
    assert stack.hdfs.startswith("hdfs://"), "the stack's HDFS (component hdfs) is needed"
    root = f"{stack.hdfs}/tests/{unique_name}/archive"
    left_empty = f"{root}/.spark-staging-aborted/_temporary/0/_temporary"
    running = f"{root}/.spark-staging-running/_temporary/0/_temporary/attempt_1/part-0.parquet"
    archived = f"{root}/night=20240330/pipeline=tests.{unique_name}/batch=0/part-0.parquet"
    empty_night = f"{root}/night=20240331"
    with HadoopFiles.launched() as files:
        fs_path = files.jvm.org.apache.hadoop.fs.Path
        for directory in (left_empty, empty_night):
            path = fs_path(directory)
            path.getFileSystem(files.configuration).mkdirs(path)
        for file in (running, archived):
            path = fs_path(file)
            path.getFileSystem(files.configuration).create(path).close()

        swept = ParquetArchive(root, f"tests.{unique_name}").sweep_aborted_staging(files)

        assert [s.rsplit("/", 1)[-1] for s in swept] == [".spark-staging-aborted"]
        assert not files.exists(f"{root}/.spark-staging-aborted")
        for kept in (running, archived, empty_night):
            assert files.exists(kept), kept


def test_the_driver_waits_for_the_tasks_a_failed_job_cancelled(spark: Any) -> None:
    """Spark fails a job as soon as one task fails and cancels the others without waiting:
    the sweep above must wait for them, or they recreate the staging it removes."""

    def one_fails_one_lingers(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            if frame["id"].iloc[0] == 0:
                raise RuntimeError("the failing task")
            time.sleep(4)  # the other task, still running when the job fails
            yield frame

    context = spark.sparkContext
    tracker = context._jsc.sc().statusTracker()

    def running() -> int:
        return sum(info.numRunningTasks() for info in tracker.getExecutorInfos())

    rows = spark.range(0, 2, numPartitions=2).mapInPandas(one_fails_one_lingers, "id long")
    with pytest.raises(Exception, match="the failing task"):
        rows.write.format("noop").mode("overwrite").save()
    assert running() > 0  # the lingering task outlived its job

    assert await_no_running_tasks(context, timeout=60)
    assert running() == 0
