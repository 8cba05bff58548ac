"""Run `fink-filter` as a scientist does: the installed command, in their own directory.

Shared by the tests of its local commands (init, test), of `apply` and `tail`
against the operator, and of `test --parquet` on a running pipeline's archive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

FINK_FILTER = Path(sys.executable).with_name("fink-filter")


def fink_filter(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`fink-filter ARGS` in CWD, with ENV added to this process's environment."""
    assert FINK_FILTER.exists(), "fink-filter is not installed: pip install -e . in the clone"
    return subprocess.run(
        [str(FINK_FILTER), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
