"""HBase writes per core: the pipeline's Thrift path against the HBase Java client.

    .venv/bin/python bench/hbase_writes.py [--rows 20000] [--rounds 3]

Issue 10 asks for HBase writes of at least 5,000 rows/s per core, "e.g. batched
mutations through Thrift2, or the HBase Java client on the executors' JVM".
This writes the same rows both ways into fresh tables of the local stack's
HBase and counts every CPU second they cost, client and servers alike:

  thrift      what the pipeline's tasks do: mutateRows calls written from
              the cells' columns (thrift_mutations.py) through the Thrift
              gateway, 1,000-row chunks (sinks.HBaseWriter)
  happybase   the same rows through happybase, a Mutation object per cell
              (what the tasks did before thrift_mutations.py)
  java        the HBase Java client (BufferedMutator, 8 MiB write buffer)
              straight to the region server, in its own JVM
  packed      the thrift path with the rows of spec.sinks.hbase.layout: packed,
              one JSON record per family (2 cells per row instead of ~40);
              its rounds alternate with thrift's

The rows are the pipeline's: generated light ZTF alerts, decoded, enriched by
the five modules and the three filters of bench/pipeline_throughput.py, cut
into cells by the pipeline's own code (stream.rows: ~40 cells per row). Building
the cells is timed apart (the Java client would not need it: the columns would
be in the executors' JVM already). CPU comes from the kernel's counters
(cpu_share.py) of the client and of the HBase servers; rows/s per core =
rows / (client + servers' CPU seconds). Best of --rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import happybase
from cpu_share import CpuShare, compiler_of
from pipeline_throughput import FILTERS, document

from fink_core.spec import parse_pipeline
from fink_pipeline.alerts import codec, generator
from fink_pipeline.science import enrich, plan_science, select
from fink_pipeline.stream.rows import cells_by_row, hbase_columns, packed_records, row_keys
from fink_pipeline.stream.science_step import hbase_families, pass_column
from fink_pipeline.stream.sinks import MUTATIONS_PER_REQUEST, HBaseWriter
from fink_pipeline.stream.thrift_mutations import CellColumn
from fink_stack import api, services
from fink_stack.layout import Layout
from fink_stack.scratch import removed_at_exit

FAMILIES = ("i", "d")
CHUNK = 1_000  # rows per put() call, as a task writes a chunk

# Reads the rows the bench wrote (key, then family:qualifier -> value cells, each
# length-prefixed) and puts them through a BufferedMutator into each table named,
# in one JVM (a long-lived executor's is warm); prints, per table, its own CPU
# seconds and wall seconds for the writes alone (the JVM's start-up excluded).
JAVA_SOURCE = r"""
import java.io.*;
import java.lang.management.ManagementFactory;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hbase.HBaseConfiguration;
import org.apache.hadoop.hbase.TableName;
import org.apache.hadoop.hbase.client.*;

