"""How RUN steps of the local image build reach the package registries: as the host does.

A chroot shares the host's network, but not its configuration: on machines
whose registries are reached through a configured index, a proxy or a
private certificate authority, pip, apt and Java inside the image would fail
where the host's clients work. So each RUN step sees, at build time only,
the host's settings for those clients:

- pip: the index, extra index, trusted hosts, time-out, proxy and certificate
  bundle from /etc/pip.conf, ~/.config/pip/pip.conf, ~/.pip/pip.conf,
  $PIP_CONFIG_FILE and PIP_* variables (files they name are copied in);
- Python's TLS (urllib, requests): SSL_CERT_FILE / REQUESTS_CA_BUNDLE;
- apt: the host's `Acquire::` settings (proxy, validity checks), through
  APT_CONFIG;
- Java: the host's trust store, through JAVA_TOOL_OPTIONS;
- HTTP(S)_PROXY / NO_PROXY.

They live in a directory bind-mounted read-only at /run/fink-build for the
step and are never part of a layer or of the image's configuration: a Docker
build of the same Containerfile gets the same packages from the same names.
"""

from __future__ import annotations

import configparser
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

MOUNT_POINT = "/run/fink-build"

_PIP_KEYS = {
    "index-url": "PIP_INDEX_URL",
    "extra-index-url": "PIP_EXTRA_INDEX_URL",
    "trusted-host": "PIP_TRUSTED_HOST",
    "default-timeout": "PIP_DEFAULT_TIMEOUT",
    "timeout": "PIP_TIMEOUT",
    "retries": "PIP_RETRIES",
    "proxy": "PIP_PROXY",
}
_PIP_FILES = {"cert": "PIP_CERT", "client-cert": "PIP_CLIENT_CERT"}
_PASSED_THROUGH = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


@dataclass
class BuildEnvironment:
    """Variables for RUN steps, and the files they name (host path -> name under MOUNT_POINT)."""

    variables: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def add_file(self, name: str, source: Path) -> str:
        self.files[name] = source
        return f"{MOUNT_POINT}/{name}"

    def populate(self, directory: Path) -> None:
        """Copy the files into the directory that will be mounted at MOUNT_POINT."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, source in self.files.items():
            shutil.copyfile(source, directory / name)


def pip_settings(environ: dict[str, str], home: Path) -> dict[str, str]:
    """pip's global/install settings from its config files, then PIP_* variables (which win)."""
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf", home / ".config" / "pip" / "pip.conf"]
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    settings: dict[str, str] = {}
    for path in files:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path)
        except configparser.Error:
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                settings.update({k: v.strip() for k, v in parser.items(section)})
    for key in (*_PIP_KEYS, *_PIP_FILES, "find-links"):
        variable = "PIP_" + key.upper().replace("-", "_")
        if environ.get(variable):
            settings[key] = environ[variable]
    return settings


def host_apt_acquire_settings(apt_dir: Path = Path("/etc/apt")) -> str:
    """The host's apt configuration statements about fetching (Acquire::...)."""
    lines = []
    for path in [apt_dir / "apt.conf", *sorted((apt_dir / "apt.conf.d").glob("*"))]:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        lines += [line for line in text.splitlines() if line.strip().startswith("Acquire::")]
    return "\n".join(lines) + "\n"


def host_java_truststore() -> Path | None:
    for candidate in (
        Path("/etc/ssl/certs/java/cacerts"),
        Path(os.environ.get("JAVA_HOME", "/nonexistent")) / "lib" / "security" / "cacerts",
    ):
        if candidate.is_file():
            return candidate
    return None


def from_host(work: Path) -> BuildEnvironment:
    """The build environment mirroring this host's package clients; files staged in work."""
    environ = dict(os.environ)
    env = BuildEnvironment()
    settings = pip_settings(environ, Path.home())
    for key, variable in _PIP_KEYS.items():
        if settings.get(key):
            env.variables[variable] = settings[key]
    for key, variable in _PIP_FILES.items():
        if settings.get(key) and Path(settings[key]).is_file():
            env.variables[variable] = env.add_file(f"pip-{key}.pem", Path(settings[key]))
    bundle = environ.get("SSL_CERT_FILE") or environ.get("REQUESTS_CA_BUNDLE")
    if bundle and Path(bundle).is_file():
        mounted = env.add_file("ca-certificates.crt", Path(bundle))
        env.variables["SSL_CERT_FILE"] = mounted
        env.variables["REQUESTS_CA_BUNDLE"] = mounted
    apt = work / "apt.conf"
    apt.parent.mkdir(parents=True, exist_ok=True)
    apt.write_text(host_apt_acquire_settings())
    env.variables["APT_CONFIG"] = env.add_file("apt.conf", apt)
    truststore = host_java_truststore()
    if truststore is not None:
        mounted = env.add_file("java-cacerts", truststore)
        env.variables["JAVA_TOOL_OPTIONS"] = (
            f"-Djavax.net.ssl.trustStore={mounted} -Djavax.net.ssl.trustStorePassword=changeit"
        )
    for variable in _PASSED_THROUGH:
        if environ.get(variable):
            env.variables[variable] = environ[variable]
    return env
