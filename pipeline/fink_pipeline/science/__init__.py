"""Science for the enrichment core: modules that add columns, filters that select alerts.

from fink_pipeline.science import plan_science, enrich, select
"""

from fink_pipeline.science.plan import (
    SciencePlan,
    build_plan,
    enrich,
    plan_for,
    plan_science,
    select,
)
from fink_pipeline.science.registry import FILTERS, MODULES, Filter, Module

__all__ = [
    "FILTERS",
    "MODULES",
    "Filter",
    "Module",
    "SciencePlan",
    "build_plan",
    "enrich",
    "plan_for",
    "plan_science",
    "select",
]
