"""The servers of the local stack: how each is configured, started and checked.

A Service knows its command line (built from cached artefacts), the services
it needs first, and a health probe. Components group services the way users
think of them (kubernetes, kafka, hbase, registry); Spark has no server, only jars.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import time
import urllib.request
import uuid
from pathlib import Path

from . import artefacts, images, node_artefacts, pki, podnet, prometheus
from .layout import HOST, POD_NETWORK, PORTS, Layout
from .node import NODE_SERVICES
from .service import Probe, Service, http_ok, port_open

__all__ = ["SERVICES", "Probe", "Service", "by_name", "port_open"]


def _admin_tls(layout: Layout) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    context.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return context


def _unverified_tls() -> ssl.SSLContext:
    # kube-controller-manager and kube-scheduler serve /healthz with self-signed certs
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _etcd_healthy(layout: Layout) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{PORTS.etcd_client}/health", timeout=2) as r:
            return json.loads(r.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


def _apiserver_ready(layout: Layout) -> bool:
    if not (layout.pki / "complete").exists():
        return False
    return http_ok(f"https://{HOST}:{PORTS.apiserver}/readyz", _admin_tls(layout))


def _kafka_ready(layout: Layout) -> bool:
    if not port_open(PORTS.kafka):
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"{HOST}:{PORTS.kafka}", "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=3)
    except Exception:
        return False
    return bool(metadata.brokers) and _kafka_sasl_ready(layout)


def _hbase_master_ready(layout: Layout) -> bool:
    return port_open(PORTS.hbase_master) and port_open(PORTS.hbase_regionserver)


def _hbase_thrift_ready(layout: Layout) -> bool:
    if not port_open(PORTS.hbase_thrift):
        return False
    import happybase

    try:
        connection = happybase.Connection(HOST, PORTS.hbase_thrift, timeout=5000)
        try:
            connection.tables()  # needs the master and a region server behind Thrift
        finally:
            connection.close()
    except Exception:
        return False
    return True


# ---------------------------------------------------------------- kubernetes

KUBERNETES = artefacts.KubernetesBinaries()


def _k8s(layout: Layout, command: str) -> str:
    return str(KUBERNETES.binary(layout.cache, command))


def _prepare_pki(layout: Layout) -> None:
    pki.ensure_pki(layout.pki)
    if podnet.available():
        pki.ensure_node_pki(layout.pki, POD_NETWORK.node_name, POD_NETWORK.host)
    pki.write_kubeconfig(layout.kubeconfig, layout.pki, f"https://{HOST}:{PORTS.apiserver}")


def _etcd_argv(layout: Layout) -> list[str]:
    return [
        _k8s(layout, "etcd"),
        "--name=fink-stack",
        f"--data-dir={layout.data / 'etcd'}",
        f"--listen-client-urls=http://{HOST}:{PORTS.etcd_client}",
        f"--advertise-client-urls=http://{HOST}:{PORTS.etcd_client}",
        f"--listen-peer-urls=http://{HOST}:{PORTS.etcd_peer}",
        f"--initial-advertise-peer-urls=http://{HOST}:{PORTS.etcd_peer}",
        f"--initial-cluster=fink-stack=http://{HOST}:{PORTS.etcd_peer}",
        "--listen-metrics-urls=",
        "--unsafe-no-fsync=true",  # a throw-away dev store: speed over durability
        "--quota-backend-bytes=4294967296",
    ]


def _apiserver_argv(layout: Layout) -> list[str]:
    p = layout.pki
    return [
        _k8s(layout, "kube-apiserver"),
        f"--etcd-servers=http://{HOST}:{PORTS.etcd_client}",
        f"--bind-address={HOST}",
        f"--secure-port={PORTS.apiserver}",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        f"--service-account-issuer=https://{HOST}:{PORTS.apiserver}",
        f"--service-account-key-file={p / 'sa.pub'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        f"--service-cluster-ip-range={POD_NETWORK.service_cidr}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        f"--cert-dir={layout.data / 'apiserver-certs'}",
        *_apiserver_pod_network_flags(layout),
    ]


def _apiserver_pod_network_flags(layout: Layout) -> list[str]:
    """Where pods reach the apiserver, and how it reaches the kubelet.

    The apiserver listens on loopback only; the `kubernetes` Service points at
    the pod network's host address (a Service cannot point at loopback), where
    the node's pod gateway relays to it. Without a pod network (not root) the
    Service has no endpoint: nothing in a pod could use it anyway.
    """
    if not podnet.available():
        return ["--endpoint-reconciler-type=none"]
    p = layout.pki
    return [
        f"--advertise-address={POD_NETWORK.host}",
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
    ]


def _kubeconfig_flags(layout: Layout) -> list[str]:
    kc = str(layout.kubeconfig)
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
    ]


def _controller_manager_argv(layout: Layout) -> list[str]:
    return [
        _k8s(layout, "kube-controller-manager"),
        *_kubeconfig_flags(layout),
        f"--bind-address={HOST}",
        f"--secure-port={PORTS.controller_manager}",
        "--leader-elect=false",
        f"--service-account-private-key-file={layout.pki / 'sa.key'}",
        f"--root-ca-file={layout.pki / 'ca.crt'}",
        "--use-service-account-credentials=false",
        f"--cert-dir={layout.data / 'controller-manager-certs'}",
    ]


def _scheduler_argv(layout: Layout) -> list[str]:
    return [
        _k8s(layout, "kube-scheduler"),
        *_kubeconfig_flags(layout),
        f"--bind-address={HOST}",
        f"--secure-port={PORTS.scheduler}",
        "--leader-elect=false",
        f"--cert-dir={layout.data / 'scheduler-certs'}",
    ]


# ---------------------------------------------------------------- kwok

KWOK = artefacts.kwok_tool()
HELM = artefacts.helm_tool()
KWOK_NODE = "kwok-node-0"
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
KWOK_PORT = 10247


def _kwok_argv(layout: Layout) -> list[str]:
    return [
        str(KWOK.binary(layout.cache)),
        f"--kubeconfig={layout.kubeconfig}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-ip=127.0.0.1",
        "--cidr=10.244.0.0/16",  # fake pod IPs, never contacted: room for 500+ pods
        f"--server-address={HOST}:{KWOK_PORT}",
        "--config=" + ",".join(str(p) for p in KWOK.stage_files(layout.cache)),
    ]


def _core_api(layout: Layout):  # type: ignore[no-untyped-def]
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(layout.kubeconfig)))


def register_kwok_node(layout: Layout) -> None:
    """A fake Node that kwok keeps Ready and on which scheduled pods become Running.

    It is tainted (KWOK_TAINT): ordinary pods go to the real node, where they
    really run; scale tests that want many fake pods tolerate the taint and
    select `type: kwok`. Its capacity is generous so scheduling never blocks.
    """
    from kubernetes.client.rest import ApiException

    # room for a scale test's 500 drivers of 1 core each (no container ever runs here)
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": "1000"}
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": KWOK_NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": KWOK_NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"taints": [KWOK_TAINT]},
        "status": {"allocatable": capacity, "capacity": capacity},
    }
    try:
        _core_api(layout).create_node(node)
    except ApiException as error:
        if error.status != 409:
            raise
        _core_api(layout).patch_node(KWOK_NODE, {"spec": {"taints": [KWOK_TAINT]}})
        status = {"status": {"allocatable": capacity, "capacity": capacity}}
        _core_api(layout).patch_node_status(KWOK_NODE, status)


def _kwok_node_ready(layout: Layout) -> bool:
    try:
        node = _core_api(layout).read_node(KWOK_NODE)
    except Exception:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


# ---------------------------------------------------------------- kafka

KAFKA = artefacts.kafka_bundle()
HBASE = artefacts.hbase_bundle()

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.zk.name = org.apache.zookeeper
logger.zk.level = warn
"""


