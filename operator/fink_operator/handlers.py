"""kopf handlers: thin wrappers that run a pass and write its outcome back.

Create, update and resume all run the same idempotent pass (passes.py). The
drift sweep (drift.py) re-runs it where something changed behind the
operator's back. The delete handler only exists for deletionPolicy Delete, so
only those pipelines carry a finalizer; a deleted Retain pipeline releases its
claims from the event handler, and its data stays.

Everything a handler needs arrives in kopf's memo as an OperatorRuntime, built
by `make_runtime` from the operator's configuration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from fink_core import crd, science_filter
from fink_core.connections import Address, KafkaConnection
from fink_core.errors import Retryable
from fink_core.hbase_admin import HBaseAdmin
from fink_core.kafka_admin import KafkaAdmin
from fink_operator import filter_checks, kube
from fink_operator.claims import KubernetesClaims
from fink_operator.config import FINALIZER, GROUP, OperatorConfig, backoff
from fink_operator.context import OperatorContext
from fink_operator.drift import DriftSweep, PipelineIndex
from fink_operator.events import KubernetesEvents
from fink_operator.filter_channel import FilterChannel
from fink_operator.filter_passes import filter_pass
from fink_operator.job.kube import KubernetesJobs
from fink_operator.job.render import PIPELINE_UID_LABEL
from fink_operator.passes import PassResult, PipelineGone, delete_pass, forget, retire, run_pass

RESOURCE = (crd.GROUP, crd.VERSION, crd.PLURAL)
FILTER_RESOURCE = (crd.GROUP, crd.VERSION, science_filter.PLURAL)
# how often a ScienceFilter's Live condition and counts are read back from its pipelines
FILTER_STATUS_INTERVAL = 5.0


@dataclass
class OperatorRuntime:
    context: OperatorContext
    index: PipelineIndex
    sweep: DriftSweep
    api: Any  # kubernetes.client.ApiClient: the one connection every adapter and kopf share
    write_filter_status: Any = None  # kube.status_writer for ScienceFilters
    # kopf's stop flag: set to stop (the lease lost), and set again at cleanup, because kopf
    # waits for a threading.Event in an executor thread that asyncio joins before run() returns
    stop_flag: threading.Event = field(default_factory=threading.Event)


def make_runtime(config: OperatorConfig) -> OperatorRuntime:
    """The real adapters: the Kubernetes API, Kafka's AdminClient, HBase's Thrift2 gateway."""
    api = kube.api_client(config.kubeconfig)

    def kafka_admin(connection: KafkaConnection) -> KafkaAdmin:
        return KafkaAdmin(connection, timeout=config.server_timeout, step_delay=config.step_delay)

    def hbase_admin(address: Address) -> HBaseAdmin:
        return HBaseAdmin(address, timeout=config.server_timeout)

    channels: dict[tuple[str, tuple[tuple[str, str], ...]], FilterChannel] = {}

    def filter_channel(connection: KafkaConnection) -> FilterChannel:
        if connection.key not in channels:
            channels[connection.key] = FilterChannel(connection, timeout=config.server_timeout)
        return channels[connection.key]

    context = OperatorContext(
        filter_documents=kube.science_filters(api),
        filter_channel=filter_channel,
        config=config,
        write_status=kube.status_writer(api),
        claims=KubernetesClaims(api),
        events=KubernetesEvents(api),
        kafka_admin=kafka_admin,
        hbase_admin=hbase_admin,
        readers=kube.readers(api),
        job_config=config.jobs,
        jobs=KubernetesJobs(api),
    )
    index = PipelineIndex()
    return OperatorRuntime(
        context,
        index,
        DriftSweep(context, index),
        api,
        write_filter_status=kube.status_writer(api, science_filter.PLURAL),
    )


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf logs in with the very credentials the operator's client loaded (kube.api_client)."""
    runtime: OperatorRuntime = memo.runtime
    if runtime.context.config.kubeconfig is None and kube.in_cluster():
        return kopf.login_with_service_account(**kwargs)
    return kube.connection_info(runtime.api)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # A pass writes the status itself (passes.run_pass), before kopf patches its own
    # annotations: the watch event of that write carries no "handled" mark yet. kopf
    # skips such an event once its own patch comes back, but waits only
    # consistency_timeout for it (5 s by default): with hundreds of pipelines created at
    # once the watch lags more than that, and each creation was handled twice.
    settings.persistence.consistency_timeout = 60
    # The API server ends a watch after server_timeout; kopf then re-lists. Without
    # these, a watch silently stalled by a proxy or load balancer is never noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 15
    # Events are ours (events.py): kopf would post a warning per retry of a failing handler.
    settings.posting.enabled = False
    runtime: OperatorRuntime = memo.runtime
    settings.execution.max_workers = runtime.context.config.workers
    runtime.sweep.start()


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.sweep.stop()
    memo.runtime.stop_flag.set()  # else a SIGTERM'd operator never returns from kopf.run


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def on_change(
    body: kopf.Body,
    reason: str,
    retry: int,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    runtime: OperatorRuntime = memo.runtime
    if runtime.stop_flag.is_set():
        # stopping: asyncio runs every handler call still queued before the process may
        # exit; not done here means done by the next operator, as soon as it starts
        raise kopf.TemporaryError("the operator is stopping", delay=1)
    result = _pass_pipeline(runtime, body, str(reason))
    if result is None:
        return
    if result.requeue is not None:
        runtime.sweep.soon(body.metadata.uid or "", result.requeue)
    if result.retry:
        # Status already says which server or object is missing; kopf retries with backoff.
        raise kopf.TemporaryError(
            result.retry_message, delay=backoff(retry, runtime.context.config.max_backoff)
        )


def _pass_pipeline(
    runtime: OperatorRuntime, body: Mapping[str, Any], trigger: str
) -> PassResult | None:
    """run_pass and keep the drift sweep's index current; None for a pipeline being deleted."""
    try:
        result = run_pass(runtime.context, body, trigger)
    except PipelineGone as gone:
        logging.getLogger(__name__).info("%s", gone)
        runtime.index.forget(body["metadata"].get("uid") or "")
        return None
    runtime.index.passed(body, result)  # run_pass wrote the status, under the pipeline's lock
    return result


def _deletes_data(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy", "Retain") == "Delete"


@kopf.on.delete(*RESOURCE, when=_deletes_data)
def on_delete(
    body: kopf.Body,
    retry: int,
    runtime: Any,
    memo: kopf.Memo,
    logger: logging.Logger,
    **_: Any,
) -> None:
    """deletionPolicy Delete: delete the topics and the table it owns, then release."""
    operator: OperatorRuntime = memo.runtime
    context = operator.context
    try:
        delete_pass(context, body)
    except Retryable as error:
        if runtime.total_seconds() > context.config.cleanup_timeout:
            message = (
                f"gave up deleting the pipeline's data after "
                f"{context.config.cleanup_timeout:.0f}s ({error}); its topics and table may "
                "remain, still claimed: delete them by hand, then `kubectl delete sinkclaim` "
                "the claims naming this pipeline"
            )
            from fink_operator.reconcile import Event

            context.events.post(body, Event("Warning", "CleanupAbandoned", message))
            logger.warning(message)
            return
        raise kopf.TemporaryError(
            str(error), delay=backoff(retry, context.config.max_backoff)
        ) from error


@kopf.on.event("v1", "pods", labels={PIPELINE_UID_LABEL: kopf.PRESENT})
def on_driver_event(labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    """A pipeline's pod changed (started, failed, vanished): look at its pipeline now."""
    runtime: OperatorRuntime = memo.runtime
    if runtime.context.job_config.enabled:
        runtime.sweep.soon(labels[PIPELINE_UID_LABEL], 0.5)


@kopf.on.event(*RESOURCE)
def on_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Keep the drift sweep's index current; release a deleted Retain pipeline's claims."""
    runtime: OperatorRuntime = memo.runtime
    uid = body.metadata.uid or ""
    if type == "DELETED":
        runtime.index.forget(uid)
        forget(runtime.context, body)
    elif body.metadata.get("deletionTimestamp"):
        # being deleted: the sweep's copy of it must not run a pass that recreates
        # what on_delete removes (or, for Retain, claims the names again)
        runtime.index.forget(uid)
        retire(runtime.context, uid)
    else:
        runtime.index.saw(body)


@kopf.on.resume(*FILTER_RESOURCE)
@kopf.on.create(*FILTER_RESOURCE)
@kopf.on.update(*FILTER_RESOURCE)
@kopf.timer(*FILTER_RESOURCE, interval=FILTER_STATUS_INTERVAL, initial_delay=FILTER_STATUS_INTERVAL)
def on_filter(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Validate the filter (when something it depends on changed), then report Live and counts.

    When its validation or enablement changed, its pipelines are reconciled at once:
    that creates its topic and hands it to them through their control topics.
    """
    runtime: OperatorRuntime = memo.runtime
    if runtime.stop_flag.is_set():
        raise kopf.TemporaryError("the operator is stopping", delay=1)
    context = runtime.context
    read_pipeline = kube.pipeline_reader(runtime.api)
    result = filter_pass(context, body, read_pipeline, filter_checks.check, filter_checks.dry_run)
    runtime.write_filter_status(body, result.status)
    for event in result.events:
        context.events.post(body, event)
    for pipeline in result.pipelines_to_pass:
        _pass_pipeline(runtime, pipeline, "sciencefilter")
    if result.pipelines_to_pass:
        # the pipelines now have what they need: tell Live without waiting for the timer
        again = filter_pass(
            context,
            {**body, "status": result.status},
            read_pipeline,
            filter_checks.check,
            filter_checks.dry_run,
        )
        runtime.write_filter_status({**body, "status": result.status}, again.status)


@kopf.on.event(*FILTER_RESOURCE)
def on_filter_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A deleted ScienceFilter: its pipelines stop running it (its topic and alerts stay)."""
    if type != "DELETED":
        return
    runtime: OperatorRuntime = memo.runtime
    read_pipeline = kube.pipeline_reader(runtime.api)
    namespace = body.metadata.namespace or "default"
    for name in (body.spec or {}).get("pipelines") or []:
        pipeline = read_pipeline(namespace, name)
        if pipeline is not None:
            _pass_pipeline(runtime, pipeline, "sciencefilter")
