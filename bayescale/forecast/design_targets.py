"""What a design sharpens: its targets, each a block of per-draw quantities and their bands.

Three kinds of target, told apart by what the user gives:

- ``loss``, a point (``N=7e10,D=1.4e12``): the log of the law's loss there, per draw (the loss itself for a
  law on the raw target scale, a card's ``scale = "raw"``); its band is
  :func:`~bayescale.forecast.predict.predict`'s credible band (the extrapolation discrepancy included).
- ``optimum``, a compute budget alone (``C=1e23``, for a law in N and D without a C input, not pooled): log N*
  and log D* per draw, as :func:`~bayescale.forecast.plan.plan` computes them (no token cap) under the
  design's cost formula when it is one in N and D that grows with D (``6*N*D + 2*N*1e12``: C is then in its
  units), else under 6ND (a cost in other columns, or a constant); bands of N* and D*, the parameters'
  uncertainty only (``plan``'s add the allocation's extrapolation discrepancy beyond the runs; not here).
- ``best``, a point with a tunable input set to ``best`` (``N=1e9,D=2e10,lr=best``): the log of its best
  value per draw, as :func:`~bayescale.forecast.tuning.tune` computes it (other tunables not given are
  tuned too; given ones stay fixed); the band of lr*, the parameters' uncertainty only (``tune``'s adds the
  best value's extrapolation discrepancy beyond the runs; not here).

On a pooled fit a point or best target names its group (``dataset=c4``; a name the fit never saw is a new
group, drawn from the population), as :func:`~bayescale.forecast.predict.predict` asks of every point.

A target's part of the design's measure is the variance of its log quantity (the mean over N* and D*
for an optimum, equal under 6ND), so targets of every kind sum in one unit-free measure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale.data.runs import point_label, prepare_points
from bayescale.data.tunable import TUNABLE, other_inputs, tunable_inputs
from bayescale.errors import BayescaleError, DataError
from bayescale.forecast.predict import group_needed
from bayescale.laws.formula import Formula

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit
    from bayescale.forecast.plan import Budget

#: a target may lie at most this factor beyond the runs' range of each input (a budget: its square beyond their cost)
FAR = 1e4
#: what the word means in a target: this tunable input's best value is the target
BEST = "best"
#: per kind, the quantity whose variance of log is its part of the measure
MEASURES = {
    "loss": "variance of log-loss (the law's, at a point)",
    "raw loss": "variance of the loss on the raw target scale (the law's, at a point; the card's scale = \"raw\")",
    "optimum": "mean variance of log N* and log D* (a budget's optimum, per draw as plan computes it)",
    "best": "variance of log lr* (the best value of a tunable input, per draw as tune computes it)",
}


@dataclass
class Target:
    """One target as the user gave it: ``kind``, the inputs ``given`` and the ``quantities`` it contributes.

    ``column`` is its row in the joint table of candidates and targets (loss and best targets), ``names``
    the best target's tunable inputs searched (those given as ``best`` and those not given); an optimum's
    ``budget`` is the cost it is taken under, ``cost`` that formula's text.
    """

    number: int
    kind: str
    given: dict[str, Any]
    quantities: tuple[str, ...]
    names: tuple[str, ...] = ()
    column: int = -1
    budget: Budget | None = None
    cost: str | None = None


def measure_text(targets: list[Target], log_scale: bool = True) -> str:
    """What ``gain`` and ``value`` measure for these targets (a loss on log-loss or on the raw scale), in words."""
    kinds = dict.fromkeys("raw loss" if t.kind == "loss" and not log_scale else t.kind for t in targets)
    parts = "; or ".join(MEASURES[k] for k in kinds)
    return (
        f"expected reduction, per unit cost, of the sum over the targets of the {parts}, under the law's parameter "
        "uncertainty; expected posterior by importance reweighting of the draws"
    )


def as_table(points) -> pd.DataFrame:
    """A DataFrame, a list of dicts or a dict of values (scalars or sequences) as a table indexed from 0."""
    if isinstance(points, Mapping):
        return pd.DataFrame({k: np.atleast_1d(np.asarray(v, dtype=object)) for k, v in points.items()})
    return pd.DataFrame(points if isinstance(points, pd.DataFrame) else list(points)).reset_index(drop=True)


def target_table(fit: Fit, targets, inputs=None) -> pd.DataFrame:
    """The target points, checked: positive ``inputs`` (the law's) within :data:`FAR` times the runs' range of each."""
    raw = as_table(targets)
    inputs = list(fit.law.inputs if inputs is None else inputs)
    scales = {}
    for name in inputs:
        low, high = float(np.min(fit.runs[name])), float(np.max(fit.runs[name]))
        if low > 0:  # an input that may be zero (S2) has no scale to compare with
            scales[name] = (low, high, f"{name} from {low / FAR:.3g} to {high * FAR:.3g}")
    for name, (low, high, allowed) in scales.items():
        values = pd.to_numeric(raw[name], errors="coerce") if name in raw else pd.Series([], dtype=float)
        bad = np.flatnonzero(~(values > 0))
        far = np.flatnonzero((values > high * FAR) | (values < low / FAR))
        if len(bad) or len(far):
            where = point_label(raw.iloc[(bad if len(bad) else far)[0]], [c for c in inputs if c in raw])
            problem = f"{name} must be a positive number" if len(bad) else f"it lies too far from the runs along {name}"
            raise DataError(
                f"target {where}: {problem}; a target may lie at most {FAR:.0e}x beyond the runs' range "
                f"({low:.3g} to {high:.3g}): {allowed}"
            )
    try:
        return prepare_points(raw, inputs)
    except DataError as exc:
        raise DataError(f"target: {exc}") from None


def _records(targets) -> list[dict[str, Any]]:
    """The targets as records, empty cells (a table's NaN) dropped: rows of a table may be of different kinds."""
    table = as_table(targets)
    return [
        {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))} for row in table.to_dict("records")
    ]


