"""Where the stack keeps its builds (cache) and its running state, and which ports it uses.

Builds and downloads are cached by version under ~/.cache/fink-stack so that a
second `up` (or a fresh clone on the same machine) reuses them. Running state
(data, logs, pid files, certificates, kubeconfig) lives under
~/.local/state/fink-stack, outside any clone, so every clone drives the same
stack and `down` always finds the processes `up` started.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    etcd_client: int = 2379
    etcd_peer: int = 2380
    apiserver: int = 6443
    controller_manager: int = 10257
    scheduler: int = 10259
    kafka: int = 9092
    kafka_controller: int = 9093
    zookeeper: int = 2181
    hbase_master: int = 16000
    hbase_regionserver: int = 16020
    hbase_thrift: int = 9090
    hbase_thrift2: int = 9091  # table administration (Thrift2 protocol)


PORTS = Ports()


@dataclass(frozen=True)
class Layout:
    cache: Path
    state: Path

    @classmethod
    def default(cls) -> Layout:
        cache = os.environ.get("FINK_STACK_CACHE") or Path.home() / ".cache" / "fink-stack"
        state = os.environ.get("FINK_STACK_HOME") or Path.home() / ".local" / "state" / "fink-stack"
        return cls(cache=Path(cache), state=Path(state))

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def log_of(self, service: str) -> Path:
        return self.logs / f"{service}.log"
