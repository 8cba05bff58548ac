"""Build or download what the stack runs, once per version, into the cache.

Each artefact is a directory under the cache named by its versions and a hash
of its recipe; it is assembled in a temporary directory and renamed into place
only when complete, so an interrupted build is simply redone next time.
Kubernetes and etcd are compiled from the Go module proxy; Kafka, HBase and the
Spark connectors are Maven Central jars.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import versions
from .process import tail


class BuildError(RuntimeError):
    """An artefact could not be built; the message names the log to read."""


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise builds and `up` between concurrent processes (tests, CLI, helpers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(
            argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    if result.returncode != 0:
        raise BuildError(
            f"`{' '.join(argv[:3])} ...` failed (exit {result.returncode}); "
            f"full log: {log}\n{tail(log)}"
        )


def _recipe_hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Artefact:
    """A cached directory produced by `assemble`."""

    name: str
    recipe: str  # anything that, if changed, must trigger a rebuild

    # a compiler build (Go, C): one at a time, as each uses every core and GBs of memory
    compiles = False

    @property
    def key(self) -> str:
        return f"{self.name}-{_recipe_hash(self.recipe)}"

    def path(self, cache: Path) -> Path:
        return cache / self.key

    def is_ready(self, cache: Path) -> bool:
        return (self.path(cache) / ".complete").exists()

    def ensure(self, cache: Path) -> Path:
        target = self.path(cache)
        if self.is_ready(cache):
            return target
        with file_lock(cache / "locks" / f"{self.key}.lock"):
            if self.is_ready(cache):
                return target
            log = cache / "logs" / f"{self.key}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{self.key}-", dir=cache))
            try:
                self.assemble(work, log)
                (work / ".complete").write_text(self.recipe)
                shutil.rmtree(target, ignore_errors=True)
                work.rename(target)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return target

    def assemble(self, work: Path, log: Path) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------- Kubernetes

K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def _staging_modules(kubernetes_go_mod: str) -> list[str]:
    """k8s.io/kubernetes maps its staging modules to ./staging; we map them to releases."""
    return re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", kubernetes_go_mod, re.MULTILINE)


def kubernetes_module_source(k8s: str) -> Path:
    """The k8s.io/kubernetes module's directory in the Go module cache (downloaded if needed)."""
    download = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{k8s}"],
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
    )
    directory = re.search(r'"Dir":\s*"([^"]+)"', download.stdout)
    if download.returncode != 0 or not directory:
        raise BuildError(f"cannot fetch k8s.io/kubernetes@{k8s}: {download.stdout[-2000:]}")
    return Path(directory.group(1))