public class HBaseWrites {
  static byte[] read(DataInputStream in) throws IOException {
    byte[] b = new byte[in.readInt()]; in.readFully(b); return b;
  }
  public static void main(String[] args) throws Exception {
    Configuration conf = HBaseConfiguration.create();
    conf.set("hbase.zookeeper.quorum", "127.0.0.1");
    com.sun.management.OperatingSystemMXBean os =
        (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    try (Connection connection = ConnectionFactory.createConnection(conf);
         DataInputStream in = new DataInputStream(new BufferedInputStream(
             new FileInputStream(args[0]), 1 << 20))) {
      int rows = in.readInt();
      Put[] puts = new Put[rows];
      for (int r = 0; r < rows; r++) {
        Put put = new Put(read(in));
        int cells = in.readInt();
        for (int c = 0; c < cells; c++) {
          byte[] family = read(in), qualifier = read(in), value = read(in);
          put.addColumn(family, qualifier, value);
        }
        puts[r] = put;
      }
      BufferedReader go = new BufferedReader(new InputStreamReader(System.in));
      for (int t = 1; t < args.length; t++) {  // the first tables warm the JIT up
        TableName table = TableName.valueOf(args[t]);
        connection.getRegionLocator(table).getAllRegionLocations();
        System.out.println("ready");
        System.out.flush();
        go.readLine();  // the bench reads the servers' CPU counters first
        long cpu = os.getProcessCpuTime(), wall = System.nanoTime();
        try (BufferedMutator mutator = connection.getBufferedMutator(
            new BufferedMutatorParams(table).writeBufferSize(8L << 20))) {
          for (Put put : puts) mutator.mutate(put);
          mutator.flush();
        }
        System.out.println((os.getProcessCpuTime() - cpu) / 1e9 + " "
            + (System.nanoTime() - wall) / 1e9);
        System.out.flush();
      }
    }
  }
}
"""


def pipeline_rows(
    count: int,
) -> tuple[list[bytes], list[CellColumn], float, list[CellColumn], float]:
    """The rows a pipeline's tasks would write for `count` light ZTF alerts: keys, the
    cells and the seconds building them took, then the same for the packed layout."""
    spec = parse_pipeline(document("bench-hbase", Path(tempfile.gettempdir())))
    plan = plan_science(spec)
    alerts = generator.generate_alerts(count, "ztf", seed=1)
    frame = codec.decode_batch([codec.encode(a, "ztf") for a in alerts], "ztf").frame
    enriched = enrich(frame.drop(columns=["_position"]), plan, {})
    for name, mask in select(enriched, plan).items():
        enriched[pass_column(name)] = mask.to_numpy(dtype=bool)
    assert all(pass_column(f) in enriched for f in FILTERS)
    families = hbase_families(plan, list(FAMILIES))
    started = time.process_time()
    keys = row_keys(enriched, "ztf")
    columns = hbase_columns(enriched, families)
    building = time.process_time() - started
    started = time.process_time()
    packed = packed_records(enriched, families)
    return keys, columns, building, packed, time.process_time() - started


def write_rows_file(path: Path, keys: list[bytes], cells: list[dict[bytes, bytes]]) -> None:
    def field(data: bytes) -> bytes:
        return struct.pack(">i", len(data)) + data

    with path.open("wb") as out:
        out.write(struct.pack(">i", len(keys)))
        for key, row in zip(keys, cells, strict=True):
            out.write(field(key) + struct.pack(">i", len(row)))
            for column, value in row.items():
                family, qualifier = column.split(b":", 1)
                out.write(field(family) + field(qualifier) + field(value))


def java_client(layout: Layout) -> list[str]:
    """The java command that runs HBaseWrites, compiled once per source into the cache."""
    java = services.hbase_java(layout, "1g")
    classpath = java[java.index("-cp") + 1]
    digest = hashlib.sha256(JAVA_SOURCE.encode()).hexdigest()[:12]
    classes = layout.cache / "bench" / f"hbase-writes-{digest}"
    if not (classes / "HBaseWrites.class").exists():
        classes.mkdir(parents=True, exist_ok=True)
        (classes / "HBaseWrites.java").write_text(JAVA_SOURCE)
        subprocess.run(
            ["javac", "-cp", classpath, "-d", str(classes), str(classes / "HBaseWrites.java")],
            check=True,
        )
    java[java.index("-cp") + 1] = f"{classes}:{classpath}"
    return [*java, "HBaseWrites"]


def figures(client: float, wall: float, servers: dict[str, float]) -> dict[str, float]:
    """One round's CPU seconds (the client's, HBase's, the gateway's) and wall seconds;
    a server's just-in-time compiler counted in, as before CpuShare split it out."""
    return {
        "client": client,
        "hbase": whole("hbase-master", servers),
        "thrift": whole("hbase-thrift", servers),
        "wall": wall,
    }


def whole(server: str, parts: dict[str, float]) -> float:
    """A server's CPU seconds, its compiler's included (CpuShare reports it apart)."""
    return parts.get(server, 0.0) + parts.get(compiler_of(server), 0.0)


def cpu(round_figures: dict[str, float]) -> float:
    return round_figures["client"] + round_figures["hbase"] + round_figures["thrift"]


def fresh_table(connection: happybase.Connection, name: str) -> str:
    connection.create_table(name, {f: {"max_versions": 1} for f in FAMILIES})  # either layout
    return name


def thrift_round(
    endpoints: Any, table: str, keys: list[bytes], columns: list[CellColumn]
) -> dict[str, float]:
    writer = HBaseWriter(endpoints.hbase_thrift_host, endpoints.hbase_thrift_port, table)
    writer.put(keys[:1], [(q, values[:1]) for q, values in columns])  # connected first
    share = CpuShare(os.getpid())
    share.mark("start")
    client, started = time.process_time(), time.perf_counter()
    for at in range(0, len(keys), CHUNK):
        chunk = [(q, values[at : at + CHUNK]) for q, values in columns]
        writer.put(keys[at : at + CHUNK], chunk)
    client, wall = time.process_time() - client, time.perf_counter() - started
    writer.close()
    share.sample()
    return figures(client, wall, share.since("start"))


def happybase_round(
    endpoints: Any, table: str, keys: list[bytes], cells: list[dict[bytes, bytes]]
) -> dict[str, float]:
    connection = happybase.Connection(endpoints.hbase_thrift_host, endpoints.hbase_thrift_port)
    target = connection.table(table)
    target.put(keys[0], cells[0])  # connected before the clock starts
    share = CpuShare(os.getpid())
    share.mark("start")
    client, started = time.process_time(), time.perf_counter()
    for at in range(0, len(keys), CHUNK):
        with target.batch(batch_size=MUTATIONS_PER_REQUEST) as batch:
            for key, row in zip(keys[at : at + CHUNK], cells[at : at + CHUNK], strict=True):
                if row:
                    batch.put(key, row)
    client, wall = time.process_time() - client, time.perf_counter() - started
    connection.close()
    share.sample()
    return figures(client, wall, share.since("start"))


