"""The end-to-end demo: a BrokerPipeline applied to the local stack, alerts flowing through it.

Run by `make demo` (scripts/demo.sh) once the stack is up. Every step prints the
command a user would type, then what happened:

1. install the CRDs, create the namespace, start the operator (with the
   addresses pods use, the project's image, a volume for the pipeline);
2. the survey's stream exists before a broker subscribes to it: create its
   source topic (empty), as ZTF's or Rubin's Kafka already has it;
   `kubectl apply` the example pipeline; the operator creates its Kafka topics
   and HBase table, then starts its Spark job as pods on the real node (a driver
   and an executor), and reports Ready once the job streams;
   2b. a scientist's filter: `fink-filter init`, `test`, `apply` to the running job
   (scripts/demo_science.py);
3. stream synthetic ZTF alerts (a few malformed ones among them) into the
   source topic;
4. watch the job consume them, through the driver's metrics;
5. show what reached each sink: filter topics, dead letters, HBase, the
   Parquet archive, and the operator's metrics;
   5b. the scientist's filter: live, its alerts (`kubectl get sf`, `fink-filter tail`);
6. a summary table.

The job keeps streaming after the demo (the stack keeps running). Running the
demo again finds everything in place, streams alerts of the next seed (new
objectIds and candids, so new HBase rows), and the running job processes only
those. Exits 1 with the reason (and the operator's or the driver's log tail)
when a step fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import demo_science
import happybase
import pyarrow.parquet as pq
import yaml
from demo_shell import BIN, DemoError, _short, kubectl, run, show, step

from fink_core.spec import PipelineSpec, parse_pipeline
from fink_pipeline.science import plan_science
from fink_pipeline.stream.enriched import FILTERS_FIELD, EnrichedCodec, enriched_schema
from fink_pipeline.stream.observe import metric_sum, read_committed, scrape_metrics
from fink_pipeline.stream.science_step import ScienceStep
from fink_pipeline.stream.sinks import ParquetArchive
from fink_stack import api
from fink_stack.endpoints import Endpoints
from fink_stack.layout import Layout
from fink_stack.stack import tool_dirs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "manifests" / "examples" / "ztf-demo-pipeline.yaml"
NAMESPACE = "fink-demo"
PIPELINE = "ztf-demo"
ARCHIVE_FILES = ParquetArchive.files_of(f"{NAMESPACE}.{PIPELINE}")  # in each night
SOURCE_PARTITIONS = 2
OPERATOR_METRICS_PORT = 18080
READY_TIMEOUT_S = int(os.environ.get("FINK_DEMO_READY_TIMEOUT", "300"))
DRAIN_TIMEOUT_S = int(os.environ.get("FINK_DEMO_DRAIN_TIMEOUT", "300"))


@dataclass
class Demo:
    args: argparse.Namespace
    endpoints: Endpoints
    state: Path
    operator: subprocess.Popen[bytes] | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def operator_log(self) -> Path:
        return self.state / "operator.log"

    @property
    def volumes(self) -> Path:
        """The operator's --pipeline-volume: each pipeline's checkpoint and archive, on the host."""
        return self.state / "volumes"

    @property
    def archive(self) -> Path:
        return self.volumes / NAMESPACE / PIPELINE / "archive"


# --- printing and running ---------------------------------------------------------------


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    " + line for line in text)


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """Prometheus samples `name{labels}` -> value; empty when nothing answers."""
    try:
        return scrape_metrics(port, host=host, timeout=2)
    except OSError:
        return {}


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- 1. the operator --------------------------------------------------------------------


def start_operator(demo: Demo) -> None:
    step(f"1. The operator: CRDs installed, namespace {NAMESPACE}, operator watching it")
    run([str(BIN / "fink-operator"), "install-crd"])
    try:
        kubectl("get", "namespace", NAMESPACE, "-o", "name", capture=True, quiet=True)
        print(f"(namespace {NAMESPACE} already exists)")
    except DemoError:
        kubectl("create", "namespace", NAMESPACE)

    stop_previous_operator(demo)
    if port_in_use(OPERATOR_METRICS_PORT):
        raise DemoError(
            f"port {OPERATOR_METRICS_PORT} (the operator's metrics) is taken by another program"
        )
    pods = demo.endpoints.pods
    if pods is None:
        raise DemoError("the real node is not up: run `.venv/bin/fink-stack up`")
    demo.volumes.mkdir(parents=True, exist_ok=True)
    argv = [
        str(BIN / "fink-operator"), "run", "--namespace", NAMESPACE,
        "--metrics-address", "127.0.0.1", "--metrics-port", str(OPERATOR_METRICS_PORT),
        # the addresses pods use (the host reaches them too), so operator and job agree
        "--kafka-bootstrap", pods.kafka_bootstrap, "--hbase-thrift", pods.hbase_thrift,
        "--hbase-admin", pods.hbase_admin,
        "--spark-image", pods.pipeline_image, "--image-pull-policy", "Never",
        "--pipeline-volume", f"host-path:{demo.volumes}",
    ]  # fmt: skip
    show(argv, f"  >{_short(str(demo.operator_log))} 2>&1 &")
    with demo.operator_log.open("ab") as log:
        log.write(f"\n--- demo run at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        demo.operator = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    (demo.state / "operator.pid").write_text(str(demo.operator.pid))
    deadline = time.monotonic() + 30
    while not scrape(OPERATOR_METRICS_PORT):
        if demo.operator.poll() is not None:
            raise DemoError(f"the operator exited with {demo.operator.returncode}")
        if time.monotonic() > deadline:
            raise DemoError("the operator's metrics did not answer within 30 s")
        time.sleep(0.3)
    print(f"operator running (pid {demo.operator.pid}), metrics on :{OPERATOR_METRICS_PORT}")


def stop_previous_operator(demo: Demo) -> None:
    """A demo interrupted hard may have left its operator running: stop that one only."""
    pid_file = demo.state / "operator.pid"
    if not pid_file.exists():
        return
    with contextlib.suppress(ValueError, OSError):
        pid = int(pid_file.read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if any(b"fink-operator" in part for part in command) and NAMESPACE.encode() in command:
            os.kill(pid, signal.SIGTERM)
            print(f"(stopped the operator a previous demo left running, pid {pid})")
            time.sleep(1)
    pid_file.unlink(missing_ok=True)


def check_operator(demo: Demo) -> None:
    if demo.operator is not None and demo.operator.poll() is not None:
        raise DemoError(f"the operator exited with {demo.operator.returncode}")


def stop_operator(demo: Demo) -> None:
    if demo.operator is None or demo.operator.poll() is not None:
        return
    demo.operator.terminate()
    try:
        demo.operator.wait(20)
    except subprocess.TimeoutExpired:
        demo.operator.kill()
        demo.operator.wait(10)
    (demo.state / "operator.pid").unlink(missing_ok=True)


# --- 2. the resource --------------------------------------------------------------------


def create_source_topic(spec: PipelineSpec) -> None:
    """The survey's topic, empty: a pipeline reads a stream; it never creates the survey's."""
    print("the survey's stream, before any broker subscribes to it (no alerts yet):")
    run(
        [
            str(BIN / "fink-alerts"), "produce", "--survey", spec.survey, "--topic",
            spec.source.topic, "--count", "0", "--create-topic",
            "--partitions", str(SOURCE_PARTITIONS),
        ]
    )  # fmt: skip


def apply_pipeline(demo: Demo) -> tuple[Path, PipelineSpec]:
    step(
        "2. A BrokerPipeline, applied with kubectl: the operator makes its topics and table, "
        "then runs its Spark job on the node"
    )
    create_source_topic(parse_pipeline(yaml.safe_load(EXAMPLE.read_text())))
    kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLE.relative_to(ROOT)))
    # A Ready condition may be left over from an earlier run: first wait for this operator's
    # own first pass (kopf writes the status right after the handler that counts it returns).
    deadline = time.monotonic() + 30
    while metric_sum(scrape(OPERATOR_METRICS_PORT), "controller_runtime_reconcile_total") < 1:
        check_operator(demo)
        if time.monotonic() > deadline:
            raise DemoError("the operator has not reconciled the pipeline within 30 s")
        time.sleep(0.3)
    time.sleep(1)
    wait = ["kubectl", "wait", "-n", NAMESPACE, f"bp/{PIPELINE}", "--for=condition=Ready"]
    wait.append(f"--timeout={READY_TIMEOUT_S}s")
    show(wait)
    waiter = subprocess.Popen(wait, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    polls = 0
    while waiter.poll() is None:
        try:
            check_operator(demo)
            polls += 1
            if polls % 6 == 0:
                check_not_refused()
        except DemoError:
            waiter.kill()
            raise
        time.sleep(0.5)
    output = waiter.stdout.read().strip() if waiter.stdout else ""
    if waiter.returncode != 0:
        raise DemoError(f"{PIPELINE} did not become Ready within {READY_TIMEOUT_S} s: {output}")
    print(output)
    kubectl("get", "bp", "-n", NAMESPACE)
    kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")

    command = ["kubectl", "get", "bp", PIPELINE, "-n", NAMESPACE, "-o", "yaml"]
    resource = demo.state / f"{PIPELINE}.yaml"
    show(command, f" > {_short(str(resource))}")
    stored = yaml.safe_load(run(command, capture=True, quiet=True))
    resource.write_text(yaml.safe_dump(stored, sort_keys=False))
    status = stored.get("status", {})
    print(f"topics: {', '.join(status.get('topics', []))}")
    print(f"table:  {', '.join(status.get('tables', []))}")
    job = status.get("job", {})
    print(
        f"job:    {job.get('state')}, driver {job.get('driverPod')} "
        f"(submission {job.get('submissions')}), metrics {job.get('metricsEndpoint')}"
    )
    demo.summary["job"] = job
    return resource, parse_pipeline(stored)


# Ready=False for these reasons waits for the user, not for time: say so at once
NEEDS_USER = {
    "AdoptionRequired": (
        "an earlier demo pipeline was deleted and its topics and table were kept "
        "(deletionPolicy Retain), so the operator takes nothing over implicitly. Either "
        "list them in spec.adopt (docs/operator.md, Ownership) or start afresh with "
        "`.venv/bin/fink-stack down --wipe`"
    ),
    "Conflict": "another pipeline owns one of its topics or its table (docs/operator.md)",
    "InvalidSpec": "the example resource is invalid: fix it and run the demo again",
}


def check_not_refused() -> None:
    """DemoError when the pipeline is refused for a reason only the user can fix."""
    stored = json.loads(
        kubectl("get", "bp", PIPELINE, "-n", NAMESPACE, "-o", "json", capture=True, quiet=True)
    )
    for condition in stored.get("status", {}).get("conditions") or []:
        reason = condition.get("reason", "")
        ready = condition.get("type") == "Ready" and condition.get("status") == "False"
        if ready and reason in NEEDS_USER:
            raise DemoError(f"{PIPELINE} is refused ({reason}): {NEEDS_USER[reason]}")


def show_conditions() -> None:
    """What the resource says about itself, for a failure message."""
    with contextlib.suppress(DemoError):
        stored = json.loads(
            kubectl("get", "bp", PIPELINE, "-n", NAMESPACE, "-o", "json", capture=True, quiet=True)
        )
        print(f"conditions of {NAMESPACE}/{PIPELINE}:", file=sys.stderr)
        for condition in stored.get("status", {}).get("conditions", []) or [{"none": "yet"}]:
            print(f"    {json.dumps(condition)}", file=sys.stderr)


# --- 3. the alerts ----------------------------------------------------------------------


def next_seed(demo: Demo) -> tuple[int, int]:
    """(seed, run number): each run takes the next seed unless --seed is given."""
    runs_file = demo.state / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
    seed = demo.args.seed if demo.args.seed is not None else max([0, *runs]) + 1
    runs.append(seed)
    runs_file.write_text(json.dumps(runs))
    return seed, len(runs)


def produce(demo: Demo, spec: PipelineSpec) -> None:
    args = demo.args
    seed, number = next_seed(demo)
    step(f"3. {args.alerts} synthetic ZTF alerts and {args.malformed} malformed messages")
    print(
        f"run {number} of this demo: seed {seed}. The generator's objectIds and candids are "
        "fixed by the seed,\nso every run takes the next seed and its alerts become new HBase "
        "rows (the same seed would rewrite the same rows)."
    )
    run(
        [
            str(BIN / "fink-alerts"), "produce", "--survey", "ztf", "--topic", spec.source.topic,
            "--count", str(args.alerts), "--rate", str(args.rate), "--seed", str(seed),
            "--malformed", str(args.malformed),
            "--create-topic", "--partitions", str(SOURCE_PARTITIONS),
        ]
    )  # fmt: skip
    demo.summary.update(seed=seed, run=number)


# --- 4. the enrichment core -------------------------------------------------------------


def driver_metrics(demo: Demo) -> dict[str, float]:
    """The driver's metrics, at its pod's address (the host reaches the pod network)."""
    job = demo.summary.get("job") or {}
    endpoint = job.get("metricsEndpoint") or ""
    if not endpoint.startswith("http://"):
        return {}
    host, _, rest = endpoint[len("http://") :].partition(":")
    return scrape(int(rest.split("/", 1)[0]), host=host)


def watch_job(demo: Demo, before: dict[str, float]) -> dict[str, float]:
    step("4. The enrichment core, running as pods on the node, consumes them")
    wanted = demo.args.alerts + demo.args.malformed
    job = demo.summary.get("job") or {}
    print(
        f"(driver logs: kubectl logs -n {NAMESPACE} {job.get('driverPod')}; metrics: curl -s "
        f"{job.get('metricsEndpoint')} | grep fink_pipeline_)"
    )
    started = time.monotonic()
    start_read = metric_sum(before, "fink_pipeline_alerts_read_total")
    shown = -1.0
    last: dict[str, float] = before
    while time.monotonic() - started < DRAIN_TIMEOUT_S:
        check_operator(demo)
        samples = driver_metrics(demo)
        if samples:
            last = samples
            read = metric_sum(samples, "fink_pipeline_alerts_read_total") - start_read
            if read != shown:
                shown = read
                lag = metric_sum(samples, "fink_pipeline_input_lag_messages")
                batches = metric_sum(samples, "fink_pipeline_batches_total")
                print(
                    f"  [{time.monotonic() - started:5.1f} s] metrics: {read:.0f} of {wanted} "
                    f"messages read ({batches:.0f} micro-batches since the driver started), "
                    f"input lag {lag:.0f}",
                    flush=True,
                )
            if read >= wanted and metric_sum(samples, "fink_pipeline_input_lag_messages") == 0:
                break
        time.sleep(1)
    else:
        raise DemoError(
            f"the job did not consume the {wanted} messages within {DRAIN_TIMEOUT_S} s; "
            f"see `kubectl logs -n {NAMESPACE} {job.get('driverPod')}`"
        )
    print(f"consumed in {time.monotonic() - started:.0f} s; a few of its metrics now:")
    for name, labels in [
        ("fink_pipeline_alerts_read_total", {}),
        ("fink_pipeline_alerts_written_total", {"sink": "hbase"}),
        ("fink_pipeline_alerts_written_total", {"sink": "parquet"}),
        ("fink_pipeline_alerts_written_total", {"sink": "dead_letter"}),
        ("fink_pipeline_filter_passed_total", {}),
        ("fink_pipeline_module_seconds_total", {}),
        ("fink_pipeline_batch_duration_seconds_count", {}),
    ]:
        for key, value in sorted(last.items()):
            base, _, rest = key.partition("{")
            if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
                print(f"  {key} {value:g}")
    return {key: value - before.get(key, 0.0) for key, value in last.items()}


# --- 5. the sinks -----------------------------------------------------------------------


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every committed message of a topic (read_committed, from the beginning)."""
    try:
        return read_committed(bootstrap, topic)
    except (LookupError, TimeoutError) as error:
        raise DemoError(str(error)) from error


