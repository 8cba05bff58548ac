"""The real node runs real pods, with in-cluster networking and no way off the machine."""

from __future__ import annotations

import re
import subprocess
import time

import happybase
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kubernetes import client
from podrun import pod_manifest, run_pod, wait_for_pod

from fink_stack import netguard, process
from fink_stack.endpoints import Endpoints
from fink_stack.layout import POD_NETWORK, Layout
from fink_stack.services import KUBERNETES, SERVICES

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py


def _pods(stack: Endpoints):  # type: ignore[no-untyped-def]
    assert stack.pods is not None, "the stack has no pod network (is it running as root?)"
    return stack.pods


def test_the_node_is_a_real_kubelet_with_containerd(stack: Endpoints, kube: client.ApiClient):
    node = client.CoreV1Api(kube).read_node(_pods(stack).node_name)
    info = node.status.node_info
    assert info.kubelet_version == "v1.36.3"
    assert info.container_runtime_version.startswith("containerd://2.4.2")
    assert {"type": "InternalIP", "address": POD_NETWORK.host} in [
        {"type": a.type, "address": a.address} for a in node.status.addresses
    ]
    assert all(not t.key.startswith("node.kubernetes.io/not-ready") for t in node.spec.taints or [])


def test_a_pod_runs_the_pipeline_image_on_the_real_node(
    stack: Endpoints, kube: client.ApiClient, namespace: str
) -> None:
    code = (
        "import pyspark, fink_pipeline, fink_core, socket; "
        "print('imported', pyspark.__version__, 'on', socket.gethostname())"
    )
    run = run_pod(kube, namespace, "imports", _pods(stack).pipeline_image, ["python", "-c", code])
    assert run.node == _pods(stack).node_name
    assert run.phase == "Succeeded", run.logs
    assert "imported 4.2.0 on imports" in run.logs


def test_a_pod_reaches_the_kubernetes_service_through_cluster_dns(
    stack: Endpoints, kube: client.ApiClient, namespace: str
) -> None:
    code = """
import json, socket, ssl, urllib.request
sa = '/var/run/secrets/kubernetes.io/serviceaccount'
address = socket.getaddrinfo('kubernetes.default.svc', 443, type=socket.SOCK_STREAM)[0][4][0]
print('resolved', address)
context = ssl.create_default_context(cafile=sa + '/ca.crt')
request = urllib.request.Request('https://kubernetes.default.svc/version',
    headers={'Authorization': 'Bearer ' + open(sa + '/token').read()})
print('version', json.load(urllib.request.urlopen(request, context=context, timeout=10))['gitVersion'])
try:
    socket.getaddrinfo('pypi.org', 443)
    print('outside name resolved')
except socket.gaierror as error:
    print('outside name refused', error.errno)
"""
    run = run_pod(
        kube, namespace, "in-cluster", _pods(stack).pipeline_image, ["python", "-c", code]
    )
    assert run.phase == "Succeeded", run.logs
    assert f"resolved {POD_NETWORK.kubernetes_service_ip}" in run.logs
    assert "version v1.36.3" in run.logs
    assert "outside name refused" in run.logs  # the cluster DNS answers NXDOMAIN, asks no one


def test_a_pod_reaches_kafka_and_both_hbase_thrift_servers(
    stack: Endpoints, kube: client.ApiClient, namespace: str, unique_name: str
) -> None:
    pods = _pods(stack)
    topic, table = f"pod-{unique_name}", f"pod_{unique_name.replace('-', '_')}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(topic, value=b"from the host")
    assert producer.flush(30) == 0
    host, port = pods.hbase_thrift.split(":")
    admin_host, admin_port = pods.hbase_admin.split(":")
    code = f"""
import time, happybase
from confluent_kafka import Consumer, Producer
from fink_core.connections import Address
from fink_core.hbase_admin import HBaseAdmin
config = {{'bootstrap.servers': '{pods.kafka_bootstrap}'}}
consumer = Consumer({{**config, 'group.id': 'pod', 'auto.offset.reset': 'earliest'}})
consumer.subscribe(['{topic}'])
seen, deadline = [], time.monotonic() + 60
while not seen and time.monotonic() < deadline:
    seen = [m.value() for m in consumer.consume(1, timeout=1.0) if not m.error()]
consumer.close()
print('consumed', seen)
producer = Producer(config)
producer.produce('{topic}', value=b'from the pod')
print('unflushed', producer.flush(30))
connection = happybase.Connection('{host}', {port}, timeout=20000)
connection.create_table('{table}', {{'d': {{}}}})
connection.table('{table}').put(b'row', {{b'd:where': b'pod'}})
print('tables', connection.tables())
with HBaseAdmin(Address('{admin_host}', {admin_port}), timeout=20) as hbase_admin:
    print('thrift2 sees table', hbase_admin.exists('{table}'))
"""
    run = run_pod(kube, namespace, "clients", pods.pipeline_image, ["python", "-c", code])
    assert run.phase == "Succeeded", run.logs
    assert "consumed [b'from the host']" in run.logs
    assert "unflushed 0" in run.logs
    assert "thrift2 sees table True" in run.logs
    # and the host sees what the pod wrote, through its own (loopback) addresses
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": unique_name,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 2 and time.monotonic() < deadline:
        values += [m.value() for m in consumer.consume(2, timeout=1.0) if not m.error()]
    consumer.close()
    assert values == [b"from the host", b"from the pod"]
    connection = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    try:
        assert connection.table(table).row(b"row") == {b"d:where": b"pod"}
        connection.delete_table(table, disable=True)
    finally:
        connection.close()
    admin.delete_topics([topic])[topic].result(30)


