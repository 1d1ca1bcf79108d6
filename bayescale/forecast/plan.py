"""Compute-optimal allocation: the N and D that minimise the loss for a FLOP budget, per posterior draw.

With C = 6 N D (or a user's cost formula in N and D, solved for D), the loss along the budget is a
function of log N alone. For every draw we locate the minimum on a log grid, then refine it by
golden-section search, vectorised over draws. A cap on unique tokens either enters the law (a
law with a ``U`` input, such as ``data_constrained``, is evaluated with U = min(cap, D)) or, for
other laws, becomes the constraint D <= cap. For the Chinchilla law the closed form (Hoffmann et
al. 2022, eq. 4) is available to check the solver. On top of it: the frontier over budgets,
candidate configurations (probability of being best, regret) and the marginal value of scale.

Every loss band here is ``predict``'s: the parameters' uncertainty and the extrapolation discrepancy
(one default everywhere; ``band_includes`` in each result says so). The loss at the optimum is
``predict``'s credible band at the median N*, D*, so ``plan`` and ``predict`` agree there to the digit.
Comparisons (drops, regrets, P(best)) use the same draws: the law per posterior draw, widened by
the discrepancy draw that ``predict`` uses (:func:`~bayescale.forecast.predict.with_discrepancy`). The
loss discrepancy is one shift per draw and cannot move the minimum along the budget, so beyond the
runs the intervals of N*, D* and D*/N* carry their own decision discrepancy (log N* gets d tau z,
tau learned from the fit's internal IsoFLOP cells: :mod:`bayescale.inference.decision_discrepancy`)
and a best learning rate ``tune``'s; the draws that compare options (regrets, drops) do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.runs import column_list, row_numbers
from bayescale.data.tunable import tunable_inputs
from bayescale.defaults import check_ci_prob
from bayescale.errors import BayescaleError
from bayescale.forecast.budget import Budget
from bayescale.forecast.predict import DISCREPANCY, PARAMETERS, band, band_includes, flat_draws, with_discrepancy
from bayescale.forecast.tuning import best_calibration, profile_loss, search_range, tuned_points, widened_best

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit

_GRID = 241  # log-N grid points over the search range
_LOG_N_RANGE = (3.0, 16.0)  # search N between 1e3 and 1e16 parameters
_GOLDEN = (np.sqrt(5) - 1) / 2
_STATS = ("median", "lower", "upper")


def _check_law(fit: Fit) -> None:
    """Planning varies N and D (and tunes lr or batch): the law must depend on nothing else."""
    if not {"N", "D"} <= set(fit.law.inputs):
        raise BayescaleError(
            f"planning needs a law in N and D; law {fit.law.name!r} has inputs {', '.join(fit.law.inputs)}"
        )
    extra = [name for name in fit.law.inputs if name not in ("N", "D", "U", *tunable_inputs(fit.law))]
    if extra:
        raise BayescaleError(
            f"planning varies N and D alone; law {fit.law.name!r} also needs "
            f"{', '.join(extra)}, which is not a function of them. Plan with a law in N and D "
            "(and a tunable lr or batch), such as chinchilla_lr_asym"
        )
    if fit.spec.pooled:
        raise BayescaleError(
            f"planning a pooled fit is not supported yet: {', '.join(fit.spec.pooled)} vary by group; "
            "fit the group you plan for without pooling"
        )


def _check(fit: Fit, flops: float) -> float:
    _check_law(fit)
    if (
        isinstance(flops, bool)
        or not isinstance(flops, (int, float, np.floating))
        or not np.isfinite(flops)
        or flops <= 0
    ):
        raise BayescaleError(f"the compute budget must be a positive, finite number of FLOPs, got {flops!r}")
    return float(flops)


def _unique_tokens(d, budget: Budget):
    """Unique tokens seen when training on ``d`` tokens: all of them without a cap, else at most the cap."""
    return d if budget.unique_tokens is None else np.minimum(budget.unique_tokens, d)


def _points(fit: Fit, n, d, budget: Budget) -> pd.DataFrame:
    """Points (N, D), with U where the law takes it and each tunable input at its median best value: tuned runs."""
    n, d = np.atleast_1d(np.asarray(n, float)), np.atleast_1d(np.asarray(d, float))
    table = pd.DataFrame({"N": n, "D": d, **({"U": _unique_tokens(d, budget)} if "U" in fit.law.inputs else {})})
    return tuned_points(fit, table)


def includes(fit: Fit) -> dict[str, list[str]]:
    """What the plan's bands include: ``allocation`` (N*, D*, D*/N*, best tunables), then ``predict``'s ``credible`` and ``predictive``."""
    sweep = fit.discrepancy is not None and fit.discrepancy.kind == "sweep"
    return {"allocation": [PARAMETERS, *([DISCREPANCY] if sweep else [])], **band_includes(fit)}


def widened_allocation(fit: Fit, draws: pd.DataFrame, flops: float, budget: Budget) -> tuple[pd.DataFrame, dict]:
    """:func:`optimal_allocation`'s draws with the decision discrepancy beyond the runs, and what carries it.

    Each draw's log N* gets ``omega * z0 + d * tau * z`` (omega: the fit's ``allocation_omega``, how far
    the law's N* misses the observed IsoFLOP optima inside the runs, 0 for a fit saved without it; d:
    the median optimum's distance beyond the runs, :meth:`Discrepancy.decision_distance`; tau: the fit's
    ``allocation_tau``, :func:`~bayescale.forecast.tuning.best_calibration`); D* follows from the budget
    (a token cap still binds), and a best learning rate or batch size gets ``tune``'s own discrepancy
    there. Unchanged without a sweep discrepancy. The dict adds ``distance`` and ``omega_median`` to
    ``best_calibration``'s.
    """
    seed = fit.settings["seed"]
    tau, calibration = best_calibration(fit, len(draws), seed, "allocation_tau")
    if tau is None:
        return draws, calibration
    assert fit.discrepancy is not None  # best_calibration gave tau
    n, d = float(np.median(draws["N_opt"])), float(np.median(draws["D_opt"]))
    at = pd.DataFrame({"N": [n], "D": [d], **({"U": _unique_tokens(d, budget)} if "U" in fit.law.inputs else {})})
    distance = float(fit.discrepancy.decision_distance(at)[0])
    omega = fit.discrepancy.allocation_omega
    calibration = {
        **calibration,
        "distance": distance,
        "omega_median": float(np.median(omega)) if omega is not None else 0.0,
    }
    if distance == 0 and omega is None:  # inside the runs: the parameters alone
        return draws, calibration
    rng = np.random.default_rng([seed, 8])
    shift = distance * tau * rng.standard_normal(len(tau))
    if omega is not None:
        shift = shift + omega * rng.standard_normal(len(omega))
    log_n = np.log(draws["N_opt"].to_numpy()) + shift
    if budget.unique_tokens is not None and "U" not in fit.law.inputs:  # the cap stays a hard constraint
        log_n = np.maximum(
            log_n, np.log(10.0) * np.nan_to_num(budget.size_for_tokens(budget.unique_tokens, flops), nan=-np.inf)
        )
    n_opt = np.exp(log_n)
    d_opt = budget.tokens_for(n_opt, flops)
    out = draws.assign(N_opt=n_opt, D_opt=d_opt, tokens_per_param=d_opt / n_opt)
    if budget.unique_tokens is not None:
        out["capped"] = d_opt >= budget.unique_tokens * 0.99
    names = tunable_inputs(fit.law)
    if names:
        best, _ = widened_best(fit, at, {k: np.log(draws[f"{k}_opt"].to_numpy())[:, None] for k in names}, seed)
        out = out.assign(**{f"{k}_opt": np.exp(best[k][:, 0]) for k in names})
    return out, calibration


def _optimum_losses(fit: Fit, flops: float, budget: Budget) -> np.ndarray:
    """Per draw, the law's loss at that draw's optimum for ``flops``, with the discrepancy at the median optimum."""
    draws = optimal_allocation(fit, flops, budget)
    at = _points(fit, np.median(draws["N_opt"]), np.median(draws["D_opt"]), budget)
    return with_discrepancy(fit, draws["loss_opt"].to_numpy()[:, None], at, fit.settings["seed"])[:, 0]


def _law_loss(fit: Fit, params: dict, n, d, budget: Budget, with_best: bool = False):
    """The law's loss at (N, D); a law with a tunable input (learning rate) at its best value, per draw.

    ``with_best`` also returns the log best values ({} for a law without tunable inputs).
    """
    law_params = {k: params[k] for k in fit.law.param_names}
    env = {"N": n, "D": d, **({"U": _unique_tokens(d, budget)} if "U" in fit.law.inputs else {})}
    if tunable_inputs(fit.law):
        ranges = {name: search_range(fit.runs, name) for name in tunable_inputs(fit.law)}
        loss, best = profile_loss(fit.law, law_params, env, ranges)
    else:
        with np.errstate(all="ignore"):
            loss, best = fit.law.formula.numpy({**law_params, **env}), {}
    return (loss, best) if with_best else loss


def _loss(fit: Fit, params: dict, log_n: np.ndarray, flops: float, budget: Budget) -> np.ndarray:
    n = 10.0**log_n
    d = budget.tokens_for(n, flops)
    loss = _law_loss(fit, params, n, d, budget)
    if budget.unique_tokens is not None and "U" not in fit.law.inputs:
        loss = np.where(d <= budget.unique_tokens * (1 + 1e-9), loss, np.inf)  # the cap is a hard constraint
    return np.where(np.isfinite(loss), loss, np.inf)


def optimal_allocation(fit: Fit, flops: float, budget: Budget | None = None) -> pd.DataFrame:
    """Per posterior draw: N*, D*, D*/N* and the law's loss at that draw's optimum for budget ``flops`` (no discrepancy)."""
    flops = _check(fit, flops)
    budget = budget or Budget()
    params = flat_draws(fit)
    lo, hi = (
        _LOG_N_RANGE[0],
        min(_LOG_N_RANGE[1], np.log10(flops / 6.0) - 3.0) if budget.cost is None else _LOG_N_RANGE[1],
    )
    if not hi > lo:
        raise BayescaleError(
            f"the budget {flops:g} FLOPs is too small to train any model of at least 1e3 parameters on 1e3 tokens"
        )
    grid = np.linspace(lo, hi, _GRID)
    cols = {k: v[:, None] for k, v in params.items()}
    losses = _loss(fit, cols, grid[None, :], flops, budget)
    if not np.isfinite(losses).any():
        cap = f" with at most {budget.unique_tokens:g} tokens" if budget.unique_tokens else ""
        raise BayescaleError(
            f"no model of 1e3 to 1e16 parameters meets the budget of {flops:g} FLOPs under cost "
            f"{budget.cost_text!r}{cap}: the cost never equals the budget there"
        )
    best = np.argmin(losses, axis=1)
    valid = np.isfinite(losses)
    first_valid, last_valid = valid.argmax(axis=1), _GRID - 1 - valid[:, ::-1].argmax(axis=1)
    at_edge = ((best == 0) | (best == _GRID - 1)) & ~((best == first_valid) & (first_valid > 0))
    if at_edge.mean() > 0.5:
        raise BayescaleError(
            f"for most posterior draws the loss at {flops:g} FLOPs keeps falling towards the edge of "
            "the search range (N from 1e3 to C/6e3): the law has no compute-optimal size there"
        )
    a = grid[np.clip(best - 1, first_valid, last_valid)]
    b = grid[np.clip(best + 1, first_valid, last_valid)]
    if budget.unique_tokens is not None and "U" not in fit.law.inputs:  # the cap can bind between grid points
        boundary = budget.size_for_tokens(budget.unique_tokens, flops)
        if np.isfinite(boundary):
            a = np.where(best == first_valid, np.maximum(boundary, lo), a)
    for _ in range(60):  # golden-section search, all draws at once
        c = b - _GOLDEN * (b - a)
        d = a + _GOLDEN * (b - a)
        left = _loss(fit, params, c, flops, budget) < _loss(fit, params, d, flops, budget)
        b = np.where(left, d, b)
        a = np.where(left, a, c)
    log_n = (a + b) / 2
    n_opt = 10.0**log_n
    d_opt = budget.tokens_for(n_opt, flops)
    capped = np.zeros(len(n_opt), bool) if budget.unique_tokens is None else d_opt >= budget.unique_tokens * 0.99
    loss_opt, best = _law_loss(fit, params, n_opt, d_opt, budget, with_best=True)
    return pd.DataFrame(
        {
            "N_opt": n_opt,
            "D_opt": d_opt,
            "tokens_per_param": d_opt / n_opt,
            "loss_opt": loss_opt,
            "at_edge": at_edge,
            "capped": capped,
            **{f"{name}_opt": np.exp(value) for name, value in best.items()},
        }
    )


def chinchilla_closed_form(params: dict, flops: float) -> tuple[np.ndarray, np.ndarray]:
    """N*, D* of E + A/N^alpha + B/D^beta under C = 6ND (Hoffmann et al. 2022, eq. 4)."""
    a, b = params["alpha"], params["beta"]
    g = (a * params["A"] / (b * params["B"])) ** (1.0 / (a + b))
    return g * (flops / 6.0) ** (b / (a + b)), (flops / 6.0) ** (a / (a + b)) / g


def interval(values, ci_prob: float) -> dict[str, float]:
    return {stat: float(value) for stat, value in band(values, ci_prob).items()}


def frontier_exponents(fit: Fit, low: float = 1e21, high: float = 1e25, budget: Budget | None = None) -> pd.DataFrame:
    """Per draw, the exponents a and b of N* ~ C^a and D* ~ C^b between two budgets."""
    lo, hi = optimal_allocation(fit, low, budget), optimal_allocation(fit, high, budget)
    span = np.log(high / low)
    return pd.DataFrame({"a": np.log(hi["N_opt"] / lo["N_opt"]) / span, "b": np.log(hi["D_opt"] / lo["D_opt"]) / span})


def frontier(
    fit: Fit, budgets: Iterable[float], ci_prob: float = defaults.CI_PROB, budget: Budget | None = None
) -> pd.DataFrame:
    """N*, D*, D*/N* and L* against compute: one row per budget with median and interval columns.

    Parameters
    ----------
    fit : Fit
        A fit of a law in N and D (it may also take ``U`` and a tunable ``lr`` or ``batch``), not pooled.
    budgets : iterable of float
        The compute budgets in FLOPs, each positive and finite; the rows follow their order.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed intervals (:data:`bayescale.defaults.CI_PROB`).
    budget : Budget, optional
        The cost formula and unique-token cap (:meth:`Budget.make`); default C = 6ND without a cap.

    Returns
    -------
    pandas.DataFrame
        Column ``flops``, then ``<q>_median``, ``<q>_lower`` and ``<q>_upper`` for each ``<q>`` of
        ``N_opt``, ``D_opt``, ``tokens_per_param`` (over the posterior draws, with the decision discrepancy beyond the runs)
        and ``loss_opt`` (``predict``'s credible band at the median N*, D*: the parameters and the
        extrapolation discrepancy). ``attrs["ci_prob"]`` holds the interval mass, ``attrs["band_includes"]``
        what each band includes (``allocation``, ``credible``).

    Raises
    ------
    BayescaleError
        If the law cannot be planned with, ``ci_prob`` or a budget is invalid, or at a budget no
        compute-optimal size exists in the search range (N from 1e3 to 1e16).
    """
    ci_prob = check_ci_prob(ci_prob)
    budget = budget or Budget()
    rows = []
    for flops in budgets:
        draws, _ = widened_allocation(fit, optimal_allocation(fit, flops, budget), flops, budget)
        row = {"flops": float(flops)}
        for key in ("N_opt", "D_opt", "tokens_per_param"):
            for stat, value in interval(draws[key], ci_prob).items():
                row[f"{key}_{stat}"] = value
        rows.append(row)
    table = pd.DataFrame(rows)
    if rows:
        forecast = fit.predict(_points(fit, table["N_opt_median"], table["D_opt_median"], budget), ci_prob=ci_prob)
        for stat in ("median", "lower", "upper"):
            table[f"loss_opt_{stat}"] = forecast[stat].to_numpy()
    table.attrs["ci_prob"] = ci_prob
    table.attrs["band_includes"] = includes(fit)
    return table


def _loss_at(fit: Fit, n, d, budget: Budget) -> np.ndarray:
    """The law's loss for every draw (rows) at the points (columns)."""
    params = {k: v[:, None] for k, v in flat_draws(fit).items()}
    return _law_loss(fit, params, np.asarray(n, float)[None, :], np.asarray(d, float)[None, :], budget)


