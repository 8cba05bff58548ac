"""A scientist's first filter, on a laptop: init, their own test, `fink-filter test`, and mistakes.

Runs the real command (the console script pip installs) in a temporary
directory; no cluster or Kafka. The mistakes are the three a newcomer makes
(a column that does not exist, reaching for the network, an error at run
time): each exits 1 and points at the line and column to change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fink_filter_command import fink_filter


@pytest.fixture(scope="module")
def bright(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh `fink-filter init bright-sn` (ZTF) directory."""
    where = tmp_path_factory.mktemp("scientist")
    made = fink_filter("init", "bright-sn", "--pipeline", "ztf-demo", cwd=where)
    assert made.returncode == 0, made.stderr
    return where


def broken(where: Path, name: str, old: str, new: str) -> Path:
    """A copy of the template with one edit, as a scientist would make it."""
    code = (where / "bright-sn.py").read_text()
    assert old in code
    path = where / f"{name}.py"
    path.write_text(code.replace(old, new, 1))
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_init_writes_a_filter_whose_own_test_passes_and_which_runs_on_realistic_alerts(
    bright: Path,
) -> None:
    assert {p.name for p in bright.iterdir()} >= {
        "bright-sn.py",
        "test_bright-sn.py",
        "bright-sn.yaml",
    }
    # the scientist's own test: plain pytest, nothing of the broker needed
    own = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bright-sn.py"],
        cwd=bright,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert own.returncode == 0, own.stdout + own.stderr
    assert "2 passed" in own.stdout

    tried = fink_filter("test", "bright-sn.py", cwd=bright)
    assert tried.returncode == 0, tried.stderr
    assert "`bright_sn` reads magpsf, rb" in tried.stdout
    assert " of 1000 passed" in tried.stdout
    assert "µs per alert" in tried.stdout
    assert "ZTF" in tried.stdout  # examples show objectIds

    # a second init does not overwrite the scientist's work
    again = fink_filter("init", "bright-sn", cwd=bright)
    assert again.returncode == 2
    assert "--force" in again.stderr


def test_a_column_that_does_not_exist_is_refused_at_its_line_and_column(bright: Path) -> None:
    path = broken(bright, "wrong_column", "rb: pd.Series", "rbscore: pd.Series")
    result = fink_filter("test", path.name, "--entrypoint", "bright_sn", cwd=bright)
    assert result.returncode == 1, result.stdout + result.stderr
    line = line_of(path, "def bright_sn(")
    column = path.read_text().splitlines()[line - 1].index("rbscore") + 1
    assert f"line {line}, column {column}" in result.stderr, result.stderr
    assert "parameter `rbscore` names no column" in result.stderr


def test_reaching_for_the_network_is_refused_at_its_line_and_column(bright: Path) -> None:
    path = broken(
        bright, "network", "import pandas as pd\n", "import pandas as pd\nimport socket\n"
    )
    result = fink_filter("test", path.name, "--entrypoint", "bright_sn", cwd=bright)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"line {line_of(path, 'import socket')}, column 1" in result.stderr, result.stderr
    assert "module `socket` cannot be imported" in result.stderr


def test_an_error_at_run_time_is_reported_at_its_line(bright: Path) -> None:
    path = broken(
        bright, "division", "    return (magpsf", "    ratio = 1 / 0\n    return ratio * (magpsf"
    )
    result = fink_filter("test", path.name, "--entrypoint", "bright_sn", cwd=bright)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "checks passed" in result.stdout  # the static checks cannot see it
    assert f"line {line_of(path, 'ratio = 1 / 0')}, column 5" in result.stderr, result.stderr
    assert "ZeroDivisionError" in result.stderr


def test_bad_input_exits_2(bright: Path) -> None:
    assert fink_filter("test", "missing.py", cwd=bright).returncode == 2
    assert fink_filter("init", "Not_A_Name", cwd=bright).returncode == 2
    assert fink_filter("test", "bright-sn.py", "--survey", "hst", cwd=bright).returncode == 2


def test_an_lsst_filter_from_the_template_runs_on_lsst_alerts(tmp_path: Path) -> None:
    assert fink_filter("init", "faint_lsst", "--survey", "lsst", cwd=tmp_path).returncode == 0
    own = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_faint_lsst.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert own.returncode == 0, own.stdout + own.stderr
    tried = fink_filter("test", "faint_lsst.py", "--alerts", "300", cwd=tmp_path)
    assert tried.returncode == 0, tried.stderr
    assert "reads psfFlux, reliability" in tried.stdout
    assert "of 300 passed" in tried.stdout


@pytest.mark.parametrize("name", ["test-cuts", "testcuts"])
def test_a_filter_named_test_something_is_not_collected_as_a_test_itself(
    tmp_path: Path, name: str
) -> None:
    """Its function is `test_cuts`: the generated test must not hand it to pytest."""
    made = fink_filter("init", name, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    own = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"test_{name}.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert own.returncode == 0, own.stdout + own.stderr
    assert "2 passed" in own.stdout
