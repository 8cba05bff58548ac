"""The real node: containerd, the kubelet, kube-proxy, CoreDNS and the pod gateway.

They make the local stack a cluster that runs real pods: the kubelet (from the
same Kubernetes build as the control plane) registers node `fink-node` and
runs pods through containerd and runc; pods sit on the `fink0` bridge (CNI
bridge plugin, no masquerade) behind the pod-traffic guard (netguard), reach
Services through kube-proxy (iptables mode) and resolve names through CoreDNS,
a host process bound to the bridge's host address. The pod gateway relays the
apiserver, HBase's Thrift servers, the schema registry and HDFS from that
address to loopback.

Everything these programs let us place is under the stack's state directory
(containerd's root and state, runc's root, the kubelet's root and pod logs,
CNI configuration and address leases, network namespaces). What they change
on the host regardless is recorded before `up` and undone at `down`
(hoststate), after the node's pods are removed while containerd still runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from . import hoststate, images, netguard, pki, podnet, process
from .layout import POD_NETWORK, PORTS, Layout
from .node_artefacts import CNI_PLUGINS, CONTAINERD, COREDNS, CRICTL, KUBERNETES_NODE, RUNC
from .service import Service, http_ok, port_open

NET = POD_NETWORK
NODE_LABELS = {"type": "real", "fink.broker.dev/node": "real"}


class NodeError(RuntimeError):
    """The node cannot start safely (e.g. the pod-traffic guard is missing)."""


# ---------------------------------------------------------------- paths


def containerd_socket(layout: Layout) -> Path:
    return layout.node / "containerd" / "containerd.sock"


def containerd_client(layout: Layout) -> images.Containerd:
    return images.Containerd(CONTAINERD.binary(layout.cache, "ctr"), containerd_socket(layout))


def kubelet_root(layout: Layout) -> Path:
    return layout.node / "kubelet"


def pod_logs(layout: Layout) -> Path:
    return layout.node / "pod-logs"


def _config(layout: Layout) -> Path:
    return layout.config / "node"


def crictl(layout: Layout, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CRICTL.binary(layout.cache, "crictl")),
            "--runtime-endpoint",
            f"unix://{containerd_socket(layout)}",
            "--image-endpoint",
            f"unix://{containerd_socket(layout)}",
            "--timeout",
            "60s",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------- containerd


def _containerd_config(layout: Layout) -> str:
    node = layout.node
    runc = RUNC.binary(layout.cache, "runc")
    return f"""# written by fink-stack: every path under the stack's state directory
version = 4
root = "{node / "containerd" / "root"}"
state = "{node / "containerd" / "state"}"

[plugins.'io.containerd.server.v1.grpc']
  address = "{containerd_socket(layout)}"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "{containerd_socket(layout)}.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "{node / "containerd" / "opt"}"
