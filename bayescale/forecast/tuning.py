"""Tuning: the best learning rate (and batch size) at scales nobody has trained, with intervals.

A law card with a tunable input (:data:`TUNABLE`: ``lr``, the peak learning rate of a run, and
``batch``, its batch size in tokens) describes a basin in that input whose bottom moves with N and
D (``chinchilla_lr``: c (log lr - log lr*)^2 with lr* a power law in N and D). For every posterior
draw and point the bottom is found numerically in log space (:mod:`bayescale.inference.optimum`),
so an asymmetric basin or a user's own card works the same way. From those draws come the best
value with its interval, the loss of a run there (as ``predict`` gives it), and the loss given up
by a value the user names or by being 2x off. The loss bands, the loss given up included, carry
the extrapolation discrepancy as ``predict``'s do (the same draws). The loss discrepancy is one
shift per draw and cannot move an argmin, so beyond the runs the best value's band carries its own
decision discrepancy (``d * tau * z`` on the log best value; tau calibrated on the fit's internal
splits, :mod:`bayescale.inference.decision_discrepancy`). It moves each draw's basin, not its
shape: the loss given up by 2x off is unchanged, while a given value is scored against the moved
bottom (its loss given up and P(within 2x) widen beyond the runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.runs import Points, prepare_points
from bayescale.data.tunable import PLAUSIBLE, TUNABLE, other_inputs, tunable_inputs
from bayescale.defaults import check_ci_prob
from bayescale.errors import BayescaleError
from bayescale.forecast.predict import (
    DISCREPANCY,
    PARAMETERS,
    band,
    band_includes,
    flat_draws,
    params_at,
    with_discrepancy,
)
from bayescale.inference.optimum import best_values, evaluate, search_range

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit
    from bayescale.laws.card import Law

#: "2x off": the factor the penalty table reports
OFF_FACTOR = 2.0


# -- the optimum per draw -------------------------------------------------------------------------
def profile_loss(
    law: Law,
    params: Mapping[str, np.ndarray],
    env: Mapping[str, np.ndarray],
    ranges: Mapping[str, tuple[float, float]],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The law's loss at the best tunable values, and those values (log), broadcast over params and env."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in (*params.values(), *env.values())))
    best = best_values(law, params, env, ranges, shape)
    return evaluate(law, params, env, best), best


def optimum_draws(fit: Fit, table: pd.DataFrame, seed: int):
    """Law parameters, the points' other inputs and the log best values, per draw (rows) and point (columns)."""
    params = flat_draws(fit)
    params = {**params, **params_at(fit, params, table, np.random.default_rng(seed))}
    law_params = {n: params[n] for n in fit.law.param_names}
    env = {n: table[n].to_numpy(dtype=float)[None, :] for n in other_inputs(fit.law)}
    ranges = {n: search_range(fit.runs, n) for n in tunable_inputs(fit.law)}
    return law_params, env, best_values(fit.law, law_params, env, ranges, (len(params["sigma"]), len(table)))


def best_calibration(fit: Fit, n_draws: int, seed: int, name: str = "decision_tau") -> tuple[np.ndarray | None, dict]:
    """Draws of a decision's tau per e-fold (None without a sweep discrepancy) and what carries it.

    ``name``: ``decision_tau`` (the best values of tunable inputs) or ``allocation_tau`` (the
    compute-optimal size). The fit's draws, or the prior's for a fit calibrated before they existed.
    The dict: ``source`` ("internal splits", "prior only" or "none"), ``cells`` (internal cells
    calibrated on: those that tried ``min_values`` values or more) and ``tau_median/lower/upper`` (90%).
    """
    from bayescale.inference.decision_discrepancy import MIN_VALUES, prior_tau
    from bayescale.inference.discrepancy import ALLOCATION

    disc = fit.discrepancy
    if disc is None or disc.kind != "sweep":
        return None, {"source": "none"}
    allocation = name == "allocation_tau"
    stored = disc.allocation_tau if allocation else disc.tau
    tau = stored if stored is not None else prior_tau(n_draws, seed, name)
    low, mid, high = (float(q) for q in np.quantile(tau, [0.05, 0.5, 0.95]))
    decision = disc.decision or {"cells": {"tunable": []}}
    kinds = np.asarray(decision["cells"]["tunable"], dtype=str)
    cells = int(np.sum(kinds == ALLOCATION if allocation else kinds != ALLOCATION))
    source = (
        decision.get("allocation_source" if allocation else "source", "prior only")
        if stored is not None
        else "prior only"
    )
    return tau, {
        "source": source,
        "cells": cells,
        "min_values": MIN_VALUES,
        "tau_median": mid,
        "tau_lower": low,
        "tau_upper": high,
    }


