"""A pipeline whose checkpoint and Parquet archive are on HDFS, and pipelines sharing an archive.

The stack's HDFS (component hdfs, FINK_HDFS) is a real NameNode and DataNode;
the pipeline reaches it at hdfs:// URLs with the Hadoop client pyspark bundles,
Spark for both the checkpoint and the archive (its writer runs in the tasks).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

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
