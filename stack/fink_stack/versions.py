"""Every version the local stack runs, in one place.

Python packages are pinned in pyproject.toml; the Spark connector jars follow
the pyspark pinned there (see `spark_version`), so Spark has one version only.
Changing a value here makes the next `fink-stack up` build or download the new
version into its own cache directory; the old one stays until removed by hand.
"""

from __future__ import annotations

KUBERNETES = "v1.36.3"  # kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
ETCD = "v3.6.8"  # the etcd server module that Kubernetes v1.36.3 itself requires
KAFKA = "4.1.1"  # org.apache.kafka:kafka_2.13, KRaft mode
HBASE = "2.6.1"  # org.apache.hbase:hbase-server (-hadoop3 flavour) + hbase-thrift
# org.apache.hadoop:hadoop-hdfs (+ -client, hadoop-common): the stack's HDFS. The Hadoop
# client pyspark 4.2.0 bundles (jars/hadoop-client-api-3.5.0.jar), so client and servers match
HADOOP = "3.5.0"
LOG4J = "2.24.3"  # log4j2 backend for Kafka and HBase (neither pulls one in)
KWOK = "v0.8.0"  # sigs.k8s.io/kwok: a kubelet simulator, so pods progress with no container runtime
HELM = "v3.22.0"  # helm.sh/helm/v3, to install and lint the charts
# github.com/prometheus/prometheus (Go module v0.316.0): scrapes the operator and the drivers
PROMETHEUS = "v3.16.0"
# io.apicurio:apicurio-registry-app, the schema registry (Confluent API under /apis/ccompat/v7).
# The newest release whose every jar Maven Central serves here: 2.5, 2.6 and 3.x need
# apicurio-registry-schema-util-provider releases it refuses (and 3.x needs Java 21).
APICURIO_REGISTRY = "2.4.2.Final"
QUARKUS_FOR_APICURIO = "2.16.4.Final"  # the Quarkus that APICURIO_REGISTRY was released on

# The real node: kubelet and kube-proxy come from the KUBERNETES build above.
CONTAINERD = "v2.4.2"  # github.com/containerd/containerd/v2: containerd, ctr, the runc shim
RUNC = "v1.5.2"  # github.com/opencontainers/runc, with seccomp (Debian's libseccomp-dev)
CNI_PLUGINS = (
    "v1.10.0"  # github.com/containernetworking/plugins: bridge, host-local, loopback, portmap
)
CRICTL = "v1.37.0"  # sigs.k8s.io/cri-tools: to list and remove pods at `down`
COREDNS = "v1.15.0"  # github.com/coredns/coredns: cluster DNS, run as a host process
PAUSE = "3.10.2"  # the sandbox image tag containerd CONTAINERD's CRI pins (registry.k8s.io/pause)

# Images: the base the Containerfiles name (FROM debian:bookworm-slim), which the
# local builder makes with debootstrap from the Debian mirror apt already uses.
DEBIAN_SUITE = "bookworm"


def spark_version() -> str:
    """The Spark version of the installed pyspark, which the connector jars must match."""
    import pyspark

    return pyspark.__version__
