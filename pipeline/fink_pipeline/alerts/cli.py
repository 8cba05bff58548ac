"""`fink-alerts`: stream synthetic alerts into Kafka, print a schema, show sample alerts.

fink-alerts produce --survey ztf --topic ztf-alerts --count 10000 --rate 1000
fink-alerts produce --survey lsst --topic lsst-alerts --count 50000 --rate 250 --burst 10000
fink-alerts produce --survey lsst --topic lsst-alerts --schema-version 11.1 --schema-version 7.4
fink-alerts schema --survey lsst
fink-alerts sample --survey ztf --count 3

Kafka is --bootstrap-servers, else $FINK_KAFKA_BOOTSTRAP (what `fink-stack env`
exports), else 127.0.0.1:9092. Exit codes: 0 done; 1 Kafka failed or refused;
2 a bad command line (e.g. an address without a port).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fink_core.connections import Defaults
from fink_core.errors import SpecError
from fink_pipeline.alerts.codec import decode_batch, encode, schema_json
from fink_pipeline.alerts.generator import generate_alerts
from fink_pipeline.alerts.producer import ProduceError, produce

SURVEYS = ("ztf", "lsst")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fink-alerts",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    send = commands.add_parser("produce", help="stream generated alerts into a Kafka topic")
    send.add_argument("--survey", choices=SURVEYS, required=True)
    send.add_argument("--topic", required=True)
    send.add_argument(
        "--bootstrap-servers",
        help="Kafka host:port (default: $FINK_KAFKA_BOOTSTRAP, 127.0.0.1:9092)",
    )
    send.add_argument("--count", type=int, default=1000, help="alerts to send (default 1000)")
    send.add_argument("--rate", type=float, default=0.0, help="alerts/s, 0 = as fast as possible")
    send.add_argument(
        "--burst", type=int, default=0, help="send N alerts at once every N/rate s (Rubin: 10000)"
    )
    send.add_argument("--seed", type=int, default=0)
    send.add_argument("--malformed", type=int, default=0, help="malformed messages to mix in")
    send.add_argument("--create-topic", action="store_true", help="create the topic if missing")
    send.add_argument("--partitions", type=int, default=1, help="partitions of a created topic")
    send.add_argument(
        "--cutouts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ZTF: each alert carries its three cutouts, ~60-67 KB a message as ZTF's "
        "(default); --no-cutouts sends alerts of a few KB",
    )
    send.add_argument(
        "--schema-version",
        action="append",
        default=[],
        metavar="MAJOR.MINOR",
        help="Rubin: write with this official schema version (repeat to mix versions, "
        "alert by alert; default: lsst-alert-packet's latest)",
    )
    send.add_argument(
        "--schema-registry",
        metavar="URL",
        help="Rubin: register the schemas with this registry (Confluent API base URL) and "
        "write the ids it gives; a pipeline reading them needs the same "
        "source.kafka.schemaRegistry (default: lsst-alert-packet's official ids)",
    )

    schema = commands.add_parser("schema", help="print a survey's Avro alert schema")
    schema.add_argument("--survey", choices=SURVEYS, required=True)

    sample = commands.add_parser("sample", help="print generated alerts as flat JSON lines")
    sample.add_argument("--survey", choices=SURVEYS, required=True)
    sample.add_argument("--count", type=int, default=3)
    sample.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "schema":
        print(schema_json(args.survey), end="")
        return 0
    if args.command == "sample":
        alerts = generate_alerts(args.count, args.survey, args.seed)
        frame = decode_batch([encode(a, args.survey) for a in alerts], args.survey).frame
        text = frame.drop(columns=["_position"]).to_json(orient="records", lines=True)
        print(text.rstrip("\n"))
        return 0
    try:
        bootstrap = Defaults.from_environment(
            kafka_bootstrap=args.bootstrap_servers
        ).kafka_bootstrap
    except SpecError as error:
        print(f"fink-alerts: {error}", file=sys.stderr)
        return 2
    try:
        report = produce(
            survey=args.survey,
            topic=args.topic,
            bootstrap=bootstrap,
            count=args.count,
            rate=args.rate,
            burst=args.burst,
            seed=args.seed,
            malformed=args.malformed,
            create_topic=args.create_topic,
            partitions=args.partitions,
            cutouts=args.cutouts,
            progress=lambda line: print(line, flush=True),
            schema_versions=args.schema_version,
            schema_registry=args.schema_registry,
        )
    except ProduceError as error:
        print(f"fink-alerts: {error}", file=sys.stderr)
        return 1
    print(
        f"done: {report.alerts} alerts and {report.malformed} malformed messages sent to "
        f"{args.topic} in {report.seconds:.1f} s ({report.rate:.0f} alerts/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
