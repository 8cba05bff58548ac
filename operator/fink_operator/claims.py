"""SinkClaims: who owns a topic or table, recorded where every operator instance sees it.

A claim is a cluster-scoped custom object (`kubectl get sinkclaims`), so
operators watching different namespaces, or restarted ones, agree on owners.
Its name derives from (kind, cluster id, resource name), so creating it is the
atomic "first claimant wins" step: the API server refuses a second one with 409.
Taking over a stale claim is a compare-and-swap on its resourceVersion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from fink_core import crd as pipeline_crd
from fink_operator.desired import PipelineRef
from fink_operator.ownership import LABELS, TABLE, TOPIC, Claim

GROUP = pipeline_crd.GROUP
VERSION = pipeline_crd.VERSION
KIND = "SinkClaim"
PLURAL = "sinkclaims"
CRD_NAME = f"{PLURAL}.{GROUP}"
OWNER_UID_LABEL = f"{GROUP}/owner-uid"


class ClaimStore(Protocol):
    def get(self, kind: str, cluster: str, name: str) -> Claim | None: ...
    def create(self, claim: Claim) -> bool: ...
    def replace(self, stale: Claim, claim: Claim) -> bool: ...
    def release(self, claim: Claim) -> None: ...
    def owned_by(self, owner: PipelineRef) -> list[Claim]: ...
    def owner_alive(self, owner: PipelineRef) -> bool | None: ...


def _body(claim: Claim) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": claim.object_name,
            "labels": {OWNER_UID_LABEL: claim.owner.uid},
        },
        "spec": {
            "resource": claim.kind,
            "cluster": claim.cluster,
            "name": claim.name,
            "owner": {
                "namespace": claim.owner.namespace,
                "name": claim.owner.name,
                "uid": claim.owner.uid,
            },
            "adopted": claim.adopted,
        },
    }


def _claim(document: Mapping[str, Any]) -> Claim:
    spec = document["spec"]
    owner = spec["owner"]
    return Claim(
        kind=spec["resource"],
        cluster=spec["cluster"],
        name=spec["name"],
        owner=PipelineRef(owner["namespace"], owner["name"], owner["uid"]),
        adopted=bool(spec.get("adopted", False)),
        version=document["metadata"].get("resourceVersion"),
    )


class KubernetesClaims:
    """ClaimStore over the Kubernetes API."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    def get(self, kind: str, cluster: str, name: str) -> Claim | None:
        from fink_operator.ownership import claim_object_name

        try:
            document = self.custom.get_cluster_custom_object(
                GROUP, VERSION, PLURAL, claim_object_name(kind, cluster, name)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return _claim(document)

    def create(self, claim: Claim) -> bool:
        """True if this call made the claim; False if one already existed (re-read it)."""
        try:
            self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, _body(claim))
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def replace(self, stale: Claim, claim: Claim) -> bool:
        """Replace a stale claim, only if nobody changed it since it was read."""
        body = _body(claim)
        body["metadata"]["resourceVersion"] = stale.version
        try:
            self.custom.replace_cluster_custom_object(
                GROUP, VERSION, PLURAL, claim.object_name, body
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise
        return True

    def release(self, claim: Claim) -> None:
        """Delete the claim, only if it still names the same owner (a precondition on uid)."""
        current = self.get(claim.kind, claim.cluster, claim.name)
        if current is None or current.owner.uid != claim.owner.uid:
            return
        try:
            self.custom.delete_cluster_custom_object(
                GROUP,
                VERSION,
                PLURAL,
                claim.object_name,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(resource_version=current.version)
                ),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def owned_by(self, owner: PipelineRef) -> list[Claim]:
        found = self.custom.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, label_selector=f"{OWNER_UID_LABEL}={owner.uid}"
        )
        return [_claim(d) for d in found.get("items", [])]

    def owner_alive(self, owner: PipelineRef) -> bool | None:
        """Whether the owning pipeline still exists with that uid; None if we may not look."""
        try:
            document = self.custom.get_namespaced_custom_object(
                pipeline_crd.GROUP,
                pipeline_crd.VERSION,
                owner.namespace,
                pipeline_crd.PLURAL,
                owner.name,
            )
        except ApiException as error:
            if error.status == 404:
                return False
            if error.status == 403:
                return None
            raise
        return bool(document["metadata"].get("uid") == owner.uid)


def crd() -> dict[str, Any]:
    """The SinkClaim CustomResourceDefinition (cluster-scoped)."""

    def text(description: str, **extra: Any) -> dict[str, Any]:
        return {"type": "string", "description": description, **extra}

    immutable = [{"rule": "self == oldSelf", "message": "a claim's subject cannot change"}]
    schema = {
        "type": "object",
        "description": "Records which BrokerPipeline owns a Kafka topic or an HBase table. "
        "Written by the operator; delete one by hand only to release a claim whose pipeline "
        "is gone.",
        "required": ["spec"],
        "properties": {
            "apiVersion": text("fink.broker.dev/v1alpha1."),
            "kind": text("SinkClaim."),
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "description": "What is claimed, and by whom.",
                "required": ["resource", "cluster", "name", "owner"],
                "properties": {
                    "resource": text(
                        "KafkaTopic or HBaseTable.",
                        enum=[TOPIC, TABLE],
                        **{"x-kubernetes-validations": immutable},
                    ),
                    "cluster": text(
                        "The Kafka or HBase cluster id.",
                        maxLength=256,
                        **{"x-kubernetes-validations": immutable},
                    ),
                    "name": text(
                        "Topic or table name.",
                        maxLength=256,
                        **{"x-kubernetes-validations": immutable},
                    ),
                    "owner": {
                        "type": "object",
                        "description": "The owning BrokerPipeline.",
                        "required": ["namespace", "name", "uid"],
                        "properties": {
                            "namespace": text("Its namespace."),
                            "name": text("Its name."),
                            "uid": text("Its uid."),
                        },
                    },
                    "adopted": {
                        "type": "boolean",
                        "description": "It existed before this claim and was adopted through "
                        "spec.adopt.",
                    },
                },
            },
        },
    }
    columns = [
        {"name": "Resource", "type": "string", "jsonPath": ".spec.resource"},
        {"name": "Name", "type": "string", "jsonPath": ".spec.name"},
        {"name": "Owner", "type": "string", "jsonPath": ".spec.owner.namespace"},
        {"name": "Pipeline", "type": "string", "jsonPath": ".spec.owner.name"},
        {"name": "Adopted", "type": "boolean", "jsonPath": ".spec.adopted"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return pipeline_crd.definition(
        kind=KIND,
        plural=PLURAL,
        singular="sinkclaim",
        short_names=["fclaim"],
        scope="Cluster",
        schema=schema,
        columns=columns,
        status=False,
    )


def render_yaml() -> str:
    return pipeline_crd.header("operator/fink_operator/claims.py") + yaml.safe_dump(
        crd(), sort_keys=False, width=100
    )


__all__ = ["LABELS", "ClaimStore", "KubernetesClaims"]
