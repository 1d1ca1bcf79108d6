"""Tuning: the best learning rate (and batch size) at scales nobody has trained, with intervals.

A law card with a tunable input (:data:`TUNABLE`: ``lr``, the peak learning rate of a run, and
``batch``, its batch size in tokens) describes a basin in that input whose bottom moves with N and
D (``chinchilla_lr``: c (log lr - log lr*)^2 with lr* a power law in N and D). For every posterior
draw and point the bottom is found numerically in log space (a coarse grid, then golden-section
search, vectorised over draws and points; coordinate-wise for two tunables), so an asymmetric
basin or a user's own card works the same way. From those draws come the best value with its
interval, the loss of a run there (as ``predict`` gives it), and the loss given up by a value the
user names or by being 2x off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from . import defaults
from .data import Runs, column_list, prepare_points, row_numbers
from .errors import BayescaleError, DataError
from .predict import band, check_ci_prob, flat_draws, params_at

if TYPE_CHECKING:
    from .fitting import Fit
    from .laws import Law

#: inputs a practitioner chooses per run and that have a best value: what each one is
TUNABLE = {"lr": "peak learning rate", "batch": "batch size in tokens"}
#: values outside these bounds are not what the column claims to hold
PLAUSIBLE = {"lr": (0.0, 1.0), "batch": (1.0, np.inf)}
#: the search for the best value reaches this factor beyond the observed values on each side
SEARCH_FACTOR = 100.0
_GRID = 13
_ITERATIONS = 20
_ROUNDS = 3           # coordinate-wise rounds when a law has two tunable inputs
_GOLDEN = (np.sqrt(5) - 1) / 2
#: "2x off": the factor the penalty table reports
OFF_FACTOR = 2.0


def tunable_inputs(law: "Law") -> tuple[str, ...]:
    """The law's inputs that have a best value (learning rate, batch size)."""
    return tuple(name for name in law.inputs if name in TUNABLE)


def _tuned_runs(runs: Runs, law: "Law") -> tuple[str, ...]:
    """The tunable inputs to check in ``runs``: none in a checkpoint table, where lr is the rate at each checkpoint."""
    from .extrapolation import is_curves

    return () if is_curves(runs.frame) else tunable_inputs(law)


def other_inputs(law: "Law") -> list[str]:
    """The law's inputs that describe the scale of a run (N, D, ...), not a choice with an optimum."""
    return [name for name in law.inputs if name not in TUNABLE]


# -- checks on the runs -------------------------------------------------------------------------
def check_columns(runs: Runs, law: "Law") -> None:
    """A missing tunable column gets an error that points at the user's likely candidates."""
    theirs = runs.original_columns or runs.columns
    for name in _tuned_runs(runs, law):
        if name in runs.frame.columns:
            continue
        hints = ("lr", "learning", "rate") if name == "lr" else ("batch", "bs")
        near = [c for c in theirs if any(h in str(c).lower() for h in hints)]
        guess = f" (perhaps --columns {name}={near[0]})" if near else ""
        raise DataError(f"law {law.name!r} needs column {name!r}, the {TUNABLE[name]} of each run; the runs table has "
                        f"{column_list(theirs, [name])}. Map yours with columns={{'{name}': 'your name'}} or "
                        f"--columns {name}='your name'{guess}")


