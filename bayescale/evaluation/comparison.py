"""Choosing between laws, or combining them: PSIS-LOO through ArviZ, elpd differences, stacking.

Every fit stores its pointwise log-likelihood, so any set of fits on the same observations can be
compared. Observations whose Pareto k is too high (LOO is unreliable for them; usually outliers
or runs at the edge of the data) are named, with their inputs, so the user can look at them.
:func:`predict_stacked` forecasts with several laws at once, mixing their posterior draws by
stacking weights, so the band also carries the uncertainty about the law's form.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import arviz_stats as azs
import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.runs import Points, point_label, row_numbers
from bayescale.errors import BayescaleError, SamplerWarning, warn_user

if TYPE_CHECKING:
    from bayescale.evaluation.backtesting import BacktestResult
    from bayescale.fitting.result import Fit


#: what a stacked band adds to each law's: the spread between the laws
LAW_FORM = "law form"


def _named(fits: Mapping[str, Fit] | Sequence[Fit]) -> dict[str, Fit]:
    if isinstance(fits, Mapping):
        named = dict(fits)
    else:
        named = {}
        for fit in fits:
            name, k = fit.law.name, 2
            while name in named:
                name, k = f"{fit.law.name} ({k})", k + 1
            named[name] = fit
    if len(named) < 2:
        raise BayescaleError(f"compare needs at least two fits, got {len(named)}")
    return named


def check_one_scale(named: Mapping[str, Fit], what: str):
    """The fits' one observation scale (log-loss or the raw target); an error naming two fits that differ."""
    (first_name, first), *rest = named.items()
    for name, fit in rest:
        if fit.law.scale != first.law.scale:
            raise BayescaleError(
                f"fits {first_name!r} and {name!r} observe the loss on different scales ({first.law.scale} and "
                f"{fit.law.scale}; a card's scale): {what}"
            )
    return first.law.observation


def check_same_observations(named: Mapping[str, Fit]) -> None:
    """Raise a clear error unless every fit saw the same losses, in the same order, on the same scale."""
    scale = check_one_scale(named, "their log-likelihoods are not comparable, so LOO cannot rank them")
    (first_name, first), *rest = named.items()
    y0 = scale.observe(first.runs["loss"])
    for name, fit in rest:
        y = scale.observe(fit.runs["loss"])
        if len(y) != len(y0):
            raise BayescaleError(
                f"fits {first_name!r} and {name!r} are not on the same observations: "
                f"{len(y0)} and {len(y)} runs. LOO compares laws only on identical data"
            )
        differ = np.flatnonzero(~np.isclose(y, y0, rtol=0, atol=1e-12))
        if len(differ):
            raise BayescaleError(
                f"fits {first_name!r} and {name!r} are not on the same observations: the losses "
                f"differ in {row_numbers(first.runs.frame.index[differ])}"
            )


def loo(fit: Fit):
    """PSIS-LOO of one fit (an ArviZ ELPDData with pointwise values and Pareto k)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shape parameter of Pareto.*")
        return azs.loo(fit.idata, pointwise=True)


def high_pareto_k(fit: Fit, result=None) -> pd.DataFrame:
    """The runs whose Pareto k exceeds ArviZ's threshold, with their inputs and k."""
    result = result if result is not None else loo(fit)
    k = np.asarray(result.pareto_k).reshape(-1)
    bad = np.flatnonzero(k > result.good_k)
    table = fit.runs.frame.iloc[bad].copy()
    table["pareto_k"] = k[bad]
    return table


