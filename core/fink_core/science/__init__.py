"""The science catalogue (what modules and filters exist, what they read and write) and the
planner that checks a pipeline's science against it, shared by operator and enrichment core."""

from fink_core.science.catalogue import (
    Catalogue,
    FilterDeclaration,
    ModuleDeclaration,
    Parameter,
    shipped_catalogue,
)
from fink_core.science.planner import Plan, plan_pipeline, plan_science

__all__ = [
    "Catalogue",
    "FilterDeclaration",
    "ModuleDeclaration",
    "Parameter",
    "Plan",
    "plan_pipeline",
    "plan_science",
    "shipped_catalogue",
]