def candidates(
    fit: Fit,
    configs: pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    ci_prob: float = defaults.CI_PROB,
    budget: Budget | None = None,
    flops: float | None = None,
) -> pd.DataFrame:
    """Score (N, D) options: expected loss and interval, P(best of the list), and regret.

    ``loss_median``/``loss_lower``/``loss_upper`` (the law) and ``pred_lower``/``pred_upper`` (a
    run) are exactly what :func:`bayescale.forecast.predict.predict` gives there, extrapolation discrepancy
    included, with ``extrapolation`` and ``C_vs_max`` saying how far it lies beyond the runs.
    ``expected_loss``, ``p_best`` and the regrets compare the options draw by draw: the law per
    draw with the discrepancy draw ``predict`` uses. ``regret_vs_best`` is the expected excess loss over the best option of the list
    in the same draw; ``regret_vs_optimum`` the expected excess over the compute-optimal allocation
    at the option's own cost (NaN for an option that needs more than the unique-token cap, which
    ``feasible`` marks). With ``flops`` (the budget), ``over_budget`` marks options that cost more.

    Parameters
    ----------
    fit : Fit
        A fit of a law in N and D (it may also take ``U`` and a tunable ``lr`` or ``batch``), not pooled.
    configs : pandas.DataFrame, list of dict or dict of lists
        The options, anything :class:`pandas.DataFrame` accepts, with positive columns ``N`` (parameters)
        and ``D`` (training tokens); other columns are ignored.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed intervals (:data:`bayescale.defaults.CI_PROB`).
    budget : Budget, optional
        The cost formula (for ``C``) and unique-token cap (:meth:`Budget.make`); default C = 6ND, no cap.
    flops : float, optional
        A compute budget in FLOPs; adds the ``over_budget`` column.

    Returns
    -------
    pandas.DataFrame
        One row per option, in order: ``N``, ``D``, ``C`` (its cost in FLOPs), ``expected_loss`` (posterior
        mean of the law's loss), ``<t>_opt`` per tunable input (median best value), ``loss_median``,
        ``loss_lower``, ``loss_upper``, ``pred_lower``, ``pred_upper``, ``extrapolation``, ``C_vs_max``,
        ``over_budget`` (only with ``flops``), ``p_best``, ``regret_vs_best``, ``feasible`` and
        ``regret_vs_optimum``, as described above. ``attrs["ci_prob"]`` holds the interval mass and
        ``attrs["band_includes"]`` what each band includes (``credible``, ``predictive``).

    Raises
    ------
    BayescaleError
        If the law cannot be planned with, ``configs`` is empty or lacks positive ``N`` and ``D``, or
        ``ci_prob`` is invalid.
    """
    ci_prob = check_ci_prob(ci_prob)
    _check_law(fit)
    budget = budget or Budget()
    table = pd.DataFrame(configs).reset_index(drop=True)
    for col in ("N", "D"):
        if col not in table.columns:
            raise BayescaleError(
                f"candidate configurations need columns N and D, got {column_list(table.columns, ['N', 'D'])}"
            )
        bad = table.index[~(pd.to_numeric(table[col], errors="coerce") > 0)]
        if len(bad):
            raise BayescaleError(f"candidate {col} must be positive numbers; {row_numbers(bad)} are not")
    if len(table) < 1:
        raise BayescaleError("give at least one candidate configuration")
    out = table[["N", "D"]].astype(float).copy()
    points = _points(fit, out["N"], out["D"], budget)
    losses = with_discrepancy(fit, _loss_at(fit, out["N"], out["D"], budget), points, fit.settings["seed"])
    best = np.argmin(losses, axis=1)
    out["C"] = budget.cost_of(out["N"].to_numpy(), out["D"].to_numpy())
    out["expected_loss"] = losses.mean(axis=0)
    forecast = fit.predict(points, ci_prob=ci_prob)
    for name in tunable_inputs(fit.law):
        out[f"{name}_opt"] = points[name].to_numpy()
    for stat in ("median", "lower", "upper"):
        out[f"loss_{stat}"] = forecast[stat].to_numpy()
    for col in ("pred_lower", "pred_upper", "extrapolation", "C_vs_max"):
        if col in forecast.columns:
            out[col] = forecast[col].to_numpy()
    if flops is not None:
        out["over_budget"] = out["C"] > flops * (1 + 1e-9)
    out["p_best"] = [float(np.mean(best == i)) for i in range(len(out))]
    out["regret_vs_best"] = (losses - losses.min(axis=1, keepdims=True)).mean(axis=0)
    if budget.unique_tokens is not None and "U" not in fit.law.inputs:  # the cap is a hard constraint
        out["feasible"] = out["D"] <= budget.unique_tokens * (1 + 1e-9)
    else:
        out["feasible"] = True
    out["regret_vs_optimum"] = [
        float(np.mean(losses[:, i] - _optimum_losses(fit, c, budget))) if feasible else np.nan
        for i, (c, feasible) in enumerate(zip(out["C"], out["feasible"]))
    ]
    out.attrs["ci_prob"] = ci_prob
    out.attrs["band_includes"] = band_includes(fit)
    return out


