"""A throwaway CRD the Kubernetes tests make in a group of their own.

The stack's operator CRDs are shared by every test; a test that creates, replaces or
deletes a CRD works on one of these instead.
"""

from __future__ import annotations

from typing import Any

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def probe_crd(group: str, schema: dict[str, Any] = ANY_OBJECT) -> dict[str, Any]:
    """The `probes.<group>` CRD, namespaced, one served and stored version `v1`."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"probes.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
