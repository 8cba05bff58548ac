"""The local kube-apiserver is a real one: namespaces, CRDs and custom objects round-trip."""

from __future__ import annotations

import time

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from probe_crd import probe_crd

from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def api_client(stack: Endpoints) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(stack.kubeconfig))


PARTITIONED = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["partitions"],
            "properties": {"partitions": {"type": "integer", "minimum": 1}},
        }
    },
}


def test_namespace_round_trip(api_client: client.ApiClient, unique_name: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique_name)))
    try:
        assert core.read_namespace(unique_name).metadata.name == unique_name
        assert unique_name in [ns.metadata.name for ns in core.list_namespace().items]
    finally:
        core.delete_namespace(unique_name)


def test_custom_resource_definition_is_served_and_validated(
    api_client: client.ApiClient, unique_name: str
) -> None:
    group = f"{unique_name}.stack.test"
    extensions = client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(probe_crd(group, PARTITIONED))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            crd = extensions.read_custom_resource_definition(f"probes.{group}")
            conditions = {c.type: c.status for c in (crd.status.conditions or [])}
            if conditions.get("Established") == "True":
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"CRD never became Established: {conditions}")

        objects = client.CustomObjectsApi(api_client)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Probe",
            "metadata": {"name": "p1"},
            "spec": {"partitions": 3},
        }
        objects.create_namespaced_custom_object(group, "v1", "default", "probes", body)
        stored = objects.get_namespaced_custom_object(group, "v1", "default", "probes", "p1")
        assert stored["spec"] == {"partitions": 3}

        # the apiserver enforces the schema: this is what makes it a real one
        bad = {**body, "metadata": {"name": "p2"}, "spec": {"partitions": 0}}
        with pytest.raises(ApiException) as refused:
            objects.create_namespaced_custom_object(group, "v1", "default", "probes", bad)
        assert refused.value.status == 422
        assert "spec.partitions" in refused.value.body
    finally:
        extensions.delete_custom_resource_definition(f"probes.{group}")


def test_controller_manager_creates_default_service_accounts(
    api_client: client.ApiClient, unique_name: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique_name)))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = [
                sa.metadata.name for sa in core.list_namespaced_service_account(unique_name).items
            ]
            if "default" in names:
                break
            time.sleep(0.2)
        assert "default" in names, "kube-controller-manager did not create the default SA"
    finally:
        core.delete_namespace(unique_name)
