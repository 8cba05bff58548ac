"""The operator's Kubernetes client and the few calls it makes itself (kopf does the watching).

The status patch here is for the drift sweep, which runs outside kopf's
handlers; handlers write status through kopf's patch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from fink_core import crd, science_filter
from fink_core.connections import Reader
from fink_core.references import kubernetes_readers

log = logging.getLogger(__name__)
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """From the given kubeconfig, else in-cluster, else $KUBECONFIG / ~/.kube/config."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(SERVICE_ACCOUNT_TOKEN)


def connection_info(api: client.ApiClient) -> Any:
    """kopf's login from a loaded client configuration (server, CA, client cert or token)."""
    import kopf

    configuration = api.configuration
    token = (configuration.api_key or {}).get("authorization", "")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        token=token.removeprefix("Bearer ").strip() or None,
    )


def readers(api: client.ApiClient) -> Any:
    core = client.CoreV1Api(api)

    def for_namespace(namespace: str) -> tuple[Reader, Reader]:
        return kubernetes_readers(core, namespace)

    return for_namespace


def changed_status(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `new` that differ from `old`: a status patch that writes nothing idle."""
    old = old or {}
    return {k: v for k, v in new.items() if old.get(k) != v}


def status_writer(api: client.ApiClient, plural: str = crd.PLURAL) -> Any:
    """Writes the status of one kind of this group (BrokerPipelines by default)."""
    custom = client.CustomObjectsApi(api)

    def write(body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        patch = changed_status(body.get("status"), status)
        if not patch:
            return True
        metadata = body["metadata"]
        try:
            custom.patch_namespaced_custom_object_status(
                crd.GROUP,
                crd.VERSION,
                metadata["namespace"],
                plural,
                metadata["name"],
                {"status": patch},
            )
        except ApiException as error:
            if error.status == 404:  # deleted meanwhile: nothing to say any more
                return True
            log.warning("could not write the status of %s: %s", metadata["name"], error)
            return False
        except (
            OSError,
            urllib3.exceptions.HTTPError,
        ) as error:  # API server unreachable: the next pass writes it all
            log.warning("could not write the status of %s: %s", metadata["name"], error)
            return False
        return True

    return write


def science_filters(api: client.ApiClient) -> Any:
    """namespace -> its ScienceFilter documents (status included); [] if none or no CRD."""
    custom = client.CustomObjectsApi(api)

    def in_namespace(namespace: str) -> list[Mapping[str, Any]]:
        try:
            found = custom.list_namespaced_custom_object(
                crd.GROUP, crd.VERSION, namespace, science_filter.PLURAL
            )
        except ApiException as error:
            if error.status == 404:  # the CRD is not installed: no filters
                return []
            raise
        return list(found.get("items") or [])

    return in_namespace


def pipeline_reader(api: client.ApiClient) -> Any:
    """(namespace, name) -> the BrokerPipeline document, or None when there is none."""
    custom = client.CustomObjectsApi(api)

    def read(namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            found = custom.get_namespaced_custom_object(
                crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(found)

    return read
