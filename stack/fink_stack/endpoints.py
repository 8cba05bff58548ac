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
    pods: PodEndpoints | None = None  # with the real node: what clients inside pods use
    prometheus: str = ""  # the local Prometheus's HTTP API (component monitoring)
    # the schema registry's Confluent-compatible API (component registry)
    schema_registry: str = ""
    kafka_sasl: KafkaSasl | None = None  # the secured listener and its user (component kafka)
    # a second Kafka cluster standing for a survey's own (component kafka)
    kafka_upstream_bootstrap: str = ""
    hdfs: str = ""  # the HDFS NameNode, hdfs://127.0.0.1:8020 (component hdfs)

    def environment(self) -> dict[str, str]:
        """Variables that point a shell, the operator or a pipeline at this stack."""
        variables = {
            "KUBECONFIG": str(self.kubeconfig),
            "FINK_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "FINK_HBASE_THRIFT": f"{self.hbase_thrift_host}:{self.hbase_thrift_port}",
            "FINK_HBASE_ADMIN": f"{self.hbase_thrift_host}:{self.hbase_admin_port}",
            "FINK_SPARK_JARS": ",".join(str(p) for p in self.spark_jars),
            # keep Spark's driver on loopback like every other server of the stack
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
        if self.prometheus:
            variables["FINK_PROMETHEUS_URL"] = self.prometheus
        if self.schema_registry:
            variables["FINK_SCHEMA_REGISTRY"] = self.schema_registry
        if self.kafka_sasl is not None:
            variables.update(self.kafka_sasl.environment())
        if self.kafka_upstream_bootstrap:
            variables["FINK_KAFKA_UPSTREAM_BOOTSTRAP"] = self.kafka_upstream_bootstrap
        if self.hdfs:
            variables["FINK_HDFS"] = self.hdfs
        if self.pods is not None:
            variables.update(self.pods.environment())
        return variables


@dataclass(frozen=True)
class KafkaSasl:
    """Kafka's SASL_SSL listener (SCRAM-SHA-512, TLS), and the stack's user on it.

    `references` is a directory laid out like mounted Secrets, holding one Secret,
    `secrets/fink-stack-kafka/<key>`, whose keys are the librdkafka settings a
    pipeline's credentials Secret holds: `fink-pipeline run --references DIR` on a
    spec naming `credentialsSecretRef: {name: fink-stack-kafka}` uses it as is, and
    `kubectl create secret generic fink-stack-kafka --from-file=DIR/secrets/fink-stack-kafka`
    makes the same Secret in a cluster.
    """

    bootstrap: str  # 127.0.0.1:9096
    username: str
    password: str
    ca_file: Path  # the stack's CA, which signed the broker's certificate
    references: Path
    mechanism: str = "SCRAM-SHA-512"
    secret_name: str = "fink-stack-kafka"

    def settings(self) -> dict[str, str]:
        """librdkafka settings of a client of this listener (the Secret's keys and values)."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": self.mechanism,
            "sasl.username": self.username,
            "sasl.password": self.password,
            "ssl.ca.pem": self.ca_file.read_text(),
        }

    def environment(self) -> dict[str, str]:
        return {
            "FINK_KAFKA_SASL_BOOTSTRAP": self.bootstrap,
            "FINK_KAFKA_SASL_MECHANISM": self.mechanism,
            "FINK_KAFKA_SASL_USERNAME": self.username,
            "FINK_KAFKA_SASL_PASSWORD": self.password,
            "FINK_KAFKA_SASL_REFERENCES": str(self.references),
            "FINK_STACK_CA": str(self.ca_file),
        }

    @classmethod
    def from_environment(cls) -> KafkaSasl | None:
        get = os.environ.get
        if not get("FINK_KAFKA_SASL_BOOTSTRAP"):
            return None
        return cls(
            bootstrap=get("FINK_KAFKA_SASL_BOOTSTRAP", ""),
            username=get("FINK_KAFKA_SASL_USERNAME", ""),
            password=get("FINK_KAFKA_SASL_PASSWORD", ""),
            ca_file=Path(get("FINK_STACK_CA", "")),
            references=Path(get("FINK_KAFKA_SASL_REFERENCES", "")),
            mechanism=get("FINK_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        )


@dataclass(frozen=True)
class PodEndpoints:
    """Addresses for clients running in pods on the real node (the bridge's host address).

    Pods cannot reach loopback: the servers (or the node's pod gateway) also
    listen on the pod network's host address. Inside a pod the apiserver is the
    usual in-cluster `https://kubernetes.default.svc` (service account token and
    CA mounted as on any cluster); `apiserver` here is that same server's
    address on the pod network, e.g. for `spark-submit --master k8s://...` from
    the host or a pod.
    """

    apiserver: str  # https://10.88.0.1:6443
    kafka_bootstrap: str  # 10.88.0.1:9094
    hbase_thrift: str  # 10.88.0.1:9090
    hbase_admin: str  # 10.88.0.1:9091 (Thrift2)
    dns: str  # 10.0.0.10 (the kube-dns Service; CoreDNS itself is 10.88.0.1:53)
    node_name: str  # fink-node
    pipeline_image: str  # fink-k8s/pipeline:dev
    operator_image: str  # fink-k8s/operator:dev
    containerd_address: str  # for ctr / crictl on the host
    schema_registry: str = ""  # http://10.88.0.1:8081/apis/ccompat/v7 (through the pod gateway)
    kafka_sasl_bootstrap: str = ""  # 10.88.0.1:9097: SASL_SSL, same user and CA as on the host
    # hdfs://10.88.0.1:8020 through the pod gateway; a pod's HDFS client also needs
    # dfs.client.use.datanode.hostname=true (the DataNode is advertised by name)
    hdfs: str = ""

    def environment(self) -> dict[str, str]:
        return {
            "FINK_POD_APISERVER": self.apiserver,
            "FINK_POD_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "FINK_POD_HBASE_THRIFT": self.hbase_thrift,
            "FINK_POD_HBASE_ADMIN": self.hbase_admin,
            "FINK_POD_DNS": self.dns,
            "FINK_POD_SCHEMA_REGISTRY": self.schema_registry,
            "FINK_POD_KAFKA_SASL_BOOTSTRAP": self.kafka_sasl_bootstrap,
            "FINK_POD_HDFS": self.hdfs,
            "FINK_NODE_NAME": self.node_name,
            "FINK_PIPELINE_IMAGE": self.pipeline_image,
            "FINK_OPERATOR_IMAGE": self.operator_image,
            # ctr and crictl on the host talk to the node's containerd
            "CONTAINERD_ADDRESS": self.containerd_address,
            "CONTAINERD_NAMESPACE": "k8s.io",
            "CONTAINER_RUNTIME_ENDPOINT": f"unix://{self.containerd_address}",
            "IMAGE_SERVICE_ENDPOINT": f"unix://{self.containerd_address}",
        }

    @classmethod
    def from_environment(cls) -> PodEndpoints | None:
        if "FINK_POD_KAFKA_BOOTSTRAP" not in os.environ:
            return None
        get = os.environ.get
        return cls(
            apiserver=get("FINK_POD_APISERVER", ""),
            kafka_bootstrap=get("FINK_POD_KAFKA_BOOTSTRAP", ""),
            hbase_thrift=get("FINK_POD_HBASE_THRIFT", ""),
            hbase_admin=get("FINK_POD_HBASE_ADMIN", ""),
            dns=get("FINK_POD_DNS", ""),
            node_name=get("FINK_NODE_NAME", ""),
            pipeline_image=get("FINK_PIPELINE_IMAGE", ""),
            operator_image=get("FINK_OPERATOR_IMAGE", ""),
            containerd_address=get("CONTAINERD_ADDRESS", ""),
            schema_registry=get("FINK_POD_SCHEMA_REGISTRY", ""),
            kafka_sasl_bootstrap=get("FINK_POD_KAFKA_SASL_BOOTSTRAP", ""),
            hdfs=get("FINK_POD_HDFS", ""),
        )


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
        pods=PodEndpoints.from_environment(),
        prometheus=os.environ.get("FINK_PROMETHEUS_URL", ""),
        schema_registry=os.environ.get("FINK_SCHEMA_REGISTRY", ""),
        kafka_sasl=KafkaSasl.from_environment(),
        kafka_upstream_bootstrap=os.environ.get("FINK_KAFKA_UPSTREAM_BOOTSTRAP", ""),
        hdfs=os.environ.get("FINK_HDFS", ""),
    )
