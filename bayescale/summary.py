"""The parameter table: each parameter in the law card's own convention, with credible intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pandas as pd

from . import defaults
from .predict import check_ci_prob

if TYPE_CHECKING:
    from .fit import Fit


def parameter_table(fit: "Fit", ci_prob: float = defaults.CI_PROB) -> pd.DataFrame:
    """mean, median, sd, equal-tailed interval, ESS and R-hat of every parameter, plus its reference."""
    ci_prob = check_ci_prob(ci_prob)
    names = list(fit.spec.names)
    stats = az.summary(fit.posterior[names], kind="all", ci_kind=defaults.CI_KIND, ci_prob=ci_prob,
                       round_to="none")
    stats = pd.DataFrame(stats)
    lower, upper = [c for c in stats.columns if c.endswith("_lb")][0], [c for c in stats.columns if c.endswith("_ub")][0]
    table = pd.DataFrame({
        "mean": stats["mean"].astype(float),
        "median": [float(fit.posterior[n].median()) for n in names],
        "sd": stats["sd"].astype(float),
        "lower": stats[lower].astype(float),
        "upper": stats[upper].astype(float),
        "ess_bulk": stats["ess_bulk"].astype(float),
        "r_hat": stats["r_hat"].astype(float),
        "reference": [fit.law.params[n].reference if n in fit.law.params else np.nan for n in names],
    }, index=pd.Index(names, name="param"))
    table.attrs["ci_prob"] = ci_prob
    return table
