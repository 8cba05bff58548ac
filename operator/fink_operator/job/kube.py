"""The adapter between the job's decisions and the Kubernetes API.

Supporting objects (service account, role, config map, services, a volume claim)
are written with server-side apply, so applying them again is a no-op and a field
someone changed by hand is set back. The driver pod is created, never updated:
a new spec means a new pod, once the old one is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

from fink_operator.job.render import SPEC_HASH
from fink_operator.job.supervise import LOG_LINES, DriverPod, SubmitFailed

log = logging.getLogger(__name__)
FIELD_MANAGER = "fink-operator"


class KubernetesJobs:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self._dynamic: DynamicClient | None = None

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:  # discovery costs a few requests: once per operator
            self._dynamic = DynamicClient(self.api)
        return self._dynamic

    def apply(self, objects: Iterable[dict[str, Any]]) -> None:
        """Server-side apply each object; SubmitFailed with the API server's reason."""
        for body in objects:
            try:
                self._apply(body)
            except DynamicApiError as error:
                if error.status == 422 and body["kind"] == "Service" and _immutable(error):
                    # e.g. a metrics Service made with a cluster IP by an older operator:
                    # a Service's clusterIP cannot change, so it is made again
                    self._delete_service(body)
                    try:
                        self._apply(body)
                        continue
                    except DynamicApiError as again:
                        error = again
                raise SubmitFailed(_what(body, error.status, error.summary())) from error

    def _apply(self, body: dict[str, Any]) -> None:
        resource = self.dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        self.dynamic.server_side_apply(
            resource,
            body=body,
            name=body["metadata"]["name"],
            namespace=body["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    def _delete_service(self, body: dict[str, Any]) -> None:
        metadata = body["metadata"]
        try:
            self.core.delete_namespaced_service(metadata["name"], metadata["namespace"])
        except ApiException as error:
            if error.status != 404:
                raise SubmitFailed(_what(body, error.status, error.reason)) from error

    def driver(self, namespace: str, name: str, metrics_port: int) -> DriverPod | None:
        """The driver pod as it is now, with its logs if it ended and its metrics if it runs."""
        try:
            pod = self.core.read_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self._observe(pod, metrics_port)

    def _observe(self, pod: Any, metrics_port: int) -> DriverPod:
        status = pod.status
        container = next((c for c in status.container_statuses or [] if c.name == "driver"), None)
        waiting = container.state.waiting if container and container.state else None
        terminated = container.state.terminated if container and container.state else None
        init_waiting = next(
            (
                c.state.waiting
                for c in status.init_container_statuses or []
                if c.state and c.state.waiting
            ),
            None,
        )
        if init_waiting is not None and (waiting is None or waiting.reason == "PodInitializing"):
            waiting = init_waiting  # e.g. the volume's init container cannot get its image
        unschedulable = next(
            (
                c.message
                for c in status.conditions or []
                if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            ),
            None,
        )
        observed = DriverPod(
            name=pod.metadata.name,
            spec_hash=(pod.metadata.annotations or {}).get(SPEC_HASH),
            phase=status.phase or "Unknown",
            terminating=pod.metadata.deletion_timestamp is not None,
            unschedulable=unschedulable,
            waiting_reason=waiting.reason if waiting else None,
            waiting_message=waiting.message if waiting else None,
            terminated_reason=terminated.reason if terminated else None,
            exit_code=terminated.exit_code if terminated else None,
            ip=status.pod_ip,
            ready=bool(container and container.ready),
        )
        if observed.ended and not observed.terminating:
            return _with(observed, logs=self._logs(pod))
        return observed

    def _logs(self, pod: Any) -> str:
        try:
            return str(
                self.core.read_namespaced_pod_log(
                    pod.metadata.name,
                    pod.metadata.namespace,
                    container="driver",
                    tail_lines=LOG_LINES,
                )
            )
        except ApiException as error:
            return f"(its log could not be read: {error.reason})"

    def create_driver(self, pod: dict[str, Any]) -> bool:
        """Create the driver; False if a pod of that name still exists (never two drivers)."""
        try:
            self.core.create_namespaced_pod(pod["metadata"]["namespace"], pod)
        except ApiException as error:
            if error.status == 409:
                return False
            raise SubmitFailed(_what(pod, error.status, _api_message(error))) from error
        return True

    def delete_driver(self, namespace: str, name: str, grace_seconds: int) -> None:
        try:
            self.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=grace_seconds, propagation_policy="Background"
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def delete_claim(self, namespace: str, name: str) -> bool:
        try:
            self.core.delete_namespaced_persistent_volume_claim(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True


def _with(pod: DriverPod, **changes: Any) -> DriverPod:
    from dataclasses import replace

    return replace(pod, **changes)


def _immutable(error: DynamicApiError) -> bool:
    """The API server's words for a field that cannot change (spec.clusterIP(s) here)."""
    text = str(error.summary())
    return "may not change once set" in text or "field is immutable" in text


def _api_message(error: ApiException) -> str:
    import json

    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


def _what(body: dict[str, Any], status: object, message: object) -> str:
    return f"the API server refused {body['kind']} {body['metadata']['name']} ({status}): {message}"
