"""Judge a way of choosing runs on a finished sweep: replay it, revealing each chosen run's real loss.

Start from the cheapest runs of a pool, choose runs a batch at a time (by :func:`bayescale.design`,
``bayes``, or another strategy of :mod:`bayescale.evaluation.design_strategies`), reveal their losses
from the table, refit, and at each share of the pool's cost score the forecast of held-out target runs: R2 of the median (as ScaleBench computes it:
1 - SS_res / SS_tot on the loss, clipped to [-1, 1]), the share of targets inside the 90%
predictive band, the median |relative error| and the band's mean half-width.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.runs import CANONICAL, load_runs
from bayescale.errors import BayescaleError
from bayescale.evaluation.design_strategies import cheapest_batch, d_optimal_batch, inverse_cost_batch, random_batch
from bayescale.fitting.pipeline import fit as fit_law
from bayescale.forecast.design import candidate_costs, design
from bayescale.forecast.predict import predict
from bayescale.laws.card import get_law
from bayescale.laws.formula import Formula

#: every way of choosing runs the replay knows, ``bayes`` first (the default order)
STRATEGIES = ("bayes", "random", "cheapest", "inverse-cost", "d-optimal")


def r_squared(actual: np.ndarray, predicted: np.ndarray) -> float:
    """1 - SS_res / SS_tot clipped to [-1, 1] (ScaleBench's ``metrics.r_squared``)."""
    actual, predicted = np.asarray(actual, float).ravel(), np.asarray(predicted, float).ravel()
    ss_res, ss_tot = np.sum((actual - predicted) ** 2), np.sum((actual - actual.mean()) ** 2)
    r2 = (1.0 if ss_res < 1e-30 else -1.0) if ss_tot < 1e-30 else 1.0 - ss_res / ss_tot
    return float(np.clip(r2, -1.0, 1.0))


def target_forecast(fit, targets: pd.DataFrame, ci_prob: float = defaults.CI_PROB) -> dict[str, np.ndarray]:
    """The targets' losses (``actual``) and the fit's forecast at them: ``median``, ``lower``, ``upper`` (the band)."""
    forecast = predict(fit, targets[list(fit.law.inputs)], ci_prob=ci_prob)
    return {
        "actual": targets["loss"].to_numpy(dtype=float),
        "median": forecast["median"].to_numpy(),
        "lower": forecast["pred_lower"].to_numpy(),
        "upper": forecast["pred_upper"].to_numpy(),
    }


def score_forecast(forecast: Mapping[str, np.ndarray], ci_prob: float = defaults.CI_PROB) -> dict[str, Any]:
    """R2, coverage of the band, median |relative error| and mean half-width of a :func:`target_forecast`.

    Forecasts of several fits (ScaleBench's groups, each fitted alone) may be concatenated first: ScaleBench's
    runner scores a task by one R2 over all its groups' targets (``runner._evaluate_global``).
    """
    actual, median = np.asarray(forecast["actual"], float), np.asarray(forecast["median"], float)
    lower, upper = np.asarray(forecast["lower"], float), np.asarray(forecast["upper"], float)
    return {
        "r2": r_squared(actual, median),
        "coverage": {str(ci_prob): float(np.mean((actual >= lower) & (actual <= upper)))},
        "median_abs_rel_error": float(np.median(np.abs(median - actual) / np.abs(actual))),
        "mean_halfwidth": float(np.mean((upper - lower) / 2)),
        "mean_rel_halfwidth": float(np.mean((upper - lower) / 2 / np.abs(median))),
    }


def score(fit, targets: pd.DataFrame, ci_prob: float = defaults.CI_PROB) -> dict[str, Any]:
    """R2, coverage of the predictive band, median |relative error| and mean half-width at the target runs."""
    return score_forecast(target_forecast(fit, targets, ci_prob), ci_prob)


def design_replay(
    pool,
    targets,
    law: str = "chinchilla",
    *,
    shares: Iterable[float] = (0.01, 0.05, 0.1),
    strategies: Iterable[str] = STRATEGIES,
    start: int | None = None,
    repeats: int = 1,
    batch: int = 4,
    cost: str = "6*N*D",
    ci_prob: float = defaults.CI_PROB,
    seed: int = 0,
    fit_options: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    columns: Mapping[str, str] | None = None,
    where: str | None = None,
) -> dict[str, Any]:
    """Replay choosing runs from ``pool`` and score the forecast of ``targets`` at shares of the pool's cost.

    Parameters
    ----------
    pool : str, pathlib.Path, pandas.DataFrame or Runs
        The runs one could have trained, with their real losses: the law's inputs (its own, such as
        ``parallel_size``, too) and the columns the cost formula names are kept.
    targets : str, pathlib.Path, pandas.DataFrame or Runs
        The target runs to forecast, with their real losses.
    law : str, default "chinchilla"
        The law fitted at every step.
    shares : iterable of float, default (0.01, 0.05, 0.1)
        Shares of the whole pool's cost at which to score, each in (0, 1].
    strategies : iterable of str, default all of them
        ``bayes`` (:func:`bayescale.design` on the fit so far, the targets' points as its targets),
        ``random`` (a random order, each run taken if affordable), ``cheapest`` (cheapest first),
        ``inverse-cost`` (random with probability proportional to 1/cost) and ``d-optimal`` (greedy, the most
        log det of the Fisher information of the law's parameters at the posterior median per unit cost);
        see :mod:`bayescale.evaluation.design_strategies`.
    start : int, optional
        Begin with this many of the cheapest runs; default: the fewest a fit takes (one more than the
        model's parameters).
    repeats : int, default 1
        Replays per strategy, each with its own seed; the scores are averaged.
    batch : int, default 4
        Runs chosen between two fits.
    cost : str, default "6*N*D"
        The cost formula in the pool's columns.
    ci_prob : float, default 0.9
        Probability mass of the predictive band scored.
    seed : int, default 0
        Seed of the fits, the random order and the design's simulated outcomes.
    fit_options : mapping, optional
        Further :func:`bayescale.fit` options.
    progress : callable, optional
        Called with a line of text after each fit.
    columns : mapping, optional
        Canonical or law input name -> the tables' name (as :func:`bayescale.load_runs` takes it).
    where : str, optional
        A row filter applied to the pool and the targets (:func:`bayescale.load_runs`).

    Returns
    -------
    dict
        ``strategies``: one record per strategy with ``strategy`` and ``budgets`` (per share: ``share``,
        ``spent`` (as a share of the pool's cost), ``runs``, ``r2``, ``coverage`` ({"0.9": ...}),
        ``median_abs_rel_error``, ``mean_halfwidth``, ``mean_rel_halfwidth``, each averaged over repeats,
        and ``repeats``, the per-repeat records, each with its ``forecast`` (the targets' ``actual``,
        ``median``, ``lower``, ``upper``: several groups' concatenated score together by :func:`score_forecast`);
        ``chosen``: per repeat, the pool's rows (from 0) in the order taken, the starting runs first);
        ``all_of_pool``: the same scores (and ``forecast``) for a fit on the whole pool;
        ``pool_runs``, ``target_runs``, ``pool_cost``, ``cost_formula``, ``start_runs``, ``inputs`` (the law's)
        and ``points`` (``pool`` and ``targets``: each input's values, what the replay's figure draws).
    """
    shares = sorted(float(s) for s in shares)
    if not shares or not all(0 < s <= 1 for s in shares):
        raise BayescaleError(f"budget shares must lie in (0, 1], got {shares}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise BayescaleError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    inputs, scale = get_law(law).inputs, get_law(law).scale
    priced = [name for name in Formula(cost).names if name not in (*CANONICAL, *inputs)]  # the cost's own columns
    pool_frame = load_runs(pool, columns, extra_inputs=inputs, keep=priced, where=where, scale=scale).frame
    target_frame = load_runs(targets, columns, extra_inputs=inputs, where=where, scale=scale).frame
    pool_frame, target_frame = pool_frame.reset_index(drop=True), target_frame.reset_index(drop=True)
    options = {"progressbar": False, **(fit_options or {})}
    costs = candidate_costs(pool_frame, cost)
    total = float(costs.sum())
    say = progress or (lambda line: None)

    def fitted(rows: list[int], tag: str, repeat_seed: int):
        result = fit_law(pool_frame.iloc[sorted(rows)], law, seed=repeat_seed, **options)
        say(f"{tag}: fitted {len(rows)} runs ({costs[rows].sum() / total:.2%} of the pool's cost)")
        return result

    whole = fitted(list(range(len(pool_frame))), "all of the pool", seed)
    n_start = start if start is not None else len(whole.spec.names) + 1  # the fewest a fit takes
    cheapest = [int(i) for i in np.argsort(costs, kind="stable")[:n_start]]
    out = []
    for strategy in strategies:
        runs, picks = [], []
        for repeat in range(repeats):
            repeat_seed = seed + 1000 * repeat
            rng = np.random.default_rng([repeat_seed, 43])
            chosen = list(cheapest)
            available = np.ones(len(pool_frame), bool)
            available[chosen] = False
            current, records = None, []
            for share in shares:
                while True:
                    current = current or fitted(chosen, f"{strategy} #{repeat + 1}", repeat_seed)
                    money = share * total - costs[chosen].sum()
                    affordable = available & (costs <= money * (1 + 1e-12))
                    if not affordable.any():
                        break
                    if strategy == "bayes":
                        candidates = pool_frame[affordable].reset_index()
                        picked = design(
                            current,
                            candidates,
                            target_frame[list(current.law.inputs)],
                            money,
                            cost,
                            batch,
                            seed=repeat_seed,
                        ).chosen
                        new = [int(candidates["index"].iloc[int(r) - 1]) for r in picked["row"]] if len(picked) else []
                    elif strategy == "d-optimal":
                        new = d_optimal_batch(current, pool_frame, costs, chosen, available, money, batch)
                    elif strategy == "cheapest":
                        new = cheapest_batch(costs, available, money, batch)
                    elif strategy == "inverse-cost":
                        new = inverse_cost_batch(rng, costs, available, money, batch)
                    else:
                        new = random_batch(rng, costs, available, money, batch)
                    if not new:  # bayes: no affordable run is expected to narrow the targets' band; spend no more here
                        break
                    chosen += new
                    available[new] = False
                    current = None
                current = current or fitted(chosen, f"{strategy} #{repeat + 1}", repeat_seed)
                forecast = target_forecast(current, target_frame, ci_prob)
                records.append(
                    {
                        "share": share,
                        "spent": float(costs[chosen].sum() / total),
                        "runs": len(chosen),
                        **score_forecast(forecast, ci_prob),
                        "forecast": {k: v.tolist() for k, v in forecast.items()},
                    }
                )
            runs.append(records)
            picks.append(chosen)
        out.append({"strategy": strategy, "budgets": _averaged(runs, ci_prob), "repeats": runs, "chosen": picks})
    whole_forecast = target_forecast(whole, target_frame, ci_prob)
    return {
        "strategies": out,
        "all_of_pool": {
            "runs": len(pool_frame),
            **score_forecast(whole_forecast, ci_prob),
            "forecast": {k: v.tolist() for k, v in whole_forecast.items()},
        },
        "pool_runs": len(pool_frame),
        "target_runs": len(target_frame),
        "pool_cost": total,
        "cost_formula": cost,
        "start_runs": n_start,
        "inputs": list(whole.law.inputs),
        "points": {  # what the figure draws (bayescale.viz.design_plots), so a saved result can be drawn again
            "pool": pool_frame[list(whole.law.inputs)].to_dict("list"),
            "targets": target_frame[list(whole.law.inputs)].to_dict("list"),
        },
    }


def _averaged(runs: list[list[dict]], ci_prob: float) -> list[dict]:
    """Per share, every score averaged over the repeats (coverage inside its dict)."""
    out = []
    for records in zip(*runs):
        mean: dict[str, Any] = {
            k: float(np.mean([r[k] for r in records])) for k in records[0] if k not in ("coverage", "forecast")
        }
        mean["coverage"] = {str(ci_prob): float(np.mean([r["coverage"][str(ci_prob)] for r in records]))}
        out.append(mean)
    return out
