"""helm and kubectl from the local stack (same versions as its apiserver), run as a user would."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout
from fink_stack.services import HELM, KUBERNETES

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "fink-operator"
KUBE_VERSION = "1.36.3"


def helm(stack: Endpoints, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = HELM.binary(Layout.default().cache)
    result = subprocess.run(
        [str(binary), "--kubeconfig", str(stack.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def kubectl(
    stack: Endpoints, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    binary = KUBERNETES.binary(Layout.default().cache, "kubectl")
    result = subprocess.run(
        [str(binary), "--kubeconfig", str(stack.kubeconfig), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result
