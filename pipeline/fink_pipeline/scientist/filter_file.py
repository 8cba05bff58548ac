"""A filter as the scientist holds it: FILE.py, and the NAME.yaml next to it (see template.py).

`test` and `apply` both start here, so they agree on the filter's name,
entrypoint and survey: command-line options first, then NAME.yaml, then what
the code itself says (its only public function).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fink_core.filters.source import public_functions
from fink_core.science_filter import MAX_CODE_BYTES
from fink_pipeline.scientist.problems import BadInput, FilterFailed


@dataclass(frozen=True)
class FilterFile:
    path: Path
    code: str
    resource: dict[str, Any] = field(default_factory=dict)  # NAME.yaml, or {} without one
    resource_path: Path | None = None

    @property
    def name(self) -> str:
        """The filter's name: NAME.yaml's metadata.name, else the file's stem."""
        return str((self.resource.get("metadata") or {}).get("name") or self.path.stem)

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.resource.get("spec") or {})

    def survey(self, given: str | None) -> str | None:
        return given or self.spec.get("survey")

    def entrypoint(self, given: str | None) -> str:
        """The function to call: given, NAME.yaml's, else the code's only public function."""
        chosen = given or self.spec.get("entrypoint")
        return str(chosen) if chosen else only_public_function(self.code, self.path)


def read(path: str | Path) -> FilterFile:
    """Read FILE.py and, when it exists, FILE.yaml next to it; BadInput naming what is wrong."""
    path = Path(path)
    try:
        code = path.read_text()
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror or error}") from None
    if not code.strip():
        raise BadInput(f"{path} is empty: a filter is a Python function (fink-filter init NAME)")
    if len(code.encode()) > MAX_CODE_BYTES:
        raise BadInput(
            f"{path} is larger than {MAX_CODE_BYTES // 1024} KiB: a filter is one small file"
        )
    sidecar = path.with_suffix(".yaml")
    if not sidecar.exists():
        return FilterFile(path, code)
    try:
        document = yaml.safe_load(sidecar.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise BadInput(f"{sidecar} is not valid YAML{at}: {problem}") from None
    except OSError as error:
        raise BadInput(f"cannot read {sidecar}: {error.strerror or error}") from None
    if not isinstance(document, dict) or document.get("kind", "ScienceFilter") != "ScienceFilter":
        raise BadInput(f"{sidecar} must be one ScienceFilter resource (kind: ScienceFilter)")
    return FilterFile(path, code, document, sidecar)


def only_public_function(code: str, path: Path) -> str:
    """The code's only public top-level function, as the operator chooses it without an entrypoint."""
    names = public_functions(code)
    if names is None:
        return "filter"  # the static checks report the syntax error with its place
    if len(names) == 1:
        return names[0]
    found = ", ".join(names) if names else "none"
    raise FilterFailed(
        f"{path} defines {len(names)} public functions ({found}): say which one is the "
        "filter with --entrypoint (or spec.entrypoint in the YAML next to it)"
    )
