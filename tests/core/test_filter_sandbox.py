"""Scientists' filters run in a separate, limited process; one failing filter leaves the others be.

Real processes throughout. Each isolation case loads a misbehaving filter next
to a well-behaved "witness" in the same sandbox, checks what the scientist is
told, then checks that the witness still gives its right answer.
"""

from __future__ import annotations

import importlib
import os
import textwrap
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fink_core.filters.sandbox import (
    DryRunReport,
    FilterFailure,
    FilterSandbox,
    SandboxLimits,
    dry_run,
)
from fink_core.filters.source import check_source

COLUMNS = {
    name: "double"
    for name in ("objectId", "roid", "rb", "drb", "nbad", "ndethist", "magpsf", "mulens")
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

pytestmark = pytest.mark.filterwarnings("ignore:In Python 3.6:UserWarning")

LIMITS = SandboxLimits(seconds_per_call=2.0, memory_bytes=512 << 20, seconds_per_load=10.0)

WITNESS = '''
def bright(magpsf, rb):
    """Bright and real."""
    return (magpsf < 18.5) & (rb >= 0.5)
'''


def fink_filter_source(path: str) -> str:
    return resources.files("fink_filters").joinpath(path).read_text()


def alerts(rows: int = 12) -> pd.DataFrame:
    """A small hand-made frame with the columns fink-filters read."""
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "objectId": [f"ZTF21a{i:05d}" for i in range(rows)],
            "roid": np.arange(rows, dtype=np.int32) % 4,
            "rb": rng.uniform(0, 1, rows),
            "drb": rng.uniform(0, 1, rows),
            "nbad": rng.integers(0, 3, rows, dtype=np.int32),
            "ndethist": rng.integers(1, 20, rows),
            "magpsf": rng.uniform(16, 21, rows),
            "mulens": np.where(np.arange(rows) % 5 == 0, 0.7, 0.0),
        }
    )


def witness_mask(frame: pd.DataFrame) -> np.ndarray:
    return ((frame.magpsf < 18.5) & (frame.rb >= 0.5)).to_numpy()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[FilterSandbox]:
    with FilterSandbox(LIMITS) as box:
        box.load("witness", WITNESS, "bright")
        yield box


def failure_of(sandbox: FilterSandbox, code: str, entrypoint: str = "keep") -> FilterFailure:
    """Load CODE and run it once; the FilterFailure it gives, then the witness is still right."""
    frame = alerts()
    with pytest.raises(FilterFailure) as caught:
        sandbox.load("suspect", textwrap.dedent(code), entrypoint)
        sandbox.run("suspect", frame)
    np.testing.assert_array_equal(sandbox.run("witness", frame), witness_mask(frame))
    assert caught.value.filter_id == "suspect"
    return caught.value


# -- real fink-filters files ----------------------------------------------------------------


@pytest.mark.parametrize(("path", "entrypoint", "reads"), FINK_FILTERS)
def test_fink_filters_files_run_as_the_installed_package_does(
    sandbox: FilterSandbox, path: str, entrypoint: str, reads: tuple[str, ...]
) -> None:
    code = fink_filter_source(path)
    checked = check_source(code, entrypoint, COLUMNS)
    frame = alerts()
    assert sandbox.load(path, code, entrypoint) == checked.reads == reads
    module = importlib.import_module("fink_filters." + path.removesuffix(".py").replace("/", "."))
    expected = getattr(module, entrypoint).func(*(frame[name] for name in reads))
    mask = sandbox.run(path, frame)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected.to_numpy())
    assert 0 < mask.sum() < len(frame) or path.endswith("microlensing_candidates/filter.py")


# -- results --------------------------------------------------------------------------------


def test_only_the_columns_a_filter_reads_are_sent_and_nulls_count_as_false(
    sandbox: FilterSandbox,
) -> None:
    code = """
    import pandas as pd
    def keep(magpsf):
        return pd.Series([True, None, False, pd.NA], dtype="boolean")
    """
    sandbox.load("nullable", textwrap.dedent(code), "keep")
    frame = alerts(4).assign(magpsf=pd.array([1.0, None, 3.0, 4.0], dtype="Float64"))
    np.testing.assert_array_equal(sandbox.run("nullable", frame), [True, False, False, False])
    objects = "def keep(rb):\n    return [True, None, False, float('nan')]\n"
    sandbox.load("objects", objects, "keep")
    np.testing.assert_array_equal(sandbox.run("objects", frame), [True, False, False, False])


