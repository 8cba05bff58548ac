"""`fink-filter init`: the three files a new filter starts from.

- `NAME.py`: the filter, in Fink's convention (one function whose parameters
  are named after the alert columns it reads, returning one boolean per alert),
  commented so that a scientist can change the rule without reading anything else;
- `test_NAME.py`: a plain pytest test on a hand-made table of three alerts, which
  runs anywhere (no Spark, no Kafka, no cluster);
- `NAME.yaml`: the ScienceFilter resource *without its code*: `fink-filter apply
  NAME.py` reads it (pipelines, survey, topic, description...) and puts the
  current NAME.py inline, so the code lives in one place only and the resource
  can never carry a stale copy. `fink-filter apply NAME.py --print` prints the
  complete resource for `kubectl apply -f -` or a GitOps repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fink_core import science_filter
from fink_core.science import shipped_catalogue
from fink_pipeline.scientist.problems import BadInput


@dataclass(frozen=True)
class Example:
    """One survey's example rule: the columns it reads, its test table and its answer."""

    columns: tuple[str, str]
    doc: str  # what the rule keeps, one line
    rule: str  # the function's body (one expression)
    comments: tuple[str, ...]  # what each column is, for someone new to the survey
    rows: tuple[tuple[float, float], ...]
    expected: tuple[bool, ...]


EXAMPLES = {
    "ztf": Example(
        columns=("magpsf", "rb"),
        doc="Bright detections the real-bogus classifier trusts.",
        rule="(magpsf < 19.0) & (rb > 0.7)",
        comments=(
            "magpsf: the PSF-fit magnitude of this detection (smaller is brighter)",
            "rb: the real-bogus score, 0 (an artefact) to 1 (a real source)",
        ),
        rows=((18.2, 0.95), (18.2, 0.30), (20.5, 0.95)),
        expected=(True, False, False),
    ),
    "lsst": Example(
        columns=("psfFlux", "reliability"),
        doc="Bright detections the reliability classifier trusts.",
        rule="(psfFlux > 3000.0) & (reliability > 0.7)",
        comments=(
            "psfFlux: the PSF flux of this difference-image source, in nJy (3000 nJy is "
            "magnitude 22.7)",
            "reliability: the classifier's score, 0 (an artefact) to 1 (a real source)",
        ),
        rows=((5000.0, 0.95), (5000.0, 0.30), (800.0, 0.95)),
        expected=(True, False, False),
    ),
}


def check_name(name: str) -> None:
    """The resource's name rule (the CRD's), said before any file is written."""
    if not re.fullmatch(science_filter.NAME_PATTERN, name) or len(name) > science_filter.MAX_NAME:
        raise BadInput(
            f"{name!r} cannot name a filter: use lower-case letters, digits, '-' and '_', "
            f"starting and ending with a letter or digit, at most {science_filter.MAX_NAME} "
            "characters (it becomes part of a topic name)"
        )


def function_name(name: str) -> str:
    """The filter's function: its name as a Python identifier."""
    identifier = name.replace("-", "_")
    return (
        identifier
        if identifier.isidentifier() and not identifier[0].isdigit()
        else f"filter_{identifier}"
    )


def files(name: str, survey: str, pipeline: str | None) -> dict[str, str]:
    """File name -> text of the three files for a new filter."""
    check_name(name)
    if survey not in EXAMPLES:
        raise BadInput(f"unknown survey {survey!r}: choose one of {', '.join(EXAMPLES)}")
    example = EXAMPLES[survey]
    known = shipped_catalogue().columns[survey]
    assert all(c in known for c in example.columns), "the template reads unknown columns"
    return {
        f"{name}.py": _filter_code(name, survey, example),
        f"test_{name}.py": _test_code(name, example),
        f"{name}.yaml": _resource(name, survey, pipeline),
    }


def write(directory: Path, name: str, survey: str, pipeline: str | None, force: bool) -> list[Path]:
    """Write the files; refuse (BadInput) to overwrite any of them unless `force`."""
    texts = files(name, survey, pipeline)
    paths = [directory / file_name for file_name in texts]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise BadInput(f"{', '.join(existing)} already exist(s): use --force to overwrite")
    if not directory.is_dir():
        raise BadInput(f"{directory} is not a directory")
    for path, text in zip(paths, texts.values(), strict=True):
        path.write_text(text)
    return paths


