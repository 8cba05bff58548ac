"""Debian packages the real node needs on the host, installed with apt-get when missing.

The node's pieces are compiled from the Go module proxy, but a few host tools
come from Debian: iptables (the pod-traffic guard and kube-proxy), debootstrap
(the images' base root filesystem), libseccomp-dev (runc is built with seccomp),
conntrack (kube-proxy clears stale UDP entries with it) and nftables (`down`
deletes the empty iptables tables `up` brought into being). `up` installs
them itself so that a fresh machine needs no manual step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

NODE_PACKAGES = ("iptables", "nftables", "debootstrap", "libseccomp-dev", "conntrack", "pkg-config")


class HostPackageError(RuntimeError):
    """A needed Debian package is missing and could not be installed."""


def missing(packages: tuple[str, ...]) -> list[str]:
    """The packages dpkg does not report as installed."""
    if shutil.which("dpkg-query") is None:
        return list(packages)
    absent = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", package],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or result.stdout.strip() != "installed":
            absent.append(package)
    return absent


def ensure(packages: tuple[str, ...], log: Path) -> list[str]:
    """Install what is missing (apt-get, as root); return what was installed."""
    absent = missing(packages)
    if not absent:
        return []
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise HostPackageError(
            f"the real node needs the Debian packages {' '.join(absent)}; "
            f"install them as root: apt-get install {' '.join(absent)}"
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *absent]
    with log.open("ab") as out:
        if subprocess.run(install, stdout=out, stderr=subprocess.STDOUT, env=env).returncode:
            # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "update", "-q"], stdout=out, stderr=subprocess.STDOUT)
            if subprocess.run(install, stdout=out, stderr=subprocess.STDOUT, env=env).returncode:
                raise HostPackageError(f"apt-get could not install {' '.join(absent)}; see {log}")
    return absent
