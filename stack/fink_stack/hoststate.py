"""What the real node changes on the host, recorded before `up` and put back at `down`.

A kubelet, containerd and CNI assume they own the machine: the kubelet sets
kernel sysctls (vm.overcommit_memory, kernel.panic, ...), the bridge plugin
turns on IP forwarding, they create iptables chains, cgroups, mounts and
directories outside any configured path (/var/log/containers, the CNI cache
under /var/lib/cni). The stack configures everything it can under its state
directory; for the rest, `up` records the host as it found it (once, in
host-before.json) and `down` restores exactly that: sysctl values, KUBE-*
chains that were not there, cgroup directories, mounts and directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .layout import Layout

SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)

# Paths the node's components create whatever they are told (or that a
# misconfiguration would make them create): removed at `down` unless they existed.
OUTSIDE_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/run/netns",
    "/run/nri",
    "/run/runc",
    "/etc/cni",
    "/opt/cni",
    "/etc/kubernetes",
    "/var/lib/kube-proxy",
)

# Directories of the machine under which the node may leave mounts behind
MOUNT_ROOTS = ("/var/lib/kubelet", "/run/containerd", "/run/netns")

CGROUP_ROOT_NAME = "fink-stack"  # the kubelet's --cgroup-root: every pod cgroup is under it
FOREIGN_CGROUP_NAMES = ("kubepods", "kubepods.slice", "k8s.io")  # made by defaults, if ever


def record_path(layout: Layout) -> Path:
    return layout.state / "host-before.json"


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> bool:
    try:
        Path("/proc/sys", *name.split(".")).write_text(value + "\n")
    except OSError:
        return False
    return True


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (v1: one per controller; v2: the one root)."""
    hierarchies = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
            hierarchies.append(Path(fields[1]))
    return sorted(set(hierarchies))


def top_cgroups() -> dict[str, list[str]]:
    return {str(h): sorted(p.name for p in h.iterdir() if p.is_dir()) for h in cgroup_hierarchies()}


def iptables_chains() -> dict[str, list[str]]:
    """Chain names per tool and table, as iptables-save lists them."""
    chains: dict[str, list[str]] = {}
    for tool in ("iptables", "ip6tables"):
        if shutil.which(f"{tool}-save") is None:
            continue
        dump = subprocess.run([f"{tool}-save"], capture_output=True, text=True).stdout
        table = ""
        for line in dump.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                chains.setdefault(f"{tool}/{table}", []).append(line[1:].split()[0])
    return chains


def network_links() -> list[str]:
    shown = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    return sorted(line.split(":")[1].strip().split("@")[0] for line in shown.stdout.splitlines())


def iptables_tables() -> dict[str, list[str]]:
    """The tables each tool shows (with the nft backend, a table exists once anything used it)."""
    return {
        tool: [key.split("/")[1] for key in iptables_chains() if key.startswith(f"{tool}/")]
        for tool in ("iptables", "ip6tables")
    }


def snapshot() -> dict[str, object]:
    return {
        "links": network_links(),
        "iptables_tables": iptables_tables(),
        "sysctls": {name: read_sysctl(name) for name in SYSCTLS},
        "paths": {path: os.path.lexists(path) for path in OUTSIDE_PATHS},
        "cgroups": top_cgroups(),
        "iptables_chains": iptables_chains(),
    }


def record_once(layout: Layout) -> None:
    """Remember the host as `up` first found it; later `up`s keep that first record."""
    path = record_path(layout)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(snapshot(), indent=1, sort_keys=True))
    temporary.rename(path)


def recorded(layout: Layout) -> dict[str, object] | None:
    try:
        return json.loads(record_path(layout).read_text())
    except (FileNotFoundError, ValueError):
        return None


# ---------------------------------------------------------------- restoring


def restore_sysctls(before: dict[str, object]) -> None:
    values = before.get("sysctls", {})
    assert isinstance(values, dict)
    # ip_forward first: writing it resets every interface's forwarding flag
    for name in sorted(values, key=lambda n: n != "net.ipv4.ip_forward"):
        value = values[name]
        if value is not None and read_sysctl(name) != value:
            write_sysctl(name, value)