[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{images.PAUSE_REFERENCE}'

[plugins.'io.containerd.cri.v1.runtime']
  # these machines lack CAP_SYS_RESOURCE: never lower a process's OOM score
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '{runc}'
        Root = '{node / "runc"}'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['{CNI_PLUGINS.bin_dir(layout.cache)}']
    conf_dir = '{node / "cni" / "net.d"}'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
"""


def _cni_config(layout: Layout) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "fink-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": NET.bridge,
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": False,  # nothing is translated to leave the machine
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NET.cidr, "gateway": NET.host}]],
                    "dataDir": str(layout.node / "cni" / "networks"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _prepare_containerd(layout: Layout) -> None:
    """Before anything of the node runs: record the host, guard pod traffic, write configs."""
    if not podnet.available():
        raise NodeError("the real node needs root (it creates a bridge, cgroups and mounts)")
    hoststate.record_once(layout)
    podnet.ensure()
    netguard.install()
    conf = layout.node / "cni" / "net.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "10-fink-pods.conflist").write_text(json.dumps(_cni_config(layout), indent=1))
    # no pod survives `down`, so no address lease may either
    subprocess.run(["rm", "-rf", str(layout.node / "cni" / "networks")], check=False)
    config = _config(layout)
    config.mkdir(parents=True, exist_ok=True)
    (config / "containerd.toml").write_text(_containerd_config(layout))


def _containerd_argv(layout: Layout) -> list[str]:
    return [
        str(CONTAINERD.binary(layout.cache, "containerd")),
        "--config",
        str(_config(layout) / "containerd.toml"),
    ]


def _containerd_environment(layout: Layout) -> dict[str, str]:
    # the runc shim is found on PATH
    path = f"{CONTAINERD.bin_dir(layout.cache)}:{RUNC.bin_dir(layout.cache)}"
    return {"PATH": f"{path}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _containerd_ready(layout: Layout) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(1)
            client.connect(str(containerd_socket(layout)))
    except OSError:
        return False
    return containerd_client(layout).run("version").returncode == 0


def _remove_pods(layout: Layout) -> None:
    """While containerd runs: stop and remove every pod, so CNI releases its network."""
    if _containerd_ready(layout):
        crictl(layout, "rmp", "--all", "--force", timeout=300)


def _restore_host(layout: Layout) -> None:
    """Once containerd is gone: leftover processes, cgroups, mounts, rules, sysctls, paths."""
    marker = f"fink-stack/containerd@{layout.state}"
    for pid in process.find_marked(marker):  # runc shims inherit containerd's marker
        process.kill(pid)
    before = hoststate.recorded(layout) or {}
    hoststate.kill_and_remove_cgroups(
        hoststate.our_cgroups() + hoststate.new_foreign_cgroups(before)
    )
    hoststate.unmount_under([layout.node, *map(Path, hoststate.MOUNT_ROOTS)])
    netguard.remove()
    if before:
        hoststate.remove_new_chains(before, ("KUBE-", "CNI-"))
        hoststate.restore_sysctls(before)
        hoststate.remove_new_paths(before)
    _remove_container_log_links(layout)


def _remove_container_log_links(layout: Layout) -> None:
    """/var/log/containers is fixed in the kubelet: drop its links into our pod logs."""
    links = Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        if link.is_symlink() and os.readlink(link).startswith(str(pod_logs(layout))):
            link.unlink()


# ---------------------------------------------------------------- kubelet


def _kubelet_config(layout: Layout) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NET.host,  # the apiserver reaches the kubelet (logs, exec) here
        "port": PORTS.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": PORTS.kubelet_healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{containerd_socket(layout)}",
        # cgroup v1 here: allowed explicitly; pods' cgroups all under one root we remove at down
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{hoststate.CGROUP_ROOT_NAME}",
        "failSwapOn": False,
        # no CAP_SYS_RESOURCE on these machines: keep the kubelet's own OOM score
        "oomScoreAdj": 0,
        "clusterDNS": [NET.dns_service_ip],
        "clusterDomain": NET.cluster_domain,
        "resolvConf": str(_config(layout) / "resolv.conf"),
        "podLogsDir": str(pod_logs(layout)),
        "makeIPTablesUtilChains": False,
        "maxPods": 40,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "registerNode": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
    }


def _cgroup_root_ready() -> None:
    """The kubelet's --cgroup-root must exist in every hierarchy (cpuset: with CPUs and memory)."""
    for hierarchy in hoststate.cgroup_hierarchies():
        root = hierarchy / hoststate.CGROUP_ROOT_NAME
        root.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            parent_value = hierarchy / name
            if parent_value.exists() and not (root / name).read_text().strip():
                (root / name).write_text(parent_value.read_text())


def _prepare_kubelet(layout: Layout) -> None:
    if not netguard.installed():
        raise NodeError(
            "the pod-traffic guard (iptables FINK-POD-* chains) is not installed: "
            "the kubelet does not start without it (see netguard)"
        )
    pki.ensure_node_pki(layout.pki, NET.node_name, NET.host)
    server = f"https://127.0.0.1:{PORTS.apiserver}"
    config = _config(layout)
    pki.write_kubeconfig(config / "kubelet.kubeconfig", layout.pki, server, f"node-{NET.node_name}")
    (config / "kubelet.yaml").write_text(yaml.safe_dump(_kubelet_config(layout), sort_keys=False))
    # pods with dnsPolicy Default resolve through the cluster DNS too: no name leaves the machine
    (config / "resolv.conf").write_text(f"nameserver {NET.host}\n")
    pod_logs(layout).mkdir(parents=True, exist_ok=True)
    _cgroup_root_ready()
    images.ensure_imported(
        containerd_client(layout),
        [images.PAUSE_IMAGE.record(layout.cache)],
        _import_log(layout),
        lambda line: None,
    )


def _kubelet_argv(layout: Layout) -> list[str]:
    config = _config(layout)
    return [
        str(KUBERNETES_NODE.binary(layout.cache, "kubelet")),
        f"--config={config / 'kubelet.yaml'}",
        f"--kubeconfig={config / 'kubelet.kubeconfig'}",
        f"--root-dir={kubelet_root(layout)}",
        f"--cert-dir={kubelet_root(layout) / 'pki'}",  # not derived from --root-dir
        f"--hostname-override={NET.node_name}",
        f"--node-ip={NET.host}",
        "--node-labels=" + ",".join(f"{k}={v}" for k, v in NODE_LABELS.items()),
        "--v=1",
    ]


def _kubelet_ready(layout: Layout) -> bool:
    if not http_ok(f"http://127.0.0.1:{PORTS.kubelet_healthz}/healthz"):
        return False
    from kubernetes import client, config

    try:
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(layout.kubeconfig)))
        node = api.read_node(NET.node_name)
    except Exception:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


