"""Which runs to train next: the candidates whose outcome would shrink the targets' uncertainty most per unit cost.

The measure is the variance of the targets' log quantities under the law's parameter uncertainty
(per posterior draw: the law's log-loss at a point, before noise and extrapolation discrepancy, or the
loss itself for a law on the raw target scale, a card's ``scale = "raw"``; log N*
and log D* at a compute budget; log lr* at a point; :mod:`bayescale.forecast.design_targets`), summed
over the targets. A candidate's value is the expected drop of that variance once its loss is known,
divided by its cost.

The expected posterior after an unseen outcome comes from the draws themselves: pick a draw s_m,
simulate the run's observation y_m (log-loss, or the raw loss) from the fit's noise model around the law there, weight every
other draw by p(y_m | theta_s) (importance reweighting of the posterior by the new run's
likelihood), and average the weighted variance over the simulated outcomes. A batch is chosen
greedily: each next run is valued in the same simulated worlds as the runs chosen before it, its
weights multiplying theirs, so a run that tells what an earlier one told gains little.
``benchmarks/design_check.py`` compares these predictions with real refits (and with a Laplace
approximation's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.runs import column_list, point_label, prepare_points, row_numbers
from bayescale.defaults import check_ci_prob
from bayescale.errors import BayescaleError, DataError, FormulaError, SamplerWarning, warn_user
from bayescale.forecast.design_targets import (
    as_table,
    bands,
    joint_rows,
    measure_text,
    parse_targets,
    quantity_draws,
    target_table,
    weighted_variance,
    weights,
)
from bayescale.forecast.predict import flat_draws, law_mean, params_at, warn_invalid_draws
from bayescale.laws.formula import Formula

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit

#: log-density evaluations per block while valuing candidates (outcomes x candidates x draws): 32 MB of float64
_BLOCK = 4_000_000
#: below this median effective number of draws a chosen run's value rests on too few draws
_FEW_DRAWS = 30


@dataclass
class Design:
    """The runs :func:`design` chose, ranked, and what they are expected to do to the targets.

    Parameters
    ----------
    chosen : pandas.DataFrame
        One row per chosen run, in the order chosen (``rank`` 1 first): the candidate's columns, then
        ``row`` (its row in the candidate table, 1 = the first), ``cost``, ``gain`` (the expected drop of
        the measure given the runs ranked before it), ``value`` (gain / cost), ``share`` (gain over the
        measure now), ``spent`` (cost so far) and ``ess`` (median effective number of draws behind it).
    targets : pandas.DataFrame
        One row per target quantity: ``target`` (1 = the first target given), ``kind`` (``loss``, ``optimum``
        or ``best``), ``quantity`` (``loss``, ``N_opt`` and ``D_opt``, or ``lr_opt``), the target's inputs,
        ``median`` (the quantity now), ``lower_now``/``upper_now`` (its band now: for a loss the law's
        credible band as :func:`~bayescale.forecast.predict.predict` gives it),
        ``lower_expected``/``upper_expected`` (the band expected after the chosen runs: its ends averaged
        over simulated outcomes), ``sd_now``/``sd_expected`` (sd of the quantity's log, the measure's
        part) and, for a loss, ``extrapolation_now``/``extrapolation_expected`` (e-folds beyond the runs,
        before and with the chosen ones); for an optimum, ``cost_formula``, the cost its N*, D* are taken under.
    budget, spent : float
        The budget and the chosen runs' total cost, in the cost formula's units.
    cost : str
        The cost formula.
    measure : str
        What ``gain`` and ``value`` measure, in words.
    ci_prob : float
        Probability mass of the bands.
    settings : dict
        ``draws`` and ``outcomes`` used to value candidates, ``n_candidates``, ``batch`` and ``seed``.
    """

    chosen: pd.DataFrame
    targets: pd.DataFrame
    budget: float
    spent: float
    cost: str
    measure: str
    ci_prob: float
    settings: dict

    def to_dict(self) -> dict[str, Any]:
        """The design as JSON-ready data (what ``bayescale design --json`` prints).

        Returns
        -------
        dict
            ``chosen``: the chosen runs as records (``N``, ``D``, ..., ``cost``, ``value``, ...); ``target``: one
            record per target quantity with its ``kind``, ``quantity``, inputs, ``median``, and ``band_now`` and
            ``band_expected`` as ``[lower, upper]`` in the quantity's units (loss, parameters, tokens, learning
            rate); then ``budget``, ``spent``, ``n_chosen``, ``cost_formula``, ``measure``, ``ci_prob`` and the
            settings.
        """
        targets = []
        for _, row in self.targets.iterrows():
            record = {
                k: row[k]
                for k in self.targets.columns
                if not k.startswith(("lower_", "upper_")) and not (isinstance(row[k], float) and np.isnan(row[k]))
            }
            record["band_now"] = [row["lower_now"], row["upper_now"]]
            record["band_expected"] = [row["lower_expected"], row["upper_expected"]]
            targets.append(record)
        return {
            "chosen": self.chosen.to_dict("records"),
            "target": targets,
            "budget": self.budget,
            "spent": self.spent,
            "n_chosen": len(self.chosen),
            "cost_formula": self.cost,
            "measure": self.measure,
            "ci_prob": self.ci_prob,
            **self.settings,
        }


def _inputs_needed(fit: Fit) -> list[str]:
    return [*fit.law.inputs, *(p.column for p in fit.spec.pooled.values())]


def candidate_table(fit: Fit, candidates) -> pd.DataFrame:
    """The candidate runs as a checked table (index from 0, in the order given): the law's inputs and any other columns."""
    table = as_table(candidates)
    given = set(table.columns) | ({"D"} if {"N", "C"} <= set(table.columns) else set())
    missing = [c for c in _inputs_needed(fit) if c not in given]
    if missing:
        raise DataError(
            f"the candidate table needs column(s) {', '.join(missing)} for law {fit.law.name!r} "
            f"(it has {column_list(table.columns, missing)}); D can also be given as C with N"
        )
    for column in dict.fromkeys(p.column for p in fit.spec.pooled.values()):
        empty = table.index[table[column].isna()]
        if len(empty):
            raise DataError(
                f"candidates: column {column!r} (the pooled fit's group): {row_numbers(empty)} have no group "
                "(a name the fit never saw is a new group)"
            )
    try:
        table = prepare_points(table, fit.law.inputs, fit.law.scale)
    except DataError as exc:
        raise DataError(
            f"candidates: {exc}".replace("points", "rows").replace("first point", "first data row")
        ) from None
    return table.reset_index(drop=True)


