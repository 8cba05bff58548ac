"""Just enough of pyspark (and fink-filters' tester) for fink-filters' files to load where Spark is not.

fink-filters' files decorate their filter with ``@pandas_udf(BooleanType(),
PandasUDFType.SCALAR)`` and import ``spark_unit_tests`` for their ``__main__``
block. The sandbox never runs the UDF: it calls the plain function behind it
(``.func``). Where pyspark or fink-filters is not installed (the operator's
image, whose dry run validates a ScienceFilter), these stand-ins let the file
load unchanged and give the same ``.func``; where they are installed (the
pipeline's workers), the real ones are used. The static checks
(fink_core.filters.source) allow no other name from these modules, so nothing
else is ever looked up here.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


class PandasUDFType:
    """The constants fink-filters passes to pandas_udf."""

    SCALAR = 200
    SCALAR_ITER = 204
    GROUPED_MAP = 201
    GROUPED_AGG = 202


def pandas_udf(*_args: Any, **_kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """A decorator that keeps the function as `.func`, like Spark's UDF object does."""

    def wrap(function: Callable[..., Any]) -> Any:
        def udf(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

        udf.func = function  # type: ignore[attr-defined]
        udf.__name__ = function.__name__
        udf.__doc__ = function.__doc__
        return udf

    return wrap


class _DataType:
    """Any of pyspark.sql.types' classes: only ever instantiated as a UDF's return type."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass


def _types_attribute(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_DataType,), {})


def _spark_unit_tests(*_args: Any, **_kwargs: Any) -> None:
    """fink-filters' doctest runner: only called from the __main__ block, which never runs."""


def install(pyspark: bool, fink_filters_tester: bool) -> None:
    """Put the stand-ins in sys.modules for what is missing."""
    if pyspark:
        root = types.ModuleType("pyspark")
        sql = types.ModuleType("pyspark.sql")
        functions = types.ModuleType("pyspark.sql.functions")
        functions.pandas_udf = pandas_udf  # type: ignore[attr-defined]
        functions.PandasUDFType = PandasUDFType  # type: ignore[attr-defined]
        spark_types = types.ModuleType("pyspark.sql.types")
        spark_types.__getattr__ = _types_attribute  # type: ignore[method-assign]
        root.sql = sql  # type: ignore[attr-defined]
        sql.functions = functions  # type: ignore[attr-defined]
        sql.types = spark_types  # type: ignore[attr-defined]
        for module in (root, sql, functions, spark_types):
            sys.modules[module.__name__] = module
    if fink_filters_tester:
        package = types.ModuleType("fink_filters")
        package.__path__ = []
        tester = types.ModuleType("fink_filters.tester")
        tester.spark_unit_tests = _spark_unit_tests  # type: ignore[attr-defined]
        package.tester = tester  # type: ignore[attr-defined]
        sys.modules["fink_filters"] = package
        sys.modules["fink_filters.tester"] = tester
