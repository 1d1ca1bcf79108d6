"""Chaining the two steps: every posterior draw of the loss through a draw of the metric law, and backtests.

A forecast pairs posterior draws: each draw of the loss at (N, D) (the law's value, and a run's loss
with noise and the extrapolation discrepancy, from :func:`bayescale.forecast.predict.loss_draws`) goes
through one draw of the metric law (:mod:`bayescale.downstream.metric`), widened below the lowest
loss that law saw by its own discrepancy, so the bands carry both steps' uncertainty. The loss may
come from one fit or one per group (a sweep's fits per corpus); its band at a point is
:func:`bayescale.predict`'s on that fit at that point, whichever fit made it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.runs import Points, prepare_points
from bayescale.defaults import check_ci_prob
from bayescale.downstream.loss import fits_for_points, loss_points
from bayescale.downstream.metric import (
    ABOVE_CHANCE,
    EPS,
    MetricFit,
    check_metric,
    expit,
    fit_metric,
    forecast_chances,
    logit,
)
from bayescale.errors import BayescaleError, ExtrapolationWarning
from bayescale.forecast.predict import band, loss_draws, predict
from bayescale.laws.card import Law

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit


def _through_metric(
    metric_fit: MetricFit,
    losses: list[np.ndarray],
    table: pd.DataFrame,
    pick: np.ndarray,
    rng: np.random.Generator,
    chances: np.ndarray,
    discrepancy: bool = True,
) -> list[np.ndarray]:
    """The metric law (with its discrepancy below ``loss_min`` unless ``discrepancy`` is False) at each array of
    loss draws (rows: draws ``pick``).

    One z per draw is shared by every point and every array, as the loss discrepancy does.
    """
    shift = _shifts(metric_fit, table, pick, rng)
    params = {name: metric_fit.flat(name)[pick][:, None] for name in metric_fit.law.param_names}
    assert metric_fit.kappa is not None  # fit_metric draws it
    kappa_z = (metric_fit.kappa[pick] * rng.standard_normal(len(pick)))[:, None] if discrepancy else 0.0
    out = []
    for loss in losses:
        with np.errstate(all="ignore"):
            mean = metric_fit.law.formula.numpy({**params, "loss": loss - shift, "chance": chances[None, :]})
            beyond = np.maximum(0.0, np.log(metric_fit.loss_min) - np.log(loss))
        out.append(np.clip(expit(logit(np.clip(mean, EPS, 1 - EPS)) + kappa_z * beyond), EPS, 1 - EPS))
    return out


def metric_at_loss(
    metric_fit: MetricFit, loss, *, group: str | None = None, ci_prob: float = defaults.CI_PROB, seed: int | None = None
) -> pd.DataFrame:
    """The metric law's band (median, lower, upper) at given losses, for ``group`` (a new one if unseen)."""
    loss = np.asarray(loss, dtype=float)
    table = pd.DataFrame({"loss": loss})
    if metric_fit.group:
        table[metric_fit.group] = group if group is not None else (metric_fit.levels or ["new"])[0]
    seed = metric_fit.settings.get("seed", defaults.SEED) if seed is None else seed
    rng = np.random.default_rng([seed, 5])
    pick = rng.permutation(len(metric_fit.flat("phi")))
    chances, _ = forecast_chances(metric_fit, table)
    (metric,) = _through_metric(metric_fit, [np.broadcast_to(loss, (len(pick), len(loss)))], table, pick, rng, chances)
    return table.assign(**band(metric, check_ci_prob(ci_prob)))


def chained(
    loss_fit: Fit | Mapping[str, Fit],
    metric_fit: MetricFit,
    points: Points,
    *,
    ci_prob: float = defaults.CI_PROB,
    seed: int | None = None,
    by: str | None = None,
) -> pd.DataFrame:
    """Loss and metric forecasts at ``points`` (the loss law's inputs, the group column, optionally chance).

    The loss columns are :func:`bayescale.predict`'s on the loss fit at the same point (the same
    draws, extrapolation discrepancy and seed); the metric law takes each of those draws.

    Parameters
    ----------
    loss_fit : Fit or mapping of str to Fit
        The fit of the loss law (:func:`bayescale.fit`, or :meth:`Fit.load` of a saved one) for every
        point, or one fit per group: keyed by the values of column ``by`` (e.g. a sweep's fits per corpus).
    metric_fit : MetricFit
        The fit of the metric law (:func:`fit_metric`).
    points : pandas.DataFrame or Mapping
        Where to forecast: the loss law's inputs (D may be given as C with N), the group column when the
        metric fit or the loss fits have one (an unseen name is a new group of the metric law), and
        optionally ``chance``.
    ci_prob : float, default 0.9
        Probability of the credible and predictive intervals (equal-tailed).
    seed : int, optional
        Seed of the loss forecast (as :func:`bayescale.predict`'s) and of the pairing with the metric
        draws. None (default): each loss fit's own seed, and the metric fit's for the pairing.
    by : str, optional
        The column whose values key a mapping of loss fits; default the metric fit's group column.

    Returns
    -------
    pandas.DataFrame
        One row per point (index ``point``): the points, ``loss_median/lower/upper``,
        ``loss_pred_lower/upper`` and ``loss_extrapolation`` (:func:`bayescale.predict`'s ``median``,
        ..., ``extrapolation``), ``loss_fit`` (the mapping's key serving the point; empty for one fit),
        ``median/lower/upper`` (the metric law at each draw of the loss law, both posteriors paired draw
        by draw, widened below the lowest fitted loss by the metric discrepancy), ``pred_lower/pred_upper``
        (a run: the loss with its noise and discrepancy, then the metric's discrepancy and noise),
        ``chance`` and ``chance_source`` (the level and where it came from, :func:`forecast_chances`),
        ``p_above_chance`` (P(the law beats chance by more than :data:`ABOVE_CHANCE`)),
        ``metric_extrapolation`` (median e-folds of loss below the lowest loss the metric law saw) and
        ``observed_min``, ``observed_max``, ``observed_runs`` (the metric over the runs of the point's group,
        or all runs). Accuracies are fractions, losses nats. ``attrs["ci_prob"]`` holds ``ci_prob``.
    """
    return chained_levels(loss_fit, metric_fit, points, (check_ci_prob(ci_prob),), seed=seed, by=by)[ci_prob]


