"""The Spark job, pure parts: objects rendered from the templates, and the driver's supervision."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from pipeline_documents import with_filters

from fink_core.spec import RestartPolicy, parse_pipeline
from fink_operator.job.render import (
    SPEC_HASH,
    JobConfig,
    JobNotConfigured,
    PipelineVolume,
    kubernetes_name,
    render,
)
from fink_operator.job.supervise import DriverPod, JobRecord, supervise

CONFIG = JobConfig(
    image="fink-k8s/pipeline:dev",
    pull_policy="Never",
    volume=PipelineVolume.parse("host-path:/var/lib/fink-pipelines"),
    environment={"FINK_KAFKA_BOOTSTRAP": "10.88.0.1:9094"},
)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = RestartPolicy(backoff_seconds=10, max_backoff_seconds=300)


def resource(**spec: Any) -> dict[str, Any]:
    body = with_filters("demo", 2, **spec)
    body["metadata"]["uid"] = "uid-1"
    return body


def objects(body: dict[str, Any], config: JobConfig = CONFIG) -> Any:
    return render(body, parse_pipeline(body), config)


def by_kind(rendered: Any) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in (*rendered.supporting, rendered.driver_pod)}


def test_objects_are_owned_by_the_pipeline_and_the_driver_runs_the_stored_document() -> None:
    body = resource(spark={"executor": {"instances": 2, "coreRequest": "250m"}})
    rendered = objects(body)
    kinds = by_kind(rendered)
    assert set(kinds) == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "Pod",
    }
    for obj in (*rendered.supporting, rendered.driver_pod):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert obj["metadata"]["namespace"] == "ns"
    stored = yaml.safe_load(kinds["ConfigMap"]["data"]["pipeline.yaml"])
    assert stored["spec"]["filters"] == body["spec"]["filters"]
    pod = rendered.driver_pod
    assert pod["metadata"]["name"] == "demo-driver"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "fink-k8s/pipeline:dev"
    assert container["imagePullPolicy"] == "Never"
    args = container["args"]
    assert args[:4] == ["fink-pipeline", "run", "-f", "/etc/fink/pipeline/pipeline.yaml"]
    assert args[args.index("--master") + 1] == "k8s://https://kubernetes.default.svc:443"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FINK_KAFKA_BOOTSTRAP"] == "10.88.0.1:9094"
    submit = env["PYSPARK_SUBMIT_ARGS"]
    assert "--conf spark.executor.instances=2" in submit
    assert "--conf spark.kubernetes.executor.request.cores=250m" in submit
    assert "--conf spark.kubernetes.driver.pod.name=$(POD_NAME)" in submit
    assert submit.endswith("pyspark-shell")
    assert pod["metadata"]["annotations"][SPEC_HASH] == rendered.spec_hash


def test_without_executors_spark_runs_in_the_driver_and_no_headless_service() -> None:
    rendered = objects(resource(spark={"executor": {"instances": 0}, "driver": {"cores": 2}}))
    services = [o for o in rendered.supporting if o["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == ["demo-metrics"]
    args = rendered.driver_pod["spec"]["containers"][0]["args"]
    assert args[args.index("--master") + 1] == "local[2]"


def test_memory_request_adds_sparks_overhead_and_the_core_request_is_honoured() -> None:
    rendered = objects(resource(spark={"driver": {"memory": "2g", "coreRequest": "500m"}}))
    resources = rendered.driver_pod["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": f"{2048 + 819}Mi"}
    assert resources["limits"]["memory"] == f"{2048 + 819}Mi"


def test_the_archive_and_checkpoint_live_on_the_pipelines_volume() -> None:
    rendered = objects(resource(sinks={"archive": {"path": "/archive/demo"}}))
    pod = rendered.driver_pod["spec"]
    (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
    assert data["hostPath"]["path"] == "/var/lib/fink-pipelines/ns/demo"
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/archive/demo"]["subPath"] == "archive"
    args = pod["containers"][0]["args"]
    assert args[args.index("--checkpoint") + 1] == "/var/lib/fink/checkpoint"
    assert pod["initContainers"][0]["securityContext"]["runAsUser"] == 0  # chown a hostPath


def submit_conf(rendered: Any) -> dict[str, str]:
    env = {e["name"]: e.get("value") for e in rendered.driver_pod["spec"]["containers"][0]["env"]}
    words = env.get("PYSPARK_SUBMIT_ARGS", "").split()
    return dict(w.split("=", 1) for w in words if "=" in w)


def test_executors_mount_a_local_archive_where_the_driver_does_since_their_tasks_write_it() -> None:
    executors = {"executor": {"instances": 2}}
    archive = {"archive": {"path": "/archive/demo"}}
    on_host = submit_conf(objects(resource(spark=executors, sinks=archive)))
    prefix = "spark.kubernetes.executor.volumes.hostPath.archive"
    assert on_host[f"{prefix}.mount.path"] == "/archive/demo"
    assert on_host[f"{prefix}.mount.subPath"] == "archive"
    assert on_host[f"{prefix}.options.path"] == "/var/lib/fink-pipelines/ns/demo"

    claimed = {**executors, "volumeClaim": "shared-data"}
    on_claim = submit_conf(objects(resource(spark=claimed, sinks=archive)))
    prefix = "spark.kubernetes.executor.volumes.persistentVolumeClaim.archive"
    assert on_claim[f"{prefix}.options.claimName"] == "shared-data"
    assert on_claim[f"{prefix}.mount.path"] == "/archive/demo"

    at_url = {"archive": {"path": "hdfs://namenode:8020/fink/archive"}}
    for conf in (
        submit_conf(objects(resource(spark=executors, sinks=at_url))),
        submit_conf(objects(resource(spark={"executor": {"instances": 0}}, sinks=archive))),
    ):
        assert not [k for k in conf if ".volumes." in k], conf


def test_a_storage_class_volume_is_a_claim_per_pipeline_not_owned_by_it() -> None:
    config = JobConfig(image="i", volume=PipelineVolume.parse("storage-class:ceph-rbd:50Gi"))
    rendered = objects(resource(), config)
    claim = rendered.data_claim
    assert claim is not None
    assert claim["spec"]["storageClassName"] == "ceph-rbd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert "ownerReferences" not in claim["metadata"]  # its data outlives the resource


def test_referenced_secrets_and_configmaps_are_mounted_where_the_resolver_reads_them() -> None:
    rendered = objects(
        resource(
            sinks={
                "kafka": {"credentialsSecretRef": {"name": "creds"}},
                "connectionsFrom": {"configMapRef": {"name": "conn"}},
            }
        )
    )
    mounts = {m["mountPath"] for m in rendered.driver_pod["spec"]["containers"][0]["volumeMounts"]}
    assert {"/etc/fink/references/secrets/creds", "/etc/fink/references/configmaps/conn"} <= mounts


def test_a_spec_change_that_matters_changes_the_hash_and_one_that_does_not_keeps_it() -> None:
    base = objects(resource()).spec_hash
    assert objects(resource(deletionPolicy="Delete")).spec_hash == base
    assert objects(resource(adopt={"topics": ["x"]})).spec_hash == base
    assert objects(resource(spark={"suspend": True})).spec_hash == base
    assert objects(resource(spark={"triggerInterval": "1 minute"})).spec_hash != base
    changed = resource()
    changed["spec"]["filters"] = changed["spec"]["filters"][:1]
    assert objects(changed).spec_hash != base


@pytest.mark.parametrize(
    ("config", "reason"),
    [(JobConfig(), "NoImage"), (JobConfig(image="i"), "NoCheckpoint")],
)
def test_a_job_that_cannot_run_says_what_to_set(config: JobConfig, reason: str) -> None:
    with pytest.raises(JobNotConfigured) as refused:
        objects(resource(), config)
    assert refused.value.reason == reason
    assert "spec.spark" in str(refused.value)


def test_a_hadoop_url_checkpoint_needs_no_volume() -> None:
    rendered = objects(
        resource(spark={"checkpointLocation": "s3a://fink/checkpoints/demo"}), JobConfig(image="i")
    )
    args = rendered.driver_pod["spec"]["containers"][0]["args"]
    assert args[args.index("--checkpoint") + 1] == "s3a://fink/checkpoints/demo"


def test_names_become_valid_kubernetes_labels() -> None:
    assert kubernetes_name("demo", "-driver") == "demo-driver"
    long = kubernetes_name("x" * 80, "-exec", 47)
    assert len(long) <= 47 and long.endswith("-exec")
    assert kubernetes_name("9lives", "-svc").startswith("p-")


def test_values_cannot_inject_yaml() -> None:
    body = resource(spark={"sparkConf": {"a": "b\nkind: Secret"}})
    rendered = objects(body)
    configmap = by_kind(rendered)["ConfigMap"]
    assert configmap["kind"] == "ConfigMap"
    assert yaml.safe_load(configmap["data"]["pipeline.yaml"])["spec"]["spark"]["sparkConf"] == {
        "a": "b\nkind: Secret"
    }
    json.dumps(rendered.driver_pod)  # plain data


# --- supervision ----------------------------------------------------------------------


def decide(driver: DriverPod | None, record: JobRecord | None = None, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"now": NOW, "wanted_hash": "h1", "suspend": False}
    options.update(kwargs)
    return supervise(
        options["now"],
        options["wanted_hash"],
        options["suspend"],
        driver,
        record or JobRecord(),
        POLICY,
        60,
        "demo-driver",
        9464,
    )


def reasons(decision: Any) -> dict[str, str]:
    return {c.type: c.reason for c in decision.conditions}


def test_no_driver_means_create_one_and_count_the_submission() -> None:
    decision = decide(None)
    assert decision.action == "create"
    assert decision.record.submissions == 1 and decision.record.spec_hash == "h1"
    assert reasons(decision)["SparkSubmitted"] == "Submitted"


def test_a_streaming_driver_is_left_alone_and_says_so() -> None:
    driver = DriverPod("demo-driver", "h1", "Running", ip="10.88.0.5", ready=True)
    decision = decide(driver, JobRecord(state="Running", consecutive_failures=2))
    assert decision.action == "none"
    assert [c.status for c in decision.conditions] == [True, True, True]
    assert "the query reads the source" in decision.conditions[2].message
    assert decision.record.consecutive_failures == 0
    assert decision.record.metrics_endpoint == "http://10.88.0.5:9464/metrics"


def test_a_spec_change_stops_the_driver_gracefully_then_starts_the_new_one() -> None:
    old = DriverPod("demo-driver", "h0", "Running")
    stopping = decide(old)
    assert (stopping.action, stopping.grace_seconds) == ("delete", 60)
    assert reasons(stopping)["DriverRunning"] == "Rolling"
    terminating = decide(DriverPod("demo-driver", "h0", "Running", terminating=True))
    assert terminating.action == "none"  # never a second driver while the first is going
    assert decide(None, stopping.record).action == "create"


def test_a_crash_records_the_failure_with_logs_and_backs_off_exponentially() -> None:
    crashed = DriverPod(
        "demo-driver", "h1", "Failed", exit_code=1, terminated_reason="Error", logs="boom\n"
    )
    first = decide(crashed, JobRecord(state="Running", submissions=1))
    assert (first.action, first.grace_seconds) == ("delete", 0)
    assert first.record.restarts == 1 and first.record.last_failure is not None
    assert "exited with code 1" in first.record.last_failure.message
    assert "boom" in first.record.last_failure.message
    assert first.record.next_start == "2026-11-25T12:00:10Z"
    waiting = decide(None, first.record, now=NOW + timedelta(seconds=5))
    assert waiting.action == "none" and waiting.requeue == pytest.approx(5)
    again = decide(None, first.record, now=NOW + timedelta(seconds=11))
    assert again.action == "create"
    second = decide(crashed, again.record, now=NOW + timedelta(seconds=20))
    assert second.record.next_start == "2026-11-25T12:00:40Z"  # 20 s after the second failure
    third = decide(crashed, replace_failures(second.record, 2), now=NOW + timedelta(seconds=60))
    assert reasons(third)["DriverRunning"] == "CrashLoop"


def replace_failures(record: JobRecord, count: int) -> JobRecord:
    from dataclasses import replace

    return replace(record, consecutive_failures=count, next_start=None)


def test_oom_killed_says_to_raise_the_memory() -> None:
    killed = DriverPod("demo-driver", "h1", "Failed", terminated_reason="OOMKilled", exit_code=137)
    decision = decide(killed)
    assert reasons(decision)["DriverRunning"] == "OOMKilled"
    assert "raise spec.spark.driver.memory" in decision.conditions[1].message


def test_pending_for_image_or_resources_is_reported_not_restarted() -> None:
    no_image = DriverPod(
        "demo-driver", "h1", "Pending", waiting_reason="ErrImageNeverPull", waiting_message="x"
    )
    decision = decide(no_image)
    assert decision.action == "none" and reasons(decision)["DriverRunning"] == "ImageNotPresent"
    unschedulable = DriverPod(
        "demo-driver", "h1", "Pending", unschedulable="0/1 nodes are available: Insufficient memory"
    )
    decision = decide(unschedulable)
    assert reasons(decision)["DriverRunning"] == "Unschedulable"
    assert "Insufficient memory" in decision.conditions[1].message


def test_a_vanished_driver_is_a_failure_then_restarted_after_backoff() -> None:
    decision = decide(None, JobRecord(state="Streaming", driver_pod="demo-driver", submissions=1))
    assert decision.action == "none"
    assert decision.record.last_failure is not None
    assert decision.record.last_failure.reason == "DriverVanished"
    assert decision.requeue == pytest.approx(10)


def test_suspend_stops_the_driver_and_starts_nothing() -> None:
    running = DriverPod("demo-driver", "h1", "Running")
    stopping = decide(running, suspend=True)
    assert (stopping.action, stopping.grace_seconds) == ("delete", 60)
    suspended = decide(None, stopping.record, suspend=True)
    assert suspended.action == "none" and suspended.record.state == "Suspended"
    assert set(reasons(suspended).values()) == {"Suspended"}
    resumed = decide(None, suspended.record)
    assert resumed.action == "create"


def test_a_driver_deleted_by_someone_else_is_a_failure_even_seen_terminating() -> None:
    streaming = JobRecord(state="Streaming", driver_pod="demo-driver", submissions=1)
    going = decide(DriverPod("demo-driver", "h1", "Running", terminating=True), streaming)
    assert going.action == "none" and reasons(going)["DriverRunning"] == "Terminating"
    gone = decide(None, going.record)
    assert gone.action == "none" and gone.record.restarts == 1
    assert gone.record.last_failure is not None
    assert gone.record.last_failure.reason == "DriverVanished"


def test_the_operators_own_stop_is_not_a_failure() -> None:
    rolling = decide(DriverPod("demo-driver", "h0", "Running"))  # a spec change
    going = decide(DriverPod("demo-driver", "h0", "Running", terminating=True), rolling.record)
    restarted = decide(None, going.record)
    assert restarted.action == "create" and restarted.record.restarts == 0


def test_every_later_disappearance_counts_and_status_forgets_a_past_restart_time() -> None:
    streaming = JobRecord(state="Streaming", driver_pod="demo-driver", submissions=1)
    first = decide(None, streaming)
    restarted = decide(None, first.record, now=NOW + timedelta(seconds=11))
    ready = DriverPod("demo-driver", "h1", "Running", ready=True)
    streaming_again = decide(ready, restarted.record, now=NOW + timedelta(seconds=20))
    status = streaming_again.record.to_status()
    assert status["nextStartTime"] is None  # a merge patch removes the earlier one
    again = decide(None, JobRecord.from_status(status), now=NOW + timedelta(seconds=30))
    assert again.record.restarts == 2
    assert again.record.consecutive_failures == 1  # streaming in between reset the backoff
