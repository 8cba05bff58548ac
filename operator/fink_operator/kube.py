"""The few Kubernetes reads the operator does itself (kopf does the watching and patching)."""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .config import CONFIG
from .connections import Reader


@functools.cache
def _core() -> client.CoreV1Api:
    if CONFIG.kubeconfig:
        api = config.new_client_from_config(config_file=CONFIG.kubeconfig)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api = client.ApiClient()
    return client.CoreV1Api(api)


def configmap_reader(namespace: str) -> Reader:
    def read(name: str) -> Mapping[str, str] | None:
        try:
            return _core().read_namespaced_config_map(name, namespace).data or {}
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    return read


def secret_reader(namespace: str) -> Reader:
    def read(name: str) -> Mapping[str, str] | None:
        try:
            data = _core().read_namespaced_secret(name, namespace).data or {}
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    return read