def widened_best(fit: Fit, table: pd.DataFrame, best: dict[str, np.ndarray], seed: int):
    """The log best values with the decision discrepancy beyond the data, and :func:`best_calibration`'s dict.

    Each draw's log best value gets ``d * tau * z`` (d: :meth:`Discrepancy.decision_distance`, 0
    inside the runs; one z per draw and tunable); unchanged without a sweep discrepancy.
    """
    n = next(iter(best.values())).shape[0]
    tau, calibration = best_calibration(fit, n, seed)
    if tau is None:
        return best, calibration
    assert fit.discrepancy is not None  # best_calibration gave tau
    d = fit.discrepancy.decision_distance(table)[None, :]
    widened = {
        name: values + d * tau[:, None] * np.random.default_rng([seed, 7, i]).standard_normal((n, 1))
        for i, (name, values) in enumerate(best.items())
    }
    return widened, calibration


def tuned_points(fit: Fit, points: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """``points`` with every tunable input set to the median of its best value there: a tuned run."""
    names = tunable_inputs(fit.law)
    if not names:
        return points
    seed = fit.settings["seed"] if seed is None else seed
    _, _, best = optimum_draws(fit, prepare_points(points, other_inputs(fit.law)), seed)
    return points.assign(**{n: np.exp(np.median(best[n], axis=0)) for n in names})


def _put(out: pd.DataFrame, prefix: str, values: np.ndarray, ci_prob: float) -> None:
    for stat, column in band(values, ci_prob).items():
        out[f"{prefix}_{stat}"] = column


def tune(
    fit: Fit,
    points: Points,
    *,
    given: Mapping[str, float] | None = None,
    ci_prob: float = defaults.CI_PROB,
    seed: int | None = None,
) -> pd.DataFrame:
    """The best value of each tunable input at ``points`` (N, D, ...), with intervals, per posterior draw.

    Columns per tunable ``t`` (``lr``, ``batch``): ``t_opt_median/lower/upper``, ``t_opt_beyond_data``
    (the median lies outside the values the runs tried), and the loss given up by being
    :data:`OFF_FACTOR` x too high or too low (``t_penalty_high_*``, ``t_penalty_low_*``: the loss there
    minus at the best value, draw by draw, each with the extrapolation discrepancy ``predict`` draws at
    the median best value or at the value off it). ``loss_median/lower/upper``, ``pred_lower/upper``
    and ``extrapolation`` are ``predict``'s forecast of a run at the median best values. With
    ``given`` (``{"lr": 3e-4}``): ``t_given`` (the value), the loss given up by the given values
    (``given_penalty_mean`` - the expected loss given up - and ``_median/lower/upper``), the
    probability that each is within 2x of the best (``t_p_within_2x``) and the forecast of a run
    with them (``given_loss_median``, ``given_pred_lower/upper``).

    Parameters
    ----------
    fit : Fit
        A fit of a law with a tunable input (``lr``, the peak learning rate, or ``batch``, the batch
        size in tokens), such as ``chinchilla_lr``.
    points : pandas.DataFrame or dict
        Where to tune: a table or a mapping of scalars or arrays giving the law's other inputs (N, D, ...).
    given : dict of str to float, optional
        Values of tunable inputs to score, such as ``{"lr": 3e-4}``; each must be one of the law's
        tunable inputs, an ``lr`` in (0, 1] and a ``batch`` above 1.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed intervals (:data:`bayescale.defaults.CI_PROB`).
    seed : int, optional
        Seed of the random draws (forecast noise, parameters of groups a pooled fit never saw); default
        the fit's seed.

    Returns
    -------
    pandas.DataFrame
        The points, one row each, with the columns above. ``attrs["ci_prob"]`` holds the interval mass,
        ``attrs["tunable"]`` the names of the tunable inputs and ``attrs["band_includes"]`` what the bands
        include: ``best`` (``t_opt``: the parameters), ``credible`` (the loss and the loss given up) and
        ``predictive`` (a run).

    Raises
    ------
    BayescaleError
        If the law has no tunable input, or ``given`` names another input or an implausible value.
    DataError
        If ``points`` lack one of the law's other inputs or hold an invalid value (such as N <= 0).
    """
    ci_prob = check_ci_prob(ci_prob)
    names = tunable_inputs(fit.law)
    if not names:
        raise BayescaleError(
            f"law {fit.law.name!r} has no tunable input ({', '.join(TUNABLE)}); fit a law with one, "
            "such as chinchilla_lr"
        )
    given = dict(given or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise BayescaleError(f"law {fit.law.name!r} tunes {', '.join(names)}; it has no {', '.join(unknown)}")
    for name, value in given.items():
        low, high = PLAUSIBLE[name]
        if not (np.isfinite(value) and low < value <= high):
            raise BayescaleError(f"{name} = {value!r}: a {TUNABLE[name]} must lie in ({low:g}, {high:g}]")
    table = prepare_points(points, other_inputs(fit.law))
    seed = fit.settings["seed"] if seed is None else seed
    law_params, env, best = optimum_draws(fit, table, seed)
    decided, calibration = widened_best(fit, table, best, seed)
    out = table.copy()
    for name in names:
        _put(out, f"{name}_opt", np.exp(decided[name]), ci_prob)
    tuned = table.assign(**{n: out[f"{n}_opt_median"] for n in names})

    def loss_at(values: Mapping[str, np.ndarray], point: Mapping[str, object]) -> np.ndarray:
        """The law's loss at the log tunable ``values`` per draw, with the discrepancy at ``point``'s values."""
        return with_discrepancy(fit, evaluate(fit.law, law_params, env, values), tuned.assign(**point), seed)

    at_best = loss_at(best, {})
    for name in names:
        tried = fit.runs[name]
        out[f"{name}_opt_beyond_data"] = (out[f"{name}_opt_median"] < tried.min()) | (
            out[f"{name}_opt_median"] > tried.max()
        )
        for side, factor in (("high", OFF_FACTOR), ("low", 1 / OFF_FACTOR)):
            off = loss_at({**best, name: best[name] + np.log(factor)}, {name: tuned[name] * factor})
            _put(out, f"{name}_penalty_{side}", off - at_best, ci_prob)
    forecast = fit.predict(tuned, ci_prob=ci_prob, seed=seed)
    for column in ("median", "lower", "upper"):
        out[f"loss_{column}"] = forecast[column].to_numpy()
    for column in ("pred_lower", "pred_upper", "extrapolation"):
        out[column] = forecast[column].to_numpy()
    if given:
        # each draw's basin moved to its widened best: the given value is scored that far from its bottom
        chosen = {**best, **{n: np.log(v) - (decided[n] - best[n]) for n, v in given.items()}}
        penalty = loss_at(chosen, given) - at_best
        for name, value in given.items():
            out[f"{name}_given"] = value
            out[f"{name}_p_within_2x"] = np.mean(np.abs(np.log(value) - decided[name]) < np.log(2.0), axis=0)
        _put(out, "given_penalty", penalty, ci_prob)
        out["given_penalty_mean"] = np.nanmean(penalty, axis=0)  # the expected loss given up
        run = fit.predict(tuned.assign(**given), ci_prob=ci_prob, seed=seed)
        out["given_loss_median"] = run["median"].to_numpy()
        out["given_pred_lower"], out["given_pred_upper"] = run["pred_lower"].to_numpy(), run["pred_upper"].to_numpy()
    out.attrs["ci_prob"] = ci_prob
    out.attrs["tunable"] = names
    widened = calibration["source"] != "none"
    out.attrs["band_includes"] = {"best": [PARAMETERS, *([DISCREPANCY] if widened else [])], **band_includes(fit)}
    out.attrs["best_calibration"] = calibration
    return out
