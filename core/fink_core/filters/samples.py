"""Alerts made up for a dry run: values of the right type for each column, nothing more.

The operator validates a ScienceFilter without the pipeline's code (it plans from
the catalogue alone), so its dry run cannot build realistic alerts; it only needs
to show that the code runs on every type it will meet, nulls included, and answers
one boolean per alert. Values are spread widely (magnitudes, fluxes, scores,
counts) so that comparisons go both ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

NULL_SHARE = 0.05  # a few missing values per column: real alerts have them


def sample_columns(columns: Mapping[str, str], rows: int, seed: int = 0) -> pd.DataFrame:
    """A frame of `rows` made-up alerts with the given columns (name -> Spark type)."""
    import numpy as np
    import pandas as pd

    random = np.random.default_rng(seed)
    data: dict[str, pd.Series] = {}
    for name, kind in columns.items():
        nulls = random.random(rows) < NULL_SHARE
        if kind in ("double", "float"):
            values = pd.Series(random.uniform(-5.0, 30.0, rows))
            values[nulls] = np.nan
        elif kind in ("int", "long", "bigint"):
            values = pd.Series(random.integers(0, 100, rows), dtype="Int64")
            values[nulls] = pd.NA
        elif kind == "boolean":
            values = pd.Series(random.random(rows) < 0.5, dtype="boolean")
            values[nulls] = pd.NA
        elif kind.startswith("array<"):
            values = pd.Series(
                [list(random.uniform(10.0, 22.0, int(n))) for n in random.integers(0, 10, rows)],
                dtype=object,
            )
        else:
            values = pd.Series([f"{name}-{i}" for i in range(rows)], dtype=object)
            values[nulls] = None
        data[name] = values
    return pd.DataFrame(data)
