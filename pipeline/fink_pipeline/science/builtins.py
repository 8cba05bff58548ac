"""Importing this module registers every built-in science module and filter."""

from fink_pipeline.science.filters import (  # noqa: F401
    early_sn_candidates,
    fast_transients,
    new_sso_candidates,
)
from fink_pipeline.science.modules import (  # noqa: F401
    crossmatch,
    fast_transient_rate,
    lightcurve_features,
    quality_cuts,
    snia_score,
    solar_system,
)
