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
    kafka_pods: int = 9094  # Kafka's listener on the pod network's host address
    dns: int = 53  # CoreDNS, on the pod network's host address
    coredns_ready: int = 8181
    kubelet: int = 10250  # on the pod network's host address: the apiserver dials it
    kubelet_healthz: int = 10248
    kube_proxy_metrics: int = 10249
    kube_proxy_healthz: int = 10256
    schema_registry: int = 8081  # Apicurio Registry (Confluent API); pods via the pod gateway
    kafka_sasl: int = 9096  # Kafka's SASL_SSL (SCRAM-SHA-512) listener on loopback
    kafka_pods_sasl: int = 9097  # the same on the pod network's host address
    kafka_upstream: int = 9192  # a second Kafka cluster: a survey's upstream, for two-cluster tests
    kafka_upstream_controller: int = 9193
    hdfs_namenode: int = 8020  # HDFS: the NameNode's RPC (hdfs://127.0.0.1:8020)
    hdfs_namenode_http: int = 9870  # its HTTP server: /jmx, WebHDFS
    hdfs_datanode: int = 9866  # the DataNode's block transfer
    hdfs_datanode_http: int = 9864
    hdfs_datanode_ipc: int = 9867


PORTS = Ports()


@dataclass(frozen=True)
class PodNetwork:
    """The real node's pod network: a bridge inside the machine, never routed off it.

    `host` is the bridge's own address on the host: the one address pods reach the
    host at (apiserver, Kafka, HBase Thrift, DNS). It is not loopback, because a
    Service cannot point at loopback, and it is not the machine's external
    interface, because nothing of the stack may listen there.
    """

    bridge: str = "fink0"
    cidr: str = "10.88.0.0/24"
    host: str = "10.88.0.1"
    prefix_length: int = 24
    service_cidr: str = "10.0.0.0/24"  # the apiserver's --service-cluster-ip-range
    kubernetes_service_ip: str = "10.0.0.1"  # first address of service_cidr
    dns_service_ip: str = "10.0.0.10"  # the kube-dns Service
    cluster_domain: str = "cluster.local"
    node_name: str = "fink-node"
    # the name the stack's HDFS DataNode advertises: CoreDNS answers `host` for it in
    # pods; on the host HDFS clients use the DataNode's address (127.0.0.1) instead
    host_name: str = "fink-stack-host"


POD_NETWORK = PodNetwork()


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

    @property
    def node(self) -> Path:
        """Everything of the real node (containerd, kubelet, CNI) that can live here does."""
        return self.state / "node"

    def log_of(self, service: str) -> Path:
        return self.logs / f"{service}.log"