def marginal_value(
    fit: Fit, n: float, d: float, ci_prob: float = defaults.CI_PROB, budget: Budget | None = None
) -> dict:
    """At (N, D): the loss drop from doubling N, from doubling D, and from 10x and 100x compute on the frontier.

    Parameters
    ----------
    fit : Fit
        A fit of a law in N and D (it may also take ``U`` and a tunable ``lr`` or ``batch``), not pooled.
    n : float
        Model size N (parameters), positive and finite.
    d : float
        Training tokens D, positive and finite.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed intervals (:data:`bayescale.defaults.CI_PROB`).
    budget : Budget, optional
        The cost formula and unique-token cap (:meth:`Budget.make`); default C = 6ND without a cap.

    Returns
    -------
    dict
        ``N``, ``D``, ``flops`` (the cost of (N, D)) and ``ci_prob`` as floats; then intervals over the
        draws, each a dict with keys ``median``, ``lower`` and ``upper``: ``loss`` (``predict``'s credible
        band at (N, D)), ``drop_double_N`` and ``drop_double_D`` (loss at (N, D) minus at (2N, D) or (N, 2D)),
        ``drop_10x_compute`` (optimal loss at ``flops`` minus at 10x ``flops``),
        ``drop_next_10x_compute`` (10x to 100x) and ``diminishing_ratio`` (the second drop over the
        first, draw by draw); ``p_double_N_better``, the share of draws where doubling N gains more; and
        ``band_includes`` (``credible``: what every band here includes). The drops compare the law's losses
        draw by draw with the discrepancy draw ``predict`` uses (at the median optimum on the frontier).

    Raises
    ------
    BayescaleError
        If the law cannot be planned with, ``n``, ``d`` or ``ci_prob`` is invalid, or no
        compute-optimal size exists at one of the three budgets.
    """
    ci_prob = check_ci_prob(ci_prob)
    _check_law(fit)
    budget = budget or Budget()
    for name, value in (("N", n), ("D", d)):
        if not (np.isfinite(value) and value > 0):
            raise BayescaleError(f"{name} must be a positive, finite number, got {value!r}")
    here = _points(fit, [n, 2 * n, n], [d, d, 2 * d], budget)
    losses = with_discrepancy(fit, _loss_at(fit, here["N"], here["D"], budget), here, fit.settings["seed"])
    drop_n, drop_d = losses[:, 0] - losses[:, 1], losses[:, 0] - losses[:, 2]
    flops = float(budget.cost_of(n, d))
    frontier_losses = [_optimum_losses(fit, flops * k, budget) for k in (1, 10, 100)]
    drop_10 = frontier_losses[0] - frontier_losses[1]
    drop_100 = frontier_losses[1] - frontier_losses[2]
    return {
        "N": float(n),
        "D": float(d),
        "flops": flops,
        "ci_prob": ci_prob,
        "loss": {k: float(v) for k, v in fit.predict(here.iloc[:1], ci_prob=ci_prob).iloc[0][list(_STATS)].items()},
        "drop_double_N": interval(drop_n, ci_prob),
        "drop_double_D": interval(drop_d, ci_prob),
        "p_double_N_better": float(np.mean(drop_n > drop_d)),
        "drop_10x_compute": interval(drop_10, ci_prob),
        "drop_next_10x_compute": interval(drop_100, ci_prob),
        "diminishing_ratio": interval(drop_100 / drop_10, ci_prob),
        "band_includes": {"credible": band_includes(fit)["credible"]},
    }


