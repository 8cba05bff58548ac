"""Draw the key panels of the chart's Grafana dashboard as a PNG, from a real Prometheus.

The figure in docs/observability.md is made by this script: it reads the panels'
PromQL from charts/fink-operator/dashboards/fink.json (the file Grafana gets), fills
the template variables as Grafana would, asks Prometheus for each query over a time
range, and draws each panel with its own legend format. So a reader sees what the
dashboard shows before installing anything, and the picture cannot drift from the
queries. Usage, with the local stack's Prometheus after a pipeline streamed:

    .venv/bin/python scripts/render_dashboard.py --namespace NS --pipeline NAME \\
        --minutes 15 --out docs/images/dashboard.png

tests/observability/test_dashboard.py runs it on its streaming run (and writes the
documentation's figure when FINK_DASHBOARD_PNG names it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "fink-operator" / "dashboards" / "fink.json"

# the panels a reader needs to see the alert flow and the operator at work, in reading order
KEY_PANELS = (
    "Alerts in and out per stage",
    "Alerts per filter",
    "Input lag",
    "Micro-batch duration",
    "Time per science module",
    "Dead letters by reason",
    "Reconcile passes by result",
    "Driver submissions and restarts",
)


@dataclass(frozen=True)
class Line:
    label: str
    times: list[float]
    values: list[float]


def _query_range(url: str, expr: str, start: float, end: float, step: float) -> list[Any]:
    params = urllib.parse.urlencode(
        {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    )
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=60) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def _substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's `$name` and `${name}` variables, replaced by their values."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], expr)


def _legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legend format: `{{label}}` replaced by the series' label value."""
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.strip() or json.dumps(labels)


def panel_lines(
    panel: dict[str, Any],
    url: str,
    variables: dict[str, str],
    start: float,
    end: float,
    step: float,
) -> list[Line]:
    lines = []
    for target in panel["targets"]:
        expr = _substitute(target["expr"], variables)
        for series in _query_range(url, expr, start, end, step):
            points = [(float(t), float(v)) for t, v in series["values"]]
            points = [(t, v) for t, v in points if not math.isnan(v) and not math.isinf(v)]
            if points:
                lines.append(
                    Line(
                        _legend(target.get("legendFormat", ""), series["metric"]),
                        [t for t, _ in points],
                        [v for _, v in points],
                    )
                )
    return lines


def _axis_label(panel: dict[str, Any]) -> str:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    label = defaults.get("custom", {}).get("axisLabel", "")
    unit = defaults.get("unit", "")
    return label or {"s": "seconds", "ops": "per second", "percentunit": "share"}.get(unit, "")


def render(
    url: str,
    namespace: str,
    pipeline: str,
    start: float,
    end: float,
    out: Path,
    rate_interval: str,
    step: float,
) -> dict[str, int]:
    """Draw KEY_PANELS into `out`; returns the number of series each panel had."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = json.loads(DASHBOARD.read_text())
    by_title = {
        p["title"]: p
        for p in board["panels"]
        for p in ([p] if p["type"] != "row" else p.get("panels", []))
    }
    variables = {
        "namespace": namespace,
        "pipeline": pipeline,
        "datasource": "prometheus",
        "__rate_interval": rate_interval,
    }
    columns = 2
    rows = math.ceil(len(KEY_PANELS) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(15, 3.4 * rows), squeeze=False)
    counts = {}
    for index, title in enumerate(KEY_PANELS):
        axis = axes[index // columns][index % columns]
        panel = by_title[title]
        lines = panel_lines(panel, url, variables, start, end, step)
        counts[title] = len(lines)
        for line in lines:
            minutes = [(t - start) / 60 for t in line.times]
            axis.plot(minutes, line.values, label=line.label, linewidth=1.6)
        axis.set_title(title, fontsize=11, loc="left", fontweight="bold")
        axis.set_ylabel(_axis_label(panel), fontsize=9)
        axis.set_xlim(0, (end - start) / 60)
        axis.grid(True, alpha=0.3)
        axis.tick_params(labelsize=8)
        if lines:
            axis.legend(fontsize=7, loc="upper left", framealpha=0.8)
        else:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
        if index // columns == rows - 1:
            axis.set_xlabel("minutes", fontsize=9)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start))
    figure.suptitle(
        f"Fink broker dashboard: pipeline {namespace}/{pipeline}, from {stamp}, "
        f"{(end - start) / 60:.0f} minutes\n"
        "the queries of charts/fink-operator/dashboards/fink.json against the local stack's "
        "Prometheus (a real driver on the real node, a real operator)",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prometheus",
        default=os.environ.get("FINK_PROMETHEUS_URL", "http://127.0.0.1:9095"),
        help="Prometheus base URL (default: $FINK_PROMETHEUS_URL or the local stack's)",
    )
    parser.add_argument("--namespace", default=".*", help="the $namespace variable (a regex)")
    parser.add_argument("--pipeline", default=".*", help="the $pipeline variable (a regex)")
    parser.add_argument("--start", type=float, help="unix time (default: --minutes before end)")
    parser.add_argument("--end", type=float, help="unix time (default: now)")
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--rate-interval", default="30s", help="Grafana's $__rate_interval")
    parser.add_argument("--step", type=float, default=5, help="seconds between points")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "dashboard.png")
    args = parser.parse_args(argv)
    end = args.end or time.time()
    start = args.start or end - args.minutes * 60
    counts = render(
        args.prometheus.rstrip("/"),
        args.namespace,
        args.pipeline,
        start,
        end,
        args.out,
        args.rate_interval,
        args.step,
    )
    for title, count in counts.items():
        print(f"{title}: {count} series" if count else f"{title}: no data")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