def compare(fits: Mapping[str, Fit] | Sequence[Fit], *, method: str = "stacking") -> pd.DataFrame:
    """Rank fits by PSIS-LOO: elpd, its difference from the best with standard error, stacking weight.

    Warns (naming the runs) when some observations have a Pareto k above ArviZ's threshold.
    The table's ``attrs["high_k"]`` maps each fit to those runs.

    Parameters
    ----------
    fits : dict of str to Fit, or sequence of Fit
        At least two fits of the same runs (the same losses in the same order). The fits of a sequence
        are named by law, a repeated law as ``"chinchilla (2)"``, ``"chinchilla (3)"`` and so on.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}, default "stacking"
        How :func:`arviz_stats.compare` computes the weights.

    Returns
    -------
    pandas.DataFrame
        One row per fit, indexed by name (``fit``), best first: ``rank`` (1 = best), ``elpd`` and its
        standard error ``se``, ``elpd_diff`` (elpd minus the best's, so <= 0) and its standard error
        ``dse``, ``p`` (effective number of parameters), ``weight`` and ``n_high_k`` (runs with a Pareto
        k above the threshold). ``attrs["high_k"]`` maps each fit's name to a DataFrame of those runs,
        with their columns and ``pareto_k``.

    Raises
    ------
    BayescaleError
        If fewer than two fits are given, or they were not fitted to the same observations on the same scale
        (log-loss, or the raw target of a card with ``scale = "raw"``: their log-likelihoods differ in kind).

    Warns
    -----
    SamplerWarning
        For each fit with runs whose Pareto k is above the threshold, naming up to six of them.
    """
    named = _named(fits)
    check_same_observations(named)
    results = {name: loo(fit) for name, fit in named.items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shape parameter of Pareto.*")
        table = azs.compare(results, method=method, round_to="none")
    table = pd.DataFrame(table)[["rank", "elpd", "se", "elpd_diff", "dse", "p", "weight"]]
    table["rank"] = table["rank"].astype(int) + 1  # 1 = best
    table.index.name = "fit"
    high_k = {}
    for name, fit in named.items():
        bad = high_pareto_k(fit, results[name])
        high_k[name] = bad
        if len(bad):
            shown = "; ".join(
                f"row {i + 1} ({point_label(row, [c for c in (*fit.law.inputs, 'loss') if c in row])}, "
                f"k={row['pareto_k']:.2f})"
                for i, row in bad.head(6).iterrows()
            )
            warn_user(
                f"{name}: {len(bad)} run(s) have Pareto k > {results[name].good_k:.2f}, so their LOO "
                f"value is unreliable: {shown}. Check them for outliers, or compare by backtest instead.",
                SamplerWarning,
            )
    table["n_high_k"] = [len(high_k[name]) for name in table.index]
    table.attrs["high_k"] = high_k
    return table


#: below this elpd difference two laws predict left-out runs about equally well (Sivula et al. 2022)
SMALL_ELPD_DIFF = 4.0


def verdict(table: pd.DataFrame) -> list[str]:
    """The comparison in words: which differences matter, what the weights say, and what LOO cannot.

    Parameters
    ----------
    table : pandas.DataFrame
        The table of :func:`compare`: one row per fit, indexed by name, best first, with the columns
        ``elpd_diff``, ``dse`` and ``weight``.

    Returns
    -------
    list of str
        One sentence per fit after the best: its elpd below the best's, with the standard error,
        judged a small difference (under :data:`SMALL_ELPD_DIFF`, 4), large but within two standard
        errors, or clearly worse. Then, when more than one fit has a stacking weight above 0.05, a
        sentence on how the weights share the forecast; last, a reminder that for forecasts of
        larger runs a leave-future-out backtest is the comparison to trust.
    """
    best = table.index[0]
    lines = []
    for name, row in table.iloc[1:].iterrows():
        diff, dse = abs(float(row["elpd_diff"])), float(row["dse"])  # ArviZ 1.x: negative = below the best
        if diff < SMALL_ELPD_DIFF:
            judged = "a small difference: LOO does not separate them"
        elif diff < 2 * dse:
            judged = "large, but within two standard errors: not clearly worse"
        else:
            judged = "clearly worse"
        lines.append(f"{name} vs {best}: elpd {diff:.1f} lower (+- {dse:.1f}), {judged}.")
    carried = table[table["weight"] > 0.05]
    if len(carried) > 1:
        lines.append(
            "The stacking weights share the forecast between "
            + ", ".join(f"{name} ({w:.2f})" for name, w in carried["weight"].items())
            + ": each predicts some left-out runs better than the others (a lower-ranked law can carry more "
            "weight than a higher one)."
        )
    lines.append(
        "LOO scores how well each law describes these runs. For forecasts of larger runs, compare by "
        "leave-future-out (bayescale backtest with the same laws): the two can disagree, and for "
        "extrapolation the backtest is the one to trust."
    )
    return lines


def predict_stacked(
    fits: Mapping[str, Fit] | Sequence[Fit],
    points: Points | None = None,
    *,
    weights: Mapping[str, float] | None = None,
    ci_prob: float = defaults.CI_PROB,
    seed: int | None = None,
    **inputs: Any,
) -> pd.DataFrame:
    """Forecasts from several laws' posteriors mixed by weight: credible and predictive intervals of the mixture.

    ``weights`` default to the LOO stacking weights of :func:`compare` (the fits must then share
    their observations); give them explicitly to mix fits of different data. Each law contributes
    that share of the draws, so where the laws disagree the band spans their disagreement. The
    table's ``attrs["weights"]`` holds the weights used.

    Parameters
    ----------
    fits : dict of str to Fit, or sequence of Fit
        At least two fits, named as in :func:`compare`; each law's inputs must be given at the points.
    points : pandas.DataFrame or dict, optional
        Where to forecast: a table, or a mapping of scalars or arrays; or give the inputs as keywords.
    weights : dict of str to float, optional
        Weight of each fit, keyed by exactly the fits' names: finite, >= 0, not all 0, and
        normalised to sum to 1. Default: the stacking weights of :func:`compare`.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed intervals (:data:`bayescale.defaults.CI_PROB`).
    seed : int, optional
        Seed of the draws mixed and of the forecast noise; default the first fit's seed.
    **inputs
        The points as keywords instead of ``points``, such as ``N=[1e10, 1e11], D=[2e11, 2e12]``.

    Returns
    -------
    pandas.DataFrame
        The points, one row each, then ``mean`` and ``median`` of the mixed laws' loss, its credible
        interval ``lower`` and ``upper``, and the predictive interval of a new run, ``pred_lower`` and
        ``pred_upper``. ``attrs["ci_prob"]`` holds the interval mass, ``attrs["weights"]`` the
        normalised weights by fit name and ``attrs["band_includes"]`` what the bands include (as
        :func:`bayescale.forecast.predict.predict`'s).

    Raises
    ------
    BayescaleError
        If fewer than two fits are given, the weights are invalid, the points are given both as a
        table and as keywords, the fits observe the loss on different scales (a card's ``scale``), or (without
        ``weights``) the fits do not share their observations.
    """
    from bayescale.data.runs import prepare_points
    from bayescale.defaults import check_ci_prob
    from bayescale.forecast.predict import band_includes, loss_draws

    named = _named(fits)
    ci_prob = check_ci_prob(ci_prob)
    scale = check_one_scale(named, "their draws cannot be mixed")
    weights = _stacking_weights(named, weights)
    if points is None:
        points = inputs
    elif inputs:
        raise BayescaleError("give the points either as a table or as keywords, not both")
    seed = next(iter(named.values())).settings["seed"] if seed is None else seed
    rng, counts = _mixture(named, weights, seed)
    mus, ys, table = [], [], None
    for fit, count in zip(named.values(), counts):
        table = prepare_points(points, fit.law.inputs)
        mu, y = (np.concatenate(parts, axis=1) for parts in zip(*loss_draws(fit, table, seed)))
        keep = rng.choice(mu.shape[0], size=count, replace=count > mu.shape[0])
        mus.append(mu[keep])
        ys.append(y[keep])
    assert table is not None  # _named gave at least two fits
    mu, y = np.concatenate(mus), np.concatenate(ys)
    lo, hi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    law_q = scale.to_loss(np.nanquantile(mu, [lo, 0.5, hi], axis=0))
    pred_q = scale.to_loss(np.nanquantile(y, [lo, hi], axis=0))
    out = pd.concat(
        [
            table,
            pd.DataFrame(
                {
                    "mean": np.nanmean(scale.to_loss(mu), axis=0),
                    "median": law_q[1],
                    "lower": law_q[0],
                    "upper": law_q[2],
                    "pred_lower": pred_q[0],
                    "pred_upper": pred_q[1],
                },
                index=table.index,
            ),
        ],
        axis=1,
    )
    includes = [band_includes(fit) for fit in named.values()]  # each fit's draws keep their discrepancy
    out.attrs.update(
        ci_prob=ci_prob,
        weights=weights,
        band_includes={k: list(dict.fromkeys(w for one in includes for w in one[k])) for k in includes[0]},
    )
    return out


def _stacking_weights(named: Mapping[str, Fit], weights: Mapping[str, float] | None) -> dict[str, float]:
    """``weights`` checked and normalised; None: the LOO stacking weights of :func:`compare`."""
    if weights is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SamplerWarning)
            weights = compare(named)["weight"].to_dict()
    return _check_weights(weights, named)


