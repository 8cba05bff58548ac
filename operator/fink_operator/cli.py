"""`fink-operator`: run the operator against a kubeconfig, or print/install its CRD.

    fink-operator run --kubeconfig ~/.kube/config --namespace fink --metrics-port 8080
    fink-operator crd > manifests/crds/brokerpipelines.fink.broker.dev.yaml
    fink-operator install-crd --kubeconfig ~/.kube/config

Connection defaults come from the flags, else from FINK_KAFKA_BOOTSTRAP and
FINK_HBASE_THRIFT (what `fink-stack env` exports), else 127.0.0.1:9092/9090.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from . import crd
from .config import CONFIG
from .connections import Defaults


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fink-operator", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="reconcile BrokerPipelines until interrupted")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster or $KUBECONFIG)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument(
        "--kafka-bootstrap", default=os.environ.get("FINK_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    run.add_argument(
        "--hbase-thrift", default=os.environ.get("FINK_HBASE_THRIFT", "127.0.0.1:9090")
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="0 disables /metrics")
    run.add_argument("--metrics-address", default="0.0.0.0")
    run.add_argument("--liveness", help="e.g. http://0.0.0.0:8081/healthz")
    run.add_argument("--drift-interval", type=float, default=60.0, help="seconds (default 60)")
    run.add_argument("--server-timeout", type=float, default=5.0, help="per Kafka/HBase call")
    run.add_argument("--max-backoff", type=float, default=60.0, help="retry delay ceiling")
    run.add_argument("--cleanup-timeout", type=float, default=600.0)
    run.add_argument("--step-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    run.add_argument("-v", "--verbose", action="store_true")

    commands.add_parser("crd", help="print the BrokerPipeline CRD as YAML")
    install = commands.add_parser("install-crd", help="create or update the CRD in a cluster")
    install.add_argument("--kubeconfig")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(crd.render_yaml())
        return 0
    if args.command == "install-crd":
        from .install import install_crd

        install_crd(args.kubeconfig)
        print(f"customresourcedefinition/{crd.CRD_NAME} applied")
        return 0
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        # kopf's login handler reads it from here, and the kubernetes library reads it
        # once, at import: so set it before importing anything that imports kubernetes
        os.environ["KUBECONFIG"] = os.path.abspath(args.kubeconfig)

    import kopf

    from . import handlers, metrics

    host, _, port = args.hbase_thrift.rpartition(":")
    CONFIG.defaults = Defaults(
        kafka_bootstrap=args.kafka_bootstrap, hbase_host=host or "127.0.0.1", hbase_port=int(port)
    )
    CONFIG.kubeconfig = args.kubeconfig
    CONFIG.drift_interval = args.drift_interval
    CONFIG.server_timeout = args.server_timeout
    CONFIG.max_backoff = args.max_backoff
    CONFIG.cleanup_timeout = args.cleanup_timeout
    CONFIG.step_delay = args.step_delay

    kopf.configure(verbose=args.verbose)
    logging.getLogger("fink_operator.librdkafka").setLevel(logging.CRITICAL)
    handlers.register_drift_timer(args.drift_interval)
    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_address)
    try:
        kopf.run(
            standalone=True,
            clusterwide=args.all_namespaces or not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
        )
    except KeyboardInterrupt:
        pass
    except asyncio.CancelledError:
        pass
    return 0