def show_sinks(demo: Demo, spec: PipelineSpec, metrics: dict[str, float]) -> None:
    step("5. What reached the sinks (totals over every run of the demo)")
    bootstrap = demo.endpoints.kafka_bootstrap
    codec = EnrichedCodec(
        enriched_schema(spec.survey, ScienceStep(plan_science(spec)).alert_columns)
    )
    examples: list[dict[str, Any]] = []
    filters = {}
    for item in spec.filters:
        messages = read_topic(bootstrap, item.topic)
        filters[item.name] = (item.topic, len(messages))
        print(f"filter {item.name}: {len(messages)} alerts in topic {item.topic}")
        # the highest offsets are this run's alerts
        for message in sorted(messages, key=lambda m: m.offset())[-2:]:
            record = codec.decode(message.value())
            examples.append(record)
            print("    " + describe(record))
    demo.summary["filters"] = filters

    dead = read_topic(bootstrap, spec.kafka_sink.dead_letter_topic)
    reasons = Counter()
    example_reason = {}
    for message in dead:
        headers = dict(message.headers() or [])
        reason = headers.get("fink-error", b"(no fink-error header)").decode()
        category = reason.split(":", 1)[0]
        reasons[category] += 1
        example_reason.setdefault(category, reason)
    print(f"dead letters: {len(dead)} in topic {spec.kafka_sink.dead_letter_topic}")
    for category, count in reasons.most_common():
        print(f"    {count:4d} {category:<14} e.g. {example_reason[category][:90]}")
    demo.summary["dead"] = len(dead)

    if spec.hbase_sink is not None:
        table = spec.hbase_sink.table
        connection = happybase.Connection(
            demo.endpoints.hbase_thrift_host, demo.endpoints.hbase_thrift_port, timeout=60_000
        )
        try:
            handle = connection.table(table)
            rows = sum(1 for _ in handle.scan(filter=b"KeyOnlyFilter()", batch_size=2000))
            print(f"HBase table {table}: {rows} rows (key objectId_jd, families i and d)")
            if examples:
                record = examples[0]
                key = f"{record['objectId']}_{record['jd']:.7f}".encode()
                show_row(key, handle.row(key))
        finally:
            connection.close()
        demo.summary["hbase"] = rows

    if spec.archive_path:
        root = demo.archive
        per_night = parquet_rows(root)
        total = sum(per_night.values())
        print(
            f"Parquet archive {spec.archive_path} in the driver pod, {_short(str(root))} on the "
            f"node: {total} rows in {len(per_night)} nights"
        )
        for night, count in sorted(per_night.items()):
            files = len(list((root / f"night={night}").glob(ARCHIVE_FILES)))
            print(f"    night={night}: {count:5d} rows in {files} files")
        demo.summary["parquet"] = total

    print(f"operator metrics (curl -s 127.0.0.1:{OPERATOR_METRICS_PORT}/metrics):")
    samples = scrape(OPERATOR_METRICS_PORT)
    for key, value in sorted(samples.items()):
        if key.startswith(
            ("controller_runtime_reconcile_total", "fink_operator_managed", "fink_operator_pipel")
        ):
            print(f"    {key} {value:g}")
    demo.summary["reconciles"] = metric_sum(samples, "controller_runtime_reconcile_total")
    demo.summary["metrics"] = metrics