# The secured listeners: SASL_SSL with SCRAM, as production brokers are run. One user,
# made by the stack, with a password of the state directory's own (`fink-stack env`)
KAFKA_SCRAM_MECHANISM = "SCRAM-SHA-512"
KAFKA_USER = "fink"
KAFKA_USERS_FILE = "kafka-users.json"  # under the PKI directory, mode 0600
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def kafka_credentials(layout: Layout) -> tuple[str, str]:
    """(user, password) of the stack's SCRAM user; the password is made once per state directory."""
    path = layout.pki / KAFKA_USERS_FILE
    if path.exists():
        found = json.loads(path.read_text())
        return str(found["username"]), str(found["password"])
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    path.write_text(json.dumps({"username": KAFKA_USER, "password": password}) + "\n")
    path.chmod(0o600)
    return KAFKA_USER, password


def kafka_sasl_settings(layout: Layout) -> dict[str, str]:
    """librdkafka settings of a client of the SASL_SSL listeners, as the stack's user.

    The very keys a pipeline's credentials Secret holds (fink_core.connections).
    """
    user, password = kafka_credentials(layout)
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": KAFKA_SCRAM_MECHANISM,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.pem": (layout.pki / "ca.crt").read_text(),
    }


KAFKA_SECRET = "fink-stack-kafka"  # the Secret of the references directory below


