"""fink-filter: write a science filter, try it on realistic alerts, publish it, read what it selects.

Exit codes: 0 done; 1 the filter failed (refused by the checks, an error when
it ran, or the operator reports Validated=False / Live=False with a failure);
2 bad input (no such file, bad YAML, unknown survey, a name the cluster
refuses); 3 not reachable (the Kubernetes API, Kafka, or what they should
hold: the CRD, the topic); 4 timed out waiting.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from fink_pipeline.scientist.problems import Problem

EPILOG = """examples:
  fink-filter init bright-sn --survey ztf --pipeline ztf-demo   # bright-sn.py, test_bright-sn.py, bright-sn.yaml
  pytest test_bright-sn.py                                      # your own test, no cluster needed
  fink-filter test bright-sn.py                                 # static checks + 1000 realistic alerts in the sandbox
  fink-filter apply bright-sn.py --pipeline ztf-demo -n fink-demo   # publish; wait until Validated and Live
  fink-filter tail bright-sn -n fink-demo --from-beginning --max 10 # what it selected

exit codes: 0 ok, 1 the filter failed, 2 bad input, 3 not reachable, 4 timed out
"""

INIT_EPILOG = """examples:
  fink-filter init bright-sn                        # ZTF: reads magpsf and rb
  fink-filter init bright-lsst --survey lsst --pipeline lsst-demo --dir filters/

writes NAME.py (the filter), test_NAME.py (a pytest test on three hand-made
alerts) and NAME.yaml (the ScienceFilter resource without its code: `apply`
puts NAME.py inline). Existing files are kept unless --force (exit 2).
"""

TEST_EPILOG = """examples:
  fink-filter test bright-sn.py                      # 1000 synthetic ZTF alerts, every module's columns
  fink-filter test bright-sn.py --alerts 5000 --seed 3
  fink-filter test bright-sn.py --pipeline-file my-pipeline.yaml   # that pipeline's columns only
  fink-filter test bright-sn.py --parquet ~/archive/night=20240401/
  fink-filter test bright-sn.py --topic ztf-alerts --alerts 500   # a survey's topic

runs the checks the operator runs (imports, names, columns: the line and
column of the first problem), then the filter in the pipelines' sandbox on
sample alerts: how many passed, five of them, the cost per alert. Exit 1 when
the code is refused or fails.
"""

APPLY_EPILOG = """examples:
  fink-filter apply bright-sn.py --pipeline ztf-demo -n fink-demo
  fink-filter apply bright-sn.py --pipeline ztf-demo --wait-validated-only   # no pipeline running yet
  fink-filter apply bright-sn.py --pipeline ztf-demo --no-wait
  fink-filter apply bright-sn.py --pipeline ztf-demo --print | kubectl apply -f -

