"""`down` leaves the host as `up` found it, after real pods ran on the node."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config
from podrun import run_pod

from fink_stack import api, hoststate, netguard
from fink_stack.endpoints import Endpoints
from fink_stack.layout import POD_NETWORK, Layout

pytestmark = [pytest.mark.stack, pytest.mark.exclusive]  # takes the whole stack down and up


def host_snapshot() -> dict[str, object]:
    """What the node could change on the host, read from the host itself."""
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    rules6 = subprocess.run(["ip6tables-save"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    cgroups = {}
    for hierarchy in hoststate.cgroup_hierarchies():
        cgroups[str(hierarchy)] = sorted(
            str(p.relative_to(hierarchy)) for p in hierarchy.rglob("*") if p.is_dir()
        )
    return {
        "sysctls": {name: hoststate.read_sysctl(name) for name in hoststate.SYSCTLS},
        # counters and the dump's timestamps change by themselves; rules must not
        "iptables": _rules(rules) + _rules(rules6),
        "mounts": sorted(Path("/proc/mounts").read_text().splitlines()),
        "cgroups": cgroups,
        "links": sorted(re.findall(r"^\d+: ([^:@]+)", links, re.MULTILINE)),
        "paths": {p: os.path.lexists(p) for p in hoststate.OUTSIDE_PATHS},
        "container_logs": sorted(os.listdir("/var/log/containers"))
        if os.path.isdir("/var/log/containers")
        else None,
    }


def _rules(dump: str) -> list[str]:
    return [
        re.sub(r"\[\d+:\d+\]", "", line)
        for line in dump.splitlines()
        if line and not line.startswith("#")
    ]


def test_down_leaves_the_host_as_up_found_it(
    stack: Endpoints, stack_owned_by_session: bool, unique_name: str
) -> None:
    if not stack_owned_by_session:
        pytest.skip(
            "takes the whole stack down and up: runs when this session started the stack "
            "(CI), or with FINK_STACK_FULL_CYCLE=1"
        )
    api.down()
    assert not netguard.installed()
    found = host_snapshot()
    assert POD_NETWORK.bridge not in found["links"]  # type: ignore[operator]
    try:
        endpoints = api.ensure_up(quiet=True)
        assert endpoints.pods is not None
        # the node really changed the host while it ran
        assert POD_NETWORK.bridge in host_snapshot()["links"]  # type: ignore[operator]
        assert netguard.installed()
        kube = config.new_client_from_config(config_file=str(endpoints.kubeconfig))
        core = client.CoreV1Api(kube)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique_name)))
        run = run_pod(
            kube, unique_name, "probe", endpoints.pods.pipeline_image, ["sh", "-c", "echo ok"]
        )
        assert run.phase == "Succeeded", run.logs
        assert any(
            line.split()[1].startswith(str(Layout.default().node))
            for line in Path("/proc/mounts").read_text().splitlines()
        ), "no pod mounts seen while the node ran"
        api.down()
        left = host_snapshot()
        for key in found:
            assert left[key] == found[key], key
    finally:
        endpoints = api.ensure_up(quiet=True)
        kube = config.new_client_from_config(config_file=str(endpoints.kubeconfig))
        client.CoreV1Api(kube).delete_namespace(unique_name)
