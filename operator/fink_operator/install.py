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


def install_crd(kubeconfig: str | None = None, timeout: float = 60.0) -> list[str]:
    api_client = config.new_client_from_config(config_file=kubeconfig)
    extensions = client.ApiextensionsV1Api(api_client)
    names = []
    for document in crds():
        name = document["metadata"]["name"]
        try:
            current = extensions.read_custom_resource_definition(name)
            document["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(name, document)
        except ApiException as error:
            if error.status != 404:
                raise
            extensions.create_custom_resource_definition(document)
        names.append(name)
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