def kafka_references(layout: Layout) -> Path:
    """A directory laid out like mounted Secrets: secrets/fink-stack-kafka/<librdkafka key>."""
    return layout.config / "kafka" / "references"


def _write_kafka_references(layout: Layout) -> None:
    secret = kafka_references(layout) / "secrets" / KAFKA_SECRET
    secret.mkdir(parents=True, exist_ok=True)
    secret.parent.chmod(0o700)
    for key, value in kafka_sasl_settings(layout).items():
        (secret / key).write_text(value)
        (secret / key).chmod(0o600)


def _kafka_listeners() -> dict[str, tuple[str, str, int]]:
    """Listener name -> (security protocol, address, port) of the broker.

    PLAINTEXT on loopback is what everything uses by default; SASL_SSL on
    loopback is the secured one. With the pod network, each has a twin on the
    bridge's host address (PODS, PODS_SASL), advertised as that address: pods
    cannot reach loopback, and a broker answers clients with the address of the
    listener they came in on.
    """
    listeners = {
        "PLAINTEXT": ("PLAINTEXT", HOST, PORTS.kafka),
        "CONTROLLER": ("PLAINTEXT", HOST, PORTS.kafka_controller),
        "SASL_SSL": ("SASL_SSL", HOST, PORTS.kafka_sasl),
    }
    if podnet.available():
        listeners["PODS"] = ("PLAINTEXT", POD_NETWORK.host, PORTS.kafka_pods)
        listeners["PODS_SASL"] = ("SASL_SSL", POD_NETWORK.host, PORTS.kafka_pods_sasl)
    return listeners


def _kafka_config(layout: Layout) -> str:
    listeners = _kafka_listeners()
    advertised = {k: v for k, v in listeners.items() if k != "CONTROLLER"}
    secured = [k for k, (protocol, _, _) in listeners.items() if protocol == "SASL_SSL"]
    mechanism = KAFKA_SCRAM_MECHANISM.lower()
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{PORTS.kafka_controller}",
            "listeners=" + ",".join(f"{k}://{a}:{p}" for k, (_, a, p) in listeners.items()),
            "advertised.listeners="
            + ",".join(f"{k}://{a}:{p}" for k, (_, a, p) in advertised.items()),
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map="
            + ",".join(f"{k}:{protocol}" for k, (protocol, _, _) in listeners.items()),
            f"sasl.enabled.mechanisms={KAFKA_SCRAM_MECHANISM}",
            *(
                f"listener.name.{k.lower()}.{mechanism}.sasl.jaas.config={_SCRAM_LOGIN}"
                for k in secured
            ),
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={layout.pki / (pki.KAFKA_SERVER + '.pem')}",
            "ssl.client.auth=none",
            f"log.dirs={layout.data / 'kafka'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "delete.topic.enable=true",
            "",
        ]
    )