def candidate_costs(table: pd.DataFrame, cost: str) -> np.ndarray:
    """The cost formula (the safe compiler, names from the table's numeric columns) at every candidate; each must be positive."""
    formula = Formula(cost)
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    formula.check_names(set(numeric), "cost formula")
    with np.errstate(all="ignore"):
        values = np.broadcast_to(
            np.asarray(formula.numpy({c: table[c].to_numpy(dtype=float) for c in formula.names}), dtype=float),
            (len(table),),
        ).copy()
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if len(bad):
        names = [c for c in table.columns if c in formula.names]
        shown = "; ".join(f"{point_label(table.iloc[i], names)} gives {values[i]:.3g}" for i in bad[:3])
        raise FormulaError(
            f"cost formula {cost!r} must be positive and finite at every candidate; it is not at "
            f"{row_numbers(bad)}: {shown}"
        )
    return values


def _check_budget(budget, costs: np.ndarray, table: pd.DataFrame, inputs) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.number)) or not np.isfinite(budget):
        raise BayescaleError(
            f"the budget must be a positive, finite number (in the cost formula's units), got {budget!r}"
        )
    cheapest = int(np.argmin(costs))
    if budget < costs[cheapest]:
        raise BayescaleError(
            f"the budget {float(budget):.3g} is smaller than the cheapest candidate's cost {costs[cheapest]:.3g} "
            f"({row_numbers([cheapest], 'row')}: {point_label(table.iloc[cheapest], inputs)}); give a budget of at least "
            f"{costs[cheapest]:.3g}"
        )
    return float(budget)