def write_kubernetes_wrapper(
    src: Path, k8s: str, commands: tuple[str, ...], extra_imports: tuple[str, ...] = ()
) -> None:
    """A Go module requiring k8s.io/kubernetes with every staging module mapped to its release.

    k8s.io/kubernetes cannot be `go install`ed: its go.mod points staging modules
    at local directories; the wrapper replaces each with its published v0.X.Y twin.
    """
    staging_version = "v0" + k8s[2:]  # v1.36.3 -> v0.36.3
    upstream = (kubernetes_module_source(k8s) / "go.mod").read_text()
    go_line = re.search(r"^go (\S+)", upstream, re.MULTILINE)
    replaces = "\n".join(f"\t{m} => {m} {staging_version}" for m in _staging_modules(upstream))
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(
        "module local/finkstack/k8sbins\n\n"
        f"go {go_line.group(1) if go_line else '1.26.0'}\n\n"
        f"require k8s.io/kubernetes {k8s}\n\nreplace (\n{replaces}\n)\n"
    )
    imports = "\n".join(
        [f'\t_ "{i}"' for i in extra_imports]
        + [f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in commands]
    )
    (src / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")


def kubernetes_ldflags(k8s: str) -> str:
    """Stamp the version the binaries report (else they say v0.0.0-master)."""
    major, minor = k8s[1:].split(".")[:2]
    return " ".join(
        ["-s", "-w"]
        + [
            f"-X {pkg}.{var}={value}"
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
            for var, value in (("gitVersion", k8s), ("gitMajor", major), ("gitMinor", minor))
        ]
        + ["-X k8s.io/component-base/version.gitTreeState=clean"]
    )


GO_ENV = {"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}


class KubernetesBinaries(Artefact):
    """kube-apiserver & co. and etcd, compiled from the Go module proxy (see write_kubernetes_wrapper)."""

    compiles = True

    def __init__(self) -> None:
        super().__init__(
            name=f"kubernetes-{versions.KUBERNETES}-etcd-{versions.ETCD}",
            recipe=f"k8s={versions.KUBERNETES};etcd={versions.ETCD};cmds={','.join(K8S_COMMANDS)}",
        )

    def binary(self, cache: Path, command: str) -> Path:
        return self.path(cache) / "bin" / command

    def assemble(self, work: Path, log: Path) -> None:
        if shutil.which("go") is None:
            raise BuildError("Go is needed to build kube-apiserver and etcd; install Go >= 1.26")
        k8s = versions.KUBERNETES
        src = work / "src"
        write_kubernetes_wrapper(src, k8s, K8S_COMMANDS, ("go.etcd.io/etcd/server/v3",))
        _run(
            ["go", "get", f"k8s.io/kubernetes@{k8s}", f"go.etcd.io/etcd/server/v3@{versions.ETCD}"],
            cwd=src,
            log=log,
            env=GO_ENV,
        )
        _run(["go", "mod", "tidy"], cwd=src, log=log, env=GO_ENV)
        bin_dir = work / "bin"
        bin_dir.mkdir()
        _run(
            ["go", "build", "-trimpath", "-ldflags", kubernetes_ldflags(k8s), "-o", f"{bin_dir}/"]
            + [f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS],
            cwd=src,
            log=log,
            env=GO_ENV,
        )
        _run(
            [
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                str(bin_dir / "etcd"),
                "go.etcd.io/etcd/server/v3",
            ],
            cwd=src,
            log=log,
            env=GO_ENV,
        )


class GoTool(Artefact):
    """A Go command whose module can be `go install`ed as it is (no replace directives)."""

    compiles = True

    def __init__(
        self, command: str, package: str, version: str, ldflags: str = "-s -w", extra: str = ""
    ) -> None:
        self.command = command
        self.package = package
        self.version = version
        self.ldflags = ldflags
        super().__init__(
            name=f"{command}-{version}", recipe=f"{package}@{version} {ldflags} {extra}"
        )

    def binary(self, cache: Path) -> Path:
        return self.path(cache) / "bin" / self.command

    def assemble(self, work: Path, log: Path) -> None:
        if shutil.which("go") is None:
            raise BuildError(f"Go is needed to build {self.command}; install Go >= 1.26")
        env = {"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOBIN": str(work / "bin")}
        _run(
            [
                "go",
                "install",
                "-trimpath",
                "-ldflags",
                self.ldflags,
                f"{self.package}@{self.version}",
            ],
            cwd=work,
            log=log,
            env=env,
        )


class KwokTool(GoTool):
    """kwok, plus the stage files of its release: since v0.8 it runs none without them.

    The stages (node initialise and heartbeat; pod ready, complete, delete) are
    taken from the very module `go install` fetched, so they match the binary.
    """

    STAGES = (
        "node/fast/node-initialize.yaml",
        "node/heartbeat/node-heartbeat.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    )

    def __init__(self) -> None:
        super().__init__(
            "kwok", "sigs.k8s.io/kwok/cmd/kwok", versions.KWOK, extra=f"stages={self.STAGES}"
        )

    def stage_files(self, cache: Path) -> list[Path]:
        return sorted((self.path(cache) / "stages").glob("*.yaml"))

    def assemble(self, work: Path, log: Path) -> None:
        super().assemble(work, log)
        module_cache = subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
        ).stdout.strip()
        source = Path(module_cache) / f"sigs.k8s.io/kwok@{self.version}" / "kustomize" / "stage"
        (work / "stages").mkdir()
        for stage in self.STAGES:
            origin = source / stage
            if not origin.exists():
                raise BuildError(
                    f"kwok {self.version} has no stage file {stage} (looked in {source})"
                )
            (work / "stages" / origin.name).write_bytes(origin.read_bytes())


def kwok_tool() -> KwokTool:
    return KwokTool()


def helm_tool() -> GoTool:
    return GoTool(
        "helm",
        "helm.sh/helm/v3/cmd/helm",
        versions.HELM,
        ldflags=f"-s -w -X helm.sh/helm/v3/internal/version.version={versions.HELM}",
    )


# ---------------------------------------------------------------- Maven bundles


@dataclass(frozen=True)
class Dependency:
    group: str
    artifact: str
    version: str
    exclude_groups: tuple[str, ...] = ()

    def xml(self) -> str:
        exclusions = "".join(
            f"<exclusion><groupId>{g}</groupId><artifactId>*</artifactId></exclusion>"
            for g in self.exclude_groups
        )
        return (
            f"<dependency><groupId>{self.group}</groupId><artifactId>{self.artifact}</artifactId>"
            f"<version>{self.version}</version>"
            + (f"<exclusions>{exclusions}</exclusions>" if exclusions else "")
            + "</dependency>"
        )


def _log4j2() -> tuple[Dependency, ...]:
    return tuple(
        Dependency("org.apache.logging.log4j", a, versions.LOG4J)
        for a in ("log4j-core", "log4j-slf4j-impl", "log4j-1.2-api")
    )


class MavenBundle(Artefact):
    """A directory lib/ holding a set of jars and everything they need at runtime."""

    def __init__(
        self, name: str, dependencies: tuple[Dependency, ...], drop: tuple[str, ...] = ()
    ) -> None:
        self.dependencies = dependencies
        self.drop = drop  # jar name prefixes removed after resolution
        super().__init__(
            name=name, recipe="\n".join(d.xml() for d in dependencies) + f"\ndrop={drop}"
        )

    def jars(self, cache: Path) -> list[Path]:
        return sorted((self.path(cache) / "lib").glob("*.jar"))

    def classpath(self, cache: Path) -> str:
        return str(self.path(cache) / "lib" / "*")

    def assemble(self, work: Path, log: Path) -> None:
        if shutil.which("mvn") is None:
            raise BuildError("Maven (mvn) is needed to fetch Kafka/HBase/Spark jars")
        pom = work / "pom.xml"
        pom.write_text(
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>local.finkstack</groupId><artifactId>quarkus-application</artifactId>"
            "<version>1</version><packaging>pom</packaging><dependencies>"
            + "".join(d.xml() for d in self.dependencies)
            + "</dependencies></project>"
        )
        _run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={work / 'lib'}",
                "-DincludeScope=runtime",
            ],
            cwd=work,
            log=log,
        )
        for jar in (work / "lib").glob("*.jar"):
            if jar.name.startswith(self.drop) or self.is_redundant(jar):
                jar.unlink()

    def is_redundant(self, jar: Path) -> bool:
        return False