def test_an_empty_batch_gives_an_empty_mask(sandbox: FilterSandbox) -> None:
    assert sandbox.run("witness", alerts().iloc[:0]).shape == (0,)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("return rb.iloc[:3] > 0.5", "returned 3 values for 12 alerts"),
        ("return rb * 2", "returned values of type float64, not True/False"),
        ("return True", "returned a bool, not a Series"),
        ("return rb.to_frame()", "returned a table of 1 columns"),
        ("return ['yes'] * len(rb)", "returned values of type object"),
    ],
)
def test_a_result_that_is_not_one_bool_per_alert_is_a_bad_result(
    sandbox: FilterSandbox, body: str, words: str
) -> None:
    failure = failure_of(sandbox, f"def keep(rb):\n    {body}\n")
    assert failure.kind == "bad-result"
    assert words in failure.message
    assert "one True/False per alert" in failure.message


# -- failures -------------------------------------------------------------------------------


def test_a_filter_that_raises_says_what_and_where(sandbox: FilterSandbox) -> None:
    code = """
    import pandas as pd

    def keep(rb, nbad):
        ratio = rb / nbad.astype(int)
        if (nbad == 0).any():
            return 1 // 0
        return ratio > 1
    """
    failure = failure_of(sandbox, code)
    assert failure.kind == "raised"
    assert failure.line == 7
    assert str(failure) == (
        "filter suspect raised ZeroDivisionError: integer division or modulo by zero "
        "at line 7 of your filter"
    )


def test_a_filter_that_fails_to_load_is_not_loaded(sandbox: FilterSandbox) -> None:
    failure = failure_of(
        sandbox, "import math\nLIMIT = math.log(-1)\ndef keep(rb):\n    return rb > LIMIT\n"
    )
    assert (failure.kind, failure.line) == ("raised", 2)
    assert "ValueError: math domain error" in failure.message
    assert "suspect" not in sandbox.filters


def test_an_endless_filter_is_stopped_within_the_limit_and_the_next_call_works(
    sandbox: FilterSandbox,
) -> None:
    code = "def keep(rb):\n    while True:\n        pass\n"
    started = time.monotonic()
    failure = failure_of(sandbox, code)
    assert failure.kind == "timeout"
    assert failure.message == "ran longer than 2 s on 12 alerts and was stopped"
    assert time.monotonic() - started < LIMITS.seconds_per_call + 5
    # the endless filter is still loaded (in the new child): it fails again, alone
    with pytest.raises(FilterFailure, match="ran longer than 2 s"):
        sandbox.run("suspect", alerts())
    np.testing.assert_array_equal(sandbox.run("witness", alerts()), witness_mask(alerts()))


def test_an_endless_load_is_stopped_too(sandbox: FilterSandbox) -> None:
    box = FilterSandbox(
        SandboxLimits(seconds_per_call=2.0, memory_bytes=512 << 20, seconds_per_load=2.0)
    )
    with box:
        box.load("witness", WITNESS, "bright")
        with pytest.raises(FilterFailure) as caught:
            box.load("suspect", "while True:\n    pass\n", "keep")
        assert caught.value.message == "ran longer than 2 s while loading and was stopped"
        np.testing.assert_array_equal(box.run("witness", alerts()), witness_mask(alerts()))


@pytest.mark.parametrize(
    "body",
    [
        "big = np.ones(10 * 2**30 // 8)",  # 10 GiB at once
        # a little at a time (about 1 MiB a step: the limit, not the 2 s, stops it on a busy machine)
        "big = [rb.to_numpy().repeat(10**4) for _ in range(10**5)]",
    ],
)
def test_a_filter_that_eats_memory_is_stopped(sandbox: FilterSandbox, body: str) -> None:
    failure = failure_of(
        sandbox, f"import numpy as np\ndef keep(rb):\n    {body}\n    return rb > 0\n"
    )
    assert failure.kind == "memory"
    assert "more memory than the 512 MiB a filter process may use on 12 alerts" in failure.message
    assert failure.line == 3