def _thin(n: int, draws: int | None) -> np.ndarray:
    if draws is None or draws >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, draws).round().astype(int))


def _law_and_noise(fit: Fit, params: dict, table: pd.DataFrame, seed: int):
    """The law's draws (rows; on the observation scale, :func:`~bayescale.forecast.predict.law_mean`) at the points
    (columns), the noise parameters there (draws on the last axis) and the law's.

    Noise values come back shaped (1, points or 1, draws), ready to broadcast against (outcomes, points, draws);
    the law's parameters as :func:`~bayescale.forecast.predict.params_at` gives them.
    """
    at = params_at(fit, params, table, np.random.default_rng([seed, 37]))
    n = len(next(iter(params.values())))
    mu = np.broadcast_to(law_mean(fit, {k: at[k] for k in fit.law.param_names}, table), (n, len(table)))
    noise = {
        k: np.moveaxis(np.broadcast_to(v, (n, np.shape(v)[1])), 0, -1)[None]
        for k, v in fit.spec.noise_at(params, table).items()
    }
    return np.ascontiguousarray(mu), noise, at


def _columns(noise: dict, index) -> dict:
    """The noise parameters at some points (``index`` into the points axis; one broadcast column stays)."""
    return {k: v if v.shape[1] == 1 else v[:, index] for k, v in noise.items()}