def kafka_bundle() -> MavenBundle:
    return MavenBundle(
        f"kafka-{versions.KAFKA}",
        (Dependency("org.apache.kafka", "kafka_2.13", versions.KAFKA), *_log4j2()),
    )


def hbase_bundle() -> MavenBundle:
    # hbase-thrift is published without the -hadoop3 flavour; its Hadoop 2 jars
    # are excluded so that the hadoop3 server's Hadoop 3 jars are the only ones.
    return MavenBundle(
        f"hbase-{versions.HBASE}",
        (
            Dependency("org.apache.hbase", "hbase-server", f"{versions.HBASE}-hadoop3"),
            Dependency(
                "org.apache.hbase",
                "hbase-thrift",
                versions.HBASE,
                exclude_groups=("org.apache.hadoop",),
            ),
            *_log4j2(),
        ),
        drop=("slf4j-reload4j", "reload4j"),  # a second slf4j binding beside log4j2
    )


def hdfs_bundle() -> MavenBundle:
    """A NameNode and a DataNode: hadoop-hdfs, whose pom leaves hadoop-common and
    hadoop-hdfs-client to the distribution ("provided"), so they are named here."""
    return MavenBundle(
        f"hdfs-{versions.HADOOP}",
        (
            *(
                Dependency("org.apache.hadoop", a, versions.HADOOP)
                for a in ("hadoop-hdfs", "hadoop-hdfs-client", "hadoop-common")
            ),
            *_log4j2(),
        ),
        drop=("slf4j-reload4j", "reload4j"),  # a second slf4j binding beside log4j2
    )


_VERSIONED_JAR = re.compile(r"^(?P<artifact>.+?)-\d+\.[^/]*\.jar$")


def _artifact_of(jar_name: str) -> str:
    match = _VERSIONED_JAR.match(jar_name)
    return match.group("artifact") if match else jar_name


class SparkConnectors(MavenBundle):
    """spark-sql-kafka and spark-avro for the installed pyspark, minus what pyspark ships.

    Jars that pyspark already carries (scala-library, slf4j, snappy, hadoop
    client...) are dropped so that exactly one version of each is on the
    classpath.
    """

    def __init__(self, spark: str) -> None:
        super().__init__(
            f"spark-connectors-{spark}",
            (
                Dependency("org.apache.spark", "spark-sql-kafka-0-10_2.13", spark),
                Dependency("org.apache.spark", "spark-avro_2.13", spark),
            ),
        )

    def is_redundant(self, jar: Path) -> bool:
        import pyspark

        shipped = Path(pyspark.__file__).parent / "jars"
        artifacts = {_artifact_of(j.name) for j in shipped.glob("*.jar")}
        return _artifact_of(jar.name) in artifacts


