"""Whole passes with a context of fakes: status, events, planning, references and drift.

This is the unit-level proof that one pass is testable end to end without a
server: the same `run_pass` the kopf handlers and the drift sweep call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest
from fakes import FakeClaims, FakeEvents, FakeHBase, FakeKafka, fake_context
from pipeline_documents import minimal

from fink_core.resources import TopicState
from fink_operator.drift import DriftSweep, PipelineIndex
from fink_operator.kube import changed_status
from fink_operator.passes import PipelineGone, delete_pass, run_pass

SCIENCE = {
    "modules": [
        {"name": "quality_cuts"},
        {"name": "lightcurve_features"},
        {"name": "solar_system"},
    ],
    "filters": [{"name": "early_sn_candidates"}],
}


def science_pipeline(name: str = "p1", **spec: Any) -> dict[str, Any]:
    """A valid pipeline whose topics and table are its own (default names would be shared)."""
    own = {
        **SCIENCE,
        "filters": [{"name": "early_sn_candidates", "topic": f"{name}.early"}],
        "sinks": {"hbase": {"table": "t_" + name}},
    }
    return minimal(name, "ns", **{**own, **spec})


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def with_status(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**body, "status": status}


def test_a_pass_writes_the_whole_status_and_says_ready() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    context = fake_context(kafka, hbase)
    body = science_pipeline()
    body["metadata"]["generation"] = 3
    result = run_pass(context, body, "create")
    assert conditions(result.status) == {
        "TopicsReady": ("True", "Reconciled"),
        "TablesReady": ("True", "Reconciled"),
        "Ready": ("True", "Reconciled"),
    }
    assert result.status["observedGeneration"] == 3
    assert result.status["topics"] == ["p1-deadletter", "p1.early"]
    assert result.status["tables"] == ["t_p1"] and result.status["phase"] == "Ready"
    assert not result.retry
    assert "t_p1" in hbase.tables and len(kafka.topics) == 2


def test_events_are_posted_for_changes_not_again_on_an_idle_pass() -> None:
    context = fake_context()
    events: FakeEvents = context.events  # type: ignore[assignment]
    body = science_pipeline()
    first = run_pass(context, body, "create")
    assert sorted(events.reasons()) == ["Reconciled", "TableCreated", "TopicCreated"]
    events.posted.clear()
    run_pass(context, with_status(body, first.status), "drift")
    assert events.posted == []


def test_an_invalid_science_plan_creates_nothing_and_says_which_field() -> None:
    kafka, hbase, claims = FakeKafka(), FakeHBase(), FakeClaims()
    context = fake_context(kafka, hbase, claims)
    body = science_pipeline(filters=[{"name": "early_sn"}])
    result = run_pass(context, body, "create")
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.filters[0].name: unknown science filter 'early_sn'" in ready["message"]
    assert not kafka.topics and not hbase.tables and not claims.claims
    assert not result.retry  # the user must fix it: no retry storm


def test_a_bad_module_parameter_is_refused_by_the_shared_planner() -> None:
    body = science_pipeline(modules=[{"name": "quality_cuts", "parameters": {"minRb": 2}}])
    result = run_pass(fake_context(), body, "create")
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "minRb must be in [0, 1], got 2" in ready["message"]


def test_a_missing_secret_is_retried_and_named() -> None:
    body = science_pipeline(sinks={"kafka": {"credentialsSecretRef": {"name": "creds"}}})
    result = run_pass(fake_context(), body, "create")
    assert result.retry
    assert conditions(result.status)["Ready"] == ("False", "ReferenceNotFound")
    assert "Secret 'creds' in namespace ns not found" in result.retry_message


def test_a_secret_with_a_file_path_is_refused_not_retried() -> None:
    secrets = {"creds": {"sasl.username": "u", "ssl.ca.location": "/etc/passwd"}}
    body = science_pipeline(sinks={"kafka": {"credentialsSecretRef": {"name": "creds"}}})
    result = run_pass(fake_context(secrets=secrets), body, "create")
    assert not result.retry
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidCredentials"
    assert "ssl.ca.location not allowed" in ready["message"]


def recorder(
    written: dict[str, dict[str, Any]],
) -> Callable[[Mapping[str, Any], Mapping[str, Any]], None]:
    """A status writer that keeps, per pipeline, the last status that changed anything."""

    def write(body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        if changed_status(body.get("status"), status):
            written[body["metadata"]["name"]] = dict(status)

    return write


def test_a_pass_writes_over_the_status_last_written_not_over_a_stale_body() -> None:
    """A watch body older than the operator's last write must not decide what is patched."""
    seen: list[Mapping[str, Any] | None] = []
    outcome: list[bool] = [True]

    def write(body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        seen.append(body.get("status"))
        return outcome[0]

    context = replace(fake_context(), write_status=write)
    stale = science_pipeline()
    first = run_pass(context, stale, "create")
    run_pass(context, stale, "drift")  # the same, still status-less, body
    assert seen == [None, first.status]
    outcome[0] = False  # the write fails: the pass after it writes over the body again
    run_pass(context, stale, "drift")
    run_pass(context, stale, "drift")
    assert seen[-1] is None


def test_the_drift_sweep_asks_each_server_once_and_passes_only_the_drifted() -> None:
    kafka, hbase = FakeKafka(), FakeHBase()
    written: dict[str, dict[str, Any]] = {}
    context = replace(
        fake_context(kafka, hbase),
        write_status=recorder(written),
    )
    index = PipelineIndex()
    sweep = DriftSweep(context, index)
    bodies = [science_pipeline(f"p{i}") for i in range(20)]
    for body in bodies:
        index.saw(body)
        index.passed(body, run_pass(context, body, "create"))
    assert len(written) == 20
    written.clear()
    kafka.calls.clear()
    hbase.calls.clear()
    idle = sweep.sweep()
    assert (idle.pipelines, idle.drifted, idle.passes) == (20, 0, 0)
    assert kafka.calls == ["observe"] and hbase.calls == []

    del kafka.topics["p7-deadletter"]  # behind the operator's back
    kafka.topics["p3-deadletter"] = TopicState("p3-deadletter", 1, 1, {"retention.ms": "1"})
    drifted = sweep.sweep()
    assert (drifted.drifted, drifted.passes) == (2, 2)
    assert "p7-deadletter" in kafka.topics
    assert kafka.topics["p3-deadletter"].config["retention.ms"] == "604800000"
    assert set(written) <= {"p3", "p7"}  # status is rewritten only where it changed
    sweep.stop()


def test_a_deleted_pipelines_old_body_recreates_nothing() -> None:
    """The sweep's index holds a body read before the deletion (CI saw the topics come back)."""
    kafka, hbase = FakeKafka(), FakeHBase()
    context = fake_context(kafka, hbase)
    index = PipelineIndex()
    sweep = DriftSweep(context, index)
    body = science_pipeline(deletionPolicy="Delete")
    index.saw(body)
    index.passed(body, run_pass(context, body, "create"))
    assert "t_p1" in hbase.tables and len(kafka.topics) == 2 and context.claims.claims

    delete_pass(context, body)
    assert not kafka.topics and "t_p1" not in hbase.tables
    with pytest.raises(PipelineGone, match="being deleted"):
        run_pass(context, body, "drift")
    report = sweep.sweep()  # the stale body is still indexed: its pass must stop short
    assert report.passes == 1 and len(index) == 0
    assert not kafka.topics and "t_p1" not in hbase.tables and not context.claims.claims
    sweep.stop()


def test_a_server_down_during_a_sweep_marks_every_pipeline_on_it_without_a_pass_each() -> None:
    kafka = FakeKafka()
    written: dict[str, dict[str, Any]] = {}
    context = replace(
        fake_context(kafka),
        write_status=recorder(written),
    )
    index = PipelineIndex()
    sweep = DriftSweep(context, index)
    for i in range(5):
        body = science_pipeline(f"p{i}")
        index.saw(body)
        index.passed(body, run_pass(context, body, "create"))
    kafka.down = True
    kafka.calls.clear()
    report = sweep.sweep()
    assert report.passes == 0
    assert {conditions(s)["TopicsReady"] for s in written.values()} == {
        ("False", "KafkaUnreachable")
    }
    assert len(written) == 5
    kafka.down = False
    recovered = sweep.sweep()  # not Ready: each gets a pass, and is Ready again
    assert recovered.passes == 5
    assert all(conditions(s)["Ready"][0] == "True" for s in written.values())
    sweep.stop()


def job_context(kafka: FakeKafka | None = None) -> tuple[Any, Any]:
    from dataclasses import replace

    from fakes import FakeJobs

    from fink_operator.job.render import JobConfig, PipelineVolume

    jobs = FakeJobs()
    context = replace(
        fake_context(kafka),
        job_config=JobConfig(image="img", volume=PipelineVolume.parse("host-path:/data")),
        jobs=jobs,
    )
    return context, jobs


def test_the_job_starts_once_topics_and_table_exist_and_ready_waits_for_streaming() -> None:
    context, jobs = job_context()
    body = science_pipeline()
    first = run_pass(context, body, "create")
    assert [p["metadata"]["name"] for p in jobs.created] == ["p1-driver"]
    assert conditions(first.status)["SparkSubmitted"] == ("True", "Submitted")
    assert conditions(first.status)["Ready"][0] != "True"
    assert first.status["job"]["submissions"] == 1 and first.requeue is not None
    jobs.run("ns", "p1-driver")
    second = run_pass(context, with_status(body, first.status), "drift")
    assert conditions(second.status)["Streaming"] == ("True", "Streaming")
    assert conditions(second.status)["Ready"] == ("True", "Reconciled")
    assert second.status["job"]["state"] == "Streaming"
    assert len(jobs.created) == 1  # no second submission


def test_an_object_the_api_server_refuses_is_a_condition_and_is_tried_again() -> None:
    from fink_operator.job.supervise import SubmitFailed

    context, jobs = job_context()
    refusal = "the API server refused Service p1-metrics (500): range is full"

    def refuse(objects: Any) -> None:
        raise SubmitFailed(refusal)

    jobs.apply = refuse
    body = science_pipeline()
    result = run_pass(context, body, "create")  # no exception escapes the pass
    submitted = next(c for c in result.status["conditions"] if c["type"] == "SparkSubmitted")
    assert (submitted["status"], submitted["reason"]) == ("False", "SubmitFailed")
    assert refusal in submitted["message"]
    assert jobs.created == [] and result.requeue == 30.0
    del jobs.apply  # the cause is fixed: the next pass submits
    again = run_pass(context, body, "drift")
    assert [p["metadata"]["name"] for p in jobs.created] == ["p1-driver"]
    assert conditions(again.status)["SparkSubmitted"] == ("True", "Submitted")


def test_no_driver_is_started_while_kafka_is_down() -> None:
    kafka = FakeKafka(down=True)
    context, jobs = job_context(kafka)
    result = run_pass(context, science_pipeline(), "create")
    assert jobs.created == []
    assert conditions(result.status)["SparkSubmitted"] == ("Unknown", "WaitingForSinks")


def test_a_spec_change_rolls_the_driver_once_it_is_gone() -> None:
    context, jobs = job_context()
    body = science_pipeline()
    status = run_pass(context, body, "create").status
    jobs.run("ns", "p1-driver")
    status = run_pass(context, with_status(body, status), "drift").status
    changed = science_pipeline(spark={"triggerInterval": "1 minute"})
    rolling = run_pass(context, with_status(changed, status), "update")
    assert jobs.deleted == [("p1-driver", 60)]
    assert conditions(rolling.status)["DriverRunning"] == ("False", "Rolling")
    started = run_pass(context, with_status(changed, rolling.status), "drift")
    assert len(jobs.created) == 2
    assert started.status["job"]["specHash"] != status["job"]["specHash"]


def test_a_driver_gone_behind_the_operators_back_is_restarted_after_backoff() -> None:
    context, jobs = job_context()
    body = science_pipeline(spark={"restartPolicy": {"backoffSeconds": 2}})
    status = run_pass(context, body, "create").status
    jobs.run("ns", "p1-driver")
    status = run_pass(context, with_status(body, status), "drift").status
    assert status["job"]["state"] == "Streaming"
    jobs.pods.clear()  # kubectl delete pod --grace-period=0
    gone = run_pass(context, with_status(body, status), "drift")
    assert len(jobs.created) == 1, "restarted at once, without backoff"
    assert gone.status["job"]["restarts"] == 1
    assert gone.status["job"]["lastFailure"]["reason"] == "DriverVanished"
    assert gone.requeue is not None and 0 < gone.requeue <= 2