def describe(record: dict[str, Any]) -> str:
    """One line per example alert: identity, brightness, and the hints that got it selected."""

    def number(name: str, fmt: str) -> str:
        value = record.get(name)
        return "n/a" if value is None else format(value, fmt)

    parts = [
        f"{record['objectId']} candid {record['candid']}",
        f"jd {record['jd']:.5f}",
        f"mag {number('magpsf', '.2f')} (fid {record['fid']})",
        f"rise_rate {number('rise_rate', '+.3f')}",
        f"n_det {number('n_detections', 'd')}",
        f"roid {number('roid', 'd')}",
    ]
    if record.get("sso_name"):
        parts.append(f"sso_name {record['sso_name']}")
    parts.append(f"passed {','.join(record.get(FILTERS_FIELD) or [])}")
    return ", ".join(parts)


def show_row(key: bytes, cells: dict[bytes, bytes]) -> None:
    if not cells:
        print(f"    row {key.decode()}: not found")
        return
    print(f"    row {key.decode()} ({len(cells)} cells), e.g.:")
    wanted = [b"i:objectId", b"i:jd", b"i:magpsf", b"i:fid", b"i:prv_magpsf"]
    wanted += sorted(k for k in cells if k.startswith(b"d:"))
    for qualifier in wanted:
        if qualifier in cells:
            value = cells[qualifier].decode(errors="replace")
            value = value if len(value) <= 60 else value[:57] + "..."
            print(f"      {qualifier.decode():<32} {value}")


