"""fink-filters' files load and answer the same where neither pyspark nor fink-filters is installed.

The operator's image has neither: its dry run of a ScienceFilter made of a
fink-filters file goes through fink_core.filters.spark_shim. Checked in a fresh
interpreter where importing either package fails, against the real function.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fink_filters
import pandas as pd

from fink_core.filters import spark_shim

FILES = Path(fink_filters.__file__).parent / "ztf"
PROBE = """
import sys
sys.modules["pyspark"] = None  # an import of it now fails, as where it is not installed
sys.modules["fink_filters"] = None
from fink_core.filters import spark_shim
spark_shim.install(pyspark=True, fink_filters_tester=True)
import pandas as pd
code = open(sys.argv[1]).read()
scope = {"__name__": "filter"}
exec(compile(code, sys.argv[1], "exec"), scope)
udf = scope[sys.argv[2]]
print(udf.func(*[pd.Series(eval(a)) for a in sys.argv[3:]]).tolist())
"""


def _answer(path: Path, entrypoint: str, *columns: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), entrypoint, *columns],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_fink_filters_files_load_without_pyspark_and_answer_like_the_real_function() -> None:
    sso = FILES / "livestream/filter_sso_fink_candidates/filter.py"
    roid = [0, 1, 2, 3, 2]
    from fink_filters.ztf.livestream.filter_sso_fink_candidates.filter import (
        sso_fink_candidates_,
    )

    real = sso_fink_candidates_(pd.Series(roid)).tolist()
    assert _answer(sso, "sso_fink_candidates", str(roid)) == str(real)
    quality = FILES / "filter_quality_cuts/filter.py"
    rb, nbad = [0.9, 0.3, 0.7], [0, 0, 2]
    from fink_filters.ztf.filter_quality_cuts.filter import ztf_quality_cuts_

    real = ztf_quality_cuts_(pd.Series(rb), pd.Series(nbad)).tolist()
    assert _answer(quality, "ztf_quality_cuts", str(rb), str(nbad)) == str(real)


def test_the_decorator_keeps_the_function_as_func_like_sparks() -> None:
    def keep(x: pd.Series) -> pd.Series:
        return x > 1

    udf = spark_shim.pandas_udf("boolean", spark_shim.PandasUDFType.SCALAR)(keep)
    assert udf.func is keep and udf.__name__ == "keep"