@pytest.mark.parametrize(
    ("code", "words"),
    [
        # through pandas: passes the static check
        (
            "import pandas as pd\ndef keep(rb):\n    pd.read_csv('http://127.0.0.1:9/alerts.csv')\n",
            "tried to open a network connection (urllib.Request): filters may not reach the network",
        ),
        # straight to a socket: refused statically, and by the sandbox when it runs anyway
        (
            "import socket\ndef keep(rb):\n    socket.create_connection(('127.0.0.1', 9))\n",
            "tried to open a network connection (socket.",
        ),
    ],
)
def test_a_filter_cannot_reach_the_network(sandbox: FilterSandbox, code: str, words: str) -> None:
    failure = failure_of(sandbox, code)
    assert failure.kind == "forbidden"
    assert words in failure.message
    assert failure.line == 3


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("np.load('/etc/passwd')", "tried to read the file '/etc/passwd' (open)"),
        ("pd.read_csv('/etc/passwd')", "tried to read the file '/etc/passwd' (open)"),
        ("np.save('{tmp}/stolen.npy', rb.to_numpy())", "tried to write the file"),
        ("rb.to_csv('{tmp}/stolen.csv')", "tried to write the file"),
        ("pd.io.common.os.remove('{tmp}/keep.txt')", "tried to change files (os.remove)"),
        ("pd.io.common.os.listdir('/etc')", "tried to list the directory '/etc'"),
    ],
)
def test_a_filter_cannot_read_or_write_files(
    sandbox: FilterSandbox, tmp_path: Path, body: str, words: str
) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    code = f"import numpy as np\nimport pandas as pd\ndef keep(rb):\n    {body.format(tmp=tmp_path)}\n    return rb > 0\n"
    check_source(code, "keep", COLUMNS)  # it passes the static check: the sandbox holds
    failure = failure_of(sandbox, code)
    assert failure.kind == "forbidden"
    assert words in failure.message
    assert "filters see alerts only, no files" in failure.message
    assert failure.line == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    ("body", "event"),
    [
        ("pd.io.common.os.system('touch {tmp}/ran')", "os.system"),
        ("clipboard.subprocess.run(['touch', '{tmp}/ran'])", "subprocess.Popen"),
        ("pd.io.common.os.execv('/bin/touch', ['touch', '{tmp}/ran'])", "os.exec"),
        ("pd.io.common.os.fork()", "os.fork"),
        ("pd.io.common.os.kill(pd.io.common.os.getppid(), 9)", "os.kill"),
    ],
)
def test_a_filter_cannot_start_programs(
    sandbox: FilterSandbox, tmp_path: Path, body: str, event: str
) -> None:
    code = (
        "import pandas as pd\nfrom pandas.io import clipboard\n"
        f"def keep(rb):\n    {body.format(tmp=tmp_path)}\n    return rb > 0\n"
    )
    check_source(code, "keep", COLUMNS)
    failure = failure_of(sandbox, code)
    assert failure.kind == "forbidden"
    assert f"tried to start or signal another program ({event}" in failure.message
    assert "filters may not run other programs" in failure.message
    assert not (tmp_path / "ran").exists()


def test_native_code_and_raising_limits_are_refused(sandbox: FilterSandbox) -> None:
    code = "from pandas.io import clipboard\ndef keep(rb):\n    clipboard.ctypes.CDLL(None)\n"
    failure = failure_of(sandbox, code)
    assert failure.kind == "forbidden"
    assert "tried to load or call native code (ctypes.dlopen)" in failure.message


def test_a_refusal_the_filter_catches_is_still_reported(sandbox: FilterSandbox) -> None:
    code = """
    import pandas as pd
    def keep(rb):
        try:
            pd.read_csv("/etc/passwd")
        except BaseException:
            pass
        return rb > 0
    """
    failure = failure_of(sandbox, code)
    assert failure.kind == "forbidden"
    assert "'/etc/passwd'" in failure.message


