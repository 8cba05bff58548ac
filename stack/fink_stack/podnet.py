"""The pod network's bridge and its host address, made before any server starts.

Servers that pods must reach (the apiserver's endpoint, Kafka's pod listener,
CoreDNS, the Thrift relays) bind to the bridge's host address, so the address
has to exist before they start: `up` creates the bridge first. The CNI bridge
plugin later attaches pods to this same bridge. Only root can do this; without
root the stack runs as before, with no pod network and no real node.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess

from .layout import POD_NETWORK


class PodNetworkError(RuntimeError):
    """The bridge could not be created or removed."""


def available() -> bool:
    """Whether this process may create the pod network (root on Linux, with iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def bridge_exists() -> bool:
    return _ip("link", "show", "dev", POD_NETWORK.bridge).returncode == 0


def has_host_address() -> bool:
    """The bridge carries the host address servers bind to."""
    shown = _ip("-o", "-4", "addr", "show", "dev", POD_NETWORK.bridge)
    return f" {POD_NETWORK.host}/" in shown.stdout


def ensure() -> None:
    """Create the bridge with its host address (idempotent)."""
    if not bridge_exists():
        created = _ip("link", "add", POD_NETWORK.bridge, "type", "bridge")
        if created.returncode != 0 and not bridge_exists():
            raise PodNetworkError(f"cannot create bridge {POD_NETWORK.bridge}: {created.stderr}")
    if not has_host_address():
        address = f"{POD_NETWORK.host}/{POD_NETWORK.prefix_length}"
        added = _ip("addr", "add", address, "dev", POD_NETWORK.bridge)
        if added.returncode != 0 and not has_host_address():
            raise PodNetworkError(f"cannot add {address} to {POD_NETWORK.bridge}: {added.stderr}")
    _ip("link", "set", POD_NETWORK.bridge, "up")


def remove() -> bool:
    """Delete the bridge (its address and routes go with it); True if it existed."""
    if not bridge_exists():
        return False
    deleted = _ip("link", "delete", POD_NETWORK.bridge)
    if deleted.returncode != 0 and bridge_exists():
        raise PodNetworkError(f"cannot delete bridge {POD_NETWORK.bridge}: {deleted.stderr}")
    return True


def is_pod_address(address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(POD_NETWORK.cidr)
