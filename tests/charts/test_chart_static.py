"""The chart before anything runs: it lints, its values are checked, the API server accepts it."""

from __future__ import annotations

import pytest
import yaml
from tools import CHART, KUBE_VERSION, ROOT, helm, kubectl

from fink_stack.endpoints import Endpoints

pytestmark = pytest.mark.stack
VALUES = ["values.yaml", "values-virtualdata.yaml", "values-ccin2p3.yaml"]


def test_the_charts_crds_are_the_manifests() -> None:
    for crd in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), crd.name


@pytest.mark.parametrize("values", VALUES)
def test_lint_and_a_server_side_dry_run_of_every_values_file(stack: Endpoints, values: str) -> None:
    helm(stack, "lint", str(CHART), "-f", str(CHART / values), "--strict")
    rendered = helm(
        stack,
        "template",
        "fink",
        str(CHART),
        "-f",
        str(CHART / values),
        "--namespace",
        "fink-dry-run",
        "--kube-version",
        KUBE_VERSION,
    ).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    assert "Deployment" in kinds and "ServiceAccount" in kinds
    # the API server validates every object (schemas, RBAC rule shapes) without storing it
    dry = kubectl(stack, "apply", "--dry-run=server", "-f", "-", stdin=rendered, check=False)
    assert dry.returncode == 0 or 'namespaces "fink' in dry.stderr, dry.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicaCount=zero", "at '/replicaCount': got string, want integer"),
        ("pipelineVolume=bogus", "at '/pipelineVolume'"),
        ("connections.kafkaBootstrap=kafka", "at '/connections/kafkaBootstrap'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
    ],
)
def test_a_wrong_value_fails_at_install_with_a_message(
    stack: Endpoints, setting: str, message: str
) -> None:
    result = helm(
        stack,
        "template",
        "fink",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        setting,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_two_replicas_without_leader_election_are_refused(stack: Endpoints) -> None:
    result = helm(
        stack,
        "template",
        "fink",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "leaderElection.enabled=false",
        check=False,
    )
    assert "replicaCount > 1 needs leaderElection.enabled" in result.stderr


def test_namespaced_mode_grants_roles_only_in_the_watched_namespaces(stack: Endpoints) -> None:
    rendered = helm(
        stack,
        "template",
        "fink",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "watchNamespaces={team-a,team-b}",
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    cluster_roles = [d for d in documents if d["kind"] == "ClusterRole"]
    assert [c["metadata"]["name"] for c in cluster_roles] == ["fink-fink-operator-claims"]
    assert [r["resources"] for r in cluster_roles[0]["rules"]] == [
        ["sinkclaims"],
        ["customresourcedefinitions"],
        ["namespaces"],
    ]
    assert {v for r in cluster_roles[0]["rules"][1:] for v in r["verbs"]} == {"list", "watch"}
    roles = {
        d["metadata"]["namespace"]
        for d in documents
        if d["kind"] == "Role" and "leader" not in d["metadata"]["name"]
    }
    assert roles == {"team-a", "team-b"}
    args = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--namespace=team-a" in args and "--all-namespaces" not in args


def test_kind_follows_the_local_stacks_kubernetes_and_its_script_parses() -> None:
    from fink_stack import versions

    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    images = {node["image"] for node in config["nodes"]}
    assert images == {f"kindest/node:{versions.KUBERNETES}"}
    import subprocess

    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "kind.sh")]).returncode == 0
