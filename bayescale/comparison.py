"""Choosing between laws: PSIS-LOO through ArviZ, elpd differences, stacking weights.

Every fit stores its pointwise log-likelihood, so any set of fits on the same observations can be
compared. Observations whose Pareto k is too high (LOO is unreliable for them; usually outliers
or runs at the edge of the data) are named, with their inputs, so the user can look at them.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Mapping, Sequence

import arviz as az
import numpy as np
import pandas as pd

from .errors import BayescaleError, SamplerWarning

if TYPE_CHECKING:
    from .fit import Fit


def _named(fits: "Mapping[str, Fit] | Sequence[Fit]") -> dict[str, "Fit"]:
    if isinstance(fits, Mapping):
        named = dict(fits)
    else:
        named = {}
        for fit in fits:
            name, k = fit.law.name, 2
            while name in named:
                name, k = f"{fit.law.name} ({k})", k + 1
            named[name] = fit
    if len(named) < 2:
        raise BayescaleError(f"compare needs at least two fits, got {len(named)}")
    return named


def check_same_observations(named: Mapping[str, "Fit"]) -> None:
    """Raise a clear error unless every fit saw the same losses, in the same order."""
    (first_name, first), *rest = named.items()
    y0 = np.log(first.runs["loss"])
    for name, fit in rest:
        y = np.log(fit.runs["loss"])
        if len(y) != len(y0):
            raise BayescaleError(f"fits {first_name!r} and {name!r} are not on the same observations: "
                                 f"{len(y0)} and {len(y)} runs. LOO compares laws only on identical data")
        differ = np.flatnonzero(~np.isclose(y, y0, rtol=0, atol=1e-12))
        if len(differ):
            rows = ", ".join(map(str, differ[:8]))
            raise BayescaleError(f"fits {first_name!r} and {name!r} are not on the same observations: the losses "
                                 f"differ in rows {rows}{' ...' if len(differ) > 8 else ''}")


def loo(fit: "Fit"):
    """PSIS-LOO of one fit (an ArviZ ELPDData with pointwise values and Pareto k)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shape parameter of Pareto.*")
        return az.loo(fit.idata, pointwise=True)


def high_pareto_k(fit: "Fit", result=None) -> pd.DataFrame:
    """The runs whose Pareto k exceeds ArviZ's threshold, with their inputs and k."""
    result = result if result is not None else loo(fit)
    k = np.asarray(result.pareto_k).reshape(-1)
    bad = np.flatnonzero(k > result.good_k)
    table = fit.runs.frame.iloc[bad].copy()
    table["pareto_k"] = k[bad]
    return table


def compare(fits: "Mapping[str, Fit] | Sequence[Fit]", *, method: str = "stacking") -> pd.DataFrame:
    """Rank fits by PSIS-LOO: elpd, its difference from the best with standard error, stacking weight.

    Warns (naming the runs) when some observations have a Pareto k above ArviZ's threshold.
    The table's ``attrs["high_k"]`` maps each fit to those runs.
    """
    named = _named(fits)
    check_same_observations(named)
    results = {name: loo(fit) for name, fit in named.items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shape parameter of Pareto.*")
        table = az.compare(results, method=method, round_to="none")
    table = pd.DataFrame(table)[["rank", "elpd", "se", "elpd_diff", "dse", "p", "weight"]]
    table["rank"] = table["rank"].astype(int) + 1  # 1 = best
    table.index.name = "fit"
    high_k = {}
    for name, fit in named.items():
        bad = high_pareto_k(fit, results[name])
        high_k[name] = bad
        if len(bad):
            shown = "; ".join(f"row {i} ({_describe_run(row, fit.law.inputs)}, k={row['pareto_k']:.2f})"
                              for i, row in bad.head(6).iterrows())
            warnings.warn(f"{name}: {len(bad)} run(s) have Pareto k > {results[name].good_k:.2f}, so their LOO "
                          f"value is unreliable: {shown}. Check them for outliers, or compare by backtest instead.",
                          SamplerWarning, stacklevel=2)
    table["n_high_k"] = [len(high_k[name]) for name in table.index]
    table.attrs["high_k"] = high_k
    return table


def _describe_run(row: pd.Series, inputs: Sequence[str]) -> str:
    return ", ".join(f"{c}={row[c]:.3g}" for c in (*inputs, "loss") if c in row)