# ---------------------------------------------------------------- kube-proxy


def _kube_proxy_config(layout: Layout) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig)},
        "hostnameOverride": NET.node_name,
        "bindAddress": NET.host,
        "healthzBindAddress": f"127.0.0.1:{PORTS.kube_proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{PORTS.kube_proxy_metrics}",
        "mode": "iptables",
        "clusterCIDR": NET.cidr,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{NET.host}/32"],
        "oomScoreAdj": 0,
        # leave the host's sysctls alone: no route_localnet, no conntrack tuning
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def _prepare_kube_proxy(layout: Layout) -> None:
    config = _config(layout)
    config.mkdir(parents=True, exist_ok=True)
    (config / "kube-proxy.yaml").write_text(
        yaml.safe_dump(_kube_proxy_config(layout), sort_keys=False)
    )


def _kube_proxy_argv(layout: Layout) -> list[str]:
    return [
        str(KUBERNETES_NODE.binary(layout.cache, "kube-proxy")),
        f"--config={_config(layout) / 'kube-proxy.yaml'}",
        "--v=1",
    ]


def _kube_proxy_cleanup(layout: Layout) -> None:
    """kube-proxy's own way to remove every rule it made."""
    binary = KUBERNETES_NODE.binary(layout.cache, "kube-proxy")
    if binary.exists():
        with layout.log_of("kube-proxy").open("ab") as out:
            subprocess.run([str(binary), "--cleanup"], stdout=out, stderr=subprocess.STDOUT)


# ---------------------------------------------------------------- CoreDNS


def _corefile(layout: Layout) -> str:
    domain = NET.cluster_domain
    return f"""# written by fink-stack: cluster names and the stack's host; every other name is NXDOMAIN
{domain}:{PORTS.dns} in-addr.arpa:{PORTS.dns} ip6.arpa:{PORTS.dns} {{
    bind {NET.host}
    errors
    ready 127.0.0.1:{PORTS.coredns_ready}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        kubeconfig {layout.kubeconfig} fink-local
        pods insecure
        ttl 5
    }}
    cache 5
}}
.:{PORTS.dns} {{
    bind {NET.host}
    errors
    template IN A {NET.host_name} {{
        answer "{{{{ .Name }}}} 60 IN A {NET.host}"
    }}
    template IN AAAA {NET.host_name} {{
        rcode NOERROR
    }}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""


def _prepare_coredns(layout: Layout) -> None:
    config = _config(layout)
    config.mkdir(parents=True, exist_ok=True)
    (config / "Corefile").write_text(_corefile(layout))


def _coredns_argv(layout: Layout) -> list[str]:
    return [
        str(COREDNS.binary(layout.cache, "coredns")),
        "-conf",
        str(_config(layout) / "Corefile"),
    ]


def _register_kube_dns(layout: Layout) -> None:
    """The kube-dns Service, selector-less, pointing at CoreDNS on the bridge address."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = config.new_client_from_config(config_file=str(layout.kubeconfig))
    ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns"},
        },
        "spec": {
            "clusterIP": NET.dns_service_ip,
            "ports": [{"name": n, "port": PORTS.dns, "protocol": p} for n, p in ports],
        },
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-fink-stack",
            "namespace": "kube-system",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "fink-stack",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [NET.host], "conditions": {"ready": True}}],
        "ports": [{"name": n, "port": PORTS.dns, "protocol": p} for n, p in ports],
    }
    core = client.CoreV1Api(api)
    discovery = client.DiscoveryV1Api(api)
    # read first: creating a Service whose cluster IP is taken fails with 422, not 409
    for read, create in (
        (
            lambda: core.read_namespaced_service("kube-dns", "kube-system"),
            lambda: core.create_namespaced_service("kube-system", service),
        ),
        (
            lambda: discovery.read_namespaced_endpoint_slice("kube-dns-fink-stack", "kube-system"),
            lambda: discovery.create_namespaced_endpoint_slice("kube-system", slice_),
        ),
    ):
        try:
            read()
            continue
        except ApiException as error:
            if error.status != 404:
                raise
        try:
            create()
        except ApiException as error:
            if error.status != 409:
                raise


