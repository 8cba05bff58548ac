"""Dependencies point one way: core <- operator, core <- pipeline; nothing imports the stack.

Checked on the source (every import statement, top-level or inside a function)
and on a real interpreter (what importing the operator loads).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from fink_core.science import shipped_catalogue
from fink_pipeline.science.registry import live_catalogue

ROOT = Path(__file__).parents[2]
FORBIDDEN = {
    "core/fink_core": {"fink_operator", "fink_pipeline", "fink_stack"},
    "operator/fink_operator": {"fink_pipeline", "fink_stack"},
    "pipeline/fink_pipeline": {"fink_operator", "fink_stack"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_what_sits_above_or_beside_it(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imports(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_the_operator_plans_without_loading_the_science_code() -> None:
    """The operator's image needs no pandas, Spark or fink-science: it plans from the catalogue."""
    probe = (
        "import sys, fink_operator.handlers, fink_operator.cli\n"
        "from fink_operator.desired import desired_state\n"
        "doc = {'metadata': {'name': 'p', 'namespace': 'n'}, 'spec': {'survey': 'ztf', "
        "'source': {'kafka': {'topic': 's'}}, 'modules': [{'name': 'quality_cuts'}]}}\n"
        "desired_state(doc)\n"
        "heavy = sorted(m for m in ('fink_pipeline', 'pandas', 'pyspark', 'fink_science') "
        "if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_shipped_catalogue_is_the_registrys() -> None:
    """core/fink_core/science/catalogue.json is generated: `fink-pipeline catalogue > ...`."""
    assert shipped_catalogue() == live_catalogue(), (
        "the science catalogue is stale: run `fink-pipeline catalogue > "
        "core/fink_core/science/catalogue.json`"
    )
