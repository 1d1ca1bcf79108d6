"""Does the design's expected posterior match a real refit? The check behind :func:`bayescale.design`'s choice.

For a few candidate runs and simulated outcomes of each (a posterior draw's law plus the fit's
noise), refit the law with that run added and compare the target's posterior variance of
log-loss with two predictions made without refitting: importance reweighting of the draws by the
new run's likelihood (:func:`bayescale.forecast.design.posterior_after`, what :func:`design`
uses), and a Gaussian (Laplace-style) linearised update, the posterior covariance of the draws in
unconstrained coordinates updated by the run's Fisher information at the posterior mean.
``benchmarks/design_check.py`` runs it and reports the figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bayescale.errors import BayescaleError
from bayescale.fitting.pipeline import fit as fit_law
from bayescale.fitting.result import Fit
from bayescale.forecast.design import candidate_table, posterior_after, target_table
from bayescale.forecast.predict import flat_draws, law_mean, loss_draws, params_at

#: Fisher information of the location of each noise family at unit scale (Student-t: (nu + 1) / (nu + 3))
_LOCATION_INFORMATION = {
    "StudentT": lambda p: (p["nu"] + 1) / (p["nu"] + 3),
    "Normal": lambda p: 1.0,
    "Laplace": lambda p: 1.0,
}


def law_variance(fit: Fit, points: pd.DataFrame) -> np.ndarray:
    """Variance over the posterior draws of the law's log-loss at each point (no noise, no discrepancy)."""
    draws = flat_draws(fit)
    at = params_at(fit, draws, points, np.random.default_rng(fit.settings["seed"]))
    mu = law_mean(fit, {k: at[k] for k in fit.law.param_names}, points)
    return np.nanvar(mu, axis=0, ddof=1)


def laplace_variance(fit: Fit, run: pd.DataFrame, points: pd.DataFrame, step: float = 1e-5):
    """The targets' law variance now and after one run, by a Gaussian linearised update (see the module).

    Returns (now, after), arrays over the points: ``g' S g`` and ``g' S g - (g' S j)^2 / (j' S j + 1/I)``
    with ``S`` the draws' covariance in unconstrained coordinates, ``g`` and ``j`` the gradients of the
    log-law at the targets and at the run (central differences at the draws' mean) and ``I`` the Fisher
    information of one run's log-loss at the posterior median of the noise parameters.
    """
    if fit.spec.pooled:
        raise BayescaleError("the linearised update is written for fits without pooled parameters")
    names = list(fit.law.param_names)
    draws = flat_draws(fit)
    supports = [fit.spec.priors[n].support for n in names]
    u = np.column_stack([s.to_unconstrained(draws[n]) for s, n in zip(supports, names)])
    centre, cov = u.mean(axis=0), np.cov(u, rowvar=False)

    def gradient(table: pd.DataFrame) -> np.ndarray:
        rows = []
        for i in range(len(names)):
            values = []
            for sign in (1, -1):
                v = centre.copy()
                v[i] += sign * step
                params = {
                    n: np.atleast_2d(s.from_unconstrained(v[j], np)[0]) for j, (s, n) in enumerate(zip(supports, names))
                }
                values.append(law_mean(fit, params, table)[0])
            rows.append((values[0] - values[1]) / (2 * step))
        return np.array(rows)  # parameters x points

    g, j = gradient(points), gradient(run)[:, 0]
    noise = {k: float(np.median(v)) for k, v in fit.spec.noise_at(draws, run).items()}
    information = _LOCATION_INFORMATION[fit.likelihood.family](noise) / noise["sigma"] ** 2
    now = np.einsum("pt,pq,qt->t", g, cov, g)
    sj = cov @ j
    after = now - (g.T @ sj) ** 2 / (j @ sj + 1.0 / information)
    return now, after


def check_design(
    runs,
    law: str,
    candidates,
    targets,
    *,
    outcomes: int = 3,
    seed: int = 0,
    base_draws: int = 4000,
    fit_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Refit with each candidate's simulated loss added; compare the targets' variance with the predictions.

    Parameters
    ----------
    runs : str, pathlib.Path, pandas.DataFrame or Runs
        The runs to fit first.
    law : str
        The law (catalog name or card path).
    candidates : pandas.DataFrame, list of dict or dict of lists
        The candidate runs to check, a few (each costs ``outcomes`` refits).
    targets : pandas.DataFrame, list of dict or dict of lists
        The target points.
    outcomes : int, default 3
        Simulated outcomes (refits) per candidate.
    seed : int, default 0
        Seed of the fits and of the simulated outcomes.
    base_draws : int, default 4000
        Draws per chain of the first fit: every refit is compared with its variance (and its draws are
        reweighted), so its Monte Carlo error would shift every comparison alike (with 1000 draws,
        Epoch's runs below N = 2.9e9 showed every refit about 5% below it, a useless run too).
    fit_options : mapping, optional
        Further :func:`bayescale.fit` options (the extrapolation discrepancy is off: the measure is the law's).

    Returns
    -------
    pandas.DataFrame
        One row per candidate, outcome and target: the candidate's inputs, ``outcome``, ``loss`` (the
        simulated loss), the target's inputs (``target_<input>``), ``var_now`` (the fit's), ``var_refit``,
        ``var_reweighted`` and ``ess`` (importance reweighting given that loss), ``var_laplace_now`` and
        ``var_laplace`` (the linearised update, the same for every outcome).
    """
    options = {"progressbar": False, "seed": seed, **(fit_options or {}), "extrapolation": "none"}
    base = fit_law(runs, law, **{**options, "draws": base_draws})
    pool, points = candidate_table(base, candidates), target_table(base, targets)
    inputs = list(base.law.inputs)
    n_draws = len(next(iter(flat_draws(base).values())))
    rng = np.random.default_rng([seed, 41])
    var_now = law_variance(base, points)
    rows = []
    for i in range(len(pool)):
        run = pool.iloc[[i]].reset_index(drop=True)
        _, y = next(loss_draws(base, run[inputs], seed))
        lap_now, lap_after = laplace_variance(base, run, points)
        for outcome in range(outcomes):
            draw = int(rng.integers(n_draws))
            observed = run[inputs].assign(loss=float(base.law.observation.to_loss(y[draw, 0])))
            predicted = posterior_after(base, observed, points, leave_out=draw)
            added = observed.assign(**({"C": 6.0 * observed["N"] * observed["D"]} if "C" in base.runs.columns else {}))
            frame = pd.concat([base.runs.frame.reset_index(drop=True), added], ignore_index=True)
            refit = fit_law(frame[list(base.runs.columns)], law, **options)
            var_refit = law_variance(refit, points)
            for t in range(len(points)):
                rows.append(
                    {
                        **{k: float(run[k].iloc[0]) for k in inputs},
                        "outcome": outcome,
                        "loss": float(observed["loss"].iloc[0]),
                        **{f"target_{k}": float(points[k].iloc[t]) for k in inputs},
                        "var_now": float(var_now[t]),
                        "var_refit": float(var_refit[t]),
                        "var_reweighted": float(predicted["var_after"].iloc[t]),
                        "ess": float(predicted["ess"].iloc[t]),
                        "var_laplace_now": float(lap_now[t]),
                        "var_laplace": float(lap_after[t]),
                    }
                )
    return pd.DataFrame(rows)