def _is_best(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == BEST


def _optimum_cost(cost: str) -> tuple[Budget, str]:
    """The cost an optimum target is taken under, and its text: the design's ``cost`` when it is a formula in N
    and D that grows with D (:meth:`~bayescale.forecast.plan.Budget.make`), else 6ND.
    """
    from bayescale.forecast.plan import Budget

    try:
        budget = Budget.make(cost)
    except BayescaleError:  # a cost in other columns, or one that does not grow with D: no budget in N and D
        return Budget(), "6*N*D"
    return budget, budget.cost.text if budget.cost is not None else Formula(cost).text


def _optimum_target(fit: Fit, number: int, record: dict, cost: str) -> Target:
    from bayescale.forecast.plan import _check_law

    label = point_label(pd.Series(record), list(record))
    what = f"target {label} (the compute-optimal N*, D* at that budget)"
    try:
        _check_law(fit)
    except BayescaleError as exc:
        raise BayescaleError(f"{what}: {exc}") from None
    if set(record) != {"C"}:
        raise DataError(f"{what}: give the budget alone, C=..., or a point with every input of the law")
    budget, text = _optimum_cost(cost)
    flops = pd.to_numeric(pd.Series([record["C"]]), errors="coerce").iloc[0]
    costs = budget.cost_of(np.asarray(fit.runs["N"], float), np.asarray(fit.runs["D"], float))
    low, high = float(np.min(costs)) / FAR**2, float(np.max(costs)) * FAR**2
    if not (np.isfinite(flops) and low <= flops <= high):
        raise DataError(
            f"{what}: C must be a number of FLOPs from {low:.3g} to {high:.3g} (at most {FAR**2:.0e}x beyond the "
            f"runs' cost under {text})"
        )
    return Target(number, "optimum", {"C": float(flops)}, ("N_opt", "D_opt"), budget=budget, cost=text)


def _best_target(fit: Fit, number: int, record: dict) -> Target:
    best = [k for k, v in record.items() if _is_best(v)]
    tunable = tunable_inputs(fit.law)
    label = point_label(pd.Series(record), list(record))
    unknown = [k for k in best if k not in tunable]
    if unknown:
        has = (
            f"its tunable inputs are {', '.join(tunable)}"
            if tunable
            else "it has none; fit a law with one, such as chinchilla_lr"
        )
        raise BayescaleError(
            f"target {label}: {unknown[0]}=best asks for the best value of a tunable input ({', '.join(TUNABLE)}); "
            f"law {fit.law.name!r} has no tunable input {unknown[0]!r} ({has})"
        )
    fixed = [k for k in tunable if k in record and k not in best]
    given = {k: v for k, v in record.items() if k not in best}
    points = target_table(fit, [given], [*other_inputs(fit.law), *fixed])
    names = tuple(k for k in tunable if k not in fixed)
    values = {k: float(points[k].iloc[0]) for k in [*other_inputs(fit.law), *fixed]}
    extra = {k: v for k, v in given.items() if k not in values}  # a pooled fit's group, other columns
    return Target(number, "best", {**values, **extra}, tuple(f"{k}_opt" for k in best), names)


def _check_group(fit: Fit, record: dict) -> None:
    """A pooled fit's point or best target names its group (a name the fit never saw: a new group)."""
    for name, pooled in fit.spec.pooled.items():
        value = record.get(pooled.column)
        if value is None or not str(value).strip():
            label = point_label(pd.Series(record), list(record))
            raise DataError(f"target {label}: {group_needed(name, pooled, 'target')}")


def parse_targets(fit: Fit, targets, cost: str = "6*N*D") -> list[Target]:
    """Each target's kind, checked; loss targets are checked together (:func:`target_table`).

    ``cost`` is the design's cost formula: an optimum target's budget is taken under it (:func:`_optimum_cost`).
    """
    records = _records(targets)
    if not records:
        raise DataError("give at least one target: a point N=...,D=..., a budget C=... or a point with lr=best")
    out: list[Target] = []
    points = []
    for number, record in enumerate(records, 1):
        best = any(_is_best(v) for v in record.values())
        if not best and "C" in record and not {"N", "D"} & set(record) and "C" not in fit.law.inputs:
            out.append(_optimum_target(fit, number, record, cost))
            continue
        _check_group(fit, record)
        if best:
            out.append(_best_target(fit, number, record))
        else:
            points.append(record)
            out.append(Target(number, "loss", record, ("loss",)))
    if points:
        table = target_table(fit, points)
        for target, (_, row) in zip([t for t in out if t.kind == "loss"], table.iterrows()):
            target.given = row.to_dict()
    return out


def joint_rows(fit: Fit, targets: list[Target], needed: list[str], start: int) -> pd.DataFrame:
    """The rows loss and best targets add to the joint table (from row ``start``); sets each one's ``column``.

    A best target's searched tunables hold the runs' geometric mean there: its law value is not used.
    """
    rows: list[dict[str, Any]] = []
    for target in targets:
        if target.kind == "optimum":
            continue
        target.column = start + len(rows)
        fill = {k: float(np.exp(np.mean(np.log(fit.runs[k])))) for k in target.names}
        rows.append({**target.given, **fill})
    return pd.DataFrame(rows, columns=needed)[needed] if rows else pd.DataFrame(columns=needed)


def quantity_draws(fit: Fit, targets: list[Target], at: dict, mu: np.ndarray) -> np.ndarray:
    """Per draw (rows), the log of every target quantity (columns, in the targets' order).

    ``at`` and ``mu`` are the law's parameters and log-value at the joint table's rows, draws first.
    """
    from bayescale.forecast.plan import optimal_allocation
    from bayescale.forecast.tuning import best_values, search_range

    n = mu.shape[0]
    columns = []
    for target in targets:
        if target.kind == "loss":
            columns.append(mu[:, target.column])
        elif target.kind == "optimum":
            draws = optimal_allocation(fit, target.given["C"], target.budget)
            columns += [np.log(draws["N_opt"].to_numpy()), np.log(draws["D_opt"].to_numpy())]
        else:
            col = target.column
            params = {k: (at[k][:, [col]] if at[k].shape[1] > 1 else at[k]) for k in fit.law.param_names}
            env = {k: np.array([[target.given[k]]]) for k in fit.law.inputs if k not in target.names}
            ranges = {k: search_range(fit.runs, k) for k in target.names}
            best = best_values(fit.law, params, env, ranges, (n, 1), target.names)
            columns += [best[q.removesuffix("_opt")][:, 0] for q in target.quantities]
    return np.stack(columns, axis=1)


def weights(targets: list[Target]) -> np.ndarray:
    """Per quantity, the factor on its centred log: the sum of squares is then each target's mean variance."""
    return np.concatenate([np.full(len(t.quantities), 1 / np.sqrt(len(t.quantities))) for t in targets])


def weighted_variance(log_w: np.ndarray, values: np.ndarray, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Variance of ``values`` (draws x targets) under normalised weights ``exp(log_w)`` (..., draws), and the ESS.

    Unbiased for weights independent of the values (divided by 1 - sum w^2), so equal weights give
    the sample variance and a candidate that tells nothing gains nothing. ``overwrite``: work in
    ``log_w``'s memory (the hot loop of :func:`~bayescale.forecast.design.design`).
    """
    w = log_w if overwrite else log_w.copy()
    w -= np.max(w, axis=-1, keepdims=True)
    np.exp(w, out=w)
    w *= 1.0 / np.sum(w, axis=-1, keepdims=True)
    sum_sq = np.einsum("...s,...s->...", w, w)
    # one 2-D product for both moments: numpy's stacked (outcomes, candidates, draws) @ (draws, targets) loops
    # over the outcomes, 10x slower (0.96 s against 0.10 s for 32 x 625 x 200 @ 200 x 120, 2026-12-07)
    both = w.reshape(-1, w.shape[-1]) @ np.concatenate([values, values * values], axis=-1)
    both = both.reshape(*w.shape[:-1], 2 * values.shape[-1])
    mean, second = both[..., : values.shape[-1]], both[..., values.shape[-1] :]
    var = np.maximum(second - mean * mean, 0.0) / np.maximum(1.0 - sum_sq, 1e-6)[..., None]
    return var, 1.0 / sum_sq


def _weighted_quantiles(values: np.ndarray, log_w: np.ndarray, probs) -> np.ndarray:
    """Quantiles of ``values`` (draws) under each row of weights (outcomes x draws): (outcomes, len(probs))."""
    order = np.argsort(values)
    w = np.exp(log_w[:, order] - np.max(log_w, axis=1, keepdims=True))
    cumulative = np.cumsum(w, axis=1) / np.sum(w, axis=1, keepdims=True)
    idx = np.stack([np.minimum((cumulative < p).sum(axis=1), len(values) - 1) for p in probs], axis=1)
    return values[order][idx]


def bands(
    fit: Fit, targets: list[Target], values: np.ndarray, valid, n_draws: int, log_w, chosen: pd.DataFrame, ci_prob, seed
) -> pd.DataFrame:
    """Per target quantity (one row each): its band and sd of log now and as expected after the ``chosen`` runs.

    ``values`` (every draw x quantities) are the logs of :func:`quantity_draws`, ``log_w`` (outcomes x
    valid draws) the log-weights of the simulated worlds after the chosen runs. Loss bands add the
    extrapolation discrepancy exactly as :func:`~bayescale.forecast.predict.predict` does; after the
    chosen runs the targets lie nearer the runs (their box grows by the chosen points), while the
    discrepancy's calibration stays as it is. The others carry the parameters' uncertainty only.
    """
    from bayescale.inference.distance import axis_values

    law = values[valid]
    centred = law - law.mean(axis=0)
    var_now = weighted_variance(np.zeros((1, len(valid))), centred)[0][0]
    var_after = weighted_variance(log_w, centred)[0].mean(axis=0)
    kinds = [t.kind for t in targets for _ in t.quantities]
    loss = [i for i, kind in enumerate(kinds) if kind == "loss"]
    widened_now, widened_after = law.copy(), law.copy()
    distance_now = distance_after = np.full(len(kinds), np.nan)
    disc = fit.discrepancy
    if loss:
        points = pd.DataFrame([t.given for t in targets if t.kind == "loss"]).reset_index(drop=True)
        distance_now, distance_after = distance_now.copy(), distance_after.copy()
        distance_now[loss] = distance_after[loss] = 0.0
    if loss and disc is not None:
        b = len(chosen)
        ranges = {
            name: (min(low, *axis_values(chosen, name)), max(high, *axis_values(chosen, name))) if b else (low, high)
            for name, (low, high) in disc.ranges.items()
        }
        after = dataclasses.replace(disc, ranges=ranges)
        full = np.full((n_draws, len(loss)), np.nan)  # the discrepancy's streams follow the draw count
        full[valid] = law[:, loss]
        widened_now[:, loss] = disc.widen(full.copy(), points, seed)[valid]
        widened_after[:, loss] = after.widen(full, points, seed)[valid]
        distance_now[loss], distance_after[loss] = disc.distance(points), after.distance(points)
    lo, hi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    expected = np.stack(
        [_weighted_quantiles(widened_after[:, q], log_w, [lo, hi]).mean(axis=0) for q in range(len(kinds))]
    )
    rows = [
        {
            "target": t.number,
            "kind": t.kind,
            "quantity": quantity,
            **t.given,
            **({"cost_formula": t.cost} if t.cost else {}),
        }
        for t in targets
        for quantity in t.quantities
    ]
    out = pd.DataFrame(rows)

    def unlog(x: np.ndarray) -> np.ndarray:  # per quantity (last axis): a loss by the fit's scale, the others exp
        return np.where(np.isin(np.arange(len(kinds)), loss), fit.law.observation.to_loss(x), np.exp(x))

    with np.errstate(over="ignore"):
        out["median"] = unlog(np.median(widened_now, axis=0))
        out["lower_now"], out["upper_now"] = unlog(np.quantile(widened_now, [lo, hi], axis=0))
        out["lower_expected"], out["upper_expected"] = unlog(expected[:, 0]), unlog(expected[:, 1])
    out["sd_now"], out["sd_expected"] = np.sqrt(var_now), np.sqrt(var_after)
    out["extrapolation_now"], out["extrapolation_expected"] = distance_now, distance_after
    return out
