"""Backtests of the best learning rate (and batch size): fit on the smaller runs, rank the held-out cells' values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.tunable import check_columns, tunable_inputs
from bayescale.forecast.predict import flat_draws, params_at
from bayescale.forecast.tuning import best_calibration, optimum_draws, widened_best

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit
    from bayescale.laws.card import Law


# -- backtest -----------------------------------------------------------------------------------
def rank_cells(fit: Fit, heldout: pd.DataFrame, seed: int) -> list[dict]:
    """Per held-out cell (same N, D, ...) that tried several values of a tunable: does the forecast pick the best?

    The forecast ranks a cell's values by the median forecast loss; ``p_observed_best`` is the
    share of posterior draws in which the law puts the observed best value first. ``opt_forecast``
    is the 90% interval of the best value there (with the decision discrepancy, as ``tune`` gives it),
    ``observed_best_inside`` whether the observed best value lies in it, ``observed_best_bracket`` where
    the observed best lies between its neighbours (geometric midpoints: the bracket a symmetric basin implies).
    """
    from bayescale.forecast.predict import law_mean

    cells = []
    posterior = flat_draws(fit)
    for name in tunable_inputs(fit.law):
        scale = [c for c in fit.law.inputs if c != name]
        for key, cell in heldout.groupby([heldout[c] for c in scale], sort=True):
            observed = cell.groupby(name)["loss"].mean()  # repeated runs of one value: their mean
            if len(observed) < 2:
                continue
            points = cell.iloc[[0] * len(observed)].assign(**{name: observed.index.to_numpy()}).reset_index(drop=True)
            params = {**posterior, **params_at(fit, posterior, points, np.random.default_rng(seed))}
            draws = law_mean(fit, {n: params[n] for n in fit.law.param_names}, points)
            median = fit.predict(points, seed=seed)["median"].to_numpy()
            best_observed = float(observed.idxmin())
            _, _, best = optimum_draws(fit, cell.iloc[:1], seed)
            best, _ = widened_best(fit, cell.iloc[:1], best, seed)
            optimum = np.exp(np.quantile(best[name][:, 0], [0.05, 0.5, 0.95]))
            tried = observed.index.to_numpy(dtype=float)
            i = int(np.argmin(observed.to_numpy()))
            bracket = [
                float(np.sqrt(tried[i] * tried[i - 1])) if i > 0 else None,
                float(np.sqrt(tried[i] * tried[i + 1])) if i + 1 < len(tried) else None,
            ]
            best_forecast = float(observed.index[int(np.argmin(median))])
            cells.append(
                {
                    **dict(zip(scale, map(float, np.atleast_1d(key)))),
                    "tunable": name,
                    "values": [float(v) for v in observed.index],
                    "observed_loss": observed.tolist(),
                    "forecast_median": median.tolist(),
                    "observed_best": best_observed,
                    "forecast_best": best_forecast,
                    "ranked_first": best_observed == best_forecast,
                    "p_observed_best": float(np.mean(observed.index[np.argmin(draws, axis=1)] == best_observed)),
                    "opt_forecast": {
                        "median": float(optimum[1]),
                        "lower": float(optimum[0]),
                        "upper": float(optimum[2]),
                    },
                    "observed_best_inside": bool(optimum[0] <= best_observed <= optimum[2]),
                    "observed_best_bracket": bracket,
                }
            )
    return cells


def backtest_tuning(
    runs,
    law: Law | str,
    holdout: str,
    *,
    columns: Mapping[str, str] | None = None,
    where: str | None = None,
    seed: int = defaults.SEED,
    **fit_options,
) -> dict:
    """Fit ``law`` on the runs the holdout rule leaves, forecast the held-out runs at their own tunable values.

    Returns the held-out runs with their forecasts, the coverage of the 50/80/90% predictive bands,
    the median absolute relative error, and per held-out cell whether the forecast ranks the
    observed best value first (:func:`rank_cells`), plus the fit's diagnostics.

    Parameters
    ----------
    runs : str, pathlib.Path, pandas.DataFrame or Runs
        The runs table: a ``.csv``, ``.tsv`` or ``.parquet`` file, a DataFrame, or
        :class:`~bayescale.data.runs.Runs`, with the law's inputs (its tunable ``lr`` or ``batch``
        among them) and ``loss``.
    law : Law or str
        A law with a tunable input (such as ``chinchilla_lr_asym``): a catalog name, a law card path,
        or a :class:`~bayescale.laws.card.Law`.
    holdout : str
        The rule that picks the held-out runs (:func:`~bayescale.evaluation.backtesting.holdout_mask`),
        such as ``"N >= 1e9"`` or ``"top 20% C"``.
    columns : dict of str to str, optional
        Maps canonical names to the table's column names, such as ``{"lr": "learning_rate"}``.
    where : str, optional
        Backtest only the runs this row filter keeps (``"data == 'rpj'"``; see :func:`bayescale.load_runs`).
    seed : int, default 20240417
        Seed of the fit, the forecasts and the draws that rank the values.
    **fit_options
        Further keyword arguments of :func:`bayescale.fit` (``draws``, ``tune``, ``chains``,
        ``sampler``, ``likelihood``, ``pool``...).

    Returns
    -------
    dict
        ``law`` (its name), ``holdout`` (the rule), ``n_train`` and ``n_heldout`` (numbers of runs);
        ``runs``, one dict per held-out run with the law's inputs, ``loss``, ``median``,
        ``pred_lower``, ``pred_upper`` (the 90% predictive interval) and ``inside_90`` (bool);
        ``coverage`` (level ``"0.5"``, ``"0.8"``, ``"0.9"`` -> share of held-out runs inside that
        predictive interval), ``median_abs_rel_error`` and ``interval_score_90`` (relative to the
        loss; lower is better); ``cells``, the list of :func:`rank_cells` (per held-out cell and
        tunable: the values tried, observed and forecast losses, ``observed_best``,
        ``forecast_best``, ``ranked_first``, ``p_observed_best``, ``opt_forecast``,
        ``observed_best_inside`` and ``observed_best_bracket``); ``cells_ranked_first`` (how many cells
        the forecast ranks right), ``cells_best_inside`` (in how many the 90% band of the best value
        holds the observed best) and ``n_cells``; ``best_calibration`` (what carries that band's
        extrapolation discrepancy, as ``tune``'s ``attrs``); ``diagnostics`` (the fit's sampler
        diagnostics as a dict); and ``fit``, the :class:`~bayescale.fitting.result.Fit` on the training runs.

    Raises
    ------
    BayescaleError
        If the law is unknown, or the holdout rule cannot be read or selects none or all of the runs.
    DataError
        If the runs table cannot be read, or lacks a column the law or the rule needs (a missing
        tunable column is named with the user's likely candidates).
    """
    from bayescale.data.runs import count_parameters, load_runs
    from bayescale.evaluation.backtesting import holdout_mask, score
    from bayescale.fitting.pipeline import fit as fit_law
    from bayescale.laws.card import get_law

    law = get_law(law)
    loaded = load_runs(runs, columns, extra_inputs=law.inputs, where=where, scale=law.scale)
    check_columns(loaded, law)
    mask = holdout_mask(loaded.frame, holdout, {theirs: ours for ours, theirs in (columns or {}).items()})
    train, heldout = loaded.subset(~mask, f"not ({holdout})"), loaded.subset(mask, holdout)
    fitted = fit_law(train, law, seed=seed, **fit_options)
    held = count_parameters(
        load_runs(heldout, extra_inputs=law.inputs, scale=law.scale), fitted.settings.get("params", "total")
    )
    scored = score(fitted, held, seed)
    cells = rank_cells(fitted, held.frame, seed)
    return {
        "law": law.name,
        "holdout": holdout,
        "n_train": int(len(train)),
        "n_heldout": int(len(heldout)),
        "runs": [
            {
                k: (bool(v) if isinstance(v, (bool, np.bool_)) else int(v) if k == "row" else float(v))
                for k, v in row.items()
            }
            for row in scored["runs"].to_dict("records")
        ],
        "coverage": scored["coverage"],
        "median_abs_rel_error": scored["median_abs_rel_error"],
        "interval_score_90": scored["interval_score_90"],
        "cells": cells,
        "cells_ranked_first": int(sum(c["ranked_first"] for c in cells)),
        "cells_best_inside": int(sum(c["observed_best_inside"] for c in cells)),
        "best_calibration": best_calibration(fitted, fitted.diagnostics.n_draws, seed)[1],
        "n_cells": len(cells),
        "diagnostics": scored["diagnostics"],
        "fit": fitted,
    }
