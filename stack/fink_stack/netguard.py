"""The guard that keeps every pod packet on this machine.

The CNI bridge plugin turns on IP forwarding, and the FORWARD policy is ACCEPT:
without a guard, a pod connecting to any address that is not local would be
routed out of the machine's external interface. These machines allow traffic
only to loopback and to the pods' own network namespaces, so before the first
pod can start, `up` installs (and the kubelet refuses to start without):

- filter FORWARD -> FINK-POD-FORWARD: anything from the bridge that would leave
  by another interface is rejected at once (the pod sees "no route to host"
  immediately instead of a time-out somewhere outside);
- filter INPUT -> FINK-POD-INPUT: pods reach the host only at the bridge's host
  address (where the stack's servers listen for them), not at the machine's
  other addresses;
- mangle POSTROUTING -> FINK-POD-EGRESS: a backstop that drops any packet with a
  pod-network source address leaving by an interface other than the bridge (or
  loopback, for the host's own connections to the bridge address), whatever a
  later rule in filter (kube-proxy's, the kubelet's) accepted;
- ip6tables FORWARD -> FINK-POD-FORWARD: the same for IPv6.

IP masquerade stays off (the CNI config says ipMasq: false). `down` removes
all of it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from .layout import POD_NETWORK

COMMENT = ["-m", "comment", "--comment", "fink-stack pod guard"]
REJECT = ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]


class GuardError(RuntimeError):
    """The guard could not be installed: no pod may start."""


@dataclass(frozen=True)
class Chain:
    tool: str  # iptables or ip6tables
    table: str
    hook: str  # the built-in chain that jumps to ours
    name: str
    rules: tuple[tuple[str, ...], ...]

    def jump(self) -> list[str]:
        return [self.hook, *COMMENT, "-j", self.name]


def chains() -> tuple[Chain, ...]:
    bridge, cidr, host = POD_NETWORK.bridge, POD_NETWORK.cidr, POD_NETWORK.host
    return (
        Chain(
            "iptables",
            "filter",
            "FORWARD",
            "FINK-POD-FORWARD",
            (
                ("-i", bridge, "!", "-o", bridge, *COMMENT, *REJECT),
                ("-s", cidr, "!", "-o", bridge, *COMMENT, *REJECT),
            ),
        ),
        Chain(
            "iptables",
            "filter",
            "INPUT",
            "FINK-POD-INPUT",
            (("-i", bridge, "!", "-d", f"{host}/32", *COMMENT, *REJECT),),
        ),
        Chain(
            "iptables",
            "mangle",
            "POSTROUTING",
            "FINK-POD-EGRESS",
            (
                # the host's own traffic to the bridge address goes by loopback
                ("-o", "lo", *COMMENT, "-j", "RETURN"),
                ("-s", cidr, "!", "-o", bridge, *COMMENT, "-j", "DROP"),
            ),
        ),
        Chain(
            "ip6tables",
            "filter",
            "FORWARD",
            "FINK-POD-FORWARD",
            (("-i", bridge, "!", "-o", bridge, *COMMENT, "-j", "DROP"),),
        ),
    )


def _run(chain: Chain, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chain.tool, "-w", "5", "-t", chain.table, *args], capture_output=True, text=True
    )


def _chain_exists(chain: Chain) -> bool:
    return _run(chain, "-S", chain.name).returncode == 0


def _rules_present(chain: Chain) -> bool:
    if not _chain_exists(chain):
        return False
    return all(_run(chain, "-C", chain.name, *rule).returncode == 0 for rule in chain.rules)


def _jump_present(chain: Chain) -> bool:
    return _run(chain, "-C", *chain.jump()).returncode == 0


def installed() -> bool:
    """Every chain of the guard exists with its rules, and its hook jumps to it."""
    if shutil.which("iptables") is None:
        return False
    return all(_rules_present(c) and _jump_present(c) for c in chains())


def install() -> None:
    """Create the chains and insert their jumps first in their hooks (idempotent)."""
    for tool in {c.tool for c in chains()}:
        if shutil.which(tool) is None:
            raise GuardError(f"{tool} is not installed: cannot guard pod traffic")
    for chain in chains():
        if not _rules_present(chain):
            if _chain_exists(chain):
                _run(chain, "-F", chain.name)
            else:
                _check(chain, _run(chain, "-N", chain.name))
            for rule in chain.rules:
                _check(chain, _run(chain, "-A", chain.name, *rule))
        if not _jump_present(chain):
            _check(chain, _run(chain, "-I", chain.jump()[0], "1", *chain.jump()[1:]))
    if not installed():
        raise GuardError("the pod traffic guard is incomplete after installing it")


def remove() -> None:
    """Delete the jumps and the chains; nothing else is touched."""
    if shutil.which("iptables") is None:
        return
    for chain in chains():
        if shutil.which(chain.tool) is None:
            continue
        while _jump_present(chain):
            if _run(chain, "-D", *chain.jump()).returncode != 0:
                break
        if _chain_exists(chain):
            _run(chain, "-F", chain.name)
            _run(chain, "-X", chain.name)


def rejected_packets() -> int:
    """Packets the IPv4 FORWARD guard has rejected so far (what a test watches grow)."""
    chain = chains()[0]
    listed = _run(chain, "-L", chain.name, "-v", "-x", "-n")
    total = 0
    for line in listed.stdout.splitlines()[2:]:
        fields = line.split()
        if fields and fields[0].isdigit():
            total += int(fields[0])
    return total


def _check(chain: Chain, result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise GuardError(
            f"{chain.tool} -t {chain.table} ({chain.name}) failed: {result.stderr.strip()}"
        )
