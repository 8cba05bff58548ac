"""A small client of the local Prometheus's HTTP API, and the chart's dashboard and rules as data.

The dashboard JSON and the rule file are read from the chart itself: they are the one
source of what Grafana shows and what Prometheus alerts on, so what these tests query
is exactly what users get.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "fink-operator"
DASHBOARD = CHART / "dashboards" / "fink.json"
RULES = CHART / "rules" / "fink-rules.yaml"


class PrometheusError(RuntimeError):
    """The API refused a request (a PromQL syntax error, for instance); the message says why."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    values: list[tuple[float, float]]  # (unix time, value); one pair for an instant query

    def has_data(self) -> bool:
        return any(not math.isnan(v) for _, v in self.values)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            raise PrometheusError(f"{path} {params}: {error.read().decode()}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", **params)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr}: a {data['resultType']}, not a vector")
        return [
            Series(item["metric"], [(float(item["value"][0]), float(item["value"][1]))])
            for item in data["result"]
        ]

    def query_range(self, expr: str, start: float, end: float, step: float = 5) -> list[Series]:
        data = self._get(
            "/api/v1/query_range",
            query=expr,
            start=f"{start:.3f}",
            end=f"{end:.3f}",
            step=f"{step:g}",
        )
        return [
            Series(item["metric"], [(float(t), float(v)) for t, v in item["values"]])
            for item in data["result"]
        ]

    def value(self, expr: str) -> float | None:
        """The value of a query yielding at most one series (None when it yields none)."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: {len(result)} series"
        return result[0].values[0][1] if result else None

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        return self._get(
            "/api/v1/series", **{"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        )

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets", state="active")["activeTargets"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/rules")["groups"]

    def wait(self, expr: str, accept: Callable[[float], bool], timeout: float, what: str) -> float:
        """Poll an instant query yielding one series until `accept` takes its value."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and accept(last):
                return last
            time.sleep(1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}: {expr} = {last}")


# ------------------------------------------------------------------------------ the dashboard


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str
    legend: str


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included (rows themselves excepted)."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries(board: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(panel["title"], target["refId"], target["expr"], target.get("legendFormat", ""))
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's template variables in a query, as Grafana replaces them (`$name`, `${name}`)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value for the dashboard variable ${name} in {expr}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


# ------------------------------------------------------------------------------ the rules


def rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def rule(name: str) -> dict[str, Any]:
    (found,) = [r for r in rules() if r["alert"] == name]
    return found


def with_threshold(expr: str, threshold: float) -> str:
    """The expression with its final comparison's constant replaced (`... > 10000` -> `> 300`)."""
    changed, count = re.subn(r"(>=?)\s*[0-9][0-9.e+]*\s*$", rf"\g<1> {threshold:g}", expr.strip())
    assert count == 1, f"no final comparison with a constant in {expr}"
    return changed
