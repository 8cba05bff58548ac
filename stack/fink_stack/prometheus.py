"""A real Prometheus in the local stack: it scrapes the operator and every pipeline's driver.

It is compiled from its Go module (`cmd/prometheus` and `cmd/promtool`, no web UI
assets: the HTTP API is what tests and scripts use) and runs as a host process on
127.0.0.1 only. It finds what to scrape the way a Prometheus in a real cluster
does, through the objects the chart and the operator create:

- pods annotated `prometheus.io/scrape: "true"` (the drivers the operator starts,
  on `prometheus.io/port`), scraped at their pod address on the `fink0` bridge,
  which the host reaches directly;
- Services annotated the same way (the chart's `<release>-fink-operator-metrics`),
  through their EndpointSlices;
- host processes a test or a developer lists in a file under `targets/` (an operator
  run with `fink-operator run` on the host serves its metrics on 127.0.0.1).

Only addresses of this machine are ever scraped: pod targets must lie in the pod
network (kwok's fake pods have addresses that exist nowhere, and a scrape of them
would leave the machine), file targets must be on loopback.

Rule files dropped in `rules/` are loaded at start and on `POST /-/reload` (the
lifecycle API is on: the server listens on loopback only), which is how the tests
evaluate the chart's alerting rules against live data.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import urllib.request
from pathlib import Path

import yaml

from . import versions
from .layout import HOST, POD_NETWORK, Layout
from .node_artefacts import GoCommands
from .service import Service, http_ok

PORT = 9095  # 9090 is HBase Thrift's
URL = f"http://{HOST}:{PORT}"
SCRAPE_SECONDS = 5  # short, so a test sees a pipeline's rates within a few seconds
RETENTION = "3d"
RETENTION_SIZE = "2GB"


def module_version(release: str) -> str:
    """Prometheus 3.X.Y is published as Go module version v0.3XX.Y (e.g. 3.16.0 -> v0.316.0)."""
    major, minor, patch = (int(p) for p in release.lstrip("v").split("."))
    return f"v0.{major * 100 + minor}.{patch}"


PROMETHEUS = GoCommands(
    "prometheus",
    "github.com/prometheus/prometheus",
    module_version(versions.PROMETHEUS),
    ("cmd/prometheus", "cmd/promtool"),
    ldflags="-s -w -X github.com/prometheus/common/version.Version="
    + versions.PROMETHEUS.lstrip("v"),
)


def _directory(layout: Layout) -> Path:
    return layout.config / "prometheus"


def targets_dir(layout: Layout) -> Path:
    """Files `<anything>.json` here (file_sd format) add host processes to scrape."""
    return _directory(layout) / "targets"


def rules_dir(layout: Layout) -> Path:
    """Rule files `<anything>.yaml` here are loaded at start and at each reload."""
    return _directory(layout) / "rules"


def promtool(layout: Layout) -> Path:
    return PROMETHEUS.binary(layout.cache, "promtool")


def _pod_address_regex() -> str:
    """A regex matching exactly the pod network's addresses (a /24: its first three octets)."""
    network = ipaddress.ip_network(POD_NETWORK.cidr)
    if network.prefixlen != 24:
        raise ValueError(f"the pod network {network} is not a /24")
    return r"\.".join(str(network.network_address).split(".")[:3]) + r"\.\d{1,3}"