def parquet_rows(root: Path) -> dict[str, int]:
    rows: dict[str, int] = {}
    for directory in sorted(root.glob("night=*")):
        night = directory.name.partition("=")[2]
        rows[night] = sum(
            pq.ParquetFile(f).metadata.num_rows for f in directory.glob(ARCHIVE_FILES)
        )
    return rows


# --- 6. summary -------------------------------------------------------------------------


def print_summary(demo: Demo, spec: PipelineSpec, seconds: float) -> None:
    s, m = demo.summary, demo.summary.get("metrics", {})
    step("6. Summary")
    print(f"run {s['run']} of the demo (seed {s['seed']}): {seconds:.0f} s on the running stack\n")
    rows = [
        ("alerts produced", f"{demo.args.alerts}", ""),
        ("malformed messages produced", f"{demo.args.malformed}", ""),
        (
            "messages read by the pipeline",
            f"{metric_sum(m, 'fink_pipeline_alerts_read_total'):.0f}",
            "",
        ),
    ]
    for name, (topic, total) in s["filters"].items():
        passed = metric_sum(m, "fink_pipeline_filter_passed_total", filter=name)
        rows.append((f"filter {name}", f"{passed:.0f}", f"{total} in {topic}"))
    science = s.get("science") or {}
    if science:
        passed = metric_sum(m, "fink_pipeline_filter_passed_total", filter=demo_science.FILTER)
        total = f"{science.get('alertsPassed', 0)} in {science.get('topic')}"
        rows.append((f"science filter {demo_science.FILTER}", f"{passed:.0f}", total))
    rows += [
        (
            "dead letters",
            f"{metric_sum(m, 'fink_pipeline_alerts_written_total', sink='dead_letter'):.0f}",
            f"{s['dead']} in {spec.kafka_sink.dead_letter_topic}",
        ),
    ]
    if "hbase" in s and spec.hbase_sink is not None:
        written = metric_sum(m, "fink_pipeline_alerts_written_total", sink="hbase")
        rows.append(("HBase rows", f"{written:.0f}", f"{s['hbase']} in {spec.hbase_sink.table}"))
    if "parquet" in s:
        written = metric_sum(m, "fink_pipeline_alerts_written_total", sink="parquet")
        rows.append(("Parquet rows", f"{written:.0f}", f"{s['parquet']} in the archive"))
    rows.append(("operator reconcile passes", f"{s['reconciles']:.0f}", ""))
    job = s.get("job") or {}
    rows.append(("job", job.get("state", "?"), f"driver {job.get('driverPod')}"))
    print(f"{'':<32} {'this run':>9}   all runs")
    for label, this_run, total in rows:
        print(f"{label:<32} {this_run:>9}   {total}")
    print(
        f"""
Look further (the stack keeps running):
  eval "$(.venv/bin/fink-stack env)"          # KUBECONFIG, kubectl, Kafka/HBase addresses
  kubectl get bp -n {NAMESPACE}; kubectl describe bp {PIPELINE} -n {NAMESPACE}
  kubectl get pods -n {NAMESPACE}; kubectl logs -n {NAMESPACE} {PIPELINE}-driver
  .venv/bin/fink-pipeline schema -f {_short(str(demo.state / f"{PIPELINE}.yaml"))}
  operator log: {_short(str(demo.operator_log))}
  docs: docs/operator.md, docs/pipeline.md, docs/science.md, docs/alerts.md
The job keeps streaming: `make demo` again streams the next seed's alerts into it;
`kubectl patch bp {PIPELINE} -n {NAMESPACE} --type merge -p '{{"spec":{{"spark":{{"suspend":true}}}}}}'`
stops it; `.venv/bin/fink-stack down` stops the stack."""
    )


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The end-to-end demo on the running local stack (see `make demo`).",
    )
    parser.add_argument("--alerts", type=int, default=2000, help="alerts to stream (2000)")
    parser.add_argument("--malformed", type=int, default=10, help="malformed messages (10)")
    parser.add_argument("--rate", type=int, default=2000, help="alerts/s, 0 = as fast as possible")
    parser.add_argument(
        "--seed", type=int, help="generator seed (default: the one after the last run's)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    layout = Layout.default()
    state = layout.state / "demo"
    state.mkdir(parents=True, exist_ok=True)
    print("checking the local stack...", flush=True)
    endpoints = api.ensure_up(quiet=True)
    os.environ.update(endpoints.environment())
    os.environ["PATH"] = os.pathsep.join([*tool_dirs(layout), os.environ.get("PATH", "")])
    demo = Demo(args, endpoints, state)
    current = "1"
    try:
        start_operator(demo)
        current = "2"
        _, spec = apply_pipeline(demo)
        current = "2b"
        demo_science.publish(demo.state, NAMESPACE, PIPELINE)
        current = "3"
        before = driver_metrics(demo)
        produce(demo, spec)
        current = "4"
        metrics = watch_job(demo, before)
        current = "5"
        show_sinks(demo, spec, metrics)
        current = "5b"
        demo.summary["science"] = demo_science.show(NAMESPACE)
        print_summary(demo, spec, time.monotonic() - started)
        return 0
    except (Exception, KeyboardInterrupt) as error:
        if isinstance(error, KeyboardInterrupt):
            reason = "interrupted"
        elif isinstance(error, DemoError):
            reason = str(error)
        else:
            reason = f"{type(error).__name__}: {error}"
        print(f"\ndemo failed at step {current}: {reason}", file=sys.stderr)
        show_conditions()
        print(
            f"end of the operator's log ({demo.operator_log}):\n{tail(demo.operator_log)}",
            file=sys.stderr,
        )
        with contextlib.suppress(DemoError):
            logs = kubectl(
                "logs", "-n", NAMESPACE, f"{PIPELINE}-driver", "--tail=25", capture=True, quiet=True
            )
            print(f"end of the driver's log:\n{logs}", file=sys.stderr)
        return 1
    finally:
        stop_operator(demo)


if __name__ == "__main__":
    sys.exit(main())
