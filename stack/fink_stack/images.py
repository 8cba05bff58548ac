"""The project's images on the real node: built locally from images/*/Containerfile, imported.

Users with Docker build the same files (`docker build -f images/pipeline/Containerfile .`);
the local stack builds them with imagebuild (no Docker, no registry) and imports
them into the node's containerd, in the k8s.io namespace the kubelet uses,
pinned so that the kubelet's image garbage collection never removes them.
Pods use them with imagePullPolicy Never or IfNotPresent. The sandbox image
(registry.k8s.io/pause) is made the same way from the pause program compiled
from the Kubernetes source.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import imagebuild, node_artefacts, versions
from .artefacts import Artefact, BuildError, file_lock
from .imagebuild import ImageRecord, ImageSpec
from .ocilayout import LAYER_MEDIA_TYPE, Blob, image_documents, write_layer, write_layout_tar

REPOSITORY = Path(__file__).resolve().parents[2]  # the clone: stack/fink_stack/images.py
NAMESPACE = "k8s.io"  # containerd namespace of the CRI, hence of the kubelet's pods

PIPELINE = ImageSpec(
    "pipeline",
    "docker.io/fink-k8s/pipeline:dev",
    REPOSITORY / "images" / "pipeline" / "Containerfile",
    REPOSITORY,
)
OPERATOR = ImageSpec(
    "operator",
    "docker.io/fink-k8s/operator:dev",
    REPOSITORY / "images" / "operator" / "Containerfile",
    REPOSITORY,
)
PROJECT_IMAGES = (PIPELINE, OPERATOR)
PAUSE_REFERENCE = f"registry.k8s.io/pause:{versions.PAUSE}"


class ContainerImage(Artefact):
    """A project image as a cache artefact: ready when its last step's record exists.

    Its key changes with the Containerfile, with the files its COPY steps send,
    and with the base; `ensure` rebuilds only the steps whose keys changed.
    """

    def __init__(self, spec: ImageSpec) -> None:
        self.spec = spec
        super().__init__(name=f"image-{spec.name}", recipe=str(spec.containerfile))

    def plan(self) -> imagebuild.Plan:
        return imagebuild.plan(self.spec)

    @property
    def key(self) -> str:
        return f"image-{self.spec.name}-{self.plan().key[:12]}"

    def path(self, cache: Path) -> Path:
        return imagebuild.record_dir(self.plan(), cache)

    def is_ready(self, cache: Path) -> bool:
        return (self.path(cache) / ".complete").exists()

    def ensure(self, cache: Path) -> Path:
        plan = self.plan()
        log = cache / "logs" / f"image-{self.spec.name}-{plan.key[:12]}.log"
        with file_lock(cache / "locks" / f"image-{self.spec.name}.lock"):
            imagebuild.build(plan, cache, log)
            return imagebuild.assemble(plan, cache).directory

    def record(self, cache: Path) -> ImageRecord:
        return ImageRecord(self.path(cache))


class PauseImage(Artefact):
    """registry.k8s.io/pause:<PAUSE> from the compiled pause program: one layer, /pause."""

    def __init__(self) -> None:
        super().__init__(
            name=f"image-pause-{versions.PAUSE}", recipe=f"{node_artefacts.PAUSE.key} v1"
        )

    def assemble(self, work: Path, log: Path) -> None:
        node_artefacts.PAUSE.ensure(work.parent)
        root = work / "rootfs"
        root.mkdir()
        shutil.copy2(node_artefacts.PAUSE.binary(work.parent), root / "pause")
        digest, size = write_layer(root, work / "layer.tar")
        shutil.rmtree(root)
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        layer = {"digest": digest, "size": size, "path": str(self._final(work) / "layer.tar")}
        config = {
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535", "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [digest]},
            "history": [{"created": created, "created_by": "gcc -static pause.c (Kubernetes)"}],
        }
        blob = Blob(digest, size, LAYER_MEDIA_TYPE, path=work / "layer.tar")
        config_blob, manifest_blob, index = image_documents(config, [blob], PAUSE_REFERENCE)
        assert config_blob.data is not None and manifest_blob.data is not None
        (work / "config.json").write_bytes(config_blob.data)
        (work / "manifest.json").write_bytes(manifest_blob.data)
        (work / "index.json").write_text(json.dumps(index, indent=1))
        (work / "image.json").write_text(
            json.dumps(
                {
                    "reference": PAUSE_REFERENCE,
                    "manifest_digest": manifest_blob.digest,
                    "layers": [layer],
                }
            )
        )

    def _final(self, work: Path) -> Path:
        return work.parent / self.key  # where ensure() renames the work directory

    def record(self, cache: Path) -> ImageRecord:
        return ImageRecord(self.path(cache))


PAUSE_IMAGE = PauseImage()
IMAGE_ARTEFACTS: tuple[ContainerImage, ...] = tuple(ContainerImage(s) for s in PROJECT_IMAGES)


# ---------------------------------------------------------------- containerd


@dataclass(frozen=True)
class Containerd:
    """How to reach the node's containerd with ctr."""

    ctr: Path
    address: Path

    def run(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.ctr), "--address", str(self.address), "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            **kwargs,  # type: ignore[arg-type]
        )

    def image_digest(self, reference: str) -> str | None:
        """The target digest containerd has under this name, if any."""
        listed = self.run("images", "ls", f"name=={reference}")
        for line in listed.stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == reference:
                return next((f for f in fields if f.startswith("sha256:")), None)
        return None

    def import_image(self, record: ImageRecord, log: Path) -> None:
        """Stream the image's OCI layout into `ctr images import -` and pin it."""
        reference = record.read("image.json")["reference"]
        with log.open("ab") as out:
            importer = subprocess.Popen(
                [
                    str(self.ctr),
                    "--address",
                    str(self.address),
                    "--namespace",
                    NAMESPACE,
                    "images",
                    "import",
                    "-",
                ],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            assert importer.stdin is not None
            try:
                write_layout_tar(importer.stdin, record.blobs(), record.index())
            except BrokenPipeError:
                pass
            finally:
                importer.stdin.close()
            if importer.wait() != 0:
                raise BuildError(f"ctr could not import {reference}; see {log}")
        labelled = self.run("images", "label", reference, "io.cri-containerd.pinned=pinned")
        if labelled.returncode != 0:
            raise BuildError(f"ctr could not pin {reference}: {labelled.stderr}")


def ensure_imported(
    containerd: Containerd, records: list[ImageRecord], log: Path, report: Callable[[str], None]
) -> None:
    """Import every image whose digest containerd does not have under its name yet."""
    for record in records:
        info = record.read("image.json")
        reference, digest = info["reference"], info["manifest_digest"]
        if containerd.image_digest(reference) == digest:
            continue
        started = time.monotonic()
        containerd.import_image(record, log)
        if containerd.image_digest(reference) != digest:
            raise BuildError(f"{reference} is not in containerd after import; see {log}")
        size = sum(layer["size"] for layer in info["layers"])
        report(
            f"imported {reference.removeprefix('docker.io/')} into the node "
            f"({size / 1e9:.2f} GB in {len(info['layers'])} layers, "
            f"{time.monotonic() - started:.0f}s)"
        )


def record_of(cache: Path, spec: ImageSpec, manifest_digest: str) -> ImageRecord | None:
    """The local build of `spec` that produced this manifest, if it is still in the cache."""
    for directory in sorted((cache / "images" / "images").glob(f"{spec.name}-*")):
        record = ImageRecord(directory)
        if (directory / ".complete").exists() and record.manifest_digest == manifest_digest:
            return record
    return None


def save(record: ImageRecord, destination: Path) -> None:
    """Write the image as an OCI layout tar (for `docker load`, `ctr import`, a registry)."""
    with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as handle:
        write_layout_tar(handle, record.blobs(), record.index())
    Path(handle.name).rename(destination)


def prune(cache: Path, keep_digests: frozenset[str] = frozenset()) -> int:
    """Delete cached steps and image records that neither the current Containerfiles
    and sources nor the images in `keep_digests` (those on the node) use.

    Every change of pyproject.toml leaves a whole dependency layer behind (1.5 GB
    for the pipeline image), so old ones are worth removing now and then. Returns
    the bytes freed.
    """
    with contextlib.ExitStack() as locks:
        for spec in PROJECT_IMAGES:  # the locks `up` builds under
            locks.enter_context(file_lock(cache / "locks" / f"image-{spec.name}.lock"))
        plans = [ContainerImage(spec).plan() for spec in PROJECT_IMAGES]
        steps = {step.key for plan in plans for step in plan.steps}
        records = {imagebuild.record_dir(plan, cache).name for plan in plans}
        for spec in PROJECT_IMAGES:
            for digest in keep_digests:
                kept = record_of(cache, spec, digest)
                if kept is not None:
                    records.add(kept.directory.name)
                    steps.update(
                        Path(layer["path"]).parent.name
                        for layer in kept.read("image.json")["layers"]
                    )
        freed = 0
        root = cache / "images"
        for directory, keep in ((root / "steps", steps), (root / "images", records)):
            if not directory.is_dir():
                continue
            for entry in directory.iterdir():
                if entry.name not in keep:
                    freed += sum(f.lstat().st_size for f in entry.rglob("*") if f.is_file())
                    shutil.rmtree(entry, ignore_errors=True)
    return freed