def plan(
    fit: Fit,
    flops: float,
    ci_prob: float = defaults.CI_PROB,
    *,
    cost: str | None = None,
    unique_tokens: float | None = None,
) -> dict:
    """Median and equal-tailed interval of N*, D*, D*/N* and the loss at the optimum.

    N*, D*, D*/N* (and a best learning rate or batch size) are over the posterior draws, with the
    decision discrepancy beyond the runs (:func:`widened_allocation`). ``loss_opt`` is ``predict``'s credible band at the median N*, D* (tuned), the
    parameters and the extrapolation discrepancy, and ``run_at_plan`` a run's predictive band there,
    also as ``predict`` gives it; ``band_includes`` says so. ``flops_vs_largest_run`` says how far the
    budget lies beyond the runs the fit saw.

    Parameters
    ----------
    fit : Fit
        A fit of a law in N and D (it may also take ``U`` and a tunable ``lr`` or ``batch``), not pooled.
    flops : float
        The compute budget in FLOPs, positive and finite.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed intervals (:data:`bayescale.defaults.CI_PROB`).
    cost : str, optional
        Training cost in FLOPs as a formula in ``N`` and ``D`` (such as ``"6*N*D + 1e12*D"``), which must
        be positive and grow with D; default ``"6*N*D"``.
    unique_tokens : float, optional
        Cap on unique training tokens: a law with input ``U`` is evaluated at U = min(cap, D); for
        other laws D <= cap is a constraint. Default: no cap.

    Returns
    -------
    dict
        ``flops``, ``ci_prob`` and ``flops_vs_largest_run`` (the budget over the largest run's cost) as
        floats; ``N_opt``, ``D_opt``, ``tokens_per_param``, ``loss_opt`` and ``<t>_opt`` per tunable
        input, each a dict with keys ``median``, ``lower`` and ``upper``; ``run_at_plan``, a dict of
        ``N``, ``D``, the tuned inputs, ``median``, ``pred_lower``, ``pred_upper`` and ``extrapolation``;
        ``band_includes``, what the bands of ``allocation`` (N*, D*, D*/N*, ``<t>_opt``), ``credible``
        (``loss_opt``) and ``predictive`` (``run_at_plan``) include, in the words ``"parameters"``,
        ``"extrapolation discrepancy"`` and ``"noise"``; ``allocation_calibration``, what carries the
        allocation's discrepancy (``source``: "internal splits", "prior only" or "none"; ``cells``;
        ``tau_median``, ``tau_lower``, ``tau_upper``; ``distance``, the optimum's e-folds beyond the runs).
        With ``cost``: ``cost`` (the formula). With ``unique_tokens``: ``unique_tokens``,
        ``p_data_limited`` (share of draws whose D* reaches the cap, within 1%) and
        ``data_constraint`` (how the cap entered).

    Raises
    ------
    BayescaleError
        If the law cannot be planned with, an argument is invalid, or no compute-optimal size exists
        in the search range (N from 1e3 to 1e16).
    """
    ci_prob = check_ci_prob(ci_prob)
    budget = Budget.make(cost, unique_tokens)
    draws, calibration = widened_allocation(fit, optimal_allocation(fit, flops, budget), flops, budget)
    out: dict[str, Any] = {
        "flops": float(flops),
        "ci_prob": ci_prob,
        "flops_vs_largest_run": float(flops / np.max(budget.cost_of(fit.runs["N"], fit.runs["D"]))),
    }
    for key in ("N_opt", "D_opt", "tokens_per_param"):
        out[key] = interval(draws[key], ci_prob)
    forecast = fit.predict(_points(fit, out["N_opt"]["median"], out["D_opt"]["median"], budget), ci_prob=ci_prob)
    forecast = forecast.iloc[0]
    out["loss_opt"] = {stat: float(forecast[stat]) for stat in _STATS}
    for name in tunable_inputs(fit.law):  # the best value per draw at that draw's optimum
        out[f"{name}_opt"] = interval(draws[f"{name}_opt"], ci_prob)
    out["run_at_plan"] = {
        k: float(forecast[k])
        for k in ("N", "D", *tunable_inputs(fit.law), "median", "pred_lower", "pred_upper", "extrapolation")
    }
    if cost is not None:
        out["cost"] = budget.cost_text
    if unique_tokens is not None:
        out["unique_tokens"] = float(unique_tokens)
        out["p_data_limited"] = float(draws["capped"].mean())
        out["data_constraint"] = "law (repetition-aware)" if "U" in fit.law.inputs else "D <= unique tokens"
    out["band_includes"] = includes(fit)
    out["allocation_calibration"] = calibration
    return out
