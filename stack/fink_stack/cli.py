"""`fink-stack`: run the real local stack (Kubernetes API, Kafka, HBase, Spark jars) on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from . import process, stack
from .layout import Layout
from .services import SERVICES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fink-stack",
        description="Build (once, cached by version) and run a real local stack on 127.0.0.1: "
        "etcd + kube-apiserver (+ controller-manager, scheduler), Kafka (KRaft), "
        "HBase with its Thrift servers, the Spark Kafka/Avro connector jars, and a real "
        "node (kubelet, containerd, kube-proxy, CoreDNS) running the project's images.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    component_help = f"components (default: all of {', '.join(stack.ALL_COMPONENTS)})"

    up = commands.add_parser(
        "up", help="build what is missing, start what is stopped, wait healthy"
    )
    up.add_argument("components", nargs="*", help=component_help)
    down = commands.add_parser("down", help="stop the processes `up` started")
    down.add_argument("components", nargs="*", help=component_help)
    down.add_argument("--wipe", action="store_true", help="also delete their data")
    commands.add_parser("status", help="which services run, and whether they answer")
    logs = commands.add_parser("logs", help="print a service's log")
    logs.add_argument("service", choices=[s.name for s in SERVICES])
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    commands.add_parser("env", help='print shell exports pointing at the stack (eval "$(...)")')
    commands.add_parser("build", help="only build/download the artefacts (e.g. to warm a cache)")
    commands.add_parser(
        "smoke", help="touch every server of the running stack and print what it saw"
    )
    saved = commands.add_parser(
        "images", help="the project's images: size, digest, whether the node has them"
    )
    saved.add_argument(
        "--save", nargs=2, metavar=("NAME", "FILE"), help="write image NAME as an OCI tar"
    )
    saved.add_argument(
        "--prune", action="store_true", help="delete cached layers the Containerfiles no longer use"
    )

    args = parser.parse_args(argv)
    layout = Layout.default()
    try:
        return _run(args, layout)
    except stack.StackError as error:
        print(f"fink-stack: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, layout: Layout) -> int:
    components = getattr(args, "components", None) or list(stack.ALL_COMPONENTS)
    if args.command == "up":
        started = time.monotonic()
        endpoints = stack.up(layout, components)
        print(f"stack up in {time.monotonic() - started:.1f}s")
        for key, value in endpoints.environment().items():
            if key != "FINK_SPARK_JARS":
                print(f"  {key}={value}")
        return 0
    if args.command == "down":
        stack.down(layout, components, wipe=args.wipe)
        return 0
    if args.command == "build":
        stack.prepare_artefacts(layout, components, print)
        print(f"artefacts ready under {layout.cache}")
        return 0
    if args.command == "smoke":
        from . import smoke

        smoke.run(stack.endpoints(layout))
        return 0
    if args.command == "status":
        return _print_status(layout)
    if args.command == "images":
        return _images(layout, args.save, args.prune)
    if args.command == "logs":
        return _print_logs(layout, args.service, args.lines, args.follow)
    if args.command == "env":
        environment = stack.endpoints(layout).environment()
        tools = ":".join(stack.tool_dirs(layout))
        environment["PATH"] = f"{tools}:{os.environ.get('PATH', '')}"
        for key, value in environment.items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    return 2


def _print_status(layout: Layout) -> int:
    rows = stack.status(layout)
    print(f"{'SERVICE':<26}{'COMPONENT':<12}{'PID':<9}{'STATE':<10}LOG")
    for row in rows:
        state = "healthy" if row.healthy else ("starting" if row.pid else "stopped")
        print(f"{row.name:<26}{row.component:<12}{row.pid or '-':<9}{state:<10}{row.log}")
    print(f"state: {layout.state}\ncache: {layout.cache}")
    node_running = any(r.pid for r in rows if r.name == "containerd")
    if node_running:
        _images(layout, None)
    if all(r.healthy for r in rows):
        return 0
    return 3 if any(r.pid for r in rows) else 4


def _images(layout: Layout, save: list[str] | None, prune: bool = False) -> int:
    from . import images, node

    containerd = node.containerd_client(layout)
    on_node = {
        image.spec.name: containerd.image_digest(image.spec.reference)
        if node.containerd_socket(layout).exists()
        else None
        for image in images.IMAGE_ARTEFACTS
    }
    if prune:
        keep = frozenset(d for d in on_node.values() if d)
        print(f"freed {images.prune(layout.cache, keep) / 1e9:.2f} GB")
    for image in images.IMAGE_ARTEFACTS:
        name = image.spec.short_reference
        digest = on_node[image.spec.name]
        if image.is_ready(layout.cache):
            record = image.record(layout.cache)
            where = "on the node" if digest == record.manifest_digest else "not on the node yet"
        else:
            record = images.record_of(layout.cache, image.spec, digest) if digest else None
            where = "on the node; the source changed since (`fink-stack up node` rebuilds)"
        if record is None:
            print(f"{name:<28} not built (`fink-stack up node` builds it)")
            continue
        print(
            f"{name:<28} {record.size / 1e9:5.2f} GB  {record.manifest_digest[:19]}  {where}  "
            f"({image.spec.containerfile})"
        )
        if save and save[0] in (image.spec.name, name):
            images.save(record, Path(save[1]))
            print(f"saved {name} to {save[1]} (OCI layout tar)")
    return 0


def _print_logs(layout: Layout, service: str, lines: int, follow: bool) -> int:
    log = layout.log_of(service)
    print(process.tail(log, lines))
    if not follow:
        return 0
    with log.open() as handle:
        handle.seek(0, os.SEEK_END)
        try:
            while True:
                line = handle.readline()
                if line:
                    print(line, end="")
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
