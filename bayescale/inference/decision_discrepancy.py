"""Honest bands for decisions: the extrapolation discrepancy of the best value of a tunable input (lr*, batch*).

The loss discrepancy (:mod:`bayescale.inference.discrepancy`) is one shift of the log-loss per draw,
the same at every value of a tunable input, so it cannot move an argmin: with it alone the band of
the best learning rate carries the law's parameters only, and beyond the data that is far too
narrow (misfitting runs, issue #36: the 1.2B model's lr* 4.4e-4 [4.0e-4, 5.0e-4] where 1e-3 was
the best rate tried). So the log best value gets its own discrepancy,

    log t*(x) = log t*_law(x; theta) + d(x) * tau * z,   z ~ Normal(0, 1) per draw and tunable,

with d(x) the loss discrepancy's distance beyond the observed box, the tunable inputs left out (the
best value must not move its own distance), and tau the sd of the log best value's error per
e-fold of extrapolation. tau is learned from the fit's own internal leave-future-out splits (the
ones the loss discrepancy calibrates on; no refits of its own): in each, every held-out cell (same
values of the law's other inputs) that tried at least :data:`MIN_VALUES` values of the tunable gives
the split's forecast of its log best value (median over the split's Laplace draws) and the cell's
observed optimum (:func:`observed_optimum`). Cells of one split share z, as the runs of a sweep
share the loss discrepancy's, so their errors are jointly distributed given tau; a cell whose best
tried value is at an edge of its values says only that the optimum lies beyond (censored), and
the likelihood integrates the shared z on a grid (:func:`tau_log_likelihood`).

The compute-optimal size N* of a budget (``plan``) gets the same treatment with its own tau
(``allocation_tau``): a held-out IsoFLOP cell (runs of one budget, :func:`budget_cells`) that
tried at least :data:`MIN_VALUES` sizes gives the split's forecast of its log N*, the minimum of the
law along the cell's own line in (log N, log D), and the cell's observed optimum (the vertex of a
parabola through its runs, Hoffmann et al. 2022's Approach 2: :func:`isoflop_optimum`). The law's
form can miss the optima inside the runs too, so log N* also errs by omega (``allocation_omega``,
one z per draw, :func:`draw_omega`), learned from the fit's own budgets. D* follows from N* and the
budget, so both carry it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from bayescale.data.runs import Runs, is_curves
from bayescale.data.tunable import tunable_inputs
from bayescale.inference.discrepancy import ALLOCATION, draw_kappa, kappa_log_likelihood
from bayescale.inference.distance import axis_values, decision_ranges, distance, observed_ranges
from bayescale.inference.optimum import best_values, evaluate, minimise, search_range
from bayescale.laws.priors import Prior

if TYPE_CHECKING:
    from bayescale.laws.card import Law

#: runs within this much (natural log) of one budget's compute share an IsoFLOP cell: Epoch's digitised
#: Chinchilla budgets scatter by about 0.08 around each budget (1e19: 10^18.94 to 10^19.01), whose steps
#: are 0.5 and more
BUDGET_TOLERANCE = 0.1
#: the least standard error of a cell's observed log N*: Approach 2's parabola is biased on an asymmetric
#: profile, by 0.033 at the Chinchilla truth with sizes 1/8-8x the optimum (synthetic sweep, no noise),
#: where its residuals leave almost no scatter
MIN_OPTIMUM_SD = 0.04
#: a cell's optimum is sought this far (natural log of N) beyond its smallest and largest sizes
SEARCH_MARGIN = 2.0
#: prior of tau, the sd of the log best value's error per e-fold of extrapolation. Not fitted across
#: datasets (of the benchmark's datasets only the misfitting runs tried several learning rates per cell,
#: and they are the test), so a judgement: centred on 0.1, a rate off by a factor 2 (one step of the usual
#: grids, log 2 = 0.69) after 7 e-folds (a 1000x larger run); sd 1.0, a factor 2.7 either way, so a fit's
#: internal cells move it (on the misfitting runs below 5e8 parameters, 36 cells: median 0.19,
#: benchmarks/README.md, "tune_misfitting.py")
TAU_PRIOR = Prior("LogNormal", mu=float(np.log(0.1)), sigma=1.0)
#: prior of the allocation's tau (log N* per e-fold), also a judgement, from the field's disagreements:
#: Hoffmann et al. (2022)'s three approaches, fitted on the same runs up to about 3e21 FLOPs, put N* at
#: Gopher's budget (5.76e23, some 5 e-folds beyond) between about 40B and 67B parameters (log 0.5 apart:
#: about 0.1 per e-fold, the median); Kaplan et al. (2020)'s allocation gave Gopher 280B, log 1.4 from
#: Chinchilla's 70B (0.2-0.3 per e-fold, a different method: the 95% point, 0.27). Without IsoFLOP cells
#: the prior alone sets the band, so it is narrower than the tunables' (at sigma 1.0 the 90% band of N*
#: at 200x the runs spanned a factor 450 on the synthetic sweep; at 0.6, 59 where the parameters alone give 16)
ALLOCATION_TAU_PRIOR = Prior("LogNormal", mu=float(np.log(0.1)), sigma=0.6)
#: where tau's posterior is evaluated (log-spaced)
TAU_GRID = np.geomspace(1e-3, 3.0, 401)
#: a held-out cell calibrates tau only if it tried at least this many distinct values of the tunable
MIN_VALUES = 3
#: the shared z of a split's cells, integrated on an even grid (exact enough where tau * d dwarfs the scales)
_Z = np.linspace(-6.0, 6.0, 1201)
_LOG_WEIGHT = norm.logpdf(_Z) + np.log(_Z[1] - _Z[0])
#: prior of omega, the sd of the law's log N* against the observed IsoFLOP optima inside the runs (a judgement:
#: a law whose form fits the profiles puts N* within 10% of their vertices; on Epoch's Chinchilla runs the
#: fitted law's N* lies 0.1-0.3 above them, benchmarks/README.md "plan_epoch.py")
OMEGA_PRIOR = Prior("LogNormal", mu=float(np.log(0.05)), sigma=1.0)
#: each tau's prior and the random stream of its draws (and of its prior's, for a fit saved before it existed)
TAUS = {"decision_tau": (TAU_PRIOR, 7), "allocation_tau": (ALLOCATION_TAU_PRIOR, 8)}
#: the columns of the stored calibration (``settings["extrapolation"]["decision"]["cells"]``)
COLUMNS = ("split", "tunable", "distance", "forecast", "forecast_sd", "observed", "censored", "bound", "observed_sd")


def observed_optimum(values, losses) -> dict:
    """The observed best log value of a cell from its values (ascending) and mean losses.

    Interior best: the vertex of the parabola in log value through the best value and its two
    neighbours, kept within the bracket (halfway in log to each neighbour), with sd the bracket's
    width / sqrt(12) (uniform over it). Best at an edge: censored (``"above"`` the largest value or
    ``"below"`` the smallest): the optimum lies beyond ``bound``, halfway in log to the neighbour (a
    symmetric basin's bracket), with sd the step / sqrt(12) softening that bound for asymmetric basins.
    """
    x, y = np.log(np.asarray(values, float)), np.asarray(losses, float)
    i = int(np.argmin(y))
    if 0 < i < len(x) - 1:
        low, high = (x[i - 1] + x[i]) / 2, (x[i] + x[i + 1]) / 2
        c2, c1, _ = np.polyfit(x[i - 1 : i + 2], y[i - 1 : i + 2], 2)
        vertex = float(np.clip(-c1 / (2 * c2), low, high)) if c2 > 0 else float(x[i])
        return {"observed": vertex, "censored": "none", "bound": vertex, "observed_sd": (high - low) / np.sqrt(12)}
    j = i - 1 if i else 1
    return {
        "observed": float(x[i]),
        "censored": "above" if i else "below",
        "bound": float((x[i] + x[j]) / 2),
        "observed_sd": float(abs(x[i] - x[j]) / np.sqrt(12)),
    }


def isoflop_optimum(sizes, losses) -> dict:
    """The observed log N* of an IsoFLOP cell from its sizes (ascending) and losses: Chinchilla's Approach 2.

    A parabola in log N fitted to all of the cell's runs by least squares (Hoffmann et al. 2022,
    Approach 2); its vertex, with the delta method's standard error from the residual scatter (at
    least :data:`MIN_OPTIMUM_SD`; with 3 sizes, no scatter is left: the bracket's sd, as
    :func:`observed_optimum` gives it).
    A parabola that opens downward or a vertex beyond the sizes tried: :func:`observed_optimum`'s
    answer (censored where the best run is at an edge).
    """
    x, y = np.log(np.asarray(sizes, float)), np.asarray(losses, float)
    bracket = observed_optimum(sizes, losses)
    design = np.column_stack([np.ones_like(x), x, x**2])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    c0, c1, c2 = coef
    vertex = -c1 / (2 * c2) if c2 > 0 else np.nan
    if not (np.isfinite(vertex) and x[0] < vertex < x[-1]):
        return bracket
    residual = y - design @ coef
    sd = bracket["observed_sd"]
    if len(x) > 3:
        covariance = residual @ residual / (len(x) - 3) * np.linalg.inv(design.T @ design)
        gradient = np.array([0.0, -1 / (2 * c2), c1 / (2 * c2**2)])
        sd = max(MIN_OPTIMUM_SD, float(np.sqrt(gradient @ covariance @ gradient)))
    return {"observed": float(vertex), "censored": "none", "bound": float(vertex), "observed_sd": sd}


def split_cells(law: Law, params: dict, train: Runs, heldout: Runs, split) -> list[dict]:
    """The calibration rows of one internal split: per held-out cell with :data:`MIN_VALUES` values of a tunable.

    ``params``: the split's draws of the law's parameters at the held-out runs (rows, or one column).
    """
    frame = heldout.frame.reset_index(drop=True)
    if is_curves(frame):
        return []
    ranges = decision_ranges(observed_ranges(train, law.inputs))
    rows = []
    for name in tunable_inputs(law):
        keys = [c for c in law.inputs if c != name]
        for _, cell in frame.groupby(keys, sort=True):
            observed = cell.groupby(name)["loss"].mean()
            if len(observed) < MIN_VALUES:
                continue
            at = cell.index[:1].to_numpy()
            draws = {n: np.asarray(v)[:, at] if np.shape(v)[1] > 1 else np.asarray(v) for n, v in params.items()}
            env = {n: frame.loc[at, n].to_numpy(dtype=float)[None, :] for n in keys}
            n_draws = len(next(iter(draws.values())))
            best = best_values(law, draws, env, {name: search_range(train, name)}, (n_draws, 1), (name,))[name][:, 0]
            low, mid, high = np.nanquantile(best, [0.1587, 0.5, 0.8413])
            rows.append(
                {
                    "split": str(split),
                    "tunable": name,
                    "distance": float(distance(cell.iloc[:1], ranges)[0]),
                    "forecast": float(mid),
                    "forecast_sd": float(max((high - low) / 2, 1e-6)),
                    **observed_optimum(observed.index.to_numpy(dtype=float), observed.to_numpy()),
                }
            )
    return rows


def allocatable(law: Law) -> bool:
    """Whether the compute-optimal allocation of ``law`` can be calibrated: a law in N and D (and tunables) alone."""
    return {"N", "D"} <= set(law.inputs) <= {"N", "D", *tunable_inputs(law)}


def budget_cells(frame) -> list[np.ndarray]:
    """Row positions of the IsoFLOP cells of a sweep: runs within :data:`BUDGET_TOLERANCE` of one budget in compute.

    Greedy, densest budget first (a run's budget: its own compute): the runs within the tolerance
    of the run with the most such neighbours form a cell and leave the pool, until no budget holds
    :data:`MIN_VALUES` sizes. Digitised or rounded budgets gather; a continuous spread forms few cells.
    """
    log_c = np.log(axis_values(frame, "C"))
    sizes = frame["N"].to_numpy(dtype=float)
    free = np.ones(len(log_c), bool)
    cells: list[np.ndarray] = []
    while True:
        near = (np.abs(log_c[:, None] - log_c[None, :]) <= BUDGET_TOLERANCE) & free[None, :] & free[:, None]
        counts = [len(np.unique(sizes[row])) for row in near]
        best = int(np.argmax(counts))
        if counts[best] < MIN_VALUES:
            return cells
        rows = np.flatnonzero(near[best])
        cells.append(rows)
        free[rows] = False


def best_size(law: Law, params: dict, cell, train: Runs) -> np.ndarray:
    """Log N* per draw along a cell's line in (log N, log D) (least squares through its runs), tunables at their best.

    ``params``: one value per draw (a column). The search reaches :data:`SEARCH_MARGIN` beyond the
    cell's sizes; a law still falling at an end gives that end.
    """
    log_n, log_d = np.log(cell["N"].to_numpy(dtype=float)), np.log(cell["D"].to_numpy(dtype=float))
    slope, intercept = np.polyfit(log_n, log_d, 1)
    ranges = {name: search_range(train, name) for name in tunable_inputs(law)}

    def loss(v: np.ndarray) -> np.ndarray:
        env = {"N": np.exp(v), "D": np.exp(intercept + slope * v)}
        best = best_values(law, params, env, ranges, v.shape) if ranges else {}
        return evaluate(law, params, env, best)

    n_draws = len(next(iter(params.values())))
    return minimise(loss, log_n.min() - SEARCH_MARGIN, log_n.max() + SEARCH_MARGIN, (n_draws, 1))[:, 0]


def allocation_cells(law: Law, params: dict, train: Runs, heldout: Runs, split) -> list[dict]:
    """The allocation's calibration rows of one internal split: per held-out IsoFLOP cell (:func:`budget_cells`).

    A cell's observed loss per size is its mean over repeats, the best over tunable values tried
    (a tuned run). A pooled split (parameters that differ between runs) gives none.
    """
    frame = heldout.frame.reset_index(drop=True)
    if is_curves(frame) or not allocatable(law) or any(np.shape(v)[1] > 1 for v in params.values()):
        return []
    ranges = decision_ranges(observed_ranges(train, law.inputs))
    rows = []
    for positions in budget_cells(frame):
        cell = frame.iloc[positions]
        by_size = cell.groupby(["N", *tunable_inputs(law)])["loss"].mean().groupby(level="N").min()
        log_best = best_size(law, {n: np.asarray(v) for n, v in params.items()}, cell, train)
        low, mid, high = np.nanquantile(log_best, [0.1587, 0.5, 0.8413])
        rows.append(
            {
                "split": str(split),
                "tunable": ALLOCATION,
                "distance": float(distance(cell.loc[[cell["loss"].idxmin()]], ranges)[0]),
                "forecast": float(mid),
                "forecast_sd": float(max((high - low) / 2, 1e-6)),
                **isoflop_optimum(by_size.index.to_numpy(dtype=float), by_size.to_numpy()),
            }
        )
    return rows


def tau_log_likelihood(cells: dict, grid: np.ndarray = TAU_GRID, omega: float = 0.0) -> np.ndarray:
    """log p(cells | tau) on ``grid``; ``cells`` holds lists by :data:`COLUMNS`.

    A cell's truth is Normal(forecast + tau * distance * z, s), s^2 = forecast_sd^2 + observed_sd^2 + omega^2,
    one z per split and tunable: an interior cell's density at ``observed``, a censored one's
    probability beyond ``bound``. A split without censored cells is jointly Normal: there
    :func:`~bayescale.inference.discrepancy.kappa_log_likelihood` gives it exactly.
    """
    columns = {k: np.asarray(cells[k]) for k in COLUMNS}
    total = np.zeros(len(grid))
    labels = np.char.add(np.char.add(columns["split"].astype(str), "/"), columns["tunable"].astype(str))
    for label in np.unique(labels):
        at = labels == label
        d, f = columns["distance"][at].astype(float), columns["forecast"][at].astype(float)
        s = np.sqrt(
            columns["forecast_sd"][at].astype(float) ** 2 + columns["observed_sd"][at].astype(float) ** 2 + omega**2
        )
        kind, bound = columns["censored"][at], columns["bound"][at].astype(float)
        if np.all(kind == "none"):
            total += kappa_log_likelihood(columns["observed"][at].astype(float) - f, s, d, np.zeros(len(d)), grid)
            continue
        mean = f + grid[:, None, None] * _Z[None, :, None] * d  # (tau, z, cell)
        ll = np.where(
            kind == "none",
            norm.logpdf(columns["observed"][at].astype(float), mean, s),
            norm.logcdf(np.where(kind == "above", 1.0, -1.0) * (mean - bound) / s),
        )
        total += logsumexp(_LOG_WEIGHT + ll.sum(axis=-1), axis=1)
    return total


def calibrate_tau(fitted: dict, law: Law, n_draws: int, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """Draws of tau (the tunables', ``decision_tau``; the allocation's, ``allocation_tau``, with its ``allocation_omega``) and the stored calibration.

    ``fitted`` maps each split to its ``forecast`` arguments (spec factory, training runs, rows,
    held-out runs, ...) and ``params`` (its draws at the held-out runs), as ``discrepancy.calibrate``
    made them. A law without a tunable input draws no ``decision_tau``; one that cannot be planned
    (:func:`allocatable`) no allocation's. Without a cell the prior alone carries a tau: the
    calibration's ``source`` (tunables) and ``allocation_source`` say so. omega
    (:func:`draw_omega`) comes from the IsoFLOP cells inside the largest split's training runs
    (``allocation_inside``); tau's likelihood takes its median.
    """
    rows, inside = [], []
    for split, f in fitted.items():
        if f.get("params") is not None:
            train, heldout = f["forecast"][1], f["forecast"][3]
            rows += split_cells(law, f["params"], train, heldout, split)
            rows += allocation_cells(law, f["params"], train, heldout, split)
    largest = max(
        (f for f in fitted.values() if f.get("params") is not None),
        key=lambda f: len(f["forecast"][1].frame),
        default=None,
    )
    if largest is not None:
        train = largest["forecast"][1]
        inside = allocation_cells(law, largest["params"], train, train, "inside")
    cells = {k: [row[k] for row in rows] for k in COLUMNS}
    draws: dict[str, np.ndarray] = {}
    calibration: dict = {
        "cells": cells,
        "prior": TAU_PRIOR.to_dict(),
        "allocation_prior": ALLOCATION_TAU_PRIOR.to_dict(),
    }
    if tunable_inputs(law):
        chosen = select_cells(cells, tunable_inputs(law))
        draws["decision_tau"] = draw_tau(chosen, n_draws, seed)
        calibration["source"] = "internal splits" if len(chosen["split"]) else "prior only"
    if allocatable(law):
        inside_cells = {k: [row[k] for row in inside] for k in COLUMNS}
        draws["allocation_omega"] = draw_omega(inside_cells, n_draws, seed)
        chosen = select_cells(cells, (ALLOCATION,))
        omega = float(np.median(draws["allocation_omega"]))
        draws["allocation_tau"] = draw_tau(chosen, n_draws, seed, "allocation_tau", omega)
        calibration["allocation_source"] = "internal splits" if len(chosen["split"]) else "prior only"
        calibration["allocation_inside"] = inside_cells
        calibration["omega_prior"] = OMEGA_PRIOR.to_dict()
    return draws, calibration


def draw_omega(cells: dict, n_draws: int, seed: int) -> np.ndarray:
    """Draws of omega, the sd of the law's log N* against the observed optima inside the runs (:data:`OMEGA_PRIOR`).

    Each interior cell (``cells``: the fit's own IsoFLOP cells, distance 0) errs independently by
    Normal(0, s^2 + omega^2), s^2 = forecast_sd^2 + observed_sd^2: the law's form misses each budget's
    optimum its own way where both are seen. Censored cells are left out; none: the prior alone.
    """
    log_posterior = OMEGA_PRIOR.logpdf(TAU_GRID) + np.log(TAU_GRID)  # the grid is even in log omega
    interior = np.asarray(cells["censored"], dtype=str) == "none"
    if interior.any():
        error = (np.asarray(cells["observed"], float) - np.asarray(cells["forecast"], float))[interior]
        s2 = (np.asarray(cells["forecast_sd"], float) ** 2 + np.asarray(cells["observed_sd"], float) ** 2)[interior]
        log_posterior = log_posterior + norm.logpdf(error, 0.0, np.sqrt(s2 + TAU_GRID[:, None] ** 2)).sum(axis=1)
    return draw_kappa(log_posterior, n_draws, np.random.default_rng([seed, 9]), grid=TAU_GRID)


def select_cells(cells: dict, names) -> dict:
    """The calibration cells of the decision variables ``names`` (``tunable`` column: lr, batch or N)."""
    keep = np.isin(np.asarray(cells["tunable"], dtype=str), list(names))
    return {k: [v for v, kept in zip(cells[k], keep) if kept] for k in COLUMNS}


def draw_tau(cells: dict, n_draws: int, seed: int, name: str = "decision_tau", omega: float = 0.0) -> np.ndarray:
    """Draws of tau's posterior on :data:`TAU_GRID`: its prior (:data:`TAUS`) updated by ``cells`` (the prior alone if none)."""
    prior, stream = TAUS[name]
    log_posterior = prior.logpdf(TAU_GRID) + np.log(TAU_GRID)  # the grid is even in log tau
    if len(cells["split"]):
        log_posterior = log_posterior + tau_log_likelihood(cells, omega=omega)
    return draw_kappa(log_posterior, n_draws, np.random.default_rng([seed, stream]), grid=TAU_GRID)


def prior_tau(n_draws: int, seed: int, name: str = "decision_tau") -> np.ndarray:
    """Draws of tau from its prior: a fit calibrated before this decision's discrepancy existed."""
    prior, stream = TAUS[name]
    return prior.sample(np.random.default_rng([seed, stream]), n_draws)
