"""The real node's programs, compiled once per version into the cache.

kubelet and kube-proxy come from the same Kubernetes release as the control
plane, through the same wrapper module, but as a second artefact: adding them
to the control plane's artefact would change its recipe and force its long
rebuild, while a second one reuses the Go module and build caches and compiles
only what the node adds. containerd, runc, the CNI plugins, crictl and CoreDNS
are `go install`ed from their own modules; the pause program comes from the
Kubernetes source itself (build/pause/linux/pause.c), compiled static.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import versions
from .artefacts import (
    GO_ENV,
    Artefact,
    BuildError,
    _run,
    kubernetes_ldflags,
    kubernetes_module_source,
    write_kubernetes_wrapper,
)

NODE_COMMANDS = ("kubelet", "kube-proxy")


class KubernetesNodeBinaries(Artefact):
    compiles = True

    def __init__(self) -> None:
        super().__init__(
            name=f"kubernetes-node-{versions.KUBERNETES}",
            recipe=f"k8s={versions.KUBERNETES};cmds={','.join(NODE_COMMANDS)}",
        )

    def binary(self, cache: Path, command: str) -> Path:
        return self.path(cache) / "bin" / command

    def assemble(self, work: Path, log: Path) -> None:
        _need_go("kubelet")
        k8s = versions.KUBERNETES
        src = work / "src"
        write_kubernetes_wrapper(src, k8s, NODE_COMMANDS)
        _run(["go", "get", f"k8s.io/kubernetes@{k8s}"], cwd=src, log=log, env=GO_ENV)
        _run(["go", "mod", "tidy"], cwd=src, log=log, env=GO_ENV)
        bin_dir = work / "bin"
        bin_dir.mkdir()
        _run(
            ["go", "build", "-trimpath", "-ldflags", kubernetes_ldflags(k8s), "-o", f"{bin_dir}/"]
            + [f"k8s.io/kubernetes/cmd/{c}" for c in NODE_COMMANDS],
            cwd=src,
            log=log,
            env=GO_ENV,
        )
        shutil.rmtree(src)


class GoCommands(Artefact):
    """Commands `go install`ed from one module at one version (no replace directives needed)."""

    compiles = True

    def __init__(
        self,
        name: str,
        module: str,
        version: str,
        packages: tuple[str, ...],
        *,
        cgo: bool = False,
        tags: str = "",
        ldflags: str = "-s -w",
    ) -> None:
        self.module = module
        self.version = version
        self.packages = packages
        self.cgo = cgo
        self.tags = tags
        self.ldflags = ldflags
        super().__init__(
            name=f"{name}-{version}",
            recipe=f"{module}@{version} {packages} cgo={cgo} tags={tags} {ldflags}",
        )

    def binary(self, cache: Path, command: str) -> Path:
        return self.path(cache) / "bin" / command

    def bin_dir(self, cache: Path) -> Path:
        return self.path(cache) / "bin"

    def assemble(self, work: Path, log: Path) -> None:
        _need_go(self.name)
        env = {
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "1" if self.cgo else "0",
            "GOBIN": str(work / "bin"),
        }
        targets = [f"{self.module}{'/' + p if p else ''}@{self.version}" for p in self.packages]
        argv = ["go", "install", "-trimpath", "-ldflags", self.ldflags]
        if self.tags:
            argv += ["-tags", self.tags]
        _run([*argv, *targets], cwd=work, log=log, env=env)


class PauseBinary(Artefact):
    """The sandbox's pause process, from the Kubernetes release's own pause.c."""

    compiles = True

    def __init__(self) -> None:
        super().__init__(
            name=f"pause-{versions.PAUSE}",
            recipe=f"k8s={versions.KUBERNETES};pause={versions.PAUSE};gcc -Os -static",
        )

    def binary(self, cache: Path) -> Path:
        return self.path(cache) / "bin" / "pause"

    def assemble(self, work: Path, log: Path) -> None:
        if shutil.which("gcc") is None:
            raise BuildError("gcc (with the static C library, libc6-dev) is needed for pause")
        source = kubernetes_module_source(versions.KUBERNETES) / "build/pause/linux/pause.c"
        (work / "bin").mkdir()
        _run(
            [
                "gcc",
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                f"-DVERSION=v{versions.PAUSE}",
                "-o",
                str(work / "bin" / "pause"),
                str(source),
            ],
            cwd=work,
            log=log,
        )


def _need_go(what: str) -> None:
    if shutil.which("go") is None:
        raise BuildError(f"Go is needed to build {what}; install Go >= 1.26")


KUBERNETES_NODE = KubernetesNodeBinaries()
CONTAINERD = GoCommands(
    "containerd",
    "github.com/containerd/containerd/v2",
    versions.CONTAINERD,
    ("cmd/containerd", "cmd/ctr", "cmd/containerd-shim-runc-v2"),
    cgo=True,
    ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=" + versions.CONTAINERD,
)
RUNC = GoCommands(
    "runc",
    "github.com/opencontainers/runc",
    versions.RUNC,
    ("",),
    cgo=True,
    tags="seccomp",
    ldflags=f"-s -w -X main.version={versions.RUNC.lstrip('v')}",
)
CNI_PLUGINS = GoCommands(
    "cni-plugins",
    "github.com/containernetworking/plugins",
    versions.CNI_PLUGINS,
    (
        "plugins/main/bridge",
        "plugins/ipam/host-local",
        "plugins/main/loopback",
        "plugins/meta/portmap",
    ),
)
CRICTL = GoCommands("crictl", "sigs.k8s.io/cri-tools", versions.CRICTL, ("cmd/crictl",))
COREDNS = GoCommands("coredns", "github.com/coredns/coredns", versions.COREDNS, ("",))
PAUSE = PauseBinary()

NODE_ARTEFACTS: tuple[Artefact, ...] = (
    KUBERNETES_NODE,
    CONTAINERD,
    RUNC,
    CNI_PLUGINS,
    CRICTL,
    COREDNS,
    PAUSE,
)