def check_runs(runs: Runs, law: "Law") -> None:
    """Tunable columns hold plausible values, and some cell of runs tried more than one of them."""
    frame = runs.frame
    for name in _tuned_runs(runs, law):
        low, high = PLAUSIBLE[name]
        values = frame[name]
        bad = frame.index[~((values > low) & (values <= high))]
        if len(bad):
            shown = ", ".join(f"{v:g}" for v in values[bad][:6])
            other = ("a batch size or a step count" if name == "lr" else "a learning rate or a count of sequences")
            hint = (f"If the column holds {other}, map the right one with --columns {name}='your name'"
                    if (values[bad] > high).any() or (name == "batch" and (values[bad] > 0).any())
                    else "Drop those runs or fix their values")
            raise DataError(f"column {name!r} ({TUNABLE[name]}) must lie in ({low:g}, {high:g}], but "
                            f"{row_numbers(bad)} are {shown}. {hint}")
        scale = other_inputs(law) + [n for n in tunable_inputs(law) if n != name]
        per_cell = frame.groupby([frame[c].round(12) for c in scale])[name].nunique() if scale else \
            pd.Series([values.nunique()])
        if per_cell.max() < 2:
            where = f" at the same {', '.join(scale)}" if scale else ""
            raise DataError(f"every run{where} used a single {TUNABLE[name]} ({name!r}): the runs say nothing about "
                            f"where the best {name} lies, so law {law.name!r} cannot locate it. Sweep at least two "
                            f"values of {name} at some (or all) sizes")


# -- the optimum per draw -------------------------------------------------------------------------
def search_range(runs: Runs, name: str) -> tuple[float, float]:
    """The log-space interval searched for the best value: the observed values, widened by :data:`SEARCH_FACTOR`."""
    values = runs[name]
    return float(np.log(values.min() / SEARCH_FACTOR)), float(np.log(values.max() * SEARCH_FACTOR))


def _evaluate(law: "Law", params: Mapping[str, np.ndarray], env: Mapping[str, np.ndarray],
              log_values: Mapping[str, np.ndarray]) -> np.ndarray:
    with np.errstate(all="ignore"):
        loss = law.formula.numpy({**env, **{n: np.exp(v) for n, v in log_values.items()}, **params})
    return np.where(np.isfinite(loss), loss, np.inf)


