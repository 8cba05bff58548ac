"""The Kubernetes objects of a pipeline's Spark job, rendered from the Jinja2 templates. Pure.

The driver pod runs `fink-pipeline run` on the pipeline document (a ConfigMap),
with the Secrets and ConfigMaps the spec names mounted as files (the shared
resolver reads them there), the pipeline's volume for its checkpoint and local
archive, and the operator's connection defaults in its environment, so driver
and operator resolve the same addresses. With executors, the driver runs Spark
in client mode against the API server and reaches them through a headless
service; without, Spark runs in local mode inside the pod.

Every value from a resource goes through the templates' `tojson` filter, so a
name or a setting can never inject YAML.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from fink_core.errors import NeedsUser
from fink_core.spec import API_GROUP, API_VERSION, KIND, PipelineSpec

TEMPLATES = Path(__file__).with_name("templates")
PIPELINE_DIR = "/etc/fink/pipeline"
REFERENCES_DIR = "/etc/fink/references"
DATA_DIR = "/var/lib/fink"
DRIVER_PORT = 7078
BLOCK_MANAGER_PORT = 7079
SPEC_HASH = f"{API_GROUP}/spec-hash"
SUBMISSION = f"{API_GROUP}/submission"
PIPELINE_LABEL = f"{API_GROUP}/pipeline"
PIPELINE_UID_LABEL = f"{API_GROUP}/pipeline-uid"
# Spark asks this much memory beside the JVM's for a PySpark process (its own default)
OVERHEAD_FACTOR = 0.4
MIN_OVERHEAD_MIB = 384


class JobNotConfigured(NeedsUser):
    """The job cannot be started as specified; the message says what to set."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self._reason = reason

    @property
    def reason(self) -> str:  # type: ignore[override]
        return self._reason


@dataclass(frozen=True)
class PipelineVolume:
    """What the operator gives a pipeline that names no volume of its own.

    `host-path:DIR` (one node, e.g. the local stack: DIR/<namespace>/<pipeline> on it),
    `storage-class:NAME[:SIZE]` (a claim per pipeline), or `none` (the spec must name one).
    """

    kind: str = "none"
    path: str = ""
    storage_class: str = ""
    size: str = "10Gi"

    @classmethod
    def parse(cls, text: str) -> PipelineVolume:
        kind, _, rest = text.partition(":")
        if kind == "none" and not rest:
            return cls()
        if kind == "host-path" and rest.startswith("/"):
            return cls("host-path", path=rest.rstrip("/"))
        if kind == "storage-class" and rest:
            name, _, size = rest.partition(":")
            return cls("storage-class", storage_class=name, size=size or "10Gi")
        raise ValueError(
            f"pipeline volume {text!r}: write host-path:/DIR, storage-class:NAME[:SIZE] or none"
        )


@dataclass(frozen=True)
class JobConfig:
    """The operator's settings for every pipeline's job."""

    enabled: bool = True
    image: str | None = None  # default image of drivers and executors
    pull_policy: str = "IfNotPresent"
    volume: PipelineVolume = field(default_factory=PipelineVolume)
    environment: Mapping[str, str] = field(default_factory=dict)  # FINK_* connection defaults


@dataclass(frozen=True)
class JobObjects:
    """Everything the job needs; the driver pod last, created only when the rest exists."""

    supporting: tuple[dict[str, Any], ...]
    driver_pod: dict[str, Any]
    spec_hash: str

    @property
    def driver_name(self) -> str:
        return str(self.driver_pod["metadata"]["name"])

    @property
    def data_claim(self) -> dict[str, Any] | None:
        return next((o for o in self.supporting if o["kind"] == "PersistentVolumeClaim"), None)


def kubernetes_name(name: str, suffix: str, limit: int = 63) -> str:
    """A DNS-1035 label (a letter first, at most `limit`) made of a name and a suffix."""
    candidate = f"{name}{suffix}"
    if len(candidate) <= limit and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", candidate):
        return candidate
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    stem = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    stem = stem[: limit - len(suffix) - 9].rstrip("-")
    return f"p-{stem}-{digest}{suffix}" if stem else f"p-{digest}{suffix}"