def _mixture(named: Mapping[str, Fit], weights: Mapping[str, float], seed: int):
    """The mixture's random stream and how many of its draws each fit gives (the fewest draws of any fit in all)."""
    rng = np.random.default_rng([seed, 2])
    n_draws = min(fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"] for fit in named.values())
    return rng, rng.multinomial(n_draws, [weights[name] for name in named])


def plan_stacked(
    fits: Mapping[str, Fit] | Sequence[Fit],
    flops: float,
    *,
    weights: Mapping[str, float] | None = None,
    ci_prob: float = defaults.CI_PROB,
    cost: str | None = None,
) -> dict:
    """The compute-optimal N*, D* of several laws mixed by weight: the allocation's band with the laws' spread.

    Each law's draws of N* (with its own discrepancy, :func:`~bayescale.forecast.plan.widened_allocation`)
    contribute their weight's share, so where the laws put the optimum apart the band spans them.

    Parameters
    ----------
    fits : dict of str to Fit, or sequence of Fit
        At least two fits of laws that can be planned with (in N and D), named as in :func:`compare`.
    flops : float
        The compute budget in FLOPs, positive and finite.
    weights : dict of str to float, optional
        Weight of each fit by name; default the LOO stacking weights of :func:`compare`.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed intervals (:data:`bayescale.defaults.CI_PROB`).
    cost : str, optional
        The training cost as a formula in N and D; default ``"6*N*D"``.

    Returns
    -------
    dict
        ``flops``, ``ci_prob``, ``weights`` (normalised, by fit); ``N_opt``, ``D_opt`` and
        ``tokens_per_param`` of the mixture, each with ``median``, ``lower`` and ``upper``;
        ``laws``, per fit its own ``N_opt`` band (as ``plan`` gives it); ``band_includes``
        (``allocation``: parameters, extrapolation discrepancy where the fits carry one, law form).

    Raises
    ------
    BayescaleError
        If fewer than two fits are given, the weights are invalid, or a law cannot be planned with.
    """
    from bayescale.defaults import check_ci_prob
    from bayescale.forecast.budget import Budget
    from bayescale.forecast.plan import includes, interval, optimal_allocation, widened_allocation

    named = _named(fits)
    ci_prob = check_ci_prob(ci_prob)
    weights = _stacking_weights(named, weights)
    budget = Budget.make(cost)
    rng, counts = _mixture(named, weights, next(iter(named.values())).settings["seed"])
    parts, laws = [], {}
    for (name, fit), count in zip(named.items(), counts):
        draws, _ = widened_allocation(fit, optimal_allocation(fit, flops, budget), flops, budget)
        laws[name] = {"law": fit.law.name, "N_opt": interval(draws["N_opt"], ci_prob)}
        parts.append(draws.iloc[rng.choice(len(draws), size=count, replace=count > len(draws))])
    mixed = pd.concat(parts, ignore_index=True)
    allocation = [word for fit in named.values() for word in includes(fit)["allocation"]]
    return {
        "flops": float(flops),
        "ci_prob": ci_prob,
        "weights": weights,
        **{key: interval(mixed[key], ci_prob) for key in ("N_opt", "D_opt", "tokens_per_param")},
        "laws": laws,
        "band_includes": {"allocation": [*dict.fromkeys(allocation), LAW_FORM]},
    }


def _check_weights(weights: Mapping[str, float], named: Mapping[str, Fit]) -> dict[str, float]:
    if set(weights) != set(named):
        raise BayescaleError(
            f"weights must name exactly the fits {', '.join(named)}; got {', '.join(map(str, weights))}"
        )
    values = {k: float(v) for k, v in weights.items()}
    if any(not np.isfinite(v) or v < 0 for v in values.values()) or sum(values.values()) <= 0:
        raise BayescaleError(f"weights must be finite, >= 0 and not all 0; got {values}")
    total = sum(values.values())
    return {k: v / total for k, v in values.items()}


def against_backtest(table: pd.DataFrame, fits: Mapping[str, Fit], backtest: BacktestResult) -> list[str]:
    """Where LOO (describing these runs) and a leave-future-out backtest (forecasting larger ones) disagree.

    A fit is matched to the backtest candidate of the same law (the first word of its label); fits
    whose law the backtest did not score, or scored in several variants, are named as unmatched.

    Parameters
    ----------
    table : pandas.DataFrame
        The table of :func:`compare`: one row per fit, indexed by name, best first, with the column
        ``rank``.
    fits : dict of str to Fit
        The fits compared, keyed by the names in ``table``'s index; each fit's law name is matched to
        the backtest's candidates.
    backtest : BacktestResult
        A backtest of the same laws (:func:`bayescale.backtest`); its ``table`` gives each candidate's
        rank, 90% coverage and median error.

    Returns
    -------
    list of str
        First, if some fits have no single match in the backtest, a line naming them. With fewer than
        two matched fits, then a line saying there is nothing to set against LOO. Otherwise one line
        per matched fit (its LOO rank, and on the held-out runs its backtest rank, the share inside
        the 90% predictive band and the median absolute relative error), and a last line saying
        whether LOO and the backtest prefer the same fit, or which to trust for forecasts when they
        do not.
    """
    scored = backtest.table
    by_law: dict[str, list[str]] = {}
    for label in scored.index:
        by_law.setdefault(label.split()[0], []).append(label)
    laws = [fits[name].law.name for name in table.index]
    matched = {
        name: by_law[law][0]
        for name, law in zip(table.index, laws)
        if len(by_law.get(law, [])) == 1 and laws.count(law) == 1
    }
    lines = []
    unmatched = [name for name in table.index if name not in matched]
    if unmatched:
        lines.append(f"not in the backtest (or in several variants): {', '.join(unmatched)}.")
    if len(matched) < 2:
        return lines + ["The backtest scores fewer than two of these fits: nothing to set against LOO."]
    for name, label in matched.items():
        row = scored.loc[label]
        lines.append(
            f"{name}: LOO rank {int(table.loc[name, 'rank'])}; backtest on {backtest.holdout!r} "
            f"({backtest.n_heldout} runs): rank {int(row['rank'])}, 90% band holds "
            f"{row['coverage_0.9']:.2f}, median error {row['median_abs_rel_error']:.2%}."
        )
    loo_best = next(name for name in table.index if name in matched)
    future_best = min(matched, key=lambda name: scored.loc[matched[name], "rank"])
    if loo_best == future_best:
        lines.append(
            f"LOO and the backtest agree: {loo_best} is best at describing these runs and at forecasting "
            "the held-out larger ones."
        )
    else:
        lines.append(
            f"They disagree: LOO prefers {loo_best} (it describes these runs best), the backtest prefers "
            f"{future_best} (it forecast the held-out larger runs best). For forecasts beyond the data, "
            f"trust the backtest: use {future_best}, or mix the laws (predict with both fits)."
        )
    return lines