creates the ScienceFilter (or replaces its spec) with FILE.py inline and the
rest from FILE.yaml when it exists, then waits for the operator: Validated
(static checks and a dry run), then Live (every pipeline runs this version).
A pipeline that is not running loads the filter when it starts: until then
Live stays False (Loading); --wait-validated-only stops once Validated and
handed to the pipelines.
Uses KUBECONFIG (or ~/.kube/config, or the pod's service account).
"""

TAIL_EPILOG = """examples:
  fink-filter tail bright-sn -n fink-demo                       # new alerts, until Ctrl-C
  fink-filter tail bright-sn --from-beginning --max 20
  fink-filter tail bright-sn --timeout 60 --bootstrap kafka.example.org:9092

prints one line per alert: objectId and candid (LSST: diaObjectId and
diaSourceId), magpsf (LSST: psfFlux) and the filters it passed. Kafka:
--bootstrap, else the pipeline's spec.sinks.kafka.bootstrapServers, else
$FINK_KAFKA_BOOTSTRAP, else 127.0.0.1:9092.
"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retries precede our one line
    try:
        return int(args.command(args))
    except Problem as problem:
        print(f"fink-filter: {problem}", file=sys.stderr)
        return problem.exit_code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
        return 0


def init(args: argparse.Namespace) -> int:
    from fink_pipeline.scientist import template

    paths = template.write(Path(args.dir), args.name, args.survey, args.pipeline, args.force)
    for path in paths:
        print(f"wrote {path}")
    name = args.name
    print(f"next: pytest {paths[1]}  then  fink-filter test {paths[0]}")
    if not args.pipeline:
        print(f"      then  fink-filter apply {paths[0]} --pipeline PIPELINE")
    else:
        print(
            f"      then  fink-filter apply {paths[0]}   (pipeline {args.pipeline}, from {name}.yaml)"
        )
    return 0


def test(args: argparse.Namespace) -> int:
    from fink_pipeline.scientist import filter_file, trying

    source = filter_file.read(args.file)
    if args.pipeline_file:
        plan = trying.pipeline_plan(args.pipeline_file)
        if args.survey and args.survey != plan.survey:
            raise trying.BadInput(
                f"--survey {args.survey}, but {args.pipeline_file} reads {plan.survey} alerts"
            )
        described = f"the columns of {args.pipeline_file}"
    else:
        plan = trying.all_modules_plan(source.survey(args.survey) or "ztf")
        described = f"every {plan.survey} module's columns"
    entrypoint = source.entrypoint(args.entrypoint)
    reads = trying.check(source.path, source.code, entrypoint, trying.columns_of(plan))
    print(f"{source.path}: checks passed: `{entrypoint}` reads {', '.join(reads)} ({described})")
    if args.parquet and args.topic:
        raise trying.BadInput("give --parquet or --topic, not both")
    if args.parquet:
        alerts = trying.parquet_alerts(args.parquet, plan, reads)
        origin = f"{len(alerts)} alerts of {args.parquet}"
    elif args.topic:
        from fink_core.connections import Defaults

        bootstrap = args.bootstrap or Defaults.from_environment().kafka_bootstrap
        alerts = trying.topic_alerts(args.topic, bootstrap, plan, args.alerts)
        origin = f"{len(alerts)} alerts of topic {args.topic} at {bootstrap}"
    else:
        alerts = trying.synthetic_alerts(plan, args.alerts, args.seed)
        modules = ", ".join(m.name for m, _ in plan.modules) or "no module"
        origin = f"{len(alerts)} synthetic {plan.survey} alerts (seed {args.seed}; {modules})"
    trial = trying.run(source.path, source.code, entrypoint, reads, alerts, origin)
    share = 100 * trial.passed / trial.total if trial.total else 0.0
    print(f"{trial.passed} of {trial.total} passed ({share:.1f}%) on {origin}")
    if len(trial.examples):
        print(f"first {len(trial.examples)} that passed:")
        for text in trial.examples.to_string(index=False).splitlines():
            print(f"  {text}")
    print(f"cost: {trial.seconds_per_alert * 1e6:.1f} µs per alert in the sandbox")
    return 0


def apply(args: argparse.Namespace) -> int:
    from fink_pipeline.scientist import filter_file, resource

    source = filter_file.read(args.file)
    namespace = args.namespace or (
        "default" if args.print else resource.default_namespace(args.kubeconfig)
    )
    options: dict[str, Any] = dict(
        name=args.name,
        namespace=namespace,
        pipelines=args.pipeline or [],
        survey=args.survey,
        entrypoint=args.entrypoint,
        topic=args.topic,
        layout=args.layout,
    )
    if args.print:
        sys.stdout.write(resource.as_yaml(resource.build(source, **options)))
        return 0
    cluster = resource.Cluster(resource.api_client(args.kubeconfig))
    if not args.survey and not source.survey(None) and options["pipelines"]:
        found = cluster.get_pipeline(namespace, options["pipelines"][0])
        options["survey"] = ((found or {}).get("spec") or {}).get("survey")
    document = resource.build(source, **options)
    name = document["metadata"]["name"]
    applied = cluster.apply(document)
    generation = int(applied["metadata"]["generation"])
    pipelines = ", ".join(document["spec"]["pipelines"])
    print(
        f"applied ScienceFilter {namespace}/{name} (generation {generation}) for pipeline {pipelines}"
    )
    if args.no_wait:
        return 0
    outcome = resource.wait(
        cluster,
        namespace,
        name,
        generation,
        source.code,
        str(source.path),
        args.wait,
        args.wait_validated_only,
        print,
    )
    if outcome.live is not None and outcome.live["status"] == "True":
        print(
            f"live in pipeline {pipelines}: alerts it selects go to {outcome.status.get('topic')}"
        )
    return 0


def tail(args: argparse.Namespace) -> int:
    from fink_pipeline.scientist import resource
    from fink_pipeline.scientist import tail as tailing

    kubeconfig = args.kubeconfig
    namespace = args.namespace or resource.default_namespace(kubeconfig)
    cluster = resource.Cluster(resource.api_client(kubeconfig))
    body = cluster.get_filter(namespace, args.name)
    if body is None:
        raise tailing.BadInput(f"no ScienceFilter {args.name} in namespace {namespace}")
    target = tailing.target(body, cluster.get_pipeline, args.bootstrap)
    print(f"# {target.topic} ({target.layout} layout) on {target.bootstrap}", file=sys.stderr)
    for record in tailing.follow(target, args.from_beginning, args.max, args.timeout):
        print(record if isinstance(record, str) else tailing.line(record), flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fink-filter",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="command")

    def sub(name: str, help_text: str, epilog: str, function: Any) -> argparse.ArgumentParser:
        command = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.set_defaults(command=function)
        return command

    surveys = ("ztf", "lsst")
    first = sub("init", "write a template filter, its test and its resource", INIT_EPILOG, init)
    first.add_argument("name", help="the filter's name (lower case, digits, '-', '_')")
    first.add_argument("--survey", choices=surveys, default="ztf", help="default ztf")
    first.add_argument("--pipeline", help="the BrokerPipeline to attach it to (in NAME.yaml)")
    first.add_argument("--dir", default=".", help="where to write the files (default .)")
    first.add_argument("--force", action="store_true", help="overwrite existing files")

    trial = sub("test", "check a filter and run it on sample alerts, here", TEST_EPILOG, test)
    trial.add_argument("file", help="the filter's .py file")
    trial.add_argument(
        "--survey", choices=surveys, help="default: FILE.yaml's spec.survey, else ztf"
    )
    trial.add_argument("--entrypoint", help="the function to call (default: the only public one)")
    trial.add_argument(
        "--pipeline-file",
        metavar="YAML",
        help="check against this BrokerPipeline's columns (default: every module of the survey)",
    )
    samples = trial.add_mutually_exclusive_group()
    samples.add_argument(
        "--alerts", type=int, default=1000, metavar="N", help="synthetic alerts (default 1000)"
    )
    samples.add_argument("--parquet", metavar="PATH", help="rows of a Parquet file or directory")
    trial.add_argument(
        "--topic",
        metavar="TOPIC",
        help="the first --alerts alerts of a survey's alert topic (what a pipeline reads)",
    )
    trial.add_argument(
        "--bootstrap", metavar="HOST:PORT", help="Kafka of --topic (default: $FINK_KAFKA_BOOTSTRAP)"
    )
    trial.add_argument("--seed", type=int, default=0, help="of the synthetic alerts (default 0)")

    publish = sub(
        "apply", "publish a filter as a ScienceFilter and wait until live", APPLY_EPILOG, apply
    )
    publish.add_argument("file", help="the filter's .py file")
    publish.add_argument(
        "--pipeline",
        action="append",
        metavar="P",
        help="a BrokerPipeline to attach it to (repeat for several; default: FILE.yaml's)",
    )
    publish.add_argument(
        "--name", help="the resource's name (default: FILE.yaml's, else FILE's stem)"
    )
    publish.add_argument(
        "--survey", choices=surveys, help="default: FILE.yaml's, else the pipeline's"
    )
    publish.add_argument("--entrypoint", help="the function to call (default: the only public one)")
    publish.add_argument(
        "-n", "--namespace", help="default: the kubeconfig context's, else default"
    )
    publish.add_argument("--topic", help="the topic name (default fink_<name>_<survey>)")
    publish.add_argument("--layout", choices=("fink", "fink-client"), help="default fink")
    publish.add_argument(
        "--kubeconfig", help="default: $KUBECONFIG, else ~/.kube/config, else in-cluster"
    )
    publish.add_argument(
        "--wait", type=float, default=120, metavar="SECONDS", help="how long to wait (default 120)"
    )
    waiting = publish.add_mutually_exclusive_group()
    waiting.add_argument("--no-wait", action="store_true", help="apply and return")
    waiting.add_argument(
        "--wait-validated-only",
        action="store_true",
        help="stop once Validated (when no pipeline runs yet, Live stays False: Loading)",
    )
    waiting.add_argument(
        "--print", action="store_true", help="print the resource as YAML; touch no cluster"
    )

    reading = sub("tail", "print the alerts a filter selected, from its topic", TAIL_EPILOG, tail)
    reading.add_argument("name", help="the ScienceFilter's name")
    reading.add_argument(
        "-n", "--namespace", help="default: the kubeconfig context's, else default"
    )
    reading.add_argument("--from-beginning", action="store_true", help="not only new alerts")
    reading.add_argument("--max", type=int, metavar="N", help="stop after N alerts")
    reading.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS (exit 4 if --max alerts did not come by then)",
    )
    reading.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka (see below)")
    reading.add_argument(
        "--kubeconfig", help="default: $KUBECONFIG, else ~/.kube/config, else in-cluster"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