def driver_pod_name(pipeline: str) -> str:
    return kubernetes_name(pipeline, "-driver")


def job_document(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline document the driver runs: what affects the job, nothing else.

    deletionPolicy, adopt and suspend matter to the operator only; leaving them out
    means changing them never restarts the driver.
    """
    metadata = resource.get("metadata") or {}
    spec = json.loads(json.dumps(resource.get("spec") or {}))
    spec.pop("deletionPolicy", None)
    spec.pop("adopt", None)
    spark = spec.get("spark")
    if isinstance(spark, dict):
        spark.pop("suspend", None)
        if not spark:
            del spec["spark"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": metadata.get("name"), "namespace": metadata.get("namespace")},
        "spec": spec,
    }


def render(
    resource: Mapping[str, Any], spec: PipelineSpec, config: JobConfig, submission: int = 0
) -> JobObjects:
    """The job's objects; JobNotConfigured when no image or no durable checkpoint can be had."""
    metadata = resource.get("metadata") or {}
    uid = metadata.get("uid") or ""
    spark = spec.spark
    image = spark.image or config.image
    if not image:
        raise JobNotConfigured(
            "NoImage",
            "no container image for the Spark job: set spec.spark.image (or start the operator "
            "with --spark-image)",
        )
    volume = _volume(spec, config)
    checkpoint = _checkpoint(spec, volume)
    executors = spark.executor_instances
    name, namespace = spec.name, spec.namespace
    service_account = spark.service_account or kubernetes_name(name, "-spark")
    labels = {
        "app.kubernetes.io/name": "fink-pipeline",
        "app.kubernetes.io/instance": name[:63],
        "app.kubernetes.io/managed-by": "fink-operator",
        PIPELINE_UID_LABEL: uid,
    }
    driver_selector = {PIPELINE_UID_LABEL: uid, "spark-role": "driver"}
    owner = [
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    document = yaml.safe_dump(job_document(resource), sort_keys=True)
    executor_template = ""
    if spark.tolerations and executors > 0:
        executor_template = yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": {"tolerations": [dict(t) for t in spark.tolerations]},
            }
        )
    driver_service = kubernetes_name(name, "-driver-svc")
    values: dict[str, Any] = {
        "namespace": namespace,
        "labels": labels,
        "owner": owner,
        "service_account": service_account,
        "configmap": kubernetes_name(name, "-pipeline"),
        "document": document,
        "executor_template": executor_template,
        "driver_service": driver_service,
        "driver_selector": driver_selector,
        "driver_port": DRIVER_PORT,
        "block_manager_port": BLOCK_MANAGER_PORT,
        "metrics_service": kubernetes_name(name, "-metrics"),
        "metrics_labels": {**labels, "app.kubernetes.io/component": "metrics"},
        "metrics_port": spark.metrics_port,
        "image": image,
        "pull_policy": config.pull_policy,
        "stop_grace_seconds": spark.stop_grace_seconds,
    }
    supporting = []
    if not spark.service_account:
        supporting += [_render(t, values) for t in ("serviceaccount", "role", "rolebinding")]
    supporting.append(_render("configmap", values))
    if executors > 0:
        supporting.append(_render("driver-service", values))
    supporting.append(_render("metrics-service", values))
    claim = None
    if volume.kind == "storage-class" and not spark.volume_claim:
        claim = kubernetes_name(name, "-data")
        supporting.append(
            _render(
                "data-claim",
                {
                    **values,
                    "data_claim": claim,
                    "storage_class": volume.storage_class,
                    "storage_size": volume.size,
                },
            )
        )

    volumes, mounts = _volumes(spec, volume, claim, values["configmap"])
    pod_values = {
        **values,
        "driver_pod": driver_pod_name(name),
        "driver_labels": {
            **labels,
            PIPELINE_LABEL: name[:63],
            "spark-role": "driver",
            "app.kubernetes.io/component": "driver",
        },
        "args": _args(spec, checkpoint, executors),
        "env": _environment(
            spec, config, image, namespace, driver_service, name, _executor_archive(spec, volumes)
        ),
        "resources": _resources(spark.driver_memory, spark.driver_core_request, spark.driver_cores),
        "volumes": volumes,
        "mounts": mounts,
        "init_volume": volume.kind == "host-path" and not spark.volume_claim,
        "node_selector": dict(spark.node_selector),
        "tolerations": [dict(t) for t in spark.tolerations],
    }
    pod_values["driver_annotations"] = {}
    pod = _render("driver-pod", pod_values)
    digest = hashlib.sha256(
        json.dumps([document, pod["spec"]], sort_keys=True).encode()
    ).hexdigest()[:16]
    pod["metadata"]["annotations"] = {
        SPEC_HASH: digest,
        SUBMISSION: str(submission),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spark.metrics_port),
    }
    return JobObjects(tuple(supporting), pod, digest)