def _simulate(fit: Fit, mu: np.ndarray, noise: dict, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Log-losses of new runs (outcomes x points): the law at draw ``truth[m]`` plus the fit's noise at that draw."""
    at_truth = {k: v[0][:, truth].T if v.shape[1] > 1 else v[0, 0, truth] for k, v in noise.items()}
    shape_args = {k: v if v.ndim == 1 else v[:, 0] for k, v in at_truth.items() if k != "sigma"}
    eps = fit.likelihood.standard_noise(rng, shape_args, (len(truth), mu.shape[1]))
    sigma = at_truth["sigma"]
    return mu[truth] + (sigma[:, None] if sigma.ndim == 1 else sigma) * eps


def _log_likelihood(fit: Fit, y: np.ndarray, mu_t: np.ndarray, noise: dict) -> np.ndarray:
    """log p(y[m, k] | draw s) for log-law draws ``mu_t`` (points x draws): (outcomes, points, draws), in their precision.

    A draw with no valid law value there gets -inf.
    """
    with np.errstate(all="ignore"):
        out = fit.likelihood.logpdf_numpy(y[:, :, None], mu_t[None], noise)
    out[~np.isfinite(out)] = -np.inf
    return out


def _truths(rng: np.random.Generator, n_draws: int, outcomes: int) -> tuple[np.ndarray, np.ndarray]:
    """Which draw generates each simulated outcome, and the starting log-weights (that draw left out of its world)."""
    truth = rng.choice(n_draws, size=min(outcomes, n_draws - 1), replace=False)
    log_w = np.zeros((len(truth), n_draws))
    log_w[np.arange(len(truth)), truth] = -np.inf
    return truth, log_w


def _choose(fit: Fit, y, mu_c, noise_c, log_w, targets_law, costs, budget: float, batch: int) -> list[dict]:
    """The greedy search: each step takes the affordable candidate of most gain per cost, given the runs taken.

    ``y`` (outcomes x candidates) are the simulated log-losses, ``mu_c`` (candidates x draws) the
    log-law, ``log_w`` (outcomes x draws) the starting log-weights and ``targets_law`` (draws x
    targets) the centred log-law at the targets. Stops early when nothing affordable is left or no
    candidate is expected to reduce the measure.
    """
    now = weighted_variance(log_w, targets_law)[0].mean(axis=0)
    total_now = float(now.sum())
    current, remaining, available, rows = now, budget, np.ones(len(costs), bool), []
    block = max(1, _BLOCK // (y.shape[0] * mu_c.shape[1]))
    for rank in range(1, batch + 1):
        affordable = np.flatnonzero(available & (costs <= remaining * (1 + 1e-12)))
        if not len(affordable):
            break
        gains, ess = np.empty(len(affordable)), np.empty(len(affordable))
        for start in range(0, len(affordable), block):
            idx = affordable[start : start + block]
            ll = _log_likelihood(fit, y[:, idx], mu_c[idx], _columns(noise_c, idx))
            ll += log_w[:, None, :]
            var, eff = weighted_variance(ll, targets_law, overwrite=True)
            gains[start : start + block] = (current - var.mean(axis=0)).sum(axis=-1)
            ess[start : start + block] = np.median(eff, axis=0)
        values = np.maximum(gains, 0.0) / costs[affordable]
        pick = int(np.argmax(values))
        if values[pick] <= 0:
            break
        best = int(affordable[pick])
        log_w = log_w + _log_likelihood(fit, y[:, [best]], mu_c[[best]], _columns(noise_c, [best]))[:, 0, :]
        current = weighted_variance(log_w, targets_law)[0].mean(axis=0)
        remaining -= costs[best]
        available[best] = False
        rows.append(
            {
                "rank": rank,
                "row": best + 1,
                "cost": float(costs[best]),
                "gain": float(gains[pick]),
                "value": float(values[pick]),
                "share": float(gains[pick] / total_now) if total_now > 0 else 0.0,
                "spent": float(budget - remaining),
                "ess": float(ess[pick]),
            }
        )
    return rows


def design(
    fit: Fit,
    candidates: pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    targets: pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    budget: float,
    cost: str = "6*N*D",
    batch: int = 4,
    *,
    ci_prob: float = defaults.CI_PROB,
    draws: int | None = 1000,
    outcomes: int = 32,
    seed: int | None = None,
) -> Design:
    """The runs to train next, ranked: the most expected reduction of the targets' uncertainty per unit cost.

    The measure is the variance of each target's log quantity under the law's parameter uncertainty
    (its log-loss, log N* and log D*, or log lr*), summed over the targets
    (:mod:`bayescale.forecast.design_targets`). The posterior expected after a run is the fit's draws reweighted
    by the likelihood of simulated outcomes of that run (the fit's own noise model). The batch is
    chosen greedily within the budget, each run valued given the runs chosen before it.

    Parameters
    ----------
    fit : Fit
        The fit whose posterior is to be sharpened (fit runs first with :func:`bayescale.fit`).
    candidates : pandas.DataFrame, list of dict or dict of lists
        The runs one could train: the law's inputs (``D`` may be given as ``C`` with ``N``; a pooled fit's
        group column too) and any columns the cost formula uses; other columns are carried along. For a
        grid use :func:`bayescale.grid`.
    targets : pandas.DataFrame, list of dict or dict of lists
        What should be known better, one record each (in a table, empty cells are not given): a point
        (``{"N": 7e10, "D": 1.4e12}``: its loss), each input positive and within :data:`~bayescale.forecast.design_targets.FAR` times the
        runs' range; a compute budget alone (``{"C": 1e23}``: N* and D* there, as :func:`~bayescale.plan`
        computes them, under ``cost`` when it is a formula in N and D that grows with D, else under 6ND; a law
        in N and D, not pooled); or a point with a tunable input set to ``"best"``
        (``{"N": 1e9, "D": 2e10, "lr": "best"}``: its best value there, as :func:`~bayescale.tune` computes it).
        On a pooled fit a point names its group too (``{"N": 7e10, "D": 1.4e12, "dataset": "c4"}``; a name the
        fit never saw is a new group, drawn from the population).
    budget : float
        The most the batch may cost, in the cost formula's units; at least the cheapest candidate's cost.
    cost : str, default "6*N*D"
        A formula in the candidate table's numeric columns (the safe formula compiler; never ``eval``),
        positive at every candidate; a budget target's optimum is taken under it too when it is in N and D
        alone and grows with D (``"6*N*D + 2*N*1e12"``, training plus inference).
    batch : int, default 4
        The most runs to choose; fewer when the budget runs out.
    ci_prob : float, default 0.9
        Probability mass of the targets' bands.
    draws : int or None, default 1000
        Posterior draws (evenly thinned) used to value the candidates; None: all. The targets' bands use all.
    outcomes : int, default 32
        Simulated outcomes per candidate (and 4x that for the targets' expected bands).
    seed : int, optional
        Seed of the simulated outcomes; the fit's seed by default.

    Returns
    -------
    Design
        ``chosen`` (the ranked runs with ``cost``, ``gain``, ``value`` and ``ess``), ``targets`` (each
        target's band now and expected after the chosen runs), ``budget``, ``spent`` and ``measure``;
        ``to_dict()`` gives the JSON form.

    Raises
    ------
    BayescaleError
        For a candidate table without a needed column, a cost formula that is not positive at some
        candidate (naming the rows), a budget below the cheapest candidate, a target that is not
        positive or lies more than :data:`~bayescale.forecast.design_targets.FAR` times beyond the runs (a budget: its
        square beyond their cost), a point of a pooled fit without its group, a budget target for a law that
        cannot be planned with (not in N and D, or pooled), ``best`` for an input that is not one of the
        law's tunable inputs, ``batch`` below 1, or ``draws`` or ``outcomes`` below 2.
    """
    ci_prob = check_ci_prob(ci_prob)
    for name, value, low in (("batch", batch, 1), ("outcomes", outcomes, 2), ("draws", draws or 2, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise BayescaleError(f"{name} must be a whole number of at least {low}, got {value!r}")
    seed = int(fit.settings["seed"] if seed is None else seed)
    pool = candidate_table(fit, candidates)
    costs = candidate_costs(pool, cost)
    budget = _check_budget(budget, costs, pool, fit.law.inputs)
    wanted = parse_targets(fit, targets, cost)
    needed = _inputs_needed(fit)
    every = flat_draws(fit)
    k = len(pool)
    # one table, so that new groups share their fresh draws between candidates and targets
    both = pd.concat([pool[needed], joint_rows(fit, wanted, needed, k)], ignore_index=True)
    mu_all, noise_all, at = _law_and_noise(fit, every, both, seed)
    values = quantity_draws(fit, wanted, at, mu_all)
    if not np.isfinite(mu_all).all():
        warn_invalid_draws(mu_all, [point_label(row, fit.law.inputs) for _, row in both.iterrows()])
    valid = np.flatnonzero(np.isfinite(mu_all).all(axis=1) & np.isfinite(values).all(axis=1))
    if len(valid) < 2:
        raise BayescaleError("the law gives no valid loss at every candidate and target for any posterior draw")
    keep = valid[_thin(len(valid), draws)]
    mu, noise = mu_all[keep], {n: v[..., keep] for n, v in noise_all.items()}
    mu_c, noise_c = mu[:, :k], _columns(noise, slice(0, k))
    rng = np.random.default_rng([seed, 38])
    truth, log_w = _truths(rng, len(keep), outcomes)
    # the search runs in float32 (half the memory traffic; log-weights need no more): 6.1 s -> 3.3 s for 4 of 1,000 (2026-12-07)
    f32 = np.float32
    y = _simulate(fit, mu_c, noise_c, truth, rng).astype(f32)
    mu_c, noise_c = np.ascontiguousarray(mu_c.T, f32), {n: v.astype(f32) for n, v in noise_c.items()}
    targets_law = ((values[keep] - values[keep].mean(axis=0)) * weights(wanted)).astype(f32)
    log_w = log_w.astype(f32)
    steps = _choose(fit, y, mu_c, noise_c, log_w, targets_law, costs, budget, batch)
    rows = [{**pool.iloc[step["row"] - 1].to_dict(), **step} for step in steps]  # the candidate's columns first
    chosen = pd.DataFrame(rows)
    spent = rows[-1]["spent"] if rows else 0.0
    few = [r for r in rows if r["ess"] < _FEW_DRAWS]
    if few:
        warn_user(
            f"the value of {len(few)} chosen run(s) rests on few effective draws (median ESS "
            f"{min(r['ess'] for r in few):.0f}): its outcome would pin the law down far more than the posterior's "
            f"{len(keep)} draws resolve; raise draws for a steadier choice",
            SamplerWarning,
        )
    picked = [int(r["row"]) - 1 for r in rows]
    log_w_after = _worlds_after(fit, mu_all[valid][:, picked], _columns(noise_all, picked), valid, outcomes, seed)
    return Design(
        chosen=chosen,
        targets=bands(fit, wanted, values, valid, len(mu_all), log_w_after, pool.iloc[picked], ci_prob, seed),
        budget=budget,
        spent=float(spent),
        cost=Formula(cost).text,
        measure=measure_text(wanted, fit.law.observation.is_log),
        ci_prob=ci_prob,
        settings={"draws": len(keep), "outcomes": len(truth), "n_candidates": k, "batch": batch, "seed": seed},
    )


def _worlds_after(fit: Fit, mu_chosen: np.ndarray, noise_chosen: dict, valid, outcomes: int, seed: int):
    """Log-weights (simulated outcomes x valid draws) of the worlds where the chosen runs' losses are known.

    ``mu_chosen`` is the log-law at the chosen runs for the valid draws; 4x ``outcomes`` worlds, each
    leaving out the draw that generated it. No chosen run: equal weights.
    """
    rng = np.random.default_rng([seed, 39])
    truth, log_w = _truths(rng, len(valid), 4 * outcomes)
    if mu_chosen.shape[1]:
        noise = {n: v[..., valid] for n, v in noise_chosen.items()}
        y = _simulate(fit, mu_chosen, noise, truth, rng)
        log_w = log_w + _log_likelihood(fit, y, mu_chosen.T, noise).sum(axis=1)
    return log_w


def posterior_after(
    fit: Fit, observed: pd.DataFrame, targets, *, leave_out: int | None = None, seed: int | None = None
) -> pd.DataFrame:
    """The targets' law variance now and after runs with known losses, by reweighting every posterior draw.

    Parameters
    ----------
    fit : Fit
        The fit.
    observed : pandas.DataFrame
        The new runs: the law's inputs and ``loss``.
    targets : pandas.DataFrame, list of dict or dict of lists
        The target points (as for :func:`design`).
    leave_out : int, optional
        A draw (index into the flat draws) to leave out: the one a simulated loss was drawn from.
    seed : int, optional
        Seed of a pooled fit's new groups' draws; the fit's seed by default.

    Returns
    -------
    pandas.DataFrame
        Per target: its inputs, ``var_now`` and ``var_after`` (variance of the law's log-loss, or raw loss, over the
        draws, equally weighted and reweighted by the new runs' likelihood) and ``ess`` (the effective
        number of draws after reweighting).
    """
    seed = int(fit.settings["seed"] if seed is None else seed)
    runs = candidate_table(fit, observed)
    if "loss" not in runs.columns:
        raise DataError(f"the observed runs need a 'loss' column (they have {column_list(runs.columns, ['loss'])})")
    points = target_table(fit, targets)
    needed = _inputs_needed(fit)
    every = flat_draws(fit)
    mu, noise, _ = _law_and_noise(fit, every, pd.concat([runs[needed], points[needed]], ignore_index=True), seed)
    b = len(runs)
    log_w = _log_likelihood(
        fit,
        fit.law.observation.observe(runs["loss"].to_numpy(dtype=float))[None, :],
        mu[:, :b].T,
        _columns(noise, slice(0, b)),
    ).sum(axis=1)
    if leave_out is not None:
        log_w[0, leave_out] = -np.inf
    law = mu[:, b:]
    ok = np.isfinite(law).all(axis=1)
    centred = law[ok] - law[ok].mean(axis=0)
    out = points.copy()
    out["var_now"] = weighted_variance(np.zeros((1, int(ok.sum()))), centred)[0][0]
    after, ess = weighted_variance(log_w[:, ok], centred)
    out["var_after"], out["ess"] = after[0], float(ess[0])
    return out.reset_index(drop=True)
