"""Readers of the ConfigMaps and Secrets a pipeline names, for `connections.resolve`.

Three sources, one shape (name -> data, or None when absent): the Kubernetes
API (the operator, or `fink-pipeline run --kubeconfig`), a directory laid out
like mounted volumes (`<root>/configmaps/<name>/<key>`, `<root>/secrets/<name>/<key>`,
which is how a driver pod sees them), and nothing at all (a local run whose
spec names no reference).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fink_core.connections import Reader
from fink_core.errors import ReferenceForbidden


def absent(_: str) -> Mapping[str, str] | None:
    """A reader that finds nothing: a reference then fails with MissingReference."""
    return None


def directory_reader(root: Path, kind: str) -> Reader:
    """Files under root/<kind>/<name>/<key>, as Kubernetes mounts a ConfigMap or Secret."""

    def read(name: str) -> Mapping[str, str] | None:
        folder = root / kind / name
        if not folder.is_dir():
            return None
        return {
            f.name: f.read_text()
            for f in sorted(folder.iterdir())
            if f.is_file() and not f.name.startswith(".")
        }

    return read


def kubernetes_readers(core_api: Any, namespace: str) -> tuple[Reader, Reader]:
    """(read_configmap, read_secret) through a kubernetes.client.CoreV1Api.

    A 403 becomes ReferenceForbidden: the user (or the admin) must change something.
    """
    from kubernetes.client.rest import ApiException

    def read_configmap(name: str) -> Mapping[str, str] | None:
        try:
            return core_api.read_namespaced_config_map(name, namespace).data or {}
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status == 403:
                raise ReferenceForbidden("ConfigMap", name, namespace) from None
            raise

    def read_secret(name: str) -> Mapping[str, str] | None:
        try:
            data = core_api.read_namespaced_secret(name, namespace).data or {}
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status == 403:
                raise ReferenceForbidden("Secret", name, namespace) from None
            raise
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    return read_configmap, read_secret
