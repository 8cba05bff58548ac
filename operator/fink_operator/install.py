"""Create or update the CRD in a cluster, and wait until the API server serves it."""

from __future__ import annotations

import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import crd


def install_crd(kubeconfig: str | None = None, timeout: float = 60.0) -> None:
    api_client = config.new_client_from_config(config_file=kubeconfig)
    extensions = client.ApiextensionsV1Api(api_client)
    document = crd.crd()
    try:
        current = extensions.read_custom_resource_definition(crd.CRD_NAME)
        document["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(crd.CRD_NAME, document)
    except ApiException as error:
        if error.status != 404:
            raise
        extensions.create_custom_resource_definition(document)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = extensions.read_custom_resource_definition(crd.CRD_NAME).status
        if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
            return
        time.sleep(0.2)
    raise TimeoutError(f"CRD {crd.CRD_NAME} not established after {timeout}s")
