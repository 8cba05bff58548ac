"""The demo's way of running commands: each echoed as a user would type it, failures as DemoError.

Shared by demo.py and demo_science.py (the ScienceFilter steps).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


class DemoError(Exception):
    """A step failed; the message says which and why."""


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def show(argv: list[str], suffix: str = "") -> None:
    print("$ " + " ".join(_quote(_short(a)) for a in argv) + suffix, flush=True)


def _quote(word: str) -> str:
    return "~/" + shlex.quote(word[2:]) if word.startswith("~/") else shlex.quote(word)


def _short(word: str) -> str:
    """Paths as a user would type them: the venv's tools by name, $HOME as ~."""
    if word.startswith(str(BIN) + "/"):
        return word[len(str(BIN)) + 1 :]
    home = str(Path.home())
    return "~" + word[len(home) :] if word.startswith(home + "/") else word


def run(argv: list[str], *, capture: bool = False, quiet: bool = False) -> str:
    """Run a command, echoing it; on failure raise DemoError with its output."""
    if not quiet:
        show(argv)
    result = subprocess.run(argv, text=True, capture_output=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise DemoError(f"`{' '.join(argv)}` exited with {result.returncode}:\n{output}")
    if not capture and not quiet:
        output = (result.stdout + result.stderr).rstrip()
        if output:
            print(output, flush=True)
    return result.stdout


def kubectl(*args: str, capture: bool = False, quiet: bool = False) -> str:
    return run(["kubectl", *args], capture=capture, quiet=quiet)
