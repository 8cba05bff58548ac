"""The local HDFS is a real one: a NameNode and a DataNode, files written and read back.

The test speaks WebHDFS, HDFS's REST API (the NameNode answers where a block goes,
the DataNode takes the bytes), so it needs no Hadoop client; the pipeline reaches
the same store over hdfs:// with the Hadoop client pyspark bundles
(tests/pipeline/stream/test_stream_hdfs.py).
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from pathlib import Path

import pyspark
import pytest

from fink_stack import versions
from fink_stack.endpoints import Endpoints
from fink_stack.layout import HOST, POD_NETWORK, PORTS

pytestmark = pytest.mark.stack


def _webhdfs(method: str, path: str, op: str, body: bytes | None = None, **params: str):
    """One WebHDFS call, following the NameNode's redirect to the DataNode once."""
    query = urllib.parse.urlencode({"op": op, **params})
    connection = http.client.HTTPConnection(HOST, PORTS.hdfs_namenode_http, timeout=30)
    connection.request(method, f"/webhdfs/v1{path}?{query}")
    response = connection.getresponse()
    if response.status == 307:  # CREATE and OPEN: the bytes go to (come from) a DataNode
        location = urllib.parse.urlsplit(response.getheader("Location"))
        response.read()
        # the DataNode is named for the pods (POD_NETWORK.host_name); from here it is HOST
        assert location.hostname == POD_NETWORK.host_name, location
        connection = http.client.HTTPConnection(HOST, location.port, timeout=30)
        connection.request(method, f"{location.path}?{location.query}", body=body)
        response = connection.getresponse()
    return response.status, response.read()


def test_hdfs_is_exported_and_a_file_written_is_read_back(
    stack: Endpoints, unique_name: str
) -> None:
    assert stack.hdfs == f"hdfs://{HOST}:{PORTS.hdfs_namenode}", (
        "fink-stack env exports no FINK_HDFS"
    )
    payload = os.urandom(3 * 1024 * 1024)  # a real block on the DataNode, not inline metadata
    path = f"/tests/{unique_name}/alerts.bin"

    status, _ = _webhdfs("PUT", path, "CREATE", body=payload, overwrite="false")
    assert status == 201
    status, body = _webhdfs("GET", path, "GETFILESTATUS")
    status_of = json.loads(body)["FileStatus"]
    assert (status, status_of["length"], status_of["replication"]) == (200, len(payload), 1)
    status, read = _webhdfs("GET", path, "OPEN")
    assert status == 200 and read == payload

    # a second CREATE without overwrite is refused: what the archive's renames rely on
    status, _ = _webhdfs("PUT", path, "CREATE", body=b"other", overwrite="false")
    assert status == 403
    status, body = _webhdfs("DELETE", f"/tests/{unique_name}", "DELETE", recursive="true")
    assert (status, json.loads(body)) == (200, {"boolean": True})


def test_the_servers_are_the_hadoop_release_of_the_client_pyspark_bundles() -> None:
    jars = Path(pyspark.__file__).parent / "jars"
    assert (jars / f"hadoop-client-api-{versions.HADOOP}.jar").exists(), sorted(
        p.name for p in jars.glob("hadoop-client-*.jar")
    )
