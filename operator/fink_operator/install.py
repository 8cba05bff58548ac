"""Create or update the operator's CRDs in a cluster, and wait until the API server serves them."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from fink_core import crd as pipeline_crd
from fink_core import filter_crd
from fink_operator import claims


def crds() -> list[dict[str, Any]]:
    """BrokerPipeline and ScienceFilter (the shared models' views), SinkClaim (the operator's records)."""
    return [pipeline_crd.crd(), filter_crd.crd(), claims.crd()]


def install_crd(
    kubeconfig: str | None = None,
    timeout: float = 60.0,
    documents: list[dict[str, Any]] | None = None,
) -> list[str]:
    """The operator's CRDs, or `documents` (other definitions: tests)."""
    api_client = config.new_client_from_config(config_file=kubeconfig)
    extensions = client.ApiextensionsV1Api(api_client)
    names = []
    for document in crds() if documents is None else documents:
        _create_or_replace(extensions, document)
        names.append(document["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            status = extensions.read_custom_resource_definition(name).status
            if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established after {timeout}s")
            time.sleep(0.2)
    return names


def _create_or_replace(extensions: client.ApiextensionsV1Api, document: dict[str, Any]) -> None:
    """Two installers at once (two operator replicas starting, two test workers) race: the
    second's create or replace is refused with 409 Conflict, the definition it read being no
    longer the current one. It reads it again and retries."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            _apply(extensions, document)
            return
        except ApiException as error:
            if error.status != 409 or attempt == CONFLICT_RETRIES - 1:
                raise
        time.sleep(0.2 * (attempt + 1))


def _apply(extensions: client.ApiextensionsV1Api, document: dict[str, Any]) -> None:
    name = document["metadata"]["name"]
    try:
        current = extensions.read_custom_resource_definition(name)
    except ApiException as error:
        if error.status != 404:
            raise
        document["metadata"].pop("resourceVersion", None)
        extensions.create_custom_resource_definition(document)
        return
    document["metadata"]["resourceVersion"] = current.metadata.resource_version
    extensions.replace_custom_resource_definition(name, document)


CONFLICT_RETRIES = 5
