"""Quantities computed from the posterior draws: a card's ``[derived]`` formulas and its breaks.

A Broken Neural Scaling Law card declares, for example, ``slope_after = "-(c0 + c1)"`` and that
``d1`` is a break location along ``X``. Here those become posterior draws, and each break gets the
probability that it lies beyond the largest observed value of its input (a break still ahead of
the data is the one that would spoil a forecast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from bayescale import defaults
from bayescale.defaults import check_ci_prob

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit


def derived_draws(fit: Fit) -> xr.Dataset:
    """Posterior draws of every derived quantity of the fit's law, as (chain, draw) arrays."""
    posterior = fit.posterior
    params = {n: posterior[n] for n in fit.law.param_names}
    with np.errstate(all="ignore"):
        return xr.Dataset(
            {
                name: xr.DataArray(q.formula.numpy(params)).broadcast_like(posterior[fit.law.param_names[0]])
                for name, q in fit.law.derived.items()
            }
        )


def break_table(fit: Fit, ci_prob: float = defaults.CI_PROB) -> pd.DataFrame:
    """Per break: its input, posterior median and interval, the largest observed input, P(beyond it).

    Parameters
    ----------
    fit : Fit
        A fit of a law whose card declares breaks (other laws give an empty table).
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed interval, strictly between 0 and 1.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``break`` (the parameter or derived quantity): ``input`` (the input it lies along),
        ``median``, ``lower``, ``upper``, ``observed_max`` (the largest value of that input in the runs) and
        ``p_beyond_data`` (the posterior probability that the break lies beyond it). ``attrs["ci_prob"]``
        holds ``ci_prob``.
    """
    ci_prob = check_ci_prob(ci_prob)
    draws = xr.merge([fit.posterior, derived_draws(fit)])
    lo, hi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    rows = []
    for name, along in fit.law.breaks.items():
        values = draws[name].to_numpy().reshape(-1)
        observed_max = float(np.max(fit.runs[along]))
        rows.append(
            {
                "break": name,
                "input": along,
                "median": float(np.median(values)),
                "lower": float(np.quantile(values, lo)),
                "upper": float(np.quantile(values, hi)),
                "observed_max": observed_max,
                "p_beyond_data": float(np.mean(values > observed_max)),
            }
        )
    table = pd.DataFrame(
        rows, columns=["break", "input", "median", "lower", "upper", "observed_max", "p_beyond_data"]
    ).set_index("break")
    table.attrs["ci_prob"] = ci_prob
    return table