def spark_connectors() -> SparkConnectors:
    return SparkConnectors(versions.spark_version())


# ---------------------------------------------------------------- schema registry


class QuarkusApplication(Artefact):
    """A Quarkus application published only as a plain jar, made runnable (a fast-jar).

    Apicurio Registry's `-app` jar on Maven Central holds the registry's classes
    but no launcher: its releases are built by the quarkus-maven-plugin, which
    this recipe runs on a generated project that depends on that jar. The jar has
    no Jandex index, so `quarkus.index-dependency` makes its CDI beans and REST
    resources visible; its own application.properties (read from the classpath)
    stays the configuration, as in the upstream build.
    """

    def __init__(
        self,
        name: str,
        application: Dependency,
        bom: Dependency,
        quarkus: str,
        overrides: tuple[Dependency, ...] = (),
        extra: tuple[Dependency, ...] = (),
    ) -> None:
        self.application = application
        self.bom = bom  # imported: the exact versions upstream released with
        self.quarkus = quarkus
        self.overrides = overrides  # managed versions that replace the BOM's
        self.extra = extra
        super().__init__(name=name, recipe=self._pom())

    def run_jar(self, cache: Path) -> Path:
        return self.path(cache) / "quarkus-app" / "quarkus-run.jar"

    def _pom(self) -> str:
        bom = (
            f"<dependency><groupId>{self.bom.group}</groupId>"
            f"<artifactId>{self.bom.artifact}</artifactId><version>{self.bom.version}</version>"
            "<type>pom</type><scope>import</scope></dependency>"
        )
        app = self.application
        index = "quarkus.index-dependency.application"
        return (
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>local.finkstack</groupId><artifactId>quarkus-application</artifactId>"
            "<version>1</version><properties>"
            "<project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>"
            "<dependencyManagement><dependencies>"
            + bom
            + "".join(d.xml() for d in self.overrides)
            + "</dependencies></dependencyManagement><dependencies>"
            + "".join(d.xml() for d in (app, *self.extra))
            + "</dependencies><build><plugins><plugin><groupId>io.quarkus</groupId>"
            f"<artifactId>quarkus-maven-plugin</artifactId><version>{self.quarkus}</version>"
            "<executions><execution><goals><goal>build</goal></goals></execution></executions>"
            "<configuration><properties>"
            f"<{index}.group-id>{app.group}</{index}.group-id>"
            f"<{index}.artifact-id>{app.artifact}</{index}.artifact-id>"
            "</properties></configuration></plugin></plugins></build></project>"
        )

    def assemble(self, work: Path, log: Path) -> None:
        if shutil.which("mvn") is None:
            raise BuildError(f"Maven (mvn) is needed to build {self.name}")
        project = work / "project"
        project.mkdir()
        (project / "pom.xml").write_text(self._pom())
        _run(
            [
                "mvn",
                "-B",
                "-ntp",
                "-f",
                str(project / "pom.xml"),
                "package",
                # a system property: the application's own application.properties asks
                # for a legacy-jar and outranks the plugin's <properties>
                "-Dquarkus.package.type=fast-jar",
            ],
            cwd=project,
            log=log,
        )
        (project / "target" / "quarkus-app").rename(work / "quarkus-app")
        shutil.rmtree(project)


def apicurio_registry() -> QuarkusApplication:
    """Apicurio Registry with its Confluent-compatible API, from Maven Central jars.

    Two jars it names are not served here and are replaced by what is:
    - org.everit.json.schema (JSON Schema support, published on a Confluent
      repository) by its Maven Central twin com.github.erosb:everit-json-schema,
      same classes and version;
    - apicurio-common-app-components-config-index 0.1.18.Final, a Quarkus
      extension whose deployment half is not served, by 0.1.10.Final, the
      served release whose runtime and deployment halves both resolve.
    """
    version = versions.APICURIO_REGISTRY
    return QuarkusApplication(
        f"apicurio-registry-{version}",
        application=Dependency(
            "io.apicurio",
            "apicurio-registry-app",
            version,
            exclude_groups=("com.github.everit-org.json-schema",),
        ),
        bom=Dependency("io.apicurio", "apicurio-registry", version),
        quarkus=versions.QUARKUS_FOR_APICURIO,
        overrides=(
            Dependency(
                "io.apicurio", "apicurio-common-app-components-config-index", "0.1.10.Final"
            ),
        ),
        extra=(Dependency("com.github.erosb", "everit-json-schema", "1.14.2"),),
    )