def _render(template: str, values: Mapping[str, Any]) -> dict[str, Any]:
    text = _environment_of_templates().get_template(f"{template}.yaml.j2").render(**values)
    return yaml.safe_load(text)


_TEMPLATES: jinja2.Environment | None = None


def _environment_of_templates() -> jinja2.Environment:
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
    return _TEMPLATES


def _volume(spec: PipelineSpec, config: JobConfig) -> PipelineVolume:
    if spec.spark.volume_claim:
        return PipelineVolume("claim")
    return config.volume


def _checkpoint(spec: PipelineSpec, volume: PipelineVolume) -> str:
    location = spec.spark.checkpoint_location
    if location and "://" in location:
        return location  # a Hadoop URL (s3a://, hdfs://): durable by itself
    if volume.kind == "none":
        raise JobNotConfigured(
            "NoCheckpoint",
            "the job needs a durable checkpoint: set spec.spark.volumeClaim (a "
            "PersistentVolumeClaim) or spec.spark.checkpointLocation (an s3a:// or hdfs:// "
            "URL), or start the operator with --pipeline-volume",
        )
    return f"{DATA_DIR}/checkpoint"


def _volumes(
    spec: PipelineSpec, volume: PipelineVolume, claim: str | None, configmap: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "pipeline", "configMap": {"name": configmap}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "pipeline", "mountPath": PIPELINE_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if volume.kind != "none":
        if spec.spark.volume_claim or claim:
            source = {"persistentVolumeClaim": {"claimName": spec.spark.volume_claim or claim}}
        else:
            host = f"{volume.path}/{spec.namespace}/{spec.name}"
            source = {"hostPath": {"path": host, "type": "DirectoryOrCreate"}}
        volumes.append({"name": "data", **source})
        mounts.append({"name": "data", "mountPath": DATA_DIR})
        if spec.archive_path and "://" not in spec.archive_path:
            # the archive path the user wrote, backed by the pipeline's volume
            mounts.append({"name": "data", "mountPath": spec.archive_path, "subPath": "archive"})
    secrets = sorted(
        {s for s in (spec.source.credentials_secret, spec.kafka_sink.credentials_secret) if s}
    )
    for index, secret in enumerate(secrets):
        volumes.append({"name": f"secret-{index}", "secret": {"secretName": secret}})
        mounts.append(
            {
                "name": f"secret-{index}",
                "mountPath": f"{REFERENCES_DIR}/secrets/{secret}",
                "readOnly": True,
            }
        )
    if spec.connections_configmap:
        volumes.append({"name": "connections", "configMap": {"name": spec.connections_configmap}})
        mounts.append(
            {
                "name": "connections",
                "mountPath": f"{REFERENCES_DIR}/configmaps/{spec.connections_configmap}",
                "readOnly": True,
            }
        )
    return volumes, mounts


def _args(spec: PipelineSpec, checkpoint: str, executors: int) -> list[str]:
    master = (
        "k8s://https://kubernetes.default.svc:443"
        if executors > 0
        else f"local[{spec.spark.driver_cores}]"
    )
    return [
        "fink-pipeline",
        "run",
        "-f",
        f"{PIPELINE_DIR}/pipeline.yaml",
        "--master",
        master,
        "--checkpoint",
        checkpoint,
        "--metrics-port",
        str(spec.spark.metrics_port),
        "--metrics-address",
        "0.0.0.0",
        "--references",
        REFERENCES_DIR,
    ]


def _executor_archive(spec: PipelineSpec, volumes: list[dict[str, Any]]) -> dict[str, str]:
    """Spark settings mounting a local archive path on the executors, as on the driver.

    The tasks write the archive (Spark's Parquet writer), so an executor without the
    pipeline's volume at that path would write it to its own pod's disk, lost with
    the pod. A claim mounted by several pods must allow it (ReadWriteMany) when the
    executors land on other nodes; an hdfs:// or s3a:// archive needs no volume.
    """
    if spec.spark.executor_instances == 0 or not spec.archive_path:
        return {}
    if "://" in spec.archive_path:
        return {}
    data = next((v for v in volumes if v["name"] == "data"), None)
    if data is None:
        return {}
    if "persistentVolumeClaim" in data:
        kind = "persistentVolumeClaim"
        options = {"claimName": data["persistentVolumeClaim"]["claimName"]}
    else:
        kind = "hostPath"
        options = {"path": data["hostPath"]["path"], "type": data["hostPath"]["type"]}
    prefix = f"spark.kubernetes.executor.volumes.{kind}.archive"
    return {
        f"{prefix}.mount.path": spec.archive_path,
        f"{prefix}.mount.subPath": "archive",
        **{f"{prefix}.options.{key}": value for key, value in options.items()},
    }


def _environment(
    spec: PipelineSpec,
    config: JobConfig,
    image: str,
    namespace: str,
    driver_service: str,
    name: str,
    executor_volumes: dict[str, str],
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOME", "value": "/tmp"},
        {"name": "SPARK_LOCAL_DIRS", "value": "/tmp"},
    ]
    env += [{"name": k, "value": v} for k, v in sorted(config.environment.items())]
    spark = spec.spark
    if spark.executor_instances > 0:
        conf = {
            "spark.kubernetes.namespace": namespace,
            "spark.kubernetes.driver.pod.name": "$(POD_NAME)",
            "spark.driver.host": f"{driver_service}.{namespace}.svc",
            "spark.driver.port": str(DRIVER_PORT),
            "spark.driver.blockManager.port": str(BLOCK_MANAGER_PORT),
            "spark.driver.bindAddress": "0.0.0.0",
            "spark.kubernetes.container.image": image,
            "spark.kubernetes.container.image.pullPolicy": config.pull_policy,
            "spark.executor.instances": str(spark.executor_instances),
            "spark.executor.cores": str(spark.executor_cores),
            "spark.executor.memory": spark.executor_memory,
            "spark.kubernetes.executor.request.cores": spark.executor_core_request
            or str(spark.executor_cores),
            "spark.kubernetes.executor.podNamePrefix": kubernetes_name(name, "-exec", 47),
            "spark.kubernetes.executor.deleteOnTermination": "true",
            f"spark.kubernetes.executor.label.{PIPELINE_LABEL}": name[:63],
            **{f"spark.kubernetes.node.selector.{k}": v for k, v in spark.node_selector.items()},
            **executor_volumes,
        }
        if spark.tolerations:
            conf["spark.kubernetes.executor.podTemplateFile"] = f"{PIPELINE_DIR}/executor-pod.yaml"
        arguments = " ".join(f"--conf {k}={v}" for k, v in conf.items())
        env.append({"name": "PYSPARK_SUBMIT_ARGS", "value": f"{arguments} pyspark-shell"})
    return env


def _resources(memory: str, core_request: str | None, cores: int) -> dict[str, Any]:
    jvm = _mebibytes(memory)
    pod = jvm + max(MIN_OVERHEAD_MIB, int(jvm * OVERHEAD_FACTOR))
    return {
        "requests": {"cpu": core_request or str(cores), "memory": f"{pod}Mi"},
        "limits": {"memory": f"{pod}Mi"},
    }


def _mebibytes(memory: str) -> int:
    match = re.fullmatch(r"(\d+)([kmgtKMGT]?)", memory)
    if not match:
        raise JobNotConfigured("InvalidSpec", f"spec.spark memory {memory!r} is not like 2g")
    number, unit = int(match.group(1)), match.group(2).lower()
    factor = {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2}[unit]
    return max(1, int(number * factor))