def _coredns_ready(layout: Layout) -> bool:
    return http_ok(f"http://127.0.0.1:{PORTS.coredns_ready}/ready")


# ---------------------------------------------------------------- pod gateway

RELAYED_PORTS = (
    PORTS.apiserver,
    PORTS.hbase_thrift,
    PORTS.hbase_thrift2,
    PORTS.schema_registry,
    PORTS.hdfs_namenode,  # HDFS: the NameNode's RPC and the DataNode's block transfer
    PORTS.hdfs_datanode,
)


def _gateway_argv(layout: Layout) -> list[str]:
    import sys

    # the environment's `python`, not sys.executable: `fink-stack` (python3.11) and a
    # script run with `python` would otherwise see a changed command line and restart it
    return [
        str(Path(sys.prefix) / "bin" / "python"),
        "-m",
        "fink_stack.relay",
        *[f"{NET.host}:{port}=127.0.0.1:{port}" for port in RELAYED_PORTS],
    ]


def _gateway_ready(layout: Layout) -> bool:
    return all(port_open(port, NET.host) for port in RELAYED_PORTS)


def _import_log(layout: Layout) -> Path:
    return layout.log_of("images")


def ensure_images(layout: Layout, report: Callable[[str], None]) -> None:
    """Import the project's images (built by then) and the sandbox image into containerd."""
    records = [images.PAUSE_IMAGE.record(layout.cache)]
    # ensure() again: cheap when built, and it builds what changed since (source edited
    # while `up` ran), so what is imported always matches the source as it is now
    records += [images.ImageRecord(i.ensure(layout.cache)) for i in images.IMAGE_ARTEFACTS]
    images.ensure_imported(containerd_client(layout), records, _import_log(layout), report)


# ---------------------------------------------------------------- registry

NODE_SERVICES: tuple[Service, ...] = (
    Service(
        "containerd",
        "node",
        (),
        _containerd_argv,
        _containerd_ready,
        prepare=_prepare_containerd,
        environment=_containerd_environment,
        before_stop=_remove_pods,
        after_stop=_restore_host,
        startup_seconds=60,
    ),
    Service(
        "pod-gateway",
        "node",
        ("containerd",),  # after the bridge and its guard exist
        _gateway_argv,
        _gateway_ready,
        port=PORTS.apiserver,
        host=NET.host,
        startup_seconds=20,
    ),
    Service(
        "coredns",
        "node",
        ("kube-apiserver", "containerd"),
        _coredns_argv,
        _coredns_ready,
        prepare=_prepare_coredns,
        after_start=_register_kube_dns,
        port=PORTS.dns,
        host=NET.host,
        startup_seconds=60,
    ),
    Service(
        "kubelet",
        "node",
        ("kube-apiserver", "containerd", "pod-gateway", "coredns"),
        _kubelet_argv,
        _kubelet_ready,
        prepare=_prepare_kubelet,
        port=PORTS.kubelet_healthz,
        startup_seconds=120,
    ),
    Service(
        "kube-proxy",
        "node",
        ("kube-apiserver", "kubelet"),  # it reports unhealthy until its node exists
        _kube_proxy_argv,
        lambda layout: http_ok(f"http://127.0.0.1:{PORTS.kube_proxy_healthz}/healthz"),
        prepare=_prepare_kube_proxy,
        after_stop=_kube_proxy_cleanup,
        port=PORTS.kube_proxy_healthz,
        startup_seconds=60,
    ),
)
