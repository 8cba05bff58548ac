"""Where a pipeline keeps its checkpoint and archive: a local path or a Hadoop URL.

`spec.spark.checkpointLocation`, `--checkpoint` and `spec.sinks.archive.path` are
either plain paths (local files, as before) or Hadoop-compatible URLs (hdfs://,
s3a://, file://). They are handled as strings, never as `pathlib.Path`, which
would fold `hdfs://host/x` into `hdfs:/host/x`. Spark reads and writes its
checkpoint and, from the tasks, the Parquet archive (sinks.ParquetArchive) at
any such URL itself. `HadoopFiles` reaches the same files from Python, through
a JVM's Hadoop FileSystem (every scheme Spark speaks, no native libhdfs): the
tests and tools read the archive back with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOCAL_SCHEMES = ("", "file")


def scheme(location: str) -> str:
    """The URL scheme of a location ("" for a plain path)."""
    return urlsplit(location).scheme if "://" in location else ""


def is_local(location: str) -> bool:
    return scheme(location) in LOCAL_SCHEMES


def local_path(location: str) -> Path:
    """The local file path of a plain path or a file:// URL."""
    return Path(urlsplit(location).path) if scheme(location) == "file" else Path(location)


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts])


class HadoopFiles:
    """Files at Hadoop URLs, through a JVM's org.apache.hadoop.fs (py4j)."""

    def __init__(self, jvm: Any, configuration: Any, gateway: Any) -> None:
        self.jvm = jvm
        self.configuration = configuration
        self.gateway = gateway

    @classmethod
    def of_spark(cls, context: Any) -> HadoopFiles:
        """The driver's (a SparkContext): Spark's Hadoop configuration (spark.hadoop.*)."""
        return cls(context._jvm, context._jsc.hadoopConfiguration(), context._gateway)

    @classmethod
    @contextlib.contextmanager
    def launched(cls) -> Iterator[HadoopFiles]:
        """A JVM of its own with Spark's Hadoop client, for a process without a SparkContext."""
        from pyspark import SparkConf
        from pyspark.java_gateway import launch_gateway

        gateway = launch_gateway(SparkConf())
        try:
            jvm = gateway.jvm
            yield cls(jvm, jvm.org.apache.hadoop.conf.Configuration(), gateway)
        finally:
            gateway.shutdown()
            gateway.proc.stdin.close()  # the JVM exits when its stdin closes
            gateway.proc.wait(30)

    def _path(self, location: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(location)

    def _fs(self, path: Any) -> Any:
        return path.getFileSystem(self.configuration)

    def exists(self, location: str) -> bool:
        path = self._path(location)
        return bool(self._fs(path).exists(path))

    def children(self, location: str) -> list[str]:
        """The URLs of the entries right under a directory ([] when it does not exist)."""
        path = self._path(location)
        fs = self._fs(path)
        if not fs.exists(path):
            return []
        return [str(status.getPath().toString()) for status in fs.listStatus(path)]

    def holds_files(self, location: str) -> bool:
        """Whether a directory tree holds a file at any depth (empty directories do not count)."""
        path = self._path(location)
        return bool(self._fs(path).listFiles(path, True).hasNext())

    def remove(self, location: str) -> bool:
        """Remove a file or a whole directory tree; False when there was nothing."""
        path = self._path(location)
        return bool(self._fs(path).delete(path, True))

    def download(self, location: str, local: Path) -> Path:
        """Copy a file or a directory tree to `local` (no .crc files); returns `local`."""
        path = self._path(location)
        local.parent.mkdir(parents=True, exist_ok=True)
        self._fs(path).copyToLocalFile(False, path, self._path(local.resolve().as_uri()), True)
        return local
