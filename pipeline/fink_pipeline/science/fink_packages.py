"""The field's own code from PyPI (fink-science, fink-filters), when it is installed.

Where a fink-* package provides the very computation one of our modules does,
the module calls the real one. These packages are optional at run time: when
one is missing (or fails to import), our own implementation of the same rule
runs instead, with a warning in the log, and the tests check that both give the
same answers. The pinned versions are installed with the project, and a test
fails if any part we claim to run does not import (tests/pipeline/science/
test_fink_packages.py), so the fallback cannot silently become the norm.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

# "module.attribute" -> why it could not be imported, for whoever wonders which code ran
UNAVAILABLE: dict[str, str] = {}


@cache
def real_function(module: str, attribute: str) -> Callable[..., Any] | None:
    """A function from an installed fink-* package, unwrapped from its Spark UDF."""
    try:
        with warnings.catch_warnings():
            # their pandas_udf decorators use a PandasUDFType Spark warns about
            warnings.simplefilter("ignore")
            found = getattr(importlib.import_module(module), attribute)
    except Exception as error:  # a missing package or one of its imports: use our own code
        UNAVAILABLE[f"{module}.{attribute}"] = f"{type(error).__name__}: {error}"
        log.warning(
            "%s.%s is not importable (%s: %s): our implementation of the same rule runs",
            module,
            attribute,
            type(error).__name__,
            error,
        )
        return None
    return getattr(found, "func", found)


def fink_roid_catcher() -> Callable[..., Any] | None:
    """fink_science's asteroid flag (roid: 3 known SSO, 2 SSO candidate, 1 first sighting)."""
    return real_function("fink_science.ztf.asteroids.processor", "roid_catcher")


def fink_ztf_quality_cuts() -> Callable[..., Any] | None:
    """fink_filters' ZTF quality cuts (rb >= 0.55 and nbad == 0)."""
    return real_function("fink_filters.ztf.filter_quality_cuts.filter", "ztf_quality_cuts_")


def fink_sso_candidates() -> Callable[..., Any] | None:
    """fink_filters' new solar-system object candidates (roid == 2)."""
    return real_function(
        "fink_filters.ztf.livestream.filter_sso_fink_candidates.filter", "sso_fink_candidates_"
    )


def fink_fast_transient_rate() -> Callable[..., Any] | None:
    """fink_science's fast transient rate (needs astropy through fink_utils)."""
    return real_function("fink_science.ztf.fast_transient_rate.processor", "fast_transient_rate")
