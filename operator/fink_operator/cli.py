"""`fink-operator`: run the operator against a cluster, or print/install its CRDs.

Exit codes: 0 stopped on request (Ctrl-C, SIGTERM); 1 stopped on an error
(the API server unreachable, a kubeconfig without credentials, ...); 2 a bad
command line (an address without a port, a missing file).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Sequence

from fink_core import crd as pipeline_crd
from fink_core import filter_crd
from fink_core.connections import ENV_HBASE, ENV_HBASE_ADMIN, ENV_KAFKA, Defaults
from fink_core.errors import SpecError
from fink_operator import claims
from fink_operator.config import OperatorConfig
from fink_operator.job.render import JobConfig, PipelineVolume

EXIT_ERROR = 1
EXIT_USAGE = 2

EPILOG = f"""examples:
  fink-operator run --kubeconfig ~/.kube/config -n fink      # one namespace (repeatable)
  fink-operator run -A                                       # every namespace
  fink-operator crd > crds.yaml && kubectl apply -f crds.yaml
  fink-operator install-crd --kubeconfig ~/.kube/config

Connection defaults for what a pipeline leaves unset: the flags, else ${ENV_KAFKA},
${ENV_HBASE} and ${ENV_HBASE_ADMIN} (what `fink-stack env` exports), else 127.0.0.1.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fink-operator",
        description=__doc__.split("\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="reconcile BrokerPipelines until interrupted")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster or $KUBECONFIG)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--kafka-bootstrap", help=f"default Kafka (else ${ENV_KAFKA})")
    run.add_argument("--hbase-thrift", help=f"default HBase Thrift host:port (else ${ENV_HBASE})")
    run.add_argument(
        "--hbase-admin", help=f"default HBase Thrift2 host:port (else ${ENV_HBASE_ADMIN})"
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="0 disables /metrics")
    run.add_argument("--metrics-address", default="0.0.0.0")
    run.add_argument("--liveness", help="e.g. http://0.0.0.0:8081/healthz")
    run.add_argument(
        "--drift-interval", type=float, default=15.0, help="seconds between drift sweeps (15)"
    )
    run.add_argument("--server-timeout", type=float, default=5.0, help="per Kafka/HBase call")
    run.add_argument("--max-backoff", type=float, default=60.0, help="retry delay ceiling")
    run.add_argument("--cleanup-timeout", type=float, default=600.0)
    run.add_argument("--workers", type=int, default=8, help="passes run at once (8)")
    run.add_argument(
        "--jobs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run each pipeline's Spark job (--no-jobs: topics and tables only)",
    )
    run.add_argument("--spark-image", help="image of pipelines that name none (spec.spark.image)")
    run.add_argument(
        "--image-pull-policy",
        default="IfNotPresent",
        choices=["IfNotPresent", "Always", "Never"],
        help="of drivers and executors (IfNotPresent)",
    )
    run.add_argument(
        "--pipeline-volume",
        default="none",
        help="volume of pipelines that name none: host-path:/DIR (one node), "
        "storage-class:NAME[:SIZE], or none (default: the spec must name one)",
    )
    run.add_argument(
        "--leader-election",
        action="store_true",
        help="act only while holding a Lease (run several replicas safely)",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    run.add_argument("--leader-election-name", default="fink-operator", help="the Lease's name")
    run.add_argument("--step-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    run.add_argument("-v", "--verbose", action="store_true")

    commands.add_parser(
        "crd", help="print the CRDs (BrokerPipeline, ScienceFilter, SinkClaim) as YAML"
    )
    commands.add_parser(
        "reference", help="print the BrokerPipeline reference (Markdown, from the CRD's schema)"
    )
    install = commands.add_parser("install-crd", help="create or update the CRDs in a cluster")
    install.add_argument("--kubeconfig")
    return parser


def render_crds() -> str:
    return "---\n".join(
        [pipeline_crd.render_yaml(), filter_crd.render_yaml(), claims.render_yaml()]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(render_crds())
        return 0
    if args.command == "reference":
        from fink_core import reference

        sys.stdout.write(reference.render())
        return 0
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        print(f"fink-operator: no kubeconfig at {args.kubeconfig}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "install-crd":
        from fink_operator.install import install_crd

        try:
            names = install_crd(args.kubeconfig)
        except Exception as error:
            print(f"fink-operator: could not install the CRDs: {_short(error)}", file=sys.stderr)
            return EXIT_ERROR
        for name in names:
            print(f"customresourcedefinition/{name} applied")
        return 0
    try:
        defaults = Defaults.from_environment(
            kafka_bootstrap=args.kafka_bootstrap,
            hbase_thrift=args.hbase_thrift,
            hbase_admin=args.hbase_admin,
        )
        jobs = JobConfig(
            enabled=args.jobs,
            image=args.spark_image,
            pull_policy=args.image_pull_policy,
            volume=PipelineVolume.parse(args.pipeline_volume),
            # drivers resolve connections with the operator's own defaults
            environment={
                ENV_KAFKA: defaults.kafka_bootstrap,
                ENV_HBASE: str(defaults.hbase_thrift),
                ENV_HBASE_ADMIN: str(defaults.hbase_admin),
            },
        )
        config = OperatorConfig(
            defaults=defaults,
            jobs=jobs,
            kubeconfig=args.kubeconfig,
            drift_interval=args.drift_interval,
            server_timeout=args.server_timeout,
            max_backoff=args.max_backoff,
            cleanup_timeout=args.cleanup_timeout,
            step_delay=args.step_delay,
            workers=args.workers,
        )
    except (SpecError, ValueError) as error:
        print(f"fink-operator: {error}", file=sys.stderr)
        return EXIT_USAGE
    return _run(args, config)


def _run(args: argparse.Namespace, config: OperatorConfig) -> int:
    import kopf

    from fink_operator import handlers, metrics

    kopf.configure(verbose=args.verbose)
    logging.getLogger("fink_core.librdkafka").setLevel(logging.CRITICAL)
    try:
        runtime = handlers.make_runtime(config)
    except Exception as error:
        print(f"fink-operator: cannot reach Kubernetes: {_short(error)}", file=sys.stderr)
        return EXIT_ERROR
    # Set before the endpoint opens: a replica waiting for the lease must never be
    # scraped as a leader, not even for the moment between serving and standing by.
    metrics.LEADER.set(0 if args.leader_election else 1)
    if args.metrics_port:
        try:
            metrics.serve(args.metrics_port, args.metrics_address)
        except OSError as error:
            print(
                f"fink-operator: cannot serve metrics on {args.metrics_address}:"
                f"{args.metrics_port}: {error.strerror}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    lease = None
    stop_flag = runtime.stop_flag
    lost = threading.Event()
    if args.leader_election:
        from fink_operator.leader import LeaderLease

        identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        lease = LeaderLease(
            runtime.api, args.leader_election_namespace, args.leader_election_name, identity
        )
        waited: list[str] = []

        def waiting(holder: str) -> None:
            if holder not in waited:
                waited.append(holder)
                print(f"fink-operator: standing by; lease held by {holder}", flush=True)

        try:
            lease.acquire(waiting)
        except KeyboardInterrupt:
            return 0
        metrics.LEADER.set(1)

        def on_lost() -> None:
            metrics.LEADER.set(0)
            lost.set()
            stop_flag.set()

        lease.keep(on_lost)
    try:
        kopf.run(
            standalone=True,
            clusterwide=args.all_namespaces or not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(runtime=runtime),
            stop_flag=stop_flag,
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    except Exception as error:
        print(f"fink-operator: stopped on an error: {_short(error)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if lease is not None:
            metrics.LEADER.set(0)  # before a successor can hold the lease
            lease.release()
    if lost.is_set():
        print("fink-operator: lost the leader lease; stopping", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
