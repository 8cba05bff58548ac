"""Spark on Kubernetes in cluster mode on the real node: a driver pod that starts executor pods."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyspark
import pytest
import yaml
from kubernetes import client

from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("real-node")]  # tests/conftest.py

JOB = """
import socket
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("fink-cluster-probe").getOrCreate()
rdd = spark.sparkContext.parallelize(range(1000), 2)
total = rdd.map(lambda x: x * x).sum()
hosts = sorted(set(rdd.mapPartitions(lambda _: [socket.gethostname()]).collect()))
print(f"PROBE sum={total} driver={socket.gethostname()} executors={','.join(hosts)}")
spark.stop()
"""


def _rbac(namespace: str) -> list[dict]:
    rules = [
        {
            "apiGroups": [""],
            "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
            "verbs": [
                "create",
                "get",
                "list",
                "watch",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ],
        }
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "spark"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "spark-driver"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "spark-driver"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "spark-driver",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "spark", "namespace": namespace}],
        },
    ]


def _submission_environment() -> dict[str, str]:
    """The host's environment, minus its Python: spark-submit forwards PYSPARK_PYTHON to
    the driver pod, where the host's interpreter path does not exist (the image's is
    set by the image)."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    }
    environment["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    return environment


def test_spark_submit_in_cluster_mode_runs_driver_and_executor_pods(
    stack: Endpoints, kube: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    assert stack.pods is not None
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    account, role, binding = _rbac(namespace)
    core.create_namespaced_service_account(namespace, account)
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(namespace, binding)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "probe-job"}, "data": {"job.py": JOB}}
    )
    template = tmp_path / "driver.yaml"
    template.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": {
                    "volumes": [{"name": "job", "configMap": {"name": "probe-job"}}],
                    "containers": [
                        {
                            "name": "driver",
                            "volumeMounts": [{"name": "job", "mountPath": "/opt/job"}],
                        }
                    ],
                },
            }
        )
    )
    pki = Layout.default().pki
    spark_submit = shutil.which("spark-submit", path=str(Path(sys.executable).parent))
    assert spark_submit, "spark-submit (pyspark) is not in the virtual environment"
    started = time.monotonic()
    submitted = subprocess.run(
        [
            spark_submit,
            "--master",
            f"k8s://{stack.pods.apiserver}",
            "--deploy-mode",
            "cluster",
            "--name",
            "fink-cluster-probe",
            "--conf",
            f"spark.kubernetes.namespace={namespace}",
            "--conf",
            f"spark.kubernetes.container.image={stack.pods.pipeline_image}",
            "--conf",
            "spark.kubernetes.container.image.pullPolicy=Never",
            "--conf",
            "spark.kubernetes.authenticate.driver.serviceAccountName=spark",
            "--conf",
            f"spark.kubernetes.authenticate.submission.caCertFile={pki / 'ca.crt'}",
            "--conf",
            f"spark.kubernetes.authenticate.submission.clientCertFile={pki / 'admin.crt'}",
            "--conf",
            f"spark.kubernetes.authenticate.submission.clientKeyFile={pki / 'admin.key'}",
            "--conf",
            f"spark.kubernetes.driver.podTemplateFile={template}",
            "--conf",
            "spark.kubernetes.driver.pod.name=probe-driver",
            "--conf",
            "spark.executor.instances=1",
            "--conf",
            "spark.kubernetes.driver.request.cores=250m",
            "--conf",
            "spark.kubernetes.executor.request.cores=250m",
            "--conf",
            "spark.driver.memory=512m",
            "--conf",
            "spark.executor.memory=512m",
            "--conf",
            "spark.kubernetes.executor.deleteOnTermination=false",
            "local:///opt/job/job.py",
        ],
        capture_output=True,
        text=True,
        timeout=480,
        env=_submission_environment(),
    )
    elapsed = time.monotonic() - started
    assert submitted.returncode == 0, submitted.stderr[-4000:]
    driver = core.read_namespaced_pod("probe-driver", namespace)
    logs = core.read_namespaced_pod_log("probe-driver", namespace)
    assert driver.status.phase == "Succeeded", (
        f"driver {driver.status.phase}: {driver.status.container_statuses}\n{logs[-6000:]}\n"
        f"spark-submit: {submitted.stderr[-3000:]}"
    )
    assert driver.spec.node_name == stack.pods.node_name
    assert "PROBE sum=332833500 driver=probe-driver executors=" in logs
    executors = core.list_namespaced_pod(namespace, label_selector="spark-role=executor").items
    assert len(executors) == 1
    executor = executors[0]
    assert executor.spec.node_name == stack.pods.node_name
    assert f"executors={executor.metadata.name}" in logs  # the tasks ran in the executor pod
    print(f"spark-submit to completion in {elapsed:.0f}s")
