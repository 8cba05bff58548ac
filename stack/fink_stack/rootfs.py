"""The base of the project's images, made without a registry: Debian by debootstrap.

The Containerfiles start `FROM debian:bookworm-slim`. With no registry to pull
it from, the local builder makes the equivalent: a `debootstrap
--variant=minbase` root filesystem of the same suite, from the Debian mirror
the host's apt already uses, trimmed the way the slim image is (no manuals,
documentation or translations; apt keeps no downloaded packages and no
package lists; an empty /dev; empty /etc/resolv.conf and /etc/hostname, which
the runtime provides). It is built once per suite and recipe and cached as a
directory (the lowest layer of every build) and as its layer tar.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from . import versions
from .artefacts import Artefact, BuildError, _run
from .ocilayout import write_layer

# What `FROM` may name, and the suite the local builder makes for it
KNOWN_BASES = {f"debian:{versions.DEBIAN_SUITE}-slim": versions.DEBIAN_SUITE}

_DPKG_EXCLUDES = """# like the slim images: no manuals, documentation or translations in images
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""

_APT_SLIM = """// images keep no downloaded packages, no translations, no suggested packages
APT::Keep-Downloaded-Packages "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Acquire::Languages "none";
APT::AutoRemove::SuggestsImportant "false";
"""

RECIPE_VERSION = "1"  # bump when the trimming below changes


def host_debian_mirrors(apt_dir: Path = Path("/etc/apt")) -> tuple[str, str]:
    """The Debian archive and security mirrors the host's apt is configured with."""
    texts = []
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]:
        try:
            texts.append(path.read_text())
        except (OSError, UnicodeDecodeError):
            continue
    text = "\n".join(texts)
    uris = re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
    uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
    archive = next((u for u in uris if re.search(r"/debian/?$", u)), "http://deb.debian.org/debian")
    security = next(
        (u for u in uris if "debian-security" in u), "http://deb.debian.org/debian-security"
    )
    return archive.rstrip("/"), security.rstrip("/")


def _sources(suite: str, archive: str, security: str) -> str:
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (
        f"Types: deb\nURIs: {archive}\nSuites: {suite} {suite}-updates\nComponents: main\n"
        f"Signed-By: {keyring}\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
        f"Signed-By: {keyring}\n"
    )


class DebianBase(Artefact):
    """rootfs/ (the base's files) and layer.tar (the same, as an image layer)."""

    def __init__(self, suite: str = versions.DEBIAN_SUITE) -> None:
        self.suite = suite
        self.archive, self.security = host_debian_mirrors()
        super().__init__(
            name=f"base-debian-{suite}",
            recipe=f"debootstrap minbase {suite} {self.archive} {self.security} v{RECIPE_VERSION}",
        )

    def rootfs(self, cache: Path) -> Path:
        return self.path(cache) / "rootfs"

    def layer(self, cache: Path) -> Path:
        return self.path(cache) / "layer.tar"

    def digest(self, cache: Path) -> str:
        return (self.path(cache) / "layer.sha256").read_text().strip()

    def assemble(self, work: Path, log: Path) -> None:
        if shutil.which("debootstrap") is None:
            raise BuildError(
                "debootstrap is needed for the images' base (apt-get install debootstrap)"
            )
        if os.geteuid() != 0:
            raise BuildError("building the images' base root filesystem needs root")
        root = work / "rootfs"
        # a private mount namespace: whatever debootstrap mounts vanishes with it
        _run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "debootstrap",
                "--variant=minbase",
                "--merged-usr",
                self.suite,
                str(root),
                self.archive,
            ],
            cwd=work,
            log=log,
        )
        self._trim(root)
        digest, _size = write_layer(root, work / "layer.tar")
        (work / "layer.sha256").write_text(digest + "\n")

    def _trim(self, root: Path) -> None:
        (root / "etc/dpkg/dpkg.cfg.d/fink-slim").write_text(_DPKG_EXCLUDES)
        (root / "etc/apt/apt.conf.d/fink-slim").write_text(_APT_SLIM)
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(
            _sources(self.suite, self.archive, self.security)
        )
        for pattern in ("usr/share/man/*", "usr/share/info/*", "usr/share/groff/*"):
            for path in root.glob(pattern):
                _remove(path)
        for path in root.glob("usr/share/doc/*/*"):
            if path.name != "copyright":
                _remove(path)
        for path in root.glob("usr/share/locale/*"):
            if path.name != "locale.alias":
                _remove(path)
        for directory in ("var/lib/apt/lists", "var/cache/apt", "var/log", "dev", "tmp", "run"):
            for path in (root / directory).glob("*"):
                if path.name not in ("lock", "partial", "archives", "apt"):
                    _remove(path)
        for path in (root / "var/cache/apt").glob("*.bin"):
            _remove(path)
        (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        (root / "etc/resolv.conf").write_text("")
        (root / "etc/hostname").write_text("")
        (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
        subprocess.run(["chmod", "1777", str(root / "tmp")], check=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