def _kafka_properties(layout: Layout) -> Path:
    """The broker's configuration file, named by its content.

    A stack whose listeners changed (an upgrade of the stack, the pod network
    appearing) then has a new command line, which `up` answers by restarting
    Kafka on the new file: an older state directory is upgraded in place, its
    topics and data kept.
    """
    digest = hashlib.sha256(_kafka_config(layout).encode()).hexdigest()[:12]
    return layout.config / "kafka" / f"server-{digest}.properties"


def _prepare_kafka(layout: Layout) -> None:
    """Write the KRaft config, the TLS certificate, and format the log directory on first start."""
    conf = layout.config / "kafka"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "log4j2.properties").write_text(_LOG4J2)
    pki.ensure_kafka_pki(layout.pki, sorted({a for _, a, _ in _kafka_listeners().values()}))
    _write_kafka_references(layout)
    properties = _kafka_properties(layout)
    for stale in conf.glob("server*.properties"):
        if stale != properties:
            stale.unlink()
    properties.write_text(_kafka_config(layout))
    _format_kafka_logs(layout, "kafka", properties)


def _format_kafka_logs(layout: Layout, name: str, properties: Path) -> None:
    """Format a KRaft broker's log directory (data/<name>) once, with a new cluster id."""
    if (layout.data / name / "meta.properties").exists():
        return
    import subprocess

    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    log = layout.log_of(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        result = subprocess.run(
            [
                "java",
                "-cp",
                KAFKA.classpath(layout.cache),
                f"-Dlog4j2.configurationFile={properties.parent / 'log4j2.properties'}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(properties),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise RuntimeError(f"formatting the log directory of {name} failed; see {log}")


def _kafka_argv(layout: Layout) -> list[str]:
    return [
        "java",
        "-Xms256m",
        "-Xmx768m",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={layout.config / 'kafka' / 'log4j2.properties'}",
        "-cp",
        KAFKA.classpath(layout.cache),
        "kafka.Kafka",
        str(_kafka_properties(layout)),
    ]


def _kafka_users(layout: Layout) -> None:
    """Create (or reset) the stack's SCRAM user once the broker answers on PLAINTEXT.

    Through the admin API rather than at format time, so a log directory formatted
    by an older stack gets its user too. The credentials live in the metadata log:
    they survive restarts, and `down --wipe` takes them with the data.
    """
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    user, password = kafka_credentials(layout)
    admin = AdminClient({"bootstrap.servers": f"{HOST}:{PORTS.kafka}", "log_level": 0})
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            admin.alter_user_scram_credentials([upsert])[user].result(timeout=10)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _kafka_sasl_ready(layout: Layout) -> bool:
    """The stack's user can sign in on the SASL_SSL listener (TLS, SCRAM, the CA's certificate)."""
    if not port_open(PORTS.kafka_sasl):
        return False
    from confluent_kafka.admin import AdminClient

    settings = kafka_sasl_settings(layout)
    admin = AdminClient(
        {"bootstrap.servers": f"{HOST}:{PORTS.kafka_sasl}", "log_level": 0, **settings}
    )
    try:
        return bool(admin.list_topics(timeout=5).brokers)
    except Exception:
        return False


# ---------------------------------------------------------------- the survey's upstream Kafka


def _kafka_upstream_config(layout: Layout) -> str:
    """A second single-node KRaft cluster: where a survey publishes, apart from the broker's.

    Plain and on loopback only: it stands for the survey's own Kafka in the tests
    of a pipeline whose source and sinks are on different clusters.
    """
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{PORTS.kafka_upstream_controller}",
            f"listeners=PLAINTEXT://{HOST}:{PORTS.kafka_upstream},"
            f"CONTROLLER://{HOST}:{PORTS.kafka_upstream_controller}",
            f"advertised.listeners=PLAINTEXT://{HOST}:{PORTS.kafka_upstream}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={layout.data / 'kafka-upstream'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=2",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=2",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "delete.topic.enable=true",
            "",
        ]
    )


def _kafka_upstream_properties(layout: Layout) -> Path:
    return layout.config / "kafka-upstream" / "server.properties"


def _prepare_kafka_upstream(layout: Layout) -> None:
    conf = layout.config / "kafka-upstream"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "log4j2.properties").write_text(_LOG4J2)
    properties = _kafka_upstream_properties(layout)
    properties.write_text(_kafka_upstream_config(layout))
    _format_kafka_logs(layout, "kafka-upstream", properties)


