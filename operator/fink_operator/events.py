"""Kubernetes events for what a user should see, posted by the operator itself.

kopf's own event posting is turned off (handlers.py): a server that stays down
would otherwise add a warning per retry. Events here are posted for what
happened (a topic created, a family altered) and for a condition that changed
(not again on every drift pass), so `kubectl describe bp` stays readable.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from fink_operator import metrics
from fink_operator.reconcile import Event

log = logging.getLogger(__name__)
COMPONENT = "fink-operator"
MAX_MESSAGE = 1024


class EventSink(Protocol):
    def post(self, resource: Mapping[str, Any], event: Event) -> None: ...


class KubernetesEvents:
    """Posts core/v1 Events about a resource; a failure to post is logged, never raised."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    def post(self, resource: Mapping[str, Any], event: Event) -> None:
        metadata = resource.get("metadata") or {}
        namespace = metadata.get("namespace") or "default"
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{metadata.get('name')}.{uuid.uuid4().hex[:12]}", namespace=namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=resource.get("apiVersion"),
                kind=resource.get("kind"),
                name=metadata.get("name"),
                namespace=namespace,
                uid=metadata.get("uid"),
                resource_version=metadata.get("resourceVersion"),
            ),
            type=event.type,
            reason=event.reason,
            message=event.message[:MAX_MESSAGE],
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(namespace, body)
        except ApiException as error:
            log.warning(
                "could not post event %s on %s: %s", event.reason, body.metadata.name, error
            )
            return
        metrics.record_event(event.type, event.reason)