def java_round(command: list[str], rows_file: Path, tables: list[str]) -> dict[str, float]:
    """One JVM writes the rows into each table; the last one is measured (the ones
    before warm it up, as a long-lived executor's JVM is)."""
    java = subprocess.Popen(
        [*command, str(rows_file), *tables],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert java.stdin is not None and java.stdout is not None
    share = CpuShare(os.getpid())
    measured: dict[str, float] = {}

    def answer() -> str:
        """The client's next line, past the log lines HBase's logging prints to stdout."""
        line = java.stdout.readline()  # type: ignore[union-attr]
        while line.startswith("["):
            line = java.stdout.readline()  # type: ignore[union-attr]
        return line.strip()

    for _ in tables:
        if answer() != "ready":
            java.kill()
            raise SystemExit(f"the Java client failed:\n{java.communicate()[1][-3000:]}")
        share.mark("start")
        java.stdin.write("go\n")
        java.stdin.flush()
        client, wall = (float(x) for x in answer().split())
        share.sample()
        measured = figures(client, wall, share.since("start"))
    java.stdin.close()
    if java.wait(60) != 0:
        raise SystemExit(f"the Java client failed:\n{java.stderr.read()[-3000:]}")
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    components = ("hbase",)
    endpoints = api.ensure_up(components, quiet=True)
    layout = Layout.default()
    print(f"building {args.rows} rows as the pipeline's tasks do ...", flush=True)
    keys, columns, building, packed, packing = pipeline_rows(args.rows)
    cells = cells_by_row(columns, len(keys))
    per_row = sum(map(len, cells)) / len(cells)
    print(f"  {per_row:.0f} cells per row; building them {building / len(keys) * 1e6:.0f} µs/row")
    print(
        f"  packed: {len(packed)} cells per row; building them {packing / len(keys) * 1e6:.0f} µs/row"
    )
    command = java_client(layout)
    results: dict[str, dict[str, float]] = {}

    def best(runs: list[dict[str, float]]) -> dict[str, float]:
        return min(runs, key=cpu)

    work = Path(tempfile.mkdtemp(prefix="bench-hbase-"))
    # the tables and the rows file go when the run ends, however it ends
    with removed_at_exit(endpoints, work, stores=components) as scratch:
        run = scratch.name("bench-hbase")
        rows_file = work / "rows.bin"
        write_rows_file(rows_file, keys, cells)
        connection = happybase.Connection(endpoints.hbase_thrift_host, endpoints.hbase_thrift_port)

        def table(name: str) -> str:
            return fresh_table(connection, f"{run}-{name}")

        try:
            thrift_round(endpoints, table("thrift-warm"), keys, columns)  # caches, regions
            results["happybase"] = best(
                [
                    happybase_round(endpoints, table(f"happybase-{r}"), keys, cells)
                    for r in range(args.rounds)
                ]
            )
            thrift, packs = [], []
            for r in range(args.rounds):  # alternated: the machine's speed drifts
                thrift.append(thrift_round(endpoints, table(f"thrift-{r}"), keys, columns))
                packs.append(thrift_round(endpoints, table(f"packed-{r}"), keys, packed))
            results["thrift"], results["packed"] = best(thrift), best(packs)
            results["java"] = best(
                [
                    java_round(command, rows_file, [table(f"java-{r}-warm"), table(f"java-{r}")])
                    for r in range(args.rounds)
                ]
            )
        finally:
            connection.close()

    rows = len(keys)
    print("\n== HBase writes, core-µs per row (client + servers' CPU)")
    print(f"{'':10s} {'client':>8s} {'hbase':>8s} {'thrift':>8s} {'all':>8s} "
          f"{'rows/s/core':>12s} {'rows/s wall':>12s}")  # fmt: skip
    for kind, f in results.items():
        total = cpu(f)
        print(
            f"{kind:10s} {f['client'] / rows * 1e6:8.0f} {f['hbase'] / rows * 1e6:8.0f} "
            f"{f['thrift'] / rows * 1e6:8.0f} {total / rows * 1e6:8.0f} "
            f"{rows / total:12,.0f} {rows / f['wall']:12,.0f}"
        )
    ratio = cpu(results["happybase"]) / cpu(results["thrift"])
    print(f"thrift / happybase, rows per core: {ratio:.2f}x")
    ratio = cpu(results["thrift"]) / cpu(results["java"])
    print(f"java / thrift, rows per core: {ratio:.2f}x (goal: 5,000 rows/s/core)")
    ratio = cpu(results["thrift"]) / cpu(results["packed"])
    print(f"packed / thrift (a cell per field), rows per core: {ratio:.2f}x")
    print(
        "(the Thrift clients' CPU excludes building the cells' bytes: "
        f"{building / rows * 1e6:.0f} µs/row, packed {packing / rows * 1e6:.0f} µs/row)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