def _kafka_upstream_argv(layout: Layout) -> list[str]:
    return [
        "java",
        "-Xms128m",
        "-Xmx256m",
        "-XX:+UseSerialGC",
        f"-Dlog4j2.configurationFile={layout.config / 'kafka-upstream' / 'log4j2.properties'}",
        "-cp",
        KAFKA.classpath(layout.cache),
        "kafka.Kafka",
        str(_kafka_upstream_properties(layout)),
    ]


def _kafka_upstream_ready(layout: Layout) -> bool:
    if not port_open(PORTS.kafka_upstream):
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"{HOST}:{PORTS.kafka_upstream}", "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=3).brokers)
    except Exception:
        return False


# ---------------------------------------------------------------- hbase

_JAVA17_FOR_HBASE = [
    "-Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true",
    "--add-modules",
    "jdk.unsupported",
    *[
        f"--add-opens=java.base/{p}=ALL-UNNAMED"
        for p in (
            "java.io",
            "java.nio",
            "sun.nio.ch",
            "java.lang",
            "jdk.internal.ref",
            "java.lang.reflect",
            "java.util",
            "java.util.concurrent",
        )
    ],
    *[
        f"--add-exports={p}=ALL-UNNAMED"
        for p in (
            "java.base/jdk.internal.misc",
            "java.security.jgss/sun.security.krb5",
            "java.base/sun.net.dns",
            "java.base/sun.net.util",
        )
    ],
]


def _prepare_hbase(layout: Layout) -> None:
    conf = layout.config / "hbase"
    conf.mkdir(parents=True, exist_ok=True)
    data = layout.data / "hbase"
    properties = {
        "hbase.cluster.distributed": "false",
        "hbase.rootdir": f"file://{data / 'root'}",
        "hbase.tmp.dir": str(data / "tmp"),
        "hbase.zookeeper.quorum": HOST,
        "hbase.zookeeper.property.clientPort": str(PORTS.zookeeper),
        "hbase.zookeeper.property.dataDir": str(data / "zookeeper"),
        "hbase.master.hostname": "localhost",
        "hbase.unsafe.regionserver.hostname": "localhost",
        "hbase.master.port": str(PORTS.hbase_master),
        "hbase.regionserver.port": str(PORTS.hbase_regionserver),
        "hbase.unsafe.stream.capability.enforce": "false",
        "hbase.wal.provider": "filesystem",
        "hbase.master.info.port": "-1",
        "hbase.regionserver.info.port": "-1",
        "hbase.thrift.info.port": "-1",
        "hbase.regionserver.thrift.ipaddress": HOST,
    }
    (conf / "hbase-site.xml").write_text(
        "<configuration>\n"
        + "".join(
            f"  <property><name>{k}</name><value>{v}</value></property>\n"
            for k, v in properties.items()
        )
        + "</configuration>\n"
    )
    (conf / "log4j2.properties").write_text(_LOG4J2)


def hbase_java(layout: Layout, heap: str) -> list[str]:
    """java with HBase's classpath and configuration (its servers, and clients such as benches)."""
    conf = layout.config / "hbase"
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        *_JAVA17_FOR_HBASE,
        f"-Dlog4j2.configurationFile={conf / 'log4j2.properties'}",
        "-cp",
        f"{conf}:{HBASE.classpath(layout.cache)}",
    ]


def _hbase_master_argv(layout: Layout) -> list[str]:
    return [*hbase_java(layout, "1g"), "org.apache.hadoop.hbase.master.HMaster", "start"]


