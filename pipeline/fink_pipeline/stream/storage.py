"""Where a pipeline keeps its checkpoint and archive: a local path or a Hadoop URL.

`spec.spark.checkpointLocation`, `--checkpoint` and `spec.sinks.archive.path` are
either plain paths (local files, as before) or Hadoop-compatible URLs (hdfs://,
s3a://, file://). They are handled as strings, never as `pathlib.Path`, which
would fold `hdfs://host/x` into `hdfs:/host/x`. Spark reads and writes its
checkpoint at any such URL itself. The Parquet archive is written by the driver:
locally with pyarrow and `os.replace`, at a URL through the Hadoop FileSystem of
the driver's own JVM (`HadoopFiles`), so it speaks every scheme Spark does, with
the same `spark.hadoop.*` settings and credentials as the checkpoint, and needs
no native libhdfs.
"""

from __future__ import annotations

import contextlib
import uuid
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

    def put(self, local: Path, location: str) -> None:
        """Move a local file to `location` whole, replacing what is there.

        Copied to a hidden temporary name beside it, then renamed over the
        target with Options.Rename.OVERWRITE: on HDFS one NameNode operation,
        so a reader sees the old file or the new one, never part of one.
        On a failure the temporary file is removed and OSError raised.
        """
        from py4j.protocol import Py4JJavaError

        final = self._path(location)
        fs = self._fs(final)
        partial = self._path(
            join(location.rsplit("/", 1)[0], f".{final.getName()}.{uuid.uuid4().hex}.tmp")
        )
        try:
            fs.mkdirs(final.getParent())
            fs.copyFromLocalFile(True, True, self._path(local.resolve().as_uri()), partial)
            overwrite = self.gateway.new_array(self._rename_option(), 1)
            overwrite[0] = self._rename_option().OVERWRITE
            context = self.jvm.org.apache.hadoop.fs.FileContext.getFileContext(
                final.toUri(), self.configuration
            )
            context.rename(partial, final, overwrite)
        except Py4JJavaError as error:
            with contextlib.suppress(Py4JJavaError):
                fs.delete(partial, False)
            raise OSError(str(error.java_exception)) from error

    def _rename_option(self) -> Any:
        return getattr(self.jvm.org.apache.hadoop.fs, "Options$Rename")

    def exists(self, location: str) -> bool:
        path = self._path(location)
        return bool(self._fs(path).exists(path))

    def download(self, location: str, local: Path) -> Path:
        """Copy a file or a directory tree to `local` (no .crc files); returns `local`."""
        path = self._path(location)
        local.parent.mkdir(parents=True, exist_ok=True)
        self._fs(path).copyToLocalFile(False, path, self._path(local.resolve().as_uri()), True)
        return local