def _external_address() -> str:
    """The machine's own address on its default-route interface (not the bridge)."""
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True
    ).stdout.split()
    device = route[route.index("dev") + 1]
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", device], capture_output=True, text=True
    ).stdout.split()
    return shown[shown.index("inet") + 1].split("/")[0]


def test_pod_traffic_to_any_other_address_is_rejected_on_the_machine(
    stack: Endpoints, kube: client.ApiClient, namespace: str
) -> None:
    assert netguard.installed(), "the guard must be in place before any pod runs"
    before = netguard.rejected_packets()
    # TEST-NET-3 (routed out of the machine without the guard), then the machine's own
    # external address (local, but not where the stack serves pods); nothing listens on 9
    code = f"""
import socket, time
for address in ('203.0.113.1', '{_external_address()}'):
    started = time.monotonic()
    try:
        socket.create_connection((address, 9), timeout=20).close()
        outcome = 'connected'
    except OSError as error:
        outcome = f'errno {{error.errno}}'
    print(address, outcome, f'after {{time.monotonic() - started:.2f}}s')
"""
    run = run_pod(kube, namespace, "outside", _pods(stack).pipeline_image, ["python", "-c", code])
    assert run.phase == "Succeeded", run.logs
    outcomes = re.findall(r"^(\S+) (.+) after ([\d.]+)s$", run.logs, re.MULTILINE)
    assert len(outcomes) == 2, run.logs
    for address, outcome, seconds in outcomes:
        # EHOSTUNREACH (113) at once: rejected on this machine, not timed out outside
        assert outcome == "errno 113", (address, outcome)
        assert float(seconds) < 2.0, (address, seconds)
    assert netguard.rejected_packets() > before


def test_kubectl_logs_and_exec_reach_pods_on_the_node(
    stack: Endpoints, kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    manifest = pod_manifest(
        "sleeper",
        _pods(stack).pipeline_image,
        ["sh", "-c", "echo started; exec sleep 300"],
    )
    core.create_namespaced_pod(namespace, manifest)
    wait_for_pod(core, namespace, "sleeper", ("Running",), 120)
    kubectl = [
        str(KUBERNETES.binary(Layout.default().cache, "kubectl")),
        f"--kubeconfig={stack.kubeconfig}",
        "-n",
        namespace,
    ]
    deadline = time.monotonic() + 30
    logs = ""
    while "started" not in logs and time.monotonic() < deadline:
        logs = subprocess.run([*kubectl, "logs", "sleeper"], capture_output=True, text=True).stdout
    assert "started" in logs
    executed = subprocess.run(
        [*kubectl, "exec", "sleeper", "--", "cat", "/etc/hostname"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert executed.stdout.strip() == "sleeper", executed.stderr


def test_no_server_of_the_stack_listens_beyond_loopback_and_the_bridge(stack: Endpoints) -> None:
    layout = Layout.default()
    ours = set()
    for service in SERVICES:
        running = process.read(layout.pids / f"{service.name}.pid")
        if running:
            ours.add(running.pid)
            ours.update(process.find_marked(service.marker(layout)))
    listening = subprocess.run(
        ["ss", "-H", "-ltnup"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    allowed = (
        "127.0.0.1:",
        "[::ffff:127.0.0.1]:",
        f"{POD_NETWORK.host}:",
        f"[::ffff:{POD_NETWORK.host}]:",
    )
    seen = 0
    for line in listening:
        pids = {int(p.split("=")[1]) for p in line.split("users:")[-1].split(",") if "pid=" in p}
        if pids & ours:
            seen += 1
            local = line.split()[4]
            assert local.startswith(allowed), line
    assert seen >= len(SERVICES)  # every server was looked at (most have several sockets)