def _hbase_thrift_argv(layout: Layout) -> list[str]:
    return [
        *hbase_java(layout, "384m"),
        "org.apache.hadoop.hbase.thrift.ThriftServer",
        "-b",
        HOST,
        "-p",
        str(PORTS.hbase_thrift),
        "start",
    ]


def _hbase_thrift2_argv(layout: Layout) -> list[str]:
    """The Thrift2 gateway (same jar): the table-admin calls the operator needs."""
    return [
        *hbase_java(layout, "256m"),
        "org.apache.hadoop.hbase.thrift2.ThriftServer",
        "-b",
        HOST,
        "-p",
        str(PORTS.hbase_thrift2),
        "start",
    ]


def _hbase_thrift2_ready(layout: Layout) -> bool:
    if not port_open(PORTS.hbase_thrift2):
        return False
    from fink_core.connections import Address
    from fink_core.hbase_admin import HBaseAdmin

    try:
        with HBaseAdmin(Address(HOST, PORTS.hbase_thrift2), timeout=5) as admin:
            return admin.exists("hbase:meta")  # needs the master behind the gateway
    except Exception:
        return False


# ---------------------------------------------------------------- hdfs

HDFS = artefacts.hdfs_bundle()


def hdfs_url(host: str = HOST) -> str:
    return f"hdfs://{host}:{PORTS.hdfs_namenode}"


