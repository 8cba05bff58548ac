"""A scientist's filter code is checked before it runs, with the line and column of each problem.

Real fink-filters files pass unchanged; each refusal points where to change.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import resources

import pytest

from fink_core.filters.source import (
    ALLOWED_IMPORTS,
    CheckedSource,
    FilterCodeError,
    check_source,
)

COLUMNS = {
    "objectId": "string",
    "roid": "int",
    "rb": "double",
    "drb": "double",
    "nbad": "int",
    "ndethist": "int",
    "magpsf": "double",
    "mulens": "double",
    "jd": "double",
    "fid": "int",
}

# fink-filters files that read only simple columns: (path in the package, entrypoint, reads)
FINK_FILTERS = [
    ("ztf/filter_quality_cuts/filter.py", "ztf_quality_cuts", ("rb", "nbad")),
    ("ztf/livestream/filter_sso_ztf_candidates/filter.py", "sso_ztf_candidates", ("roid",)),
    ("ztf/livestream/filter_sso_fink_candidates/filter.py", "sso_fink_candidates", ("roid",)),
    ("ztf/livestream/filter_first_pass_candidates/filter.py", "first_pass_candidates", ("roid",)),
    (
        "ztf/livestream/filter_microlensing_candidates/filter.py",
        "microlensing_candidates",
        ("mulens",),
    ),
]


def fink_filter_source(path: str) -> str:
    return resources.files("fink_filters").joinpath(path).read_text()


def refusal(code: str, entrypoint: str = "keep") -> FilterCodeError:
    with pytest.raises(FilterCodeError) as caught:
        check_source(textwrap.dedent(code), entrypoint, COLUMNS)
    return caught.value


@pytest.mark.parametrize(("path", "entrypoint", "reads"), FINK_FILTERS)
def test_fink_filters_files_pass_unchanged(
    path: str, entrypoint: str, reads: tuple[str, ...]
) -> None:
    checked = check_source(fink_filter_source(path), entrypoint, COLUMNS)
    assert checked.reads == reads
    assert checked.entrypoint == entrypoint
    assert checked.docstring  # each has one


def test_a_plain_filter_gives_its_reads_and_the_first_line_of_its_docstring() -> None:
    code = textwrap.dedent(
        '''
        from __future__ import annotations

        import numpy as np
        import pandas as pd
        from collections import Counter
        from fink_utils.photometry import utils


        def keep(magpsf, rb, /, ndethist, *, drb=None) -> pd.Series:
            """Bright, real, seen twice.

            More words.
            """
            return (magpsf < 19) & (rb > 0.5) & (ndethist > 1) & np.isfinite(drb)
        '''
    )
    assert check_source(code, "keep", COLUMNS) == CheckedSource(
        entrypoint="keep",
        reads=("magpsf", "rb", "ndethist", "drb"),
        code=code,
        docstring="Bright, real, seen twice.",
    )


def test_the_message_reads_line_and_column_first() -> None:
    error = FilterCodeError("do this", 3, 7)
    assert str(error) == "line 3, column 7: do this"
    assert (error.message, error.line, error.column) == ("do this", 3, 7)
    assert str(FilterCodeError("no place", None, None)) == "no place"


def test_a_syntax_error_points_at_the_place() -> None:
    error = refusal("def keep(rb):\n    return rb >\n")
    assert (error.line, error.column) == (2, 16)
    assert "not valid Python" in error.message


@pytest.mark.parametrize(
    ("code", "line", "column", "words"),
    [
        ("import os\ndef keep(rb):\n    return rb > 0\n", 1, 1, "module `os` cannot be imported"),
        ("import numpy\nimport socket\n", 2, 1, "module `socket`"),
        ("from subprocess import run\n", 1, 1, "module `subprocess`"),
        ("def keep(rb):\n    import urllib.request\n", 2, 5, "module `urllib.request`"),
        ("from . import helpers\n", 1, 1, "relative imports"),
        ("from pyspark.sql.functions import udf\n", 1, 1, "`udf` cannot be imported"),
        ("import pyspark.sql.functions\n", 1, 1, "rather than `import pyspark.sql.functions`"),
        ("from fink_filters.tester import sys\n", 1, 1, "`sys` cannot be imported"),
        ("import numpyx\n", 1, 1, "module `numpyx`"),
    ],
)
def test_imports_come_from_the_allow_list(code: str, line: int, column: int, words: str) -> None:
    error = refusal(code)
    assert (error.line, error.column) == (line, column)
    assert words in error.message
    assert "numpy" in error.message or "only" in error.message


def test_the_first_refused_import_in_the_file_is_reported() -> None:
    error = refusal("import numpy\n\ndef keep(rb):\n    import shutil\n    import os\n")
    assert (error.line, error.column) == (4, 5)


@pytest.mark.parametrize(
    "name",
    [
        "open",
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "getattr",
        "setattr",
    ],
)
def test_refused_names_are_refused_with_why(name: str) -> None:
    error = refusal(f"def keep(rb):\n    x = 1\n    y = {name}\n    return rb > 0\n")
    assert (error.line, error.column) == (3, 9)
    assert f"`{name}` cannot be used" in error.message
    assert any(
        word in error.message
        for word in (
            "files",
            "code",
            "import",
            "variables",
            "attributes",
            "type",
            "debugger",
            "change",
        )
    )


def test_open_is_refused_even_at_the_top_level() -> None:
    error = refusal("DATA = open('/etc/passwd').read()\n")
    assert (error.line, error.column) == (1, 8)
    assert "filters see alerts only, not files" in error.message


@pytest.mark.parametrize(
    ("code", "line", "column", "name"),
    [
        ("def keep(rb):\n    return rb.__class__\n", 2, 12, "__class__"),
        ("def keep(rb):\n    return rb > 0\n\nx = keep.__globals__\n", 4, 5, "__globals__"),
        ("print(__name__)\n", 1, 7, "__name__"),
        ("from numpy import __config__\n", 1, 19, "__config__"),
        ("def keep(__rb__):\n    return 1\n", 1, 10, "__rb__"),
    ],
)
def test_double_underscore_names_are_refused(code: str, line: int, column: int, name: str) -> None:
    error = refusal(code)
    assert (error.line, error.column) == (line, column)
    assert f"`{name}` cannot be used" in error.message
    assert "interpreter's internals" in error.message


def test_the_main_guard_is_tolerated_and_not_checked() -> None:
    code = textwrap.dedent(
        """
        def keep(rb):
            return rb > 0.5

        if __name__ == "__main__":
            import os
            globs = globals()
            os.system("run the tests")
        """
    )
    assert check_source(code, "keep", COLUMNS).reads == ("rb",)


def test_a_missing_entrypoint_suggests_a_close_name() -> None:
    error = refusal("def keep_bright(rb):\n    return rb > 0\n", entrypoint="keep_brigth")
    assert error.line is None
    assert "`keep_brigth` is not a function defined at the top level" in error.message
    assert "did you mean `keep_bright`" in error.message


def test_a_missing_entrypoint_lists_the_functions_or_says_there_are_none() -> None:
    assert "the file defines `a`, `b`" in refusal("def a(rb): ...\ndef b(rb): ...\n").message
    assert "defines no function" in refusal("x = 1\n").message
    nested = refusal("def outer(rb):\n    def keep(rb):\n        return rb\n    return keep\n")
    assert "not a function defined at the top level" in nested.message


def test_a_parameter_that_is_no_column_points_at_it_with_close_names() -> None:
    error = refusal("def keep(rb,\n         magpfs):\n    return rb > 0\n")
    assert (error.line, error.column) == (2, 10)
    assert "parameter `magpfs` names no column" in error.message
    assert "did you mean `magpsf`" in error.message


def test_a_parameter_far_from_any_column_lists_the_columns() -> None:
    error = refusal("def keep(zzzz):\n    return zzzz\n")
    assert (error.line, error.column) == (1, 10)
    assert "the columns are `drb`, `fid`" in error.message


@pytest.mark.parametrize(
    ("code", "line", "column", "words"),
    [
        ("def keep(rb, *others):\n    return rb\n", 1, 15, "`*others` is not possible"),
        ("def keep(rb, **named):\n    return rb\n", 1, 16, "`**named` is not possible"),
        ("def keep():\n    return True\n", 1, 1, "reads no column"),
        ("async def keep(rb):\n    return rb\n", 1, 1, "plain `def`"),
    ],
)
def test_the_entrypoint_names_its_columns_one_by_one(
    code: str, line: int, column: int, words: str
) -> None:
    error = refusal(code)
    assert (error.line, error.column) == (line, column)
    assert words in error.message


def test_checks_come_in_order_syntax_imports_names_entrypoint() -> None:
    # a refused import is reported before a refused name that comes earlier in the file
    error = refusal("x = eval('1')\nimport os\n")
    assert "module `os`" in error.message
    # a refused name before a wrong entrypoint
    assert "`exec` cannot be used" in refusal("exec('1')\n", entrypoint="nothing").message


def test_the_allow_list_is_the_documented_one() -> None:
    assert set(ALLOWED_IMPORTS) == {
        "__future__",
        "numpy",
        "pandas",
        "math",
        "statistics",
        "re",
        "datetime",
        "functools",
        "itertools",
        "collections",
        "typing",
        "fink_utils",
        "pyspark.sql.functions",
        "pyspark.sql.types",
        "fink_filters.tester",
    }


def test_checking_imports_neither_pandas_nor_numpy() -> None:
    probe = (
        "import sys\n"
        "from fink_core.filters.source import check_source\n"
        "import fink_core.filters.sandbox\n"
        "check_source('def keep(rb):\\n    return rb > 0\\n', 'keep', {'rb': 'double'})\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyspark') if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
