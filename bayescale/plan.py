"""Compute-optimal allocation: the N and D that minimise the loss for a FLOP budget, per posterior draw.

With C = 6 N D, D = C / (6N) and the loss along the budget is a function of log N alone. For every
draw we locate the minimum on a log grid, then refine it by golden-section search, vectorised over
draws. For the Chinchilla law the closed form (Hoffmann et al. 2022, eq. 4) is available to check it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import defaults
from .errors import BayescaleError
from .predict import check_ci_prob, flat_draws

if TYPE_CHECKING:
    from .fit import Fit

_GRID = 241                 # log-N grid points over the search range
_LOG_N_RANGE = (3.0, 16.0)  # search N between 1e3 and 1e16 parameters
_GOLDEN = (np.sqrt(5) - 1) / 2


def _check(fit: "Fit", flops: float) -> float:
    if not {"N", "D"} <= set(fit.law.inputs):
        raise BayescaleError(f"planning needs a law in N and D; law {fit.law.name!r} has inputs "
                             f"{', '.join(fit.law.inputs)}")
    if fit.spec.pooled:
        raise BayescaleError(f"planning a pooled fit is not supported yet: {', '.join(fit.spec.pooled)} vary by group; "
                             "fit the group you plan for without pooling")
    if isinstance(flops, bool) or not isinstance(flops, (int, float, np.floating)) or not np.isfinite(flops) \
            or flops <= 0:
        raise BayescaleError(f"the compute budget must be a positive, finite number of FLOPs, got {flops!r}")
    return float(flops)


def _loss(fit: "Fit", params: dict, log_n: np.ndarray, flops: float) -> np.ndarray:
    n = 10.0 ** log_n
    env = {**{k: params[k] for k in fit.law.param_names}, "N": n, "D": flops / (6.0 * n)}
    with np.errstate(all="ignore"):
        return fit.law.formula.numpy(env)


def optimal_allocation(fit: "Fit", flops: float) -> pd.DataFrame:
    """Per posterior draw: N*, D*, D*/N* and the loss at the optimum for budget ``flops`` (C = 6ND)."""
    flops = _check(fit, flops)
    params = flat_draws(fit)
    lo, hi = _LOG_N_RANGE[0], min(_LOG_N_RANGE[1], np.log10(flops / 6.0) - 3.0)
    if not hi > lo:
        raise BayescaleError(f"the budget {flops:g} FLOPs is too small to train any model of at least 1e3 "
                             "parameters on 1e3 tokens")
    grid = np.linspace(lo, hi, _GRID)
    cols = {k: v[:, None] for k, v in params.items()}
    losses = _loss(fit, cols, grid[None, :], flops)
    losses = np.where(np.isfinite(losses), losses, np.inf)
    best = np.argmin(losses, axis=1)
    at_edge = (best == 0) | (best == _GRID - 1)
    if at_edge.mean() > 0.5:
        raise BayescaleError(f"for most posterior draws the loss at {flops:g} FLOPs keeps falling towards the edge of "
                             "the search range (N from 1e3 to C/6e3): the law has no compute-optimal size there")
    a = grid[np.clip(best - 1, 0, _GRID - 1)]
    b = grid[np.clip(best + 1, 0, _GRID - 1)]
    a = np.where(best == 0, grid[0], a)
    b = np.where(best == _GRID - 1, grid[-1], b)
    for _ in range(60):  # golden-section search, all draws at once
        c = b - _GOLDEN * (b - a)
        d = a + _GOLDEN * (b - a)
        left = _loss(fit, params, c, flops) < _loss(fit, params, d, flops)
        b = np.where(left, d, b)
        a = np.where(left, a, c)
    log_n = (a + b) / 2
    n_opt = 10.0 ** log_n
    d_opt = flops / (6.0 * n_opt)
    return pd.DataFrame({"N_opt": n_opt, "D_opt": d_opt, "tokens_per_param": d_opt / n_opt,
                         "loss_opt": _loss(fit, params, log_n, flops), "at_edge": at_edge})


def chinchilla_closed_form(params: dict, flops: float) -> tuple[np.ndarray, np.ndarray]:
    """N*, D* of E + A/N^alpha + B/D^beta under C = 6ND (Hoffmann et al. 2022, eq. 4)."""
    a, b = params["alpha"], params["beta"]
    g = (a * params["A"] / (b * params["B"])) ** (1.0 / (a + b))
    return g * (flops / 6.0) ** (b / (a + b)), (flops / 6.0) ** (a / (a + b)) / g


def frontier_exponents(fit: "Fit", low: float = 1e21, high: float = 1e25) -> pd.DataFrame:
    """Per draw, the exponents a and b of N* ~ C^a and D* ~ C^b between two budgets."""
    lo, hi = optimal_allocation(fit, low), optimal_allocation(fit, high)
    span = np.log(high / low)
    return pd.DataFrame({"a": np.log(hi["N_opt"] / lo["N_opt"]) / span,
                         "b": np.log(hi["D_opt"] / lo["D_opt"]) / span})


def plan(fit: "Fit", flops: float, ci_prob: float = defaults.CI_PROB) -> dict:
    """Median and equal-tailed interval of N*, D*, D*/N* and the optimal loss."""
    ci_prob = check_ci_prob(ci_prob)
    draws = optimal_allocation(fit, flops)
    q = [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2]
    out = {"flops": float(flops), "ci_prob": ci_prob}
    for key in ("N_opt", "D_opt", "tokens_per_param", "loss_opt"):
        lower, median, upper = np.quantile(draws[key], q)
        out[key] = {"median": float(median), "lower": float(lower), "upper": float(upper)}
    return out
