"""The parameter table: each parameter in the law card's own convention, with credible intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from bayescale import defaults
from bayescale.defaults import check_ci_prob

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit


def summary(fit: Fit, ci_prob: float = defaults.CI_PROB) -> pd.DataFrame:
    """mean, median, sd, equal-tailed interval, ESS and R-hat of every parameter, plus its reference.

    The law's derived quantities (for example slopes around a break) follow the parameters.

    Parameters
    ----------
    fit : Fit
        The fit to summarise.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed interval, strictly between 0 and 1.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``param``: the law's parameters, the noise parameters, each pooled parameter's
        population value and spread (and its groups' values as ``name[group]``), a user model's own
        variables, the extrapolation discrepancy's draws (``kappa``, ...) and the law's derived quantities.
        Columns ``mean``, ``median``, ``sd``, ``lower`` and ``upper`` (the interval), ``ess_bulk``, ``r_hat``
        and ``reference`` (the card's reference value of a law parameter, else NaN); ``attrs["ci_prob"]``
        holds ``ci_prob``.

    Raises
    ------
    BayescaleError
        If ``ci_prob`` is not strictly between 0 and 1.
    """
    from bayescale.forecast.derived import derived_draws
    from bayescale.inference.discrepancy import DRAW_NAMES

    ci_prob = check_ci_prob(ci_prob)
    own = (fit.settings.get("model") or {}).get("extra", [])  # a user model's own variables
    extra = [n for n in (*own, *DRAW_NAMES) if n in fit.posterior]  # and the extrapolation discrepancy
    draws = xr.merge([fit.posterior[[*fit.spec.names, *extra]], derived_draws(fit)])
    stats = pd.DataFrame(azs.summary(draws, kind="all", ci_kind=defaults.CI_KIND, ci_prob=ci_prob, round_to="none"))
    lower = [c for c in stats.columns if c.endswith("_lb")][0]
    upper = [c for c in stats.columns if c.endswith("_ub")][0]
    medians, references = {}, {}
    for name, var in draws.data_vars.items():
        stacked = var.stack(sample=("chain", "draw")).median("sample")
        group_dims = [d for d in var.dims if d not in ("chain", "draw")]
        labels = [name] if not group_dims else [f"{name}[{level}]" for level in var[group_dims[0]].to_numpy()]
        for label, value in zip(labels, np.atleast_1d(stacked.to_numpy())):
            medians[label] = float(value)
            # xarray types variable names as Hashable; these are the posterior's str names
            references[label] = fit.law.params[cast(str, name)].reference if name in fit.law.params else np.nan
    table = pd.DataFrame(
        {
            "mean": stats["mean"].astype(float),
            "median": pd.Series(medians),
            "sd": stats["sd"].astype(float),
            "lower": stats[lower].astype(float),
            "upper": stats[upper].astype(float),
            "ess_bulk": stats["ess_bulk"].astype(float),
            "r_hat": stats["r_hat"].astype(float),
            "reference": pd.Series(references, dtype=float),
        },
        index=pd.Index(stats.index, name="param"),
    )
    table.attrs["ci_prob"] = ci_prob
    return table
