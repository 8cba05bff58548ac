"""fink-pipeline: check a pipeline, print its output schema, or run it against Kafka and HBase.

The input is the BrokerPipeline document a user applies with kubectl, so what
runs on a laptop is exactly what the operator will run in the cluster.

Exit codes: 0 done; 1 the pipeline failed while running; 2 the input is wrong
(no such file, bad YAML, an invalid pipeline, a bad address or credentials
Secret); 3 not ready to run (a topic or table is missing, a server or a
referenced ConfigMap/Secret cannot be reached).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from fink_core.errors import NeedsUser, Retryable, ServerUnreachable, SpecError
from fink_core.spec import CUTOUTS_FAMILY, PipelineSpec, parse_pipeline
from fink_pipeline.science import SciencePlan, plan_science
from fink_pipeline.stream.settings import DEFAULT_KEEP_WARM_AFTER

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_NOT_READY = 3

EPILOG = """examples:
  fink-pipeline validate -f manifests/examples/ztf-demo-pipeline.yaml
  fink-pipeline schema -f my-pipeline.yaml > enriched.avsc
  fink-pipeline run -f my-pipeline.yaml --create-missing --until-idle 20
  kubectl get bp ztf-demo -o yaml | fink-pipeline validate -f -
  fink-pipeline catalogue            # every module and filter, with columns and parameters
"""


class InputError(Exception):
    """The file cannot be read or parsed; the message names it."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if not args.quiet else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # its retries of an unreachable API server would precede the one-line error
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    if args.command is catalogue:
        return catalogue(args)
    try:
        spec, plan = load(args.file, args.namespace)
        return int(args.command(args, spec, plan))
    except InputError as error:
        print(f"fink-pipeline: {error}", file=sys.stderr)
        return EXIT_INVALID
    except SpecError as error:
        print(f"{args.file}: invalid pipeline: {error}", file=sys.stderr)
        return EXIT_INVALID
    except NeedsUser as error:
        print(f"fink-pipeline: {error}", file=sys.stderr)
        return EXIT_INVALID
    except Retryable as error:
        print(f"fink-pipeline: not ready: {error}", file=sys.stderr)
        return EXIT_NOT_READY


def load(path: str, namespace: str | None) -> tuple[PipelineSpec, SciencePlan]:
    """The pipeline and its checked science plan (science mistakes are SpecErrors too)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"{path} is not valid YAML{at}: {problem}") from None
    pipelines = [d for d in documents if isinstance(d, dict) and d.get("kind") == "BrokerPipeline"]
    if len(pipelines) != 1:
        raise SpecError(f"expected one BrokerPipeline document, found {len(pipelines)}")
    document: dict[str, Any] = pipelines[0]
    if namespace:
        document.setdefault("metadata", {})["namespace"] = namespace
    spec = parse_pipeline(document)
    return spec, plan_science(spec)


def validate(args: argparse.Namespace, spec: PipelineSpec, plan: SciencePlan) -> int:
    print(f"pipeline {spec.namespace}/{spec.name} ({spec.survey}) is valid")
    print(f"  source: {spec.source.topic}")
    for module, parameters in plan.modules:
        print(f"  module {module.name} {dict(parameters) or ''} -> {', '.join(module.writes)}")
    for name, topic in plan.filter_topics().items():
        print(f"  filter {name} -> topic {topic}")
    print(f"  dead letters -> topic {spec.kafka_sink.dead_letter_topic}")
    if spec.hbase_sink:
        families = ", ".join(f.name for f in spec.hbase_sink.column_families)
        if spec.hbase_sink.stores_cutouts:
            families += f", {CUTOUTS_FAMILY} for the cutouts"
        rows = (
            "one JSON record per family"
            if spec.hbase_sink.layout == "packed"
            else "a cell per field"
        )
        print(f"  HBase table {spec.hbase_sink.table} (families {families}; {rows})")
    if spec.archive_path:
        print(
            f"  Parquet archive {spec.archive_path}/night=YYYYMMDD/pipeline={spec.namespace}.{spec.name}/batch=ID/"
        )
    return 0


def schema(args: argparse.Namespace, spec: PipelineSpec, plan: SciencePlan) -> int:
    from fink_pipeline.stream.enriched import enriched_schema
    from fink_pipeline.stream.science_step import ScienceStep

    step = ScienceStep(plan)
    print(json.dumps(enriched_schema(spec.survey, step.alert_columns), indent=2))
    return 0


def catalogue(args: argparse.Namespace) -> int:
    """The science catalogue, as the shared core ships it for the operator's planner."""
    from fink_pipeline.science.registry import live_catalogue

    sys.stdout.write(live_catalogue().render())
    return 0