def test_a_refusal_at_load_time_is_forbidden_too(sandbox: FilterSandbox) -> None:
    code = "import pandas as pd\nSECRET = pd.read_csv('/etc/passwd')\ndef keep(rb):\n    return rb > 0\n"
    failure = failure_of(sandbox, code)
    assert (failure.kind, failure.line) == ("forbidden", 2)


def test_a_filter_that_kills_its_process_is_reported_as_crashed(sandbox: FilterSandbox) -> None:
    failure = failure_of(
        sandbox, "import pandas as pd\ndef keep(rb):\n    pd.io.common.os._exit(3)\n"
    )
    assert failure.kind == "crashed"
    assert failure.message == "stopped its process (exit status 3) on 12 alerts"


def test_printing_does_not_disturb_the_answers(sandbox: FilterSandbox) -> None:
    sandbox.load(
        "chatty", "def keep(rb):\n    print('hello' * 1000)\n    return rb > 0.5\n", "keep"
    )
    np.testing.assert_array_equal(sandbox.run("chatty", alerts()), (alerts().rb > 0.5).to_numpy())


def test_writing_garbage_to_the_protocol_pipe_is_caught(sandbox: FilterSandbox) -> None:
    code = """
    import pandas as pd
    def keep(rb):
        for fd in range(3, 12):
            try:
                pd.io.common.os.write(fd, b"\\xff" * 64)
            except OSError:
                pass
        return rb > 0
    """
    failure = failure_of(sandbox, code)
    assert failure.kind == "crashed"


# -- the sandbox as a whole -------------------------------------------------------------------


def test_the_child_does_not_see_the_workers_credentials() -> None:
    os.environ["FINK_TEST_SECRET"] = "hunter2"
    try:
        code = "import pandas as pd\ndef keep(rb):\n    return rb > len(pd.io.common.os.environ.get('FINK_TEST_SECRET', ''))\n"
        with FilterSandbox(LIMITS) as box:
            box.load("env", code, "keep")
            assert box.run("env", alerts()).all()
    finally:
        del os.environ["FINK_TEST_SECRET"]


def test_a_missing_column_and_an_unknown_filter_are_reported(sandbox: FilterSandbox) -> None:
    with pytest.raises(FilterFailure, match=r"reads the column\(s\) magpsf"):
        sandbox.run("witness", alerts().drop(columns="magpsf"))
    with pytest.raises(KeyError):
        sandbox.run("never-loaded", alerts())


def test_close_stops_the_child_and_the_sandbox_starts_again() -> None:
    box = FilterSandbox(LIMITS)
    box.load("witness", WITNESS, "bright")
    process = box._child.process  # type: ignore[union-attr]
    box.close()
    assert process.poll() is not None
    np.testing.assert_array_equal(box.run("witness", alerts()), witness_mask(alerts()))
    box.close()


def test_dry_run_reports_what_the_filter_does() -> None:
    frame = alerts(1000)
    report = dry_run(WITNESS, "bright", frame, LIMITS)
    expected = witness_mask(frame)
    assert isinstance(report, DryRunReport)
    assert (report.total, report.passed) == (1000, int(expected.sum()))
    assert report.examples == [int(i) for i in np.flatnonzero(expected)[:5]]
    assert 0 < report.seconds_per_alert < 0.001


def test_a_call_costs_little_more_than_the_filter_itself(sandbox: FilterSandbox) -> None:
    """1,000 alerts x 3 columns: the overhead of the process boundary is a few ms at most."""
    code = "def keep(magpsf, rb, nbad):\n    return (magpsf < 19) & (rb > 0.5) & (nbad == 0)\n"
    sandbox.load("speed", code, "keep")
    frame = alerts(1000)
    sandbox.run("speed", frame)
    timings = []
    for _ in range(50):
        started = time.perf_counter()
        sandbox.run("speed", frame)
        timings.append(time.perf_counter() - started)
    assert float(np.median(timings)) < 0.005