def chained_levels(
    loss_fit: Fit | Mapping[str, Fit], metric_fit: MetricFit, points, levels, *, seed: int | None = None, by=None
) -> dict[float, pd.DataFrame]:
    """:func:`chained` at several interval probabilities, from one set of draws."""
    levels = [check_ci_prob(level) for level in levels]
    table = prepare_points(points, ())
    parts = fits_for_points(loss_fit, table, by or metric_fit.group)
    phi = metric_fit.flat("phi")
    draws = min(len(phi), *(fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"] for _, fit, _ in parts))
    rng = np.random.default_rng([metric_fit.settings.get("seed", defaults.SEED) if seed is None else seed, 3])
    pick_metric = rng.permutation(len(phi))[:draws]
    loss_law, loss_run = np.empty((draws, len(table))), np.empty((draws, len(table)))
    losses: dict[float, list[pd.DataFrame]] = {level: [] for level in levels}
    for key, fit, where in parts:
        at = loss_points(
            fit, table.iloc[where], f"the loss fit for {by or metric_fit.group} {key}" if key else "the loss fit"
        )
        fit_seed = fit.settings["seed"] if seed is None else seed
        for i, level in enumerate(levels):
            with warnings.catch_warnings():
                if i:  # the first level's forecast has warned
                    warnings.simplefilter("ignore", ExtrapolationWarning)
                forecast = predict(fit, at, ci_prob=level, seed=fit_seed)
            losses[level].append(forecast.set_index(table.index[where]).assign(loss_fit=key or ""))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtrapolationWarning)  # predict has warned
            mu, y = (np.concatenate(blocks, axis=1) for blocks in zip(*loss_draws(fit, at, fit_seed)))
        pick = rng.permutation(len(mu))[:draws]
        loss_law[:, where], loss_run[:, where] = np.exp(mu[pick]), np.exp(y[pick])
    chances, sources = forecast_chances(metric_fit, table)
    metric_law, metric_mean = _through_metric(metric_fit, [loss_law, loss_run], table, pick_metric, rng, chances)
    precision = phi[pick_metric][:, None]
    metric_run = rng.beta(metric_mean * precision, (1 - metric_mean) * precision)
    with np.errstate(all="ignore"):
        beyond = np.median(np.maximum(0.0, np.log(metric_fit.loss_min) - np.log(loss_law)), axis=0)
    observed = _observed(metric_fit, table)
    out = {}
    for ci_prob in levels:
        loss = pd.concat(losses[ci_prob]).sort_index()
        table_at = table.copy()
        for key in ("median", "lower", "upper", "pred_lower", "pred_upper", "extrapolation"):
            table_at[f"loss_{key}"] = loss[key]
        table_at["loss_fit"] = loss["loss_fit"]
        for key, value in band(metric_law, ci_prob).items():
            table_at[key] = value
        run = band(metric_run, ci_prob)
        table_at["pred_lower"], table_at["pred_upper"] = run["lower"], run["upper"]
        table_at["chance"], table_at["chance_source"] = chances, sources
        table_at["p_above_chance"] = np.mean(metric_law > chances[None, :] + ABOVE_CHANCE, axis=0)
        table_at["metric_extrapolation"] = beyond
        table_at = pd.concat([table_at, observed], axis=1)
        table_at.attrs["ci_prob"] = ci_prob
        out[ci_prob] = table_at
    return out


def _observed(metric_fit: MetricFit, table: pd.DataFrame) -> pd.DataFrame:
    """The metric's observed range over the runs of each point's group (all runs for a new group, or no group)."""
    runs, group = metric_fit.table, metric_fit.group
    values = runs[metric_fit.metric].to_numpy(dtype=float)
    labels = table[group].astype(str).to_numpy() if group and group in table.columns else np.full(len(table), None)
    seen = runs[group].astype(str).to_numpy() if group else None
    rows = []
    for label in labels:
        mine = values[seen == label] if seen is not None and label in metric_fit.levels else values
        rows.append({"observed_min": mine.min(), "observed_max": mine.max(), "observed_runs": len(mine)})
    return pd.DataFrame(rows, index=table.index)


def _shifts(metric_fit: MetricFit, table: pd.DataFrame, pick: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each point's loss shift per draw: its group's, or a fresh draw from the population for a new group."""
    if not metric_fit.group:
        return np.zeros((len(pick), 1))
    if metric_fit.group not in table.columns:
        raise BayescaleError(
            f"the metric law is pooled by {metric_fit.group!r}: give a {metric_fit.group!r} for every "
            f"point (seen: {', '.join(metric_fit.levels)}; any other name is a new group)"
        )
    shifts = metric_fit.flat("shift")[pick]
    spread = metric_fit.flat("shift_sd")[pick]
    labels = table[metric_fit.group].astype(str).to_numpy()
    levels = {level: i for i, level in enumerate(metric_fit.levels)}
    out = np.empty((len(pick), len(labels)))
    for j, label in enumerate(labels):
        out[:, j] = shifts[:, levels[label]] if label in levels else spread * rng.standard_normal(len(pick))
    return out


LEVELS = (0.5, 0.8, 0.9)


def backtest(
    runs,
    metric: str,
    holdout: str,
    *,
    loss_law: Law | str = "chinchilla",
    metric_law: Law | str = "metric_sigmoid",
    group: str | None = None,
    pool: Mapping[str, str] | None = None,
    chance: float | None = None,
    seed: int = defaults.SEED,
    **fit_options,
) -> dict:
    """Both steps fitted on the runs the holdout rule leaves; the held-out runs' metric forecast and scored.

    The loss law is fitted to (N, D, loss) and pooled as ``pool`` says; the metric law to (loss,
    metric). Returns the held-out runs with their forecasts, the coverage of the 50/80/90%
    predictive bands, the median absolute error (accuracy as a fraction) and both fits' diagnostics.
    """
    from bayescale.data.runs import read_table
    from bayescale.evaluation.backtesting import holdout_mask
    from bayescale.fitting.pipeline import fit

    table = runs.copy() if isinstance(runs, pd.DataFrame) else read_table(runs)[0]
    check_metric(table, metric)
    mask = holdout_mask(table, holdout)
    train, heldout = table[~mask].reset_index(drop=True), table[mask].reset_index(drop=True)
    keep = [c for c in (group, "chance", "n") if c and c in table.columns]
    loss_fit = fit(train, loss_law, pool=pool, seed=seed, **fit_options)
    metric_fit = fit_metric(
        train,
        metric,
        metric_law,
        group=group,
        chance=chance,
        seed=seed,
        **{
            k: v
            for k, v in fit_options.items()
            if k in ("draws", "tune", "chains", "cores", "sampler", "target_accept")
        },
    )
    points = heldout[[*loss_fit.law.inputs, *keep]]
    forecasts = chained_levels(loss_fit, metric_fit, points, LEVELS, seed=seed)
    observed = heldout[metric].to_numpy(dtype=float)
    coverage = {
        str(level): float(np.mean((f["pred_lower"] <= observed) & (observed <= f["pred_upper"])))
        for level, f in forecasts.items()
    }
    main = forecasts[0.9]
    rows = pd.DataFrame(
        {
            **{c: heldout[c] for c in (*loss_fit.law.inputs, *keep)},
            "metric": observed,
            "median": main["median"].to_numpy(),
            "lower": main["lower"].to_numpy(),
            "upper": main["upper"].to_numpy(),
            "pred_lower": main["pred_lower"].to_numpy(),
            "pred_upper": main["pred_upper"].to_numpy(),
            "loss": heldout["loss"].to_numpy(),
            "loss_median": main["loss_median"].to_numpy(),
            "p_above_chance": main["p_above_chance"].to_numpy(),
        }
    )
    rows["inside_90"] = (rows["pred_lower"] <= rows["metric"]) & (rows["metric"] <= rows["pred_upper"])
    return {
        "holdout": holdout,
        "metric": metric,
        "loss_law": loss_fit.law.name,
        "loss_pooled": {name: pooled.column for name, pooled in loss_fit.spec.pooled.items()},
        "metric_law": metric_fit.law.name,
        "n_train": int(len(train)),
        "n_heldout": int(len(heldout)),
        "runs": [
            {
                k: (v if isinstance(v, str) else bool(v) if isinstance(v, (bool, np.bool_)) else float(v))
                for k, v in row.items()
            }
            for row in rows.to_dict("records")
        ],
        "coverage": coverage,
        "median_abs_error": float(np.median(np.abs(rows["median"] - rows["metric"]))),
        "diagnostics": {"loss": loss_fit.diagnostics.to_dict(), "metric": metric_fit.diagnostics.to_dict()},
        "fits": (loss_fit, metric_fit),
    }