def _minimise(objective, low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
    """argmin of ``objective(log_value)`` in [low, high], element-wise: a grid, then golden section.

    ``objective`` takes an array with extra leading axes (the candidates) before ``shape``, so each
    stage is one vectorised call: all grid values at once, then both golden points per iteration.
    """
    grid = np.linspace(low, high, _GRID)
    losses = objective(np.broadcast_to(grid.reshape(-1, *[1] * len(shape)), (_GRID, *shape)))
    best = np.argmin(losses, axis=0)
    a = grid[np.clip(best - 1, 0, _GRID - 1)]
    b = grid[np.clip(best + 1, 0, _GRID - 1)]
    for _ in range(_ITERATIONS):
        c = b - _GOLDEN * (b - a)
        d = a + _GOLDEN * (b - a)
        at_c, at_d = objective(np.stack([c, d]))
        left = at_c < at_d
        b = np.where(left, d, b)
        a = np.where(left, a, c)
    return (a + b) / 2


def best_values(law: "Law", params: Mapping[str, np.ndarray], env: Mapping[str, np.ndarray],
                ranges: Mapping[str, tuple[float, float]], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Log of the best value of each tunable input for every draw (rows) and point (columns)."""
    names = tunable_inputs(law)
    current = {n: np.full(shape, np.mean(ranges[n])) for n in names}
    for _ in range(1 if len(names) == 1 else _ROUNDS):
        for name in names:
            current[name] = _minimise(lambda v, name=name: _evaluate(law, params, env, {**current, name: v}),
                                      *ranges[name], shape)
    return current


def profile_loss(law: "Law", params: Mapping[str, np.ndarray], env: Mapping[str, np.ndarray],
                 ranges: Mapping[str, tuple[float, float]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The law's loss at the best tunable values, and those values (log), broadcast over params and env."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in (*params.values(), *env.values())))
    best = best_values(law, params, env, ranges, shape)
    return _evaluate(law, params, env, best), best


def optimum_draws(fit: "Fit", table: pd.DataFrame, seed: int):
    """Law parameters, the points' other inputs and the log best values, per draw (rows) and point (columns)."""
    params = flat_draws(fit)
    params = {**params, **params_at(fit, params, table, np.random.default_rng(seed))}
    law_params = {n: params[n] for n in fit.law.param_names}
    env = {n: table[n].to_numpy(dtype=float)[None, :] for n in other_inputs(fit.law)}
    ranges = {n: search_range(fit.runs, n) for n in tunable_inputs(fit.law)}
    return law_params, env, best_values(fit.law, law_params, env, ranges, (len(params["sigma"]), len(table)))


def tuned_points(fit: "Fit", points: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
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


def tune(fit: "Fit", points, *, given: Mapping[str, float] | None = None, ci_prob: float = defaults.CI_PROB,
         seed: int | None = None) -> pd.DataFrame:
    """The best value of each tunable input at ``points`` (N, D, ...), with intervals, per posterior draw.

    Columns per tunable ``t`` (``lr``, ``batch``): ``t_opt_median/lower/upper``, ``t_opt_beyond_data``
    (the median lies outside the values the runs tried), and the loss given up by being
    :data:`OFF_FACTOR` x too high or too low (``t_penalty_high_*``, ``t_penalty_low_*``: the law's loss
    there minus at the best value, draw by draw). ``loss_median/lower/upper``, ``pred_lower/upper``
    and ``extrapolation`` are ``predict``'s forecast of a run at the median best values. With
    ``given`` (``{"lr": 3e-4}``): ``t_given``, the loss given up by the given values
    (``given_penalty_mean`` - the expected loss given up - and ``_median/lower/upper``), the probability that each is within 2x of the best
    (``t_p_within_2x``) and the forecast of a run with them (``given_loss_median``,
    ``given_pred_lower/upper``).
    """
    ci_prob = check_ci_prob(ci_prob)
    names = tunable_inputs(fit.law)
    if not names:
        raise BayescaleError(f"law {fit.law.name!r} has no tunable input ({', '.join(TUNABLE)}); fit a law with one, "
                             "such as chinchilla_lr")
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
    shape = best[names[0]].shape
    at_best = _evaluate(fit.law, law_params, env, best)
    out = table.copy()
    for name in names:
        _put(out, f"{name}_opt", np.exp(best[name]), ci_prob)
        tried = fit.runs[name]
        out[f"{name}_opt_beyond_data"] = (out[f"{name}_opt_median"] < tried.min()) | (out[f"{name}_opt_median"] > tried.max())
        for side, shift in (("high", np.log(OFF_FACTOR)), ("low", -np.log(OFF_FACTOR))):
            off = _evaluate(fit.law, law_params, env, {**best, name: best[name] + shift})
            _put(out, f"{name}_penalty_{side}", off - at_best, ci_prob)
    forecast = fit.predict(table.assign(**{n: out[f"{n}_opt_median"] for n in names}), ci_prob=ci_prob, seed=seed)
    for column in ("median", "lower", "upper"):
        out[f"loss_{column}"] = forecast[column].to_numpy()
    for column in ("pred_lower", "pred_upper", "extrapolation"):
        out[column] = forecast[column].to_numpy()
    if given:
        chosen = {**best, **{n: np.full(shape, np.log(v)) for n, v in given.items()}}
        penalty = _evaluate(fit.law, law_params, env, chosen) - at_best
        for name, value in given.items():
            out[f"{name}_given"] = value
            out[f"{name}_p_within_2x"] = np.mean(np.abs(np.log(value) - best[name]) < np.log(2.0), axis=0)
        _put(out, "given_penalty", penalty, ci_prob)
        out["given_penalty_mean"] = np.nanmean(penalty, axis=0)  # the expected loss given up
        run = fit.predict(table.assign(**{**{n: out[f"{n}_opt_median"] for n in names}, **given}), ci_prob=ci_prob,
                          seed=seed)
        out["given_loss_median"] = run["median"].to_numpy()
        out["given_pred_lower"], out["given_pred_upper"] = run["pred_lower"].to_numpy(), run["pred_upper"].to_numpy()
    out.attrs["ci_prob"] = ci_prob
    out.attrs["tunable"] = names
    return out


# -- backtest -----------------------------------------------------------------------------------
def rank_cells(fit: "Fit", heldout: pd.DataFrame, seed: int) -> list[dict]:
    """Per held-out cell (same N, D, ...) that tried several values of a tunable: does the forecast pick the best?

    The forecast ranks a cell's values by the median forecast loss; ``p_observed_best`` is the
    share of posterior draws in which the law puts the observed best value first. ``opt_forecast``
    is the 90% interval of the best value there, ``observed_best_bracket`` where the observed best
    lies between its neighbours (geometric midpoints: the bracket a symmetric basin implies).
    """
    from .predict import log_law

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
            draws = log_law(fit, {n: params[n] for n in fit.law.param_names}, points)
            median = fit.predict(points, seed=seed)["median"].to_numpy()
            best_observed = float(observed.idxmin())
            _, _, best = optimum_draws(fit, cell.iloc[:1], seed)
            optimum = np.exp(np.quantile(best[name][:, 0], [0.05, 0.5, 0.95]))
            tried = observed.index.to_numpy(dtype=float)
            i = int(np.argmin(observed.to_numpy()))
            bracket = [float(np.sqrt(tried[i] * tried[i - 1])) if i > 0 else None,
                       float(np.sqrt(tried[i] * tried[i + 1])) if i + 1 < len(tried) else None]
            best_forecast = float(observed.index[int(np.argmin(median))])
            cells.append({**dict(zip(scale, map(float, np.atleast_1d(key)))), "tunable": name,
                          "values": [float(v) for v in observed.index], "observed_loss": observed.tolist(),
                          "forecast_median": median.tolist(), "observed_best": best_observed,
                          "forecast_best": best_forecast, "ranked_first": best_observed == best_forecast,
                          "p_observed_best": float(np.mean(observed.index[np.argmin(draws, axis=1)] == best_observed)),
                          "opt_forecast": {"median": float(optimum[1]), "lower": float(optimum[0]),
                                           "upper": float(optimum[2])},
                          "observed_best_bracket": bracket})
    return cells


def backtest(runs, law: "Law | str", holdout: str, *, columns: Mapping[str, str] | None = None,
             seed: int = defaults.SEED, **fit_options) -> dict:
    """Fit ``law`` on the runs the holdout rule leaves, forecast the held-out runs at their own tunable values.

    Returns the held-out runs with their forecasts, the coverage of the 50/80/90% predictive bands,
    the median absolute relative error, and per held-out cell whether the forecast ranks the
    observed best value first (:func:`rank_cells`), plus the fit's diagnostics.
    """
    from .backtesting import holdout_mask, score
    from .data import count_parameters, load_runs
    from .fitting import fit as fit_law
    from .laws import get_law

    law = get_law(law)
    loaded = load_runs(runs, columns, extra_inputs=law.inputs)
    check_columns(loaded, law)
    table = loaded.frame
    mask = holdout_mask(table, holdout)
    train, heldout = table[~mask].reset_index(drop=True), table[mask].reset_index(drop=True)
    fitted = fit_law(train, law, seed=seed, **fit_options)
    held = count_parameters(load_runs(heldout, extra_inputs=law.inputs), fitted.settings.get("params", "total"))
    scored = score(fitted, held, seed)
    cells = rank_cells(fitted, held.frame, seed)
    return {"law": law.name, "holdout": holdout, "n_train": int(len(train)), "n_heldout": int(len(heldout)),
            "runs": [{k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v)) for k, v in row.items()}
                     for row in scored["runs"].to_dict("records")],
            "coverage": scored["coverage"], "median_abs_rel_error": scored["median_abs_rel_error"],
            "interval_score_90": scored["interval_score_90"], "cells": cells,
            "cells_ranked_first": int(sum(c["ranked_first"] for c in cells)), "n_cells": len(cells),
            "diagnostics": scored["diagnostics"], "fit": fitted}
