"""Forecasts at unseen scales, straight from the posterior draws.

The law's NumPy form is evaluated over every posterior draw and every point (no PyMC model is
rebuilt or recompiled), giving the credible interval of the law's value ("where the law is").
Adding observation noise drawn from the fitted likelihood gives the predictive interval ("where
the next run will land"). Points are processed in blocks so that large grids stay within memory.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.runs import Points, point_label, prepare_points
from bayescale.defaults import check_ci_prob
from bayescale.errors import BayescaleError, ExtrapolationWarning, warn_user

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit
    from bayescale.model.pooling import PooledParam

_BLOCK = 2000  # points per block: 4000 draws x 2000 points x 8 bytes = 64 MB per array

#: what a band includes, in the words every command, report and JSON ``band_includes`` uses: the
#: uncertainty of the law's parameters, the extrapolation discrepancy (zero inside the runs, growing
#: with the distance beyond them, a sweep's drift and a curve's bias with it, which move the median;
#: :mod:`bayescale.inference.discrepancy`) and a new run's noise
PARAMETERS, DISCREPANCY, NOISE = "parameters", "extrapolation discrepancy", "noise"


def band_includes(fit: Fit) -> dict[str, list[str]]:
    """What ``fit``'s loss bands include: ``{"credible": [...], "predictive": [...]}`` in the words above.

    Every loss band bayescale prints (``predict``, ``plan``, ``tune``, ``curve``, reports) is one of
    these two, so each includes the extrapolation discrepancy wherever the fit has one (a fit with too
    few runs for its internal splits has none, and then says so by leaving it out).
    """
    credible = [PARAMETERS, *([DISCREPANCY] if fit.discrepancy is not None else [])]
    return {"credible": credible, "predictive": [*credible, NOISE]}


def with_discrepancy(fit: Fit, loss: np.ndarray, table: pd.DataFrame, seed: int) -> np.ndarray:
    """Loss draws (rows) at the points of ``table`` (columns) with the fit's extrapolation discrepancy added.

    The discrepancy's draws are those :func:`predict` uses with the same ``seed`` (one bend per posterior
    draw, shared by every point), so a difference of two such losses, or a loss at a per-draw optimum
    near a point, carries the same discrepancy as ``predict``'s band there. Unchanged without one. It
    does not warn about points far beyond the runs: the ``predict`` of the point asked for does.
    """
    if fit.discrepancy is None:
        return loss
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        return np.exp(fit.discrepancy.widen(np.log(loss), table, seed))


def band(values, ci_prob: float) -> dict[str, np.ndarray]:
    """Median and equal-tailed interval of draws along axis 0 (rows), ignoring NaN draws."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point with no valid draw: NaN
        lower, median, upper = np.nanquantile(
            np.asarray(values, dtype=float), [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0
        )
    return {"median": median, "lower": lower, "upper": upper}


def grid(**axes: Any) -> pd.DataFrame:
    """All combinations of the given input values: ``grid(N=[1e9, 1e10], D=[2e10, 2e11])``.

    Parameters
    ----------
    **axes
        Values per input name: a scalar or a sequence.

    Returns
    -------
    pandas.DataFrame
        One column per keyword, in the order given, and one row per combination (the last keyword varies
        fastest); ready for :func:`predict`.
    """
    names = list(axes)
    rows = list(itertools.product(*(np.atleast_1d(axes[n]) for n in names)))
    return pd.DataFrame(rows, columns=names)


def flat_draws(fit: Fit) -> dict[str, np.ndarray]:
    """Each variable's posterior draws with chains stacked: (draws,) or (draws, groups) when pooled.

    Every forecast starts here, so a fit whose mean log-loss carries terms of a user's own model (which
    the law's formula does not) is refused here, naming them.
    """
    terms = (fit.settings.get("model") or {}).get("mean_terms")
    if terms:
        raise BayescaleError(
            f"this fit's mean log-loss carries term(s) of your own model ({', '.join(terms)}) that bayescale's forecasts "
            "(the law's formula over the draws) cannot evaluate; forecast with PyMC's route instead: pm.set_data on "
            "fit.model and pm.sample_posterior_predictive with the posterior (README, 'The PyMC model')"
        )
    posterior = fit.posterior
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    return {
        n: posterior[n].to_numpy().reshape(n_draws, -1).squeeze(axis=1)
        if n not in fit.spec.pooled
        else posterior[n].to_numpy().reshape(n_draws, -1)
        for n in fit.spec.names
    }


def group_needed(name: str, pooled: PooledParam, what: str) -> str:
    """What a pooled parameter asks of every ``what`` (a point, a target): its group, in words naming the known ones."""
    return (
        f"{name!r} is pooled by {pooled.column!r}: give a {pooled.column!r} for every {what} "
        f"(seen groups: {', '.join(pooled.levels)}; any other name is a new group)"
    )


def params_at(
    fit: Fit, params: Mapping[str, np.ndarray], table: pd.DataFrame, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Law parameters for every draw (rows) and point (columns, or one broadcast column).

    A pooled parameter takes its group's draws; a group the fit never saw gets a fresh draw from
    the population (one per draw and new group), so its forecast carries the spread between groups.
    """
    out = {n: params[n][:, None] for n in fit.law.param_names if n not in fit.spec.pooled}
    for name, pooled in fit.spec.pooled.items():
        # an empty cell is no group: it would otherwise take the first group's draws unsaid
        if pooled.column not in table.columns or table[pooled.column].isna().any():
            raise BayescaleError(group_needed(name, pooled, "point"))
        labels = table[pooled.column].astype(str).to_numpy()
        codes = pooled.codes_for(labels)
        if len(codes) and codes[0] >= 0 and (codes == codes[0]).all():
            out[name] = params[name][:, codes[:1]]  # every point in one seen group: one column, broadcast
            continue
        values = params[name][:, np.maximum(codes, 0)]
        support = fit.spec.priors[name].support
        for label in dict.fromkeys(labels[codes < 0]):
            u_pop = support.to_unconstrained(params[pooled.pop_name])
            fresh = support.from_unconstrained(u_pop + params[pooled.sd_name] * rng.standard_normal(len(u_pop)), np)[0]
            values[:, labels == label] = fresh[:, None]
        out[name] = values
    return out


def law_mean(fit: Fit, params: Mapping[str, np.ndarray], table: pd.DataFrame) -> np.ndarray:
    """The law's mean of the observation for every draw (rows) and point (columns); ``params`` from :func:`params_at`.

    On the fit's observation scale (``fit.law.observation``): the log of the law's value for a law on log-loss
    (every catalog law but the raw-scale ones), the value itself for a card with ``scale = "raw"``. Observations,
    noise draws and held-out scores are on the same scale; ``fit.law.observation.to_loss`` converts back.
    """
    env = {name: table[name].to_numpy(dtype=float)[None, :] for name in fit.law.inputs}
    env.update({n: params[n] for n in fit.law.param_names})
    with np.errstate(all="ignore"):
        return fit.law.observation.observe(fit.law.formula.numpy(env))


def extrapolation_columns(fit: Fit, table: pd.DataFrame) -> pd.DataFrame:
    """How far each point lies beyond the runs: ratio to the largest observed input, log-distance outside them."""
    from bayescale.inference.distance import axis_values, distance, observed_ranges

    ranges = observed_ranges(fit.runs, fit.law.inputs)
    out = pd.DataFrame(
        {f"{name}_vs_max": axis_values(table, name) / high for name, (_, high) in ranges.items()}, index=table.index
    )
    out["extrapolation"] = fit.discrepancy.distance(table) if fit.discrepancy is not None else distance(table, ranges)
    return out


def _noise(fit: Fit, params: Mapping[str, np.ndarray], part: pd.DataFrame, seed: int, n_draws: int) -> np.ndarray:
    """Unit noise draws (rows) per point (columns), each point's from its own stream keyed by its values.

    So a point's predictive band is the same whichever other points are asked for with it.
    """
    keys = pd.util.hash_pandas_object(part, index=False).to_numpy()
    return np.column_stack(
        [
            fit.likelihood.standard_noise(np.random.default_rng([seed, 2, int(key)]), params, (n_draws, 1))[:, 0]
            for key in keys
        ]
    )


def loss_draws(fit: Fit, table: pd.DataFrame, seed: int, new_runs: np.ndarray | None = None):
    """Per block of points: the law's draws (with the extrapolation discrepancy) and draws of new runs.

    Both on the fit's observation scale (:func:`law_mean`): log-loss, or the loss itself for a raw-scale law.

    Rows are posterior draws, columns points. Yields (mu, y) for blocks of :data:`_BLOCK` points.
    ``new_runs`` (a boolean mask over the points) limits the new-run draws to the points that need
    them (y is NaN at the others); a point's draws do not depend on which other points are asked for.
    """
    params = flat_draws(fit)
    rng = np.random.default_rng(seed)
    params = {**params, **params_at(fit, params, table, rng)}
    for start in range(0, len(table), _BLOCK):
        part = table.iloc[start : start + _BLOCK]
        mu = law_mean(
            fit,
            {
                n: v[:, start : start + _BLOCK] if v.shape[1] > 1 else v
                for n, v in params.items()
                if n in fit.law.params
            },
            part,
        )
        if fit.discrepancy is not None:  # its own streams (with_discrepancy): points inside the data are unaffected
            mu = fit.discrepancy.widen(mu, part, seed)
        if new_runs is None:
            yield mu, _new_runs(fit, params, mu, part, seed)
            continue
        wanted = np.asarray(new_runs[start : start + _BLOCK], bool)
        y = np.full_like(mu, np.nan)
        if wanted.any():
            y[:, wanted] = _new_runs(fit, params, mu[:, wanted], part[wanted], seed)
        yield mu, y


def _new_runs(fit: Fit, params: Mapping[str, np.ndarray], mu: np.ndarray, part: pd.DataFrame, seed: int) -> np.ndarray:
    """Draws of new runs' observations at ``part``: the law's draws ``mu`` plus the noise, from each point's own stream."""
    return mu + fit.spec.noise_at(params, part)["sigma"] * _noise(fit, params, part, seed, mu.shape[0])


def warn_invalid_draws(mu: np.ndarray, labels) -> None:
    """Warn, naming the points, where some posterior draws of the law give no valid loss (non-positive or undefined).

    ``mu`` holds the law's draws on the observation scale (rows; :func:`law_mean`) at the points (columns). Forecasts there rest on the valid
    draws only (and are NaN where none is valid); the law itself breaks down at such points.
    """
    share = np.mean(~np.isfinite(mu), axis=0)
    bad = np.flatnonzero(share > 0)
    if not len(bad):
        return
    shown = "; ".join(f"{labels[i]}: {share[i]:.0%} of draws" for i in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    none = " Where no draw is valid the forecast is NaN." if np.any(share[bad] == 1) else ""
    warn_user(
        f"the law gives a non-positive or undefined loss for some posterior draws at {len(bad)} point(s) "
        f"({shown}{more}): it breaks down there, and those forecasts rest on the remaining draws only.{none} "
        "Treat them with care, or compare a law that stays positive.",
        ExtrapolationWarning,
    )


def predict(
    fit: Fit, points: Points | None = None, *, ci_prob: float = defaults.CI_PROB, seed: int | None = None, **inputs: Any
) -> pd.DataFrame:
    """Credible and predictive intervals of the loss at ``points`` (a DataFrame, mapping or keywords).

    Parameters
    ----------
    fit : Fit
        The fit to forecast with.
    points : pandas.DataFrame or mapping, optional
        The points: a value (or array of values) per law input (``D`` may be given as ``C`` with ``N``); a
        pooled fit needs the group column too, where a group the fit never saw draws from the population.
        Further columns are carried along.
    ci_prob : float, default 0.9
        Probability mass of both equal-tailed intervals, strictly between 0 and 1.
    seed : int, optional
        Seed of the noise draws, of new groups' draws and of the extrapolation discrepancy; the fit's seed
        by default.
    **inputs
        The points as keywords instead of ``points`` (``N=[1e10, 1e11], D=2e11``).

    Returns
    -------
    pandas.DataFrame
        One row per point (index ``point``), in the loss column's units (the raw target for a card with
        ``scale = "raw"``): the points' columns, then the law's value (``mean`` over the
        draws, ``median`` and the credible interval ``lower``, ``upper``), the predictive interval of a new
        run's loss (``pred_lower``, ``pred_upper``), the ratio of each input to its largest observed value
        (``<input>_vs_max``; also ``C`` and ``D_per_N`` for a law in N and D) and ``extrapolation``, the
        distance beyond the observed runs in e-folds (0 inside them). ``attrs["ci_prob"]`` holds ``ci_prob``
        and ``attrs["band_includes"]`` what each band includes (:func:`band_includes`): the credible band
        the parameters and the extrapolation discrepancy, the predictive band also the noise.

    Raises
    ------
    BayescaleError
        For no points or points given both ways, missing or invalid inputs, a pooled fit's points
        without their group column, or a fit whose mean log-loss carries a user model's terms.
    """
    ci_prob = check_ci_prob(ci_prob)
    if points is None:
        if not inputs:
            raise BayescaleError(
                f"give points to predict at, e.g. predict({', '.join(f'{i}=...' for i in fit.law.inputs)})"
            )
        points = inputs
    elif inputs:
        raise BayescaleError("give the points either as a table or as keywords, not both")
    table = prepare_points(points, fit.law.inputs)
    seed = fit.settings["seed"] if seed is None else seed
    lo, hi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    scale = fit.law.observation
    blocks = []
    for start, (mu, y) in zip(range(0, len(table), _BLOCK), loss_draws(fit, table, seed)):
        if not np.isfinite(mu).all():
            part = table.iloc[start : start + _BLOCK]
            warn_invalid_draws(mu, [point_label(row, fit.law.inputs) for _, row in part.iterrows()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # points with no valid draw: NaN, named just above
            law_q = scale.to_loss(np.nanquantile(mu, [lo, 0.5, hi], axis=0))
            pred_q = scale.to_loss(np.nanquantile(y, [lo, hi], axis=0))
            mean = np.nanmean(scale.to_loss(mu), axis=0)
        blocks.append(
            pd.DataFrame(
                {
                    "mean": mean,
                    "median": law_q[1],
                    "lower": law_q[0],
                    "upper": law_q[2],
                    "pred_lower": pred_q[0],
                    "pred_upper": pred_q[1],
                },
                index=table.index[start : start + _BLOCK],
            )
        )
    out = pd.concat([table, pd.concat(blocks), extrapolation_columns(fit, table)], axis=1)
    out.attrs["ci_prob"] = ci_prob
    out.attrs["band_includes"] = band_includes(fit)
    return out