def run(args: argparse.Namespace, spec: PipelineSpec, plan: SciencePlan) -> int:
    from fink_core.connections import Defaults
    from fink_pipeline.stream.provision import NotReady, ensure_ready
    from fink_pipeline.stream.runner import run as run_pipeline
    from fink_pipeline.stream.settings import settings_for

    read_configmap, read_secret = _readers(args, spec.namespace)
    try:
        defaults = Defaults.from_environment(
            kafka_bootstrap=args.bootstrap_servers,
            hbase_thrift=args.hbase_thrift,
            hbase_admin=args.hbase_admin,
        )
    except SpecError as error:  # a flag or the environment, not the document
        raise InputError(str(error)) from None
    settings = settings_for(
        spec,
        defaults=defaults,
        read_configmap=read_configmap,
        read_secret=read_secret,
        checkpoint=args.checkpoint,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        master=args.master,
        jars=args.jars,
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        trigger_interval=args.trigger_interval,
        until_idle_seconds=args.until_idle,
        warm_up=not args.no_warm_up,
        keep_warm_after=args.keep_warm_after,
    )
    try:
        created = ensure_ready(settings, create_missing=args.create_missing)
    except NotReady as error:
        print(f"fink-pipeline: cannot start {spec.name}: {error}", file=sys.stderr)
        return EXIT_NOT_READY
    if created:
        print(f"created: {', '.join(created)}")
    try:
        summary = run_pipeline(settings)
    except RuntimeError as error:
        print(f"fink-pipeline: {spec.name} failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    passed = ", ".join(f"{k} {v}" for k, v in summary.passed.items()) or "no filters"
    print(
        f"{spec.name}: {summary.read} messages in {summary.batches} micro-batches, "
        f"{summary.rejected} set aside as dead letters; passed: {passed}"
    )
    return 0


def _readers(args: argparse.Namespace, namespace: str) -> tuple[Any, Any]:
    """ConfigMaps and Secrets the spec names: from mounted files, or from a cluster."""
    from fink_core import references

    if args.references:
        root = Path(args.references)
        return (
            references.directory_reader(root, "configmaps"),
            references.directory_reader(root, "secrets"),
        )
    if args.kubeconfig:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        try:
            api_client = config.new_client_from_config(config_file=args.kubeconfig)
        except (OSError, ConfigException) as error:
            raise InputError(f"cannot use kubeconfig {args.kubeconfig}: {error}") from None
        server = str(api_client.configuration.host)
        readers = references.kubernetes_readers(client.CoreV1Api(api_client), namespace)
        return tuple(_reported(read, server) for read in readers)  # type: ignore[return-value]
    return references.absent, references.absent


def _reported(read: Any, server: str) -> Any:
    """A cluster reader whose failures are the errors the exit codes are made of.

    Unreachable (or failing) API server: ServerUnreachable, exit 3 (not ready);
    refused (401/403): NeedsUser, exit 2 (the kubeconfig's user must change).
    """
    from kubernetes.client.rest import ApiException

    def reported(name: str) -> Any:
        try:
            return read(name)
        except ApiException as error:
            if error.status in (401, 403):
                raise NeedsUser(
                    f"the Kubernetes API at {server} refused to read {name!r}: "
                    f"{error.status} {error.reason}"
                ) from None
            raise ServerUnreachable(
                "the Kubernetes API", server, f"{error.status} {error.reason}"
            ) from None
        except Exception as error:  # urllib3's connection errors and the like
            detail = str(getattr(error, "reason", None) or error).splitlines()[0]
            raise ServerUnreachable("the Kubernetes API", server, detail) from None

    return reported


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fink-pipeline",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(required=True, metavar="command")

    def with_file(name: str, help_text: str, function: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-f", "--file", required=True, help="BrokerPipeline YAML ('-': stdin)")
        sub.add_argument("-n", "--namespace", help="namespace to assume (default: the document's)")
        sub.set_defaults(command=function)
        return sub

    with_file("validate", "check a pipeline and show what it will run and write", validate)
    with_file("schema", "print the Avro schema of the pipeline's enriched alerts", schema)
    listing = commands.add_parser(
        "catalogue", help="print the science catalogue (modules, filters, columns) as JSON"
    )
    listing.set_defaults(command=catalogue)
    runner = with_file("run", "run the pipeline with Spark until stopped (Ctrl-C)", run)
    defaults = "for what the spec and its connections ConfigMap leave unset"
    runner.add_argument(
        "--bootstrap-servers",
        help=f"Kafka {defaults} (default: $FINK_KAFKA_BOOTSTRAP, else 127.0.0.1:9092)",
    )
    runner.add_argument(
        "--hbase-thrift",
        help=f"HBase Thrift host:port {defaults} (default: $FINK_HBASE_THRIFT, else 127.0.0.1:9090)",
    )
    runner.add_argument(
        "--hbase-admin",
        help=f"HBase Thrift2 host:port {defaults} (default: $FINK_HBASE_ADMIN, else 127.0.0.1:9091)",
    )
    runner.add_argument(
        "--kubeconfig", help="read the ConfigMap and Secrets the spec names from this cluster"
    )
    runner.add_argument(
        "--references",
        metavar="DIR",
        help="read them from DIR/configmaps/NAME/KEY and DIR/secrets/NAME/KEY (mounted volumes)",
    )
    runner.add_argument(
        "--checkpoint",
        help="streaming checkpoint: a directory or a Hadoop URL, hdfs://... s3a://... (default: spec.spark.checkpointLocation or ~/.local/state/fink-pipeline/NS/NAME/checkpoint)",
    )
    runner.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    runner.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address the metrics bind (default 127.0.0.1)",
    )
    runner.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    runner.add_argument(
        "--jars",
        help="comma-separated Spark Kafka connector jars (default: $FINK_SPARK_JARS)",
    )
    runner.add_argument(
        "--max-offsets-per-trigger", type=int, help="cap on messages per micro-batch"
    )
    runner.add_argument(
        "--trigger-interval", help="e.g. '5 seconds' (default: spec.spark.triggerInterval)"
    )
    runner.add_argument(
        "--no-warm-up",
        action="store_true",
        help="start the query without first starting the Python workers on synthetic alerts "
        "(the first micro-batch then pays their start-up)",
    )
    runner.add_argument(
        "--keep-warm-after",
        type=float,
        default=DEFAULT_KEEP_WARM_AFTER,
        metavar="SECONDS",
        help="with no micro-batch for SECONDS, run the science step on synthetic alerts so "
        "that Spark, which stops Python workers idle for a minute, keeps them started "
        f"(default {DEFAULT_KEEP_WARM_AFTER:g}; 0: never)",
    )
    runner.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="stop once caught up and no alert came for SECONDS",
    )
    runner.add_argument(
        "--create-missing",
        action="store_true",
        help="create missing topics and the HBase table instead of refusing to start",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