def config(layout: Layout) -> dict[str, object]:
    """The whole configuration: a pure function of the layout, so its hash names its file."""
    pods = _pod_address_regex()
    kubeconfig = str(layout.kubeconfig)  # the admin's: discovery lists pods and slices
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS}s",
            "scrape_timeout": f"{SCRAPE_SECONDS - 1}s",
            "evaluation_interval": f"{SCRAPE_SECONDS}s",
        },
        "rule_files": [str(rules_dir(layout) / "*.yaml")],
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"{HOST}:{PORT}"]}],
            },
            {
                # the drivers: Pods annotated prometheus.io/scrape, on prometheus.io/port
                "job_name": "kubernetes-pods",
                "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": kubeconfig}],
                "relabel_configs": [
                    _keep("__meta_kubernetes_pod_annotation_prometheus_io_scrape", "true"),
                    _keep("__meta_kubernetes_pod_phase", "Running"),
                    _keep("__meta_kubernetes_pod_ip", pods),
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    {
                        # one target per pod, not one per declared container port
                        "source_labels": [
                            "__meta_kubernetes_pod_ip",
                            "__meta_kubernetes_pod_annotation_prometheus_io_port",
                        ],
                        "regex": r"(.+);(\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    _copy("__meta_kubernetes_namespace", "namespace"),
                    _copy("__meta_kubernetes_pod_name", "pod"),
                    _copy("__meta_kubernetes_pod_node_name", "node"),
                ],
            },
            {
                # the operator: Services annotated prometheus.io/scrape (the chart's
                # metrics Service). Its own labels win (honor_labels): the restart and
                # submission counters carry the *pipeline's* namespace
                "job_name": "kubernetes-service-endpoints",
                "honor_labels": True,
                "kubernetes_sd_configs": [{"role": "endpointslice", "kubeconfig_file": kubeconfig}],
                "relabel_configs": [
                    _keep("__meta_kubernetes_service_annotation_prometheus_io_scrape", "true"),
                    {
                        "source_labels": [
                            "__meta_kubernetes_service_annotation_prometheus_io_path"
                        ],
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    {
                        "source_labels": [
                            "__address__",
                            "__meta_kubernetes_service_annotation_prometheus_io_port",
                        ],
                        "regex": r"([^:]+)(?::\d+)?;(\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    _keep("__address__", pods + r":\d+"),
                    _copy("__meta_kubernetes_namespace", "namespace"),
                    _copy("__meta_kubernetes_service_name", "service"),
                    _copy("__meta_kubernetes_pod_name", "pod"),
                ],
            },
            {
                # host processes (an operator run on the host), listed in targets/*.json
                "job_name": "fink-host",
                "honor_labels": True,
                "file_sd_configs": [
                    {"files": [str(targets_dir(layout) / "*.json")], "refresh_interval": "5s"}
                ],
                "relabel_configs": [_keep("__address__", r"127\.0\.0\.1:\d+")],
            },
        ],
    }


def _keep(label: str, regex: str) -> dict[str, object]:
    return {"source_labels": [label], "regex": regex, "action": "keep"}


def _copy(source: str, target: str) -> dict[str, object]:
    return {"source_labels": [source], "target_label": target}


def _config_text(layout: Layout) -> str:
    return yaml.safe_dump(config(layout), sort_keys=False)


def config_file(layout: Layout) -> Path:
    """Named by its content: a changed configuration is a changed command line (a restart)."""
    digest = hashlib.sha256(_config_text(layout).encode()).hexdigest()[:10]
    return _directory(layout) / f"prometheus-{digest}.yml"


def _prepare(layout: Layout) -> None:
    for directory in (targets_dir(layout), rules_dir(layout), layout.data / "prometheus"):
        directory.mkdir(parents=True, exist_ok=True)
    for old in _directory(layout).glob("prometheus-*.yml"):
        old.unlink()
    config_file(layout).write_text(_config_text(layout))


def _argv(layout: Layout) -> list[str]:
    return [
        str(PROMETHEUS.binary(layout.cache, "prometheus")),
        f"--config.file={config_file(layout)}",
        f"--storage.tsdb.path={layout.data / 'prometheus'}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--storage.tsdb.retention.size={RETENTION_SIZE}",
        f"--web.listen-address={HOST}:{PORT}",
        "--web.enable-lifecycle",  # POST /-/reload picks up new rule and target files
    ]


def _ready(layout: Layout) -> bool:
    return http_ok(f"{URL}/-/ready")


def reload(url: str = URL) -> None:
    """Reload the configuration and the rule files now (instead of at the next start)."""
    request = urllib.request.Request(f"{url}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def write_targets(layout: Layout, name: str, targets: list[str], labels: dict[str, str]) -> Path:
    """List host processes to scrape (picked up within seconds, no reload needed)."""
    path = targets_dir(layout) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps([{"targets": targets, "labels": labels}]))
    temporary.rename(path)  # whole files only: Prometheus watches the directory
    return path


SERVICE = Service(
    "prometheus",
    "monitoring",
    ("kube-apiserver",),  # its Kubernetes discovery reads the apiserver
    _argv,
    _ready,
    prepare=_prepare,
    port=PORT,
    startup_seconds=60,
    data_dirs=("prometheus",),
)
