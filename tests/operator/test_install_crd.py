"""Installing CRDs with several installers at once, against the real API server."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client, config
from probe_crd import probe_crd as crd_of_group

from fink_operator.install import install_crd
from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack

INSTALLERS = 4


@pytest.fixture
def probe_crd(stack: Endpoints, unique_name: str) -> Iterator[dict[str, Any]]:
    """A CRD of this test's own (the shared stack's operator CRDs are not ours to delete)."""
    group = f"{unique_name}.install.test"
    document = crd_of_group(group)
    yield document
    extensions = client.ApiextensionsV1Api(
        config.new_client_from_config(config_file=str(stack.kubeconfig))
    )
    extensions.delete_custom_resource_definition(document["metadata"]["name"])


def test_installers_racing_each_other_all_succeed(
    stack: Endpoints, probe_crd: dict[str, Any]
) -> None:
    """Two operator replicas starting at once (or two test workers) install the same CRD,
    each its own revision of it: the creates and replaces refused with 409 Conflict read
    the definition again and retry; none fails, and the last one written is served."""
    kubeconfig = str(stack.kubeconfig)
    name = probe_crd["metadata"]["name"]

    def install(revision: str) -> list[str]:
        document = copy.deepcopy(probe_crd)
        document["metadata"]["annotations"] = {"revision": revision}
        return install_crd(kubeconfig, documents=[document])

    for round_ in ("create", "replace"):
        revisions = [f"{round_}-{i}" for i in range(INSTALLERS)]
        with ThreadPoolExecutor(INSTALLERS) as pool:
            assert list(pool.map(install, revisions)) == [[name]] * INSTALLERS
        extensions = client.ApiextensionsV1Api(
            config.new_client_from_config(config_file=kubeconfig)
        )
        served = extensions.read_custom_resource_definition(name)
        assert served.metadata.annotations["revision"] in revisions