def _prepare_hdfs(layout: Layout) -> None:
    """Configuration (rewritten every start) and the NameNode's metadata, formatted once.

    Maven Central's hadoop-hdfs jar lacks the web UI (`webapps/`, part of the
    binary distribution only), which the HTTP servers insist exists on the class
    path: empty directories in the configuration directory stand for it. /jmx and
    WebHDFS are servlets of their own and work.
    """
    conf = layout.config / "hdfs"
    data = layout.data / "hdfs"
    for webapp in ("hdfs", "datanode", "static"):
        (conf / "webapps" / webapp).mkdir(parents=True, exist_ok=True)
    (conf / "log4j2.properties").write_text(_LOG4J2)
    core = {"fs.defaultFS": hdfs_url(), "hadoop.tmp.dir": str(data / "tmp")}
    hdfs = {
        "dfs.replication": "1",
        "dfs.namenode.name.dir": f"file://{data / 'name'}",
        "dfs.datanode.data.dir": f"file://{data / 'data'}",
        "dfs.namenode.rpc-address": f"{HOST}:{PORTS.hdfs_namenode}",
        "dfs.namenode.http-address": f"{HOST}:{PORTS.hdfs_namenode_http}",
        "dfs.namenode.secondary.http-address": f"{HOST}:0",  # none runs
        "dfs.datanode.address": f"{HOST}:{PORTS.hdfs_datanode}",
        "dfs.datanode.http.address": f"{HOST}:{PORTS.hdfs_datanode_http}",
        "dfs.datanode.ipc.address": f"{HOST}:{PORTS.hdfs_datanode_ipc}",
        "dfs.permissions.enabled": "false",  # one user, a development store
        "dfs.namenode.safemode.extension": "0",  # writable as soon as the blocks are reported
        "dfs.datanode.du.reserved": "0",
        # pods reach the DataNode through the pod gateway at this name (CoreDNS answers
        # the bridge address), with dfs.client.use.datanode.hostname=true; clients on
        # the host use the address it connected from, 127.0.0.1, as by default
        "dfs.datanode.hostname": POD_NETWORK.host_name,
    }
    for name, properties in (("core-site.xml", core), ("hdfs-site.xml", hdfs)):
        (conf / name).write_text(
            "<configuration>\n"
            + "".join(
                f"  <property><name>{k}</name><value>{v}</value></property>\n"
                for k, v in properties.items()
            )
            + "</configuration>\n"
        )
    if (data / "name" / "current" / "VERSION").exists():
        return
    import subprocess

    log = layout.log_of("hdfs-namenode")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        result = subprocess.run(
            [*_hdfs_java(layout), _NAMENODE, "-format", "-nonInteractive", "-force"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise RuntimeError(f"formatting the HDFS NameNode failed; see {log}")


_NAMENODE = "org.apache.hadoop.hdfs.server.namenode.NameNode"
_DATANODE = "org.apache.hadoop.hdfs.server.datanode.DataNode"


def _hdfs_java(layout: Layout) -> list[str]:
    conf = layout.config / "hdfs"
    return [
        "java",
        "-Xms64m",
        "-Xmx256m",
        "-XX:+UseSerialGC",
        f"-Dlog4j2.configurationFile={conf / 'log4j2.properties'}",
        "-cp",
        f"{conf}:{HDFS.classpath(layout.cache)}",
    ]


def _hdfs_state(layout: Layout) -> dict[str, object]:
    url = (
        f"http://{HOST}:{PORTS.hdfs_namenode_http}/jmx"
        "?qry=Hadoop:service=NameNode,name=FSNamesystemState"
    )
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            beans = json.loads(response.read()).get("beans", [])
    except (OSError, ValueError):
        return {}
    return beans[0] if beans else {}


def _hdfs_namenode_ready(layout: Layout) -> bool:
    return port_open(PORTS.hdfs_namenode) and bool(_hdfs_state(layout))


def _hdfs_datanode_ready(layout: Layout) -> bool:
    """A DataNode registered and the NameNode out of safe mode: files can be written."""
    state = _hdfs_state(layout)
    return state.get("NumLiveDataNodes", 0) >= 1 and state.get("FSState") == "Operational"


# ---------------------------------------------------------------- schema registry

SCHEMA_REGISTRY = artefacts.apicurio_registry()
# where clients speaking the Confluent Schema Registry REST API find it
SCHEMA_REGISTRY_PATH = "/apis/ccompat/v7"


def schema_registry_url(host: str = HOST) -> str:
    return f"http://{host}:{PORTS.schema_registry}{SCHEMA_REGISTRY_PATH}"


def _schema_registry_argv(layout: Layout) -> list[str]:
    """Apicurio Registry on loopback, its schemas in an H2 database file under the data dir.

    The file (not upstream's in-memory default) keeps schema ids valid for as long
    as Kafka keeps the messages that carry them: both survive a restart, both go
    with `down --wipe`. Pods reach it through the node's pod gateway.
    """
    data = layout.data / "schema-registry"
    return [
        "java",
        "-Xms64m",
        "-Xmx256m",
        "-XX:+UseSerialGC",  # a small heap on a 2-core machine shared with the whole stack
        f"-Dquarkus.http.host={HOST}",
        f"-Dquarkus.http.port={PORTS.schema_registry}",
        f"-Dquarkus.datasource.jdbc.url=jdbc:h2:file:{data / 'registry'}",
        "-Dquarkus.datasource.jdbc.initial-size=2",  # upstream keeps 20 connections open
        "-Dquarkus.datasource.jdbc.min-size=2",
        "-Dquarkus.datasource.jdbc.max-size=20",
        # Narayana's default process id is a socket listening on a random port; a UUID is not
        "-DCoreEnvironmentBean.processImplementationClassName="
        "com.arjuna.ats.internal.arjuna.utils.UuidProcessId",
        '-Dquarkus.log.category."io.sentry".level=ERROR',  # "no DSN" warnings: Sentry is off
        "-jar",
        str(SCHEMA_REGISTRY.run_jar(layout.cache)),
    ]


def _prepare_schema_registry(layout: Layout) -> None:
    (layout.data / "schema-registry").mkdir(parents=True, exist_ok=True)


def _schema_registry_ready(layout: Layout) -> bool:
    return http_ok(f"{schema_registry_url()}/subjects")


# ---------------------------------------------------------------- registry

SERVICES: tuple[Service, ...] = (
    Service(
        "etcd",
        "kubernetes",
        (),
        _etcd_argv,
        _etcd_healthy,
        port=PORTS.etcd_client,
        data_dirs=("etcd",),
    ),
    Service(
        "kube-apiserver",
        "kubernetes",
        ("etcd",),
        _apiserver_argv,
        _apiserver_ready,
        prepare=_prepare_pki,
        port=PORTS.apiserver,
    ),
    Service(
        "kube-controller-manager",
        "kubernetes",
        ("kube-apiserver",),
        _controller_manager_argv,
        lambda layout: http_ok(
            f"https://{HOST}:{PORTS.controller_manager}/healthz", _unverified_tls()
        ),
        port=PORTS.controller_manager,
    ),
    Service(
        "kube-scheduler",
        "kubernetes",
        ("kube-apiserver",),
        _scheduler_argv,
        lambda layout: http_ok(f"https://{HOST}:{PORTS.scheduler}/healthz", _unverified_tls()),
        port=PORTS.scheduler,
    ),
    Service(
        "kwok",
        "kubernetes",
        ("kube-apiserver",),
        _kwok_argv,
        _kwok_node_ready,
        after_start=register_kwok_node,
        port=KWOK_PORT,
    ),
    Service(
        "kafka",
        "kafka",
        (),
        _kafka_argv,
        _kafka_ready,
        prepare=_prepare_kafka,
        after_start=_kafka_users,
        port=PORTS.kafka,
        data_dirs=("kafka",),
    ),
    Service(
        "kafka-upstream",
        "kafka",
        (),
        _kafka_upstream_argv,
        _kafka_upstream_ready,
        prepare=_prepare_kafka_upstream,
        port=PORTS.kafka_upstream,
        data_dirs=("kafka-upstream",),
    ),
    Service(
        "hbase-master",
        "hbase",
        (),
        _hbase_master_argv,
        _hbase_master_ready,
        prepare=_prepare_hbase,
        port=PORTS.zookeeper,
        startup_seconds=180,
        data_dirs=("hbase",),
    ),
    Service(
        "hbase-thrift",
        "hbase",
        ("hbase-master",),
        _hbase_thrift_argv,
        _hbase_thrift_ready,
        port=PORTS.hbase_thrift,
        startup_seconds=180,
    ),
    Service(
        "hbase-thrift2",
        "hbase",
        ("hbase-master",),
        _hbase_thrift2_argv,
        _hbase_thrift2_ready,
        port=PORTS.hbase_thrift2,
        startup_seconds=180,
    ),
    Service(
        "schema-registry",
        "registry",
        (),
        _schema_registry_argv,
        _schema_registry_ready,
        prepare=_prepare_schema_registry,
        port=PORTS.schema_registry,
        startup_seconds=90,
        data_dirs=("schema-registry",),
    ),
    Service(
        "hdfs-namenode",
        "hdfs",
        (),
        lambda layout: [*_hdfs_java(layout), _NAMENODE],
        _hdfs_namenode_ready,
        prepare=_prepare_hdfs,
        port=PORTS.hdfs_namenode,
        data_dirs=("hdfs",),
    ),
    Service(
        "hdfs-datanode",
        "hdfs",
        ("hdfs-namenode",),
        lambda layout: [*_hdfs_java(layout), _DATANODE],
        _hdfs_datanode_ready,
        port=PORTS.hdfs_datanode,
    ),
    *NODE_SERVICES,  # the real node, last: stopped first, its pods before anything else
    prometheus.SERVICE,  # after the node: stopped before it, no scrape fails at `down`
)

COMPONENTS: dict[str, tuple[artefacts.Artefact, ...]] = {
    "kubernetes": (KUBERNETES, KWOK, HELM),
    "kafka": (KAFKA,),
    "hbase": (HBASE,),
    "registry": (SCHEMA_REGISTRY,),
    "hdfs": (HDFS,),
    "spark": (),  # resolved lazily: depends on the installed pyspark
    "node": (*node_artefacts.NODE_ARTEFACTS, images.PAUSE_IMAGE, *images.IMAGE_ARTEFACTS),
    "monitoring": (prometheus.PROMETHEUS,),
}


def by_name(name: str) -> Service:
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(name)
