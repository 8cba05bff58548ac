"""OCI image pieces: layer tars from overlay upper directories, config, manifest, layout tar.

A build step runs on an overlay mount whose upper directory then holds exactly
what the step changed, in overlayfs' own notation: a deleted path is a 0/0
character device and a directory replaced wholesale carries the
trusted.overlay.opaque xattr. An image layer says the same in the OCI
notation: `.wh.<name>` files and `.wh..wh..opq`. write_layer translates one
into the other; the rest writes the JSON documents of the OCI image spec and
streams an image layout (oci-layout, index.json, blobs/sha256/...) as a tar,
which `ctr images import` (and `docker load`) read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class _HashingWriter(io.RawIOBase):
    """A file wrapper that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += len(view)
        self.target.write(view)
        return len(view)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(directory: Path) -> Iterable[Path]:
    """Every path below directory, parents before children, in a stable order."""
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(path)


def write_layer(upper: Path, out: Path) -> tuple[str, int]:
    """Write upper as an OCI layer tar; return its sha256 digest ("sha256:...") and size."""
    with out.open("wb") as raw:
        hashing = _HashingWriter(raw)
        buffered = io.BufferedWriter(hashing, buffer_size=1 << 20)
        with tarfile.open(fileobj=buffered, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in _walk(upper):
                _add(tar, upper, path)
        buffered.flush()
    return f"sha256:{hashing.sha.hexdigest()}", hashing.size


def _add(tar: tarfile.TarFile, upper: Path, path: Path) -> None:
    relative = path.relative_to(upper).as_posix()
    st = path.lstat()
    if _is_whiteout(st):
        parent, _, name = relative.rpartition("/")
        marker = tarfile.TarInfo(f"{parent}/{WHITEOUT}{name}" if parent else f"{WHITEOUT}{name}")
        marker.mtime = int(st.st_mtime)
        tar.addfile(marker)
        return
    if stat.S_ISSOCK(st.st_mode):
        return  # sockets are never part of an image
    info = tar.gettarinfo(str(path), arcname=relative)
    info.uname = info.gname = ""  # numeric owners only: host names mean nothing in an image
    if info.isreg():
        with path.open("rb") as handle:
            tar.addfile(info, handle)
    else:
        tar.addfile(info)
    if info.isdir() and _is_opaque(path):
        marker = tarfile.TarInfo(f"{relative}/{OPAQUE}")
        marker.mtime = int(st.st_mtime)
        tar.addfile(marker)


def is_empty(upper: Path) -> bool:
    return not any(upper.iterdir())


# ---------------------------------------------------------------- documents


@dataclass(frozen=True)
class Blob:
    digest: str  # sha256:...
    size: int
    media_type: str
    path: Path | None = None  # a file holding it, for layers
    data: bytes | None = None  # inline, for JSON documents

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        descriptor: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor


def json_blob(document: dict[str, Any], media_type: str) -> Blob:
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return Blob(f"sha256:{hashlib.sha256(data).hexdigest()}", len(data), media_type, data=data)


def image_documents(
    config: dict[str, Any], layers: list[Blob], reference: str
) -> tuple[Blob, Blob, dict[str, Any]]:
    """The config blob, the manifest blob and index.json naming the image `reference`."""
    config_blob = json_blob(config, CONFIG_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest_blob = json_blob(manifest, MANIFEST_MEDIA_TYPE)
    tag = reference.rpartition(":")[2]
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [
            manifest_blob.descriptor(
                {
                    "io.containerd.image.name": reference,
                    "org.opencontainers.image.ref.name": tag,
                }
            )
        ],
    }
    return config_blob, manifest_blob, index


def write_layout_tar(out: IO[bytes], blobs: list[Blob], index: dict[str, Any]) -> None:
    """Stream an OCI image layout as a tar (blobs first, index.json last)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        seen = set()
        for blob in blobs:
            if blob.digest in seen:
                continue
            seen.add(blob.digest)
            name = "blobs/sha256/" + blob.digest.split(":", 1)[1]
            if blob.data is not None:
                _add_bytes(tar, name, blob.data)
            else:
                assert blob.path is not None
                info = tarfile.TarInfo(name)
                info.size = blob.size
                info.mode = 0o644
                with blob.path.open("rb") as handle:
                    tar.addfile(info, handle)
        _add_bytes(tar, "index.json", json.dumps(index, indent=1).encode())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
