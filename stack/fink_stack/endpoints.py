"""Where the local stack's servers listen: what tests, the demo and the operator connect to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoints:
    """Addresses of a running local stack (all on 127.0.0.1)."""

    kubeconfig: Path
    kafka_bootstrap: str
    hbase_thrift_host: str
    hbase_thrift_port: int
    spark_jars: tuple[Path, ...]
    hbase_admin_port: int = 9091  # the Thrift2 gateway, on the Thrift host

    def environment(self) -> dict[str, str]:
        """Variables that point a shell, the operator or a pipeline at this stack."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "FINK_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "FINK_HBASE_THRIFT": f"{self.hbase_thrift_host}:{self.hbase_thrift_port}",
            "FINK_HBASE_ADMIN": f"{self.hbase_thrift_host}:{self.hbase_admin_port}",
            "FINK_SPARK_JARS": ",".join(str(p) for p in self.spark_jars),
            # keep Spark's driver on loopback like every other server of the stack
            "SPARK_LOCAL_IP": "127.0.0.1",
        }


def from_environment() -> Endpoints | None:
    """Endpoints exported by `fink-stack env`, when a shell already points at a stack."""
    if "FINK_KAFKA_BOOTSTRAP" not in os.environ or "KUBECONFIG" not in os.environ:
        return None
    host, _, port = os.environ.get("FINK_HBASE_THRIFT", "127.0.0.1:9090").partition(":")
    admin_port = os.environ.get("FINK_HBASE_ADMIN", "127.0.0.1:9091").rpartition(":")[2]
    jars = os.environ.get("FINK_SPARK_JARS", "")
    return Endpoints(
        kubeconfig=Path(os.environ["KUBECONFIG"]),
        kafka_bootstrap=os.environ["FINK_KAFKA_BOOTSTRAP"],
        hbase_thrift_host=host,
        hbase_thrift_port=int(port or 9090),
        spark_jars=tuple(Path(p) for p in jars.split(",") if p),
        hbase_admin_port=int(admin_port or 9091),
    )