def _filter_code(name: str, survey: str, example: Example) -> str:
    function = function_name(name)
    first, second = example.columns
    comments = "\n".join(f"    #   {c}" for c in example.comments)
    return f'''"""{name}: a science filter for {survey} alerts (change the rule below to your case).

How a filter works (Fink's convention):
- it is one function; each parameter is named after an alert column it reads,
  and receives that column for a batch of alerts (a pandas Series);
- it returns one True/False per alert (a boolean Series): True sends the alert
  to the filter's topic. A missing value (None/NaN) in the answer counts as False;
- it may import only numpy, pandas, math, statistics, re, datetime, functools,
  itertools, collections, typing and fink_utils: filters see alerts, never
  files, the network or other programs.

The columns a filter can read: the alert's own, plus every column the
pipeline's science modules add (`fink-pipeline catalogue` lists them all).

Try it:   pytest test_{name}.py           (your own test, seconds)
          fink-filter test {name}.py      (on 1000 realistic alerts, in the sandbox)
Publish:  fink-filter apply {name}.py --pipeline PIPELINE
"""

import pandas as pd


def {function}({first}: pd.Series, {second}: pd.Series) -> pd.Series:
    """{example.doc}"""
    # The columns this filter reads:
{comments}
    return {example.rule}
'''


# the filter's function as the test file names it: never collected by pytest as a test
# itself, even when the filter's name starts with "test"
UNDER_TEST = "filter_under_test"


def _test_code(name: str, example: Example) -> str:
    function = function_name(name)
    first, second = example.columns
    if name.isidentifier():
        load = f"from {name} import {function} as {UNDER_TEST}"
    else:  # a file name with '-' cannot be imported by name: load it from its path
        load = f"""import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("{function}", Path(__file__).with_name("{name}.py"))
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
{UNDER_TEST} = _module.{function}"""
    firsts = ", ".join(repr(r[0]) for r in example.rows)
    seconds = ", ".join(repr(r[1]) for r in example.rows)
    expected = ", ".join(repr(e) for e in example.expected)
    return f'''"""A test of {name}.py on three hand-made alerts: run it with `pytest test_{name}.py`.

Add a row for each case your science cares about (the edge of a cut, a
missing value) and say what the filter must answer.
"""

import pandas as pd

{load}


def test_{function}_keeps_what_it_should() -> None:
    {first} = pd.Series([{firsts}])
    {second} = pd.Series([{seconds}])

    kept = {UNDER_TEST}({first}, {second})

    # one answer per alert, in order
    assert kept.tolist() == [{expected}]


def test_{function}_drops_alerts_with_missing_values() -> None:
    kept = {UNDER_TEST}(pd.Series([None], dtype="float64"), pd.Series([None], dtype="float64"))

    assert kept.tolist() == [False]
'''


def _resource(name: str, survey: str, pipeline: str | None) -> str:
    pipelines = (
        f"  pipelines: [{pipeline}]\n"
        if pipeline
        else "  # pipelines: [my-pipeline]   # or: fink-filter apply --pipeline my-pipeline\n"
    )
    return f"""# The ScienceFilter resource of {name}.py, without its code:
# `fink-filter apply {name}.py` puts {name}.py inline (spec.code.inline) and applies it;
# `fink-filter apply {name}.py --print` prints the whole resource (for kubectl or git).
# Command-line options (--pipeline, --survey, --topic, --layout) win over this file.
apiVersion: fink.broker.dev/v1alpha1
kind: ScienceFilter
metadata:
  name: {name}
spec:
{pipelines}  survey: {survey}
  entrypoint: {function_name(name)}
  description: ""   # one line on the science case, shown to those who read the topic
  contact: ""       # who to ask about it (an e-mail address)
  # topic:
  #   name: fink_{name}_{survey}   # the default
  #   layout: fink                 # or fink-client (what Fink's own client reads)
"""