def remove_new_chains(before: dict[str, object], prefixes: tuple[str, ...]) -> None:
    """Delete chains with these prefixes that were not there before (and rules jumping to them).

    The kubelet's KUBE-FIREWALL & co., kube-proxy's leftovers, the CNI portmap
    plugin's CNI-HOSTPORT-* chains.
    """
    old = before.get("iptables_chains", {})
    assert isinstance(old, dict)
    for key, names in iptables_chains().items():
        tool, table = key.split("/")
        new = [n for n in names if n.startswith(prefixes) and n not in old.get(key, [])]
        if not new:
            continue
        dump = subprocess.run([f"{tool}-save", "-t", table], capture_output=True, text=True)
        for line in dump.stdout.splitlines():
            if line.startswith("-A ") and any(f"-j {n} " in line + " " for n in new):
                chain_rule = line[3:].split()
                if chain_rule[0] not in new:
                    subprocess.run(
                        _rule_delete(tool, table, line),
                        capture_output=True,
                    )
        for name in new:
            subprocess.run([tool, "-w", "5", "-t", table, "-F", name], capture_output=True)
        for name in new:
            subprocess.run([tool, "-w", "5", "-t", table, "-X", name], capture_output=True)


def remove_new_empty_tables(before: dict[str, object]) -> None:
    """Delete the (nft-backed) iptables tables `up` brought into being, once they are empty.

    A table with no rule, no chain of its own and ACCEPT policies does nothing,
    but it was not there before: with the nft backend, `nft delete table` removes it.
    """
    old = before.get("iptables_tables")
    if not isinstance(old, dict) or shutil.which("nft") is None:
        return
    family = {"iptables": "ip", "ip6tables": "ip6"}
    for tool, tables in iptables_tables().items():
        for table in tables:
            if table in old.get(tool, []):
                continue
            dump = subprocess.run([f"{tool}-save", "-t", table], capture_output=True, text=True)
            lines = dump.stdout.splitlines()
            chains = [line for line in lines if line.startswith(":")]
            if any(line.startswith("-A") for line in lines) or any(
                " ACCEPT " not in f"{line} " for line in chains
            ):
                continue
            subprocess.run(["nft", "delete", "table", family[tool], table], capture_output=True)


def _rule_delete(tool: str, table: str, saved_rule: str) -> list[str]:
    return [tool, "-w", "5", "-t", table, "-D", *shlex.split(saved_rule)[1:]]


def our_cgroups() -> list[Path]:
    """Cgroup directories of the node: the kubelet's root in every hierarchy."""
    return [h / CGROUP_ROOT_NAME for h in cgroup_hierarchies() if (h / CGROUP_ROOT_NAME).is_dir()]


def new_foreign_cgroups(before: dict[str, object]) -> list[Path]:
    old = before.get("cgroups", {})
    assert isinstance(old, dict)
    found = []
    for hierarchy in cgroup_hierarchies():
        for name in FOREIGN_CGROUP_NAMES:
            path = hierarchy / name
            if path.is_dir() and name not in old.get(str(hierarchy), []):
                found.append(path)
    return found


def kill_and_remove_cgroups(roots: list[Path]) -> list[Path]:
    """SIGKILL every process in the trees, then remove the directories, deepest first."""
    for _ in range(20):
        pids = set()
        for root in roots:
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            break
        time.sleep(0.25)
    left = []
    for root in roots:
        if not root.exists():
            continue
        directories = sorted(
            (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        )
        for directory in [*directories, root]:
            for _ in range(10):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        if root.exists():
            left.append(root)
    return left


def mounts_under(prefixes: list[Path]) -> list[str]:
    found = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
            found.append(point)
    return found


def unmount_under(prefixes: list[Path]) -> list[str]:
    """Unmount everything mounted at or below the prefixes, deepest first; return what stays."""
    for _ in range(3):
        points = sorted(set(mounts_under(prefixes)), key=lambda p: p.count("/"), reverse=True)
        if not points:
            return []
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
    return mounts_under(prefixes)


def remove_new_paths(before: dict[str, object]) -> None:
    existed = before.get("paths", {})
    assert isinstance(existed, dict)
    for path in OUTSIDE_PATHS:
        if existed.get(path) is False and os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def forget(layout: Layout) -> None:
    record_path(layout).unlink(missing_ok=True)
