"""Ways of choosing the next batch of runs that :func:`bayescale.design_replay` compares with ``bayes``.

``random`` (a random order), ``cheapest`` (the cheapest first), ``inverse-cost`` (random, each run drawn
with probability proportional to 1/cost) and ``d-optimal`` (greedy D-optimal design on the point fit:
each pick adds the most log det of the Fisher information of the law's parameters per unit cost, the
information taken at the posterior median). Each takes only runs the money left can pay for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayescale.fitting.result import Fit
from bayescale.forecast.predict import flat_draws, law_mean, params_at

#: slack so that a run costing exactly the money left is affordable despite rounding
_SLACK = 1 + 1e-12


def random_batch(rng, costs: np.ndarray, available: np.ndarray, money: float, batch: int) -> list[int]:
    """Up to ``batch`` runs in a random order, each taken if the money left pays for it."""
    return _in_order(rng.permutation(np.flatnonzero(available)), costs, money, batch)


def cheapest_batch(costs: np.ndarray, available: np.ndarray, money: float, batch: int) -> list[int]:
    """Up to ``batch`` of the cheapest available runs the money pays for (ties by row order)."""
    order = np.flatnonzero(available)
    return _in_order(order[np.argsort(costs[order], kind="stable")], costs, money, batch)


def inverse_cost_batch(rng, costs: np.ndarray, available: np.ndarray, money: float, batch: int) -> list[int]:
    """Up to ``batch`` runs drawn without replacement with probability proportional to 1/cost."""
    picked: list[int] = []
    left = available.copy()
    while len(picked) < batch:
        affordable = np.flatnonzero(left & (costs <= money * _SLACK))
        if not len(affordable):
            break
        weights = 1.0 / costs[affordable]
        i = int(rng.choice(affordable, p=weights / weights.sum()))
        picked.append(i)
        left[i] = False
        money -= costs[i]
    return picked


def _in_order(order, costs: np.ndarray, money: float, batch: int) -> list[int]:
    picked: list[int] = []
    for i in order:
        if len(picked) == batch:
            break
        if costs[i] <= money * _SLACK:
            picked.append(int(i))
            money -= costs[i]
    return picked


def law_jacobian(fit: Fit, table: pd.DataFrame, step: float = 1e-5) -> np.ndarray:
    """d y / d log|theta| at the posterior median (y: log L, or L on a raw-scale law), one row per point, one column per parameter.

    Central finite differences on the law as the forecasts evaluate it (:func:`bayescale.forecast.predict.law_mean`);
    pooled parameters (which differ by group) are held at their groups' medians and left out. Scaling each
    column by |theta| makes the step relative; it shifts log det of the information by a constant only.
    """
    point = {n: np.median(v, axis=0, keepdims=True) for n, v in flat_draws(fit).items()}
    names = [n for n in fit.law.param_names if n not in fit.spec.pooled]

    def log_l(params: dict) -> np.ndarray:
        return law_mean(fit, params_at(fit, params, table, np.random.default_rng(0)), table)[0]

    columns = []
    for name in names:
        value = float(point[name][0])
        h = step * max(abs(value), 1e-8)
        up = log_l({**point, name: point[name] + h})
        down = log_l({**point, name: point[name] - h})
        columns.append((up - down) / (2 * h) * max(abs(value), 1e-8))
    return np.column_stack(columns) if columns else np.zeros((len(table), 0))


def d_optimal_batch(
    fit: Fit,
    table: pd.DataFrame,
    costs: np.ndarray,
    chosen: list[int],
    available: np.ndarray,
    money: float,
    batch: int,
) -> list[int]:
    """Greedy D-optimal batch: each pick maximises the gain in log det of the information per unit cost.

    The information of the runs ``chosen`` so far (rows of ``table``) is J'J with J from :func:`law_jacobian`
    (a Gaussian likelihood on the fit's observation scale, log-loss or the raw loss, with one noise scale, which divides out); adding run j raises its log det
    by log(1 + j' I^-1 j). A tiny ridge keeps I invertible when the runs so far cannot pin every parameter.
    """
    jac = law_jacobian(fit, table)
    if not jac.shape[1]:
        return cheapest_batch(costs, available, money, batch)
    finite = np.isfinite(jac).all(axis=1)
    jac = np.where(finite[:, None], jac, 0.0)
    info = jac[chosen].T @ jac[chosen]
    info += np.eye(len(info)) * 1e-9 * max(np.trace(info) / len(info), 1e-12)
    left = available & finite
    picked: list[int] = []
    while len(picked) < batch:
        affordable = np.flatnonzero(left & (costs <= money * _SLACK))
        if not len(affordable):
            break
        rows = jac[affordable]
        gain = np.log1p(np.einsum("ij,ij->i", rows @ np.linalg.pinv(info), rows)) / costs[affordable]
        i = int(affordable[int(np.argmax(gain))])
        picked.append(i)
        left[i] = False
        money -= costs[i]
        info += np.outer(jac[i], jac[i])
    return picked
