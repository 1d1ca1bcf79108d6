"""What the runs determine and what the priors carry: power-scaling sensitivity, contraction, identifiability.

- **Power-scaling sensitivity** (Kallioinen, Paananen, Bürkner and Vehtari 2024, ``arviz_stats.psense``):
  raise the prior, or the likelihood, to a power near 1 (0.99 and 1.01) by Pareto-smoothed importance
  weights on the posterior draws, and measure how far a quantity's posterior moves (the cumulative
  Jensen-Shannon distance per log2 of the power). The log prior is PyMC's own (``compute_log_prior``
  on ``fit.model``) plus the log-Jacobian of each parameter's unconstrained map (PyMC's default
  transform), so the density scaled is that of the unconstrained coordinate (log A for a LogNormal prior
  on A): scaling it sharpens or widens the prior about its own centre. On the parameter's own scale (as
  priorsense takes Stan's ``lprior``) scaling a LogNormal also shifts its centre, by sigma^2 per unit of
  the power: A's LogNormal(log 406.4, 2) then read as informative where the runs pin A down (A 0.22
  against a likelihood sensitivity of 0.16 on a synthetic sweep over three decades of N; 0.05 this way).
  Only the top-level priors are scaled: the card's and the noise priors, and a pooled parameter's
  population value and spread, not the population distribution of its groups. The likelihood is the
  stored pointwise log-likelihood. priorsense's diagnoses at its threshold 0.05: both above,
  "prior-data conflict"; the prior above and the likelihood below, "strong prior / weak likelihood".
- **Prior-driven** (bayescale's rule): the prior sensitivity is at least half the likelihood's (and above
  the Monte Carlo floor, 0.01). For a Gaussian posterior without prior-data conflict the ratio of the two
  is the prior's precision over the runs' (checked by simulation: 1, 1/3, 1/9, 1/30 came back as
  1.00, 0.333, 0.111, 0.033), so the priors then hold at least a third of what is known about the
  quantity; a conflict only raises the ratio. The threshold alone would miss that: without conflict
  the prior's sensitivity stays below 0.05 even where it holds half the information (0.043).
- **Contraction**: 1 - posterior variance / prior variance, on the unconstrained scale (log for positive
  parameters); the prior draws are the generative model's (``fit.prior_predictive``).
- **Forecasts**: the same power-scaling applied to the law's value at a point (the posterior draws of
  the law, without the extrapolation discrepancy, which is not a function of the parameters); where a
  forecast is prior-driven, each top-level prior is scaled alone to name the ones that carry it.
- **Identifiability in words**: runs spanning less than a decade of an input, one tokens-per-parameter
  ratio, or parameters of different terms correlated in the posterior leave a sum of the law's terms
  determined and its parts not; the sum and its parts are evaluated at the runs' centre (geometric mean
  of each input) over the draws, and said in words.

Nothing here runs inside ``fit``: ``check``, ``summary`` and ``predict`` compute it on request. The log
prior is cached as ``fit.idata["log_prior"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import Points, point_label, prepare_points
from bayescale.defaults import reproducible_compilation
from bayescale.forecast.predict import flat_draws, law_mean, params_at
from bayescale.model.generative import posterior_offsets

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit

#: priorsense's threshold of both sensitivities (``arviz_stats.psense_summary``)
THRESHOLD = 0.05
#: prior-driven: prior sensitivity at least this share of the likelihood's (the priors hold >= 1/3 of the information)
DRIVEN_RATIO = 0.5
#: below this prior sensitivity nothing is prior-driven: the Monte Carlo floor (an unrelated variable gives 0.003-0.007)
FLOOR = 0.01
#: what ``fit.idata["log_prior"]`` holds when this module wrote it
LOG_PRIOR_KIND = "top-level priors, density of the unconstrained coordinates"
#: |correlation| on the unconstrained scale above which two parameters of different terms trade off
CORRELATED = 0.9
#: runs spanning fewer decades than this in an input do not separate the terms in it from the floor
NARROW_DECADES = 1.0
#: tokens per parameter spanning fewer decades than this (a factor 2) is one ratio: N and D move together
RATIO_DECADES = 0.3
#: a part of a sum is "not determined" when its relative sd is this many times the sum's
UNDETERMINED_FACTOR = 3.0


def diagnosis(prior: float, likelihood: float) -> str:
    """priorsense's diagnosis of a quantity's two sensitivities: ``"prior-data conflict"``,
    ``"strong prior / weak likelihood"`` or ``"ok"``."""
    if prior >= THRESHOLD and likelihood >= THRESHOLD:
        return "prior-data conflict"
    if prior > THRESHOLD > likelihood:
        return "strong prior / weak likelihood"
    return "ok"


def prior_driven(prior: float, likelihood: float) -> bool:
    """bayescale's rule (module docstring): prior sensitivity >= :data:`DRIVEN_RATIO` x the likelihood's, above :data:`FLOOR`."""
    return bool(prior >= FLOOR and prior >= DRIVEN_RATIO * likelihood)


def log_densities(fit: Fit) -> tuple[xr.Dataset, xr.Dataset]:
    """The top-level log prior and the pointwise log-likelihood of every posterior draw.

    The log prior is PyMC's ``compute_log_prior`` on ``fit.model`` plus each unconstrained map's
    log-Jacobian, computed once and kept in ``fit.idata["log_prior"]`` (marked in its attributes, so a
    ``log_prior`` group of another making is computed anew).
    """
    group = fit.idata.children.get("log_prior")
    if group is None or group.attrs.get("bayescale") != LOG_PRIOR_KIND:
        model = fit.model
        free = [rv.name for rv in model.free_RVs]
        trace = fit.posterior.merge(posterior_offsets(fit.spec, fit.posterior))[free]
        top = [name for name in free if name not in {f"{n}_offset" for n in fit.spec.pooled}]
        log_prior = unconstrained_log_prior(model, trace, top, lambda name: _support(fit, name))
        fit.idata["log_prior"] = log_prior.assign_attrs(bayescale=LOG_PRIOR_KIND)
    return fit.idata["log_prior"].to_dataset(), fit.idata["log_likelihood"].to_dataset()


def unconstrained_log_prior(model, trace: xr.Dataset, names: list[str], support) -> xr.Dataset:
    """PyMC's log prior of ``names`` at the draws of ``trace``, plus the log-Jacobian of each one's unconstrained
    map (``support(name)``: its :class:`~bayescale.laws.priors.Support`, or None), so the density scaled is the
    unconstrained coordinate's."""
    import pymc as pm

    with reproducible_compilation():
        log_prior = pm.stats.compute_log_prior(
            xr.DataTree.from_dict({"posterior": trace}),
            var_names=names,
            model=model,
            extend_inferencedata=False,
            progressbar=False,
        )
    for name in log_prior.data_vars:
        found = support(str(name))
        if found is not None and found.kind != "real":
            with np.errstate(all="ignore"):
                u = found.to_unconstrained(trace[name].to_numpy())
            log_prior[name] = log_prior[name] + found.from_unconstrained(u, np)[1]
    return log_prior


def _psense(fit: Fit, draws: xr.Dataset, priors: list[str] | None = None) -> tuple[xr.Dataset, xr.Dataset | None]:
    """Prior and (unless ``priors`` names some) likelihood sensitivity of every variable of ``draws``."""
    from arviz_stats import psense

    log_prior, log_likelihood = log_densities(fit)
    tree = xr.DataTree.from_dict({"posterior": draws, "log_prior": log_prior, "log_likelihood": log_likelihood})

    def scaled(**group) -> xr.Dataset:
        try:
            return psense(tree, **group)
        except ValueError as error:  # a log density equal at every draw: power-scaling it moves nothing
            if "All tail values are the same" not in str(error):
                raise
            return xr.zeros_like(draws.isel(chain=0, draw=0, drop=True))

    prior = scaled(group="prior", group_var_names=priors or list(log_prior.data_vars))
    return prior, (None if priors else scaled(group="likelihood"))


def _as_draws(fit: Fit, values: Mapping[str, np.ndarray]) -> xr.Dataset:
    """Flat draws (draws first, chains stacked as :func:`flat_draws` stacks them) as a (chain, draw, ...) Dataset."""
    posterior = fit.posterior
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    out = {}
    for name, value in values.items():
        value = np.asarray(value, float).reshape(chains, draws, -1)
        out[name] = (("chain", "draw", "point"), np.where(np.isfinite(value), value, np.nan))
    return xr.Dataset(out, coords={"chain": posterior["chain"], "draw": posterior["draw"]})


def _support(fit: Fit, name: str):
    if name in fit.spec.priors:
        return fit.spec.priors[name].support
    for pooled in fit.spec.pooled.values():
        if name == pooled.pop_name:
            return fit.spec.priors[pooled.param].support
        if name == pooled.sd_name:
            return pooled.sd_prior.support
    return None


def _variance(fit: Fit, name: str, values: xr.DataArray) -> np.ndarray:
    """Variance over the draws on the unconstrained scale, per group where the variable has groups."""
    support = _support(fit, name)
    flat = values.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
    with np.errstate(all="ignore"):
        u = flat if support is None else support.to_unconstrained(flat)
    return np.atleast_1d(np.nanvar(u, axis=0))


def _labels(name: str, values: xr.DataArray) -> list[str]:
    dims = [d for d in values.dims if d not in ("chain", "draw")]
    return [name] if not dims else [f"{name}[{level}]" for level in values[dims[0]].to_numpy()]


def sensitivity(fit: Fit, *, prior_draws: int = 500, seed: int | None = None) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity and posterior contraction of every parameter.

    Parameters
    ----------
    fit : Fit
        The fit to examine.
    prior_draws : int, default 500
        Prior draws for the contraction, where ``fit.idata`` has no ``prior`` group yet.
    seed : int, optional
        Seed of those prior draws; the fit's seed by default.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``param`` as :func:`bayescale.summary` labels them (law parameters, a pooled one per
        group, the noise parameters, each pooled parameter's population value and spread): ``prior`` and
        ``likelihood`` (the sensitivities), ``diagnosis`` (priorsense's words, or ``"ok"``), ``prior_driven``
        and ``contraction`` (1 - posterior / prior variance on the unconstrained scale). Adds the groups
        ``log_prior`` and (where missing) ``prior`` to ``fit.idata``.
    """
    names = [n for n in fit.spec.names if n in fit.posterior]
    draws = fit.posterior[names]
    prior, likelihood = _psense(fit, draws)
    assert likelihood is not None
    if "prior" not in fit.idata.children:
        fit.prior_predictive(prior_draws, seed=seed)
    prior_group = fit.idata["prior"].to_dataset()
    rows = []
    for name in names:
        p = np.atleast_1d(prior[name].to_numpy())
        lik = np.atleast_1d(likelihood[name].to_numpy())
        contraction = np.full(len(p), np.nan)
        if name in prior_group:
            contraction = 1 - _variance(fit, name, draws[name]) / _variance(fit, name, prior_group[name])
        for i, label in enumerate(_labels(name, draws[name])):
            rows.append(
                {
                    "param": label,
                    "prior": float(p[i]),
                    "likelihood": float(lik[i]),
                    "diagnosis": diagnosis(p[i], lik[i]),
                    "prior_driven": prior_driven(p[i], lik[i]),
                    "contraction": float(contraction[i]),
                }
            )
    return pd.DataFrame(rows).set_index("param")


# -- what carries a forecast ------------------------------------------------------------------------
def _term_inputs(fit: Fit, param: str) -> list[str]:
    """The inputs of the law's additive terms that hold ``param`` (none: a floor)."""
    inputs = [n for term in fit.law.formula.terms() if param in term.names for n in term.names]
    return [n for n in fit.law.inputs if n in inputs]


def runs_that_determine(fit: Fit, param: str, point: Mapping[str, float] | None = None) -> str:
    """Which runs would pin ``param`` down, in words (``"runs at larger N (the runs reach N = 2e+08)"``)."""
    for pooled in fit.spec.pooled.values():
        if param in (pooled.pop_name, pooled.sd_name):
            return f"runs in more groups ({pooled.column} values)"
    if param not in fit.law.params:
        return "more runs"
    frame = fit.runs.frame
    inputs = _term_inputs(fit, param)
    if not inputs:  # a floor shows where every other term has faded
        return "runs at larger " + " and ".join(fit.law.inputs)
    words = []
    for name in inputs:
        low, high = float(frame[name].min()), float(frame[name].max())
        if point is not None and name in point and float(point[name]) > high:
            words.append(
                f"runs at larger {name} (the runs reach {name} = {high:.3g}, the forecast is at {point[name]:.3g})"
            )
        elif np.log10(high / low) < NARROW_DECADES if low > 0 else False:
            words.append(f"runs over a wider range of {name} (now {low:.3g} to {high:.3g})")
        else:
            words.append(f"runs at larger {name}")
    return " and ".join(words)


def _alone(fit: Fit, draws: xr.Dataset) -> dict[str, xr.Dataset]:
    """Prior sensitivity of every variable of ``draws`` with each top-level prior scaled alone."""
    log_prior, _ = log_densities(fit)
    return {str(name): _psense(fit, draws, [str(name)])[0] for name in log_prior.data_vars}


def _carriers(alone: Mapping[str, xr.Dataset], var: str, index: int | None = None) -> list[tuple[str, float]]:
    """The priors that move ``var`` (its element ``index``, else its largest) most, scaled alone: up to three,
    each at least half the largest, largest first."""
    values = {
        name: float(np.max(s[var].to_numpy()) if index is None else s[var].to_numpy()[index])
        for name, s in alone.items()
    }
    top = max(values.values(), default=0.0)
    return sorted(((n, v) for n, v in values.items() if v >= top / 2), key=lambda item: -item[1])[:3]


def _note(what: str, prior: float, likelihood: float, carriers, advise, design: bool = True) -> str:
    """The sentence a user reads where ``what`` is prior-driven; ``advise(name)`` says which runs would determine a carrier."""
    items = [f"{name} ({value:.2f})" for name, value in carriers]
    named = " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)
    advice = "; ".join(dict.fromkeys(advise(name) for name, _ in carriers))
    return (
        f"{what} is prior-driven: scaling the priors moves it at least half as much as scaling the runs' "
        f"likelihood (power-scaling sensitivity {prior:.2f} against {likelihood:.2f}), mostly through the prior"
        f"{'s' if len(carriers) > 1 else ''} on {named}. {advice[0].upper() + advice[1:]} would determine "
        f"{'them' if len(carriers) > 1 else 'it'}; until then the forecast says what the priors say"
        + (" (`bayescale design` ranks candidate runs by how much they would narrow it)." if design else ".")
    )


def draws_sensitivity(
    fit: Fit, quantities: Mapping[str, np.ndarray], point=None, labels: Mapping[str, str] | None = None
) -> dict[str, dict]:
    """Power-scaling sensitivity of derived quantities: flat draws (chains stacked as :func:`flat_draws` stacks
    them), each ``(draws,)`` or ``(draws, k)``.

    Returns, per quantity, ``prior``, ``likelihood`` and ``prior_driven`` (lists for ``(draws, k)`` input),
    and ``note``, the sentence naming the priors that carry it where it is prior-driven (else None), which
    calls it ``labels[name]`` and advises runs for ``point`` (inputs by name). A quantity with non-finite
    draws gets NaN.
    """
    draws = _as_draws(fit, quantities)
    prior, likelihood = _psense(fit, draws)
    assert likelihood is not None
    out: dict[str, dict] = {}
    driven = []
    for name in draws.data_vars:
        p, lik = prior[name].to_numpy(), likelihood[name].to_numpy()
        flags = [prior_driven(a, b) for a, b in zip(p, lik)]
        out[str(name)] = {"prior": p.tolist(), "likelihood": lik.tolist(), "prior_driven": flags, "note": None}
        driven += [str(name)] if any(flags) else []
    alone = _alone(fit, draws[driven]) if driven else {}
    for name in driven:
        i = int(np.argmax(prior[name].to_numpy()))
        entry = out[name]
        what = (labels or {}).get(name, name)
        advise = lambda param: runs_that_determine(fit, param, point)  # noqa: E731
        entry["note"] = _note(what, entry["prior"][i], entry["likelihood"][i], _carriers(alone, name), advise)
    for name, entry in out.items():
        if np.ndim(quantities[name]) == 1:
            entry.update({k: entry[k][0] for k in ("prior", "likelihood", "prior_driven")})
    return out


def forecast_sensitivity(fit: Fit, points: Points, *, seed: int | None = None) -> pd.DataFrame:
    """Power-scaling sensitivity of the law's value at ``points``, and what carries the prior-driven ones.

    Parameters
    ----------
    fit : Fit
        The fit to forecast with.
    points : pandas.DataFrame or mapping
        The points, as :func:`bayescale.predict` takes them.
    seed : int, optional
        Seed of a new group's draws (as ``predict``'s); the fit's seed by default.

    Returns
    -------
    pandas.DataFrame
        One row per point (index ``point``): ``prior_sensitivity``, ``likelihood_sensitivity``,
        ``prior_driven``, ``driven_by`` (the top-level priors that carry a prior-driven forecast, each
        scaled alone, largest first; empty otherwise) and ``note`` (the sentence a user reads, or None).
    """
    table = prepare_points(points, fit.law.inputs)
    seed = fit.settings["seed"] if seed is None else seed
    params = flat_draws(fit)
    mu = law_mean(fit, params_at(fit, params, table, np.random.default_rng(seed)), table)
    draws = _as_draws(fit, {"forecast": mu})
    prior, likelihood = _psense(fit, draws)
    assert likelihood is not None
    p, lik = prior["forecast"].to_numpy(), likelihood["forecast"].to_numpy()
    flags = [prior_driven(a, b) for a, b in zip(p, lik)]
    driven_by: list[list[str]] = [[] for _ in flags]
    notes: list[str | None] = [None for _ in flags]
    chosen = [i for i, flag in enumerate(flags) if flag]
    alone = _alone(fit, draws.isel(point=chosen)) if chosen else {}
    for k, i in enumerate(chosen):
        row = table.iloc[i]
        carriers = _carriers(alone, "forecast", k)
        driven_by[i] = [name for name, _ in carriers]
        what, at = f"the forecast at {point_label(row, fit.law.inputs)}", row.to_dict()
        notes[i] = _note(what, p[i], lik[i], carriers, lambda name, at=at: runs_that_determine(fit, name, at))
    return pd.DataFrame(
        {
            "prior_sensitivity": p,
            "likelihood_sensitivity": lik,
            "prior_driven": flags,
            "driven_by": driven_by,
            "note": notes,
        },
        index=table.index,
    )


def plan_sensitivity(fit: Fit, flops: float, budget=None) -> dict[str, dict]:
    """Power-scaling sensitivity of the compute-optimal N*, D* and loss at ``flops`` (logs of the plan's draws).

    Parameters
    ----------
    fit : Fit
        A fit that :func:`bayescale.plan` can plan with.
    flops : float
        The compute budget in FLOPs.
    budget : Budget, optional
        The cost and the cap on unique tokens (:class:`bayescale.Budget`); 6ND and no cap by default.

    Returns
    -------
    dict
        Per ``N_opt``, ``D_opt`` and ``loss_opt``: ``prior`` and ``likelihood`` (the sensitivities),
        ``prior_driven`` and ``note`` (the warning a user reads where it is prior-driven, else None).
    """
    from bayescale.forecast.plan import optimal_allocation

    draws = optimal_allocation(fit, flops, budget)
    keys = {"N_opt": "the compute-optimal N*", "D_opt": "the compute-optimal D*", "loss_opt": "the loss at the optimum"}
    with np.errstate(all="ignore"):
        quantities = {k: np.log(draws[k].to_numpy(dtype=float)) for k in keys if k != "loss_opt"}
        quantities["loss_opt"] = fit.law.observation.observe(
            draws["loss_opt"].to_numpy(dtype=float)
        )  # a raw target has no log
    point = {"N": float(draws["N_opt"].median()), "D": float(draws["D_opt"].median())}
    labels = {k: f"{label} at {flops:.3g} FLOPs" for k, label in keys.items()}
    return draws_sensitivity(fit, quantities, point, labels)


def tune_sensitivity(fit: Fit, points: Points, *, seed: int | None = None) -> dict[str, dict]:
    """Power-scaling sensitivity of the best value of each tunable input (its log, per draw) at ``points``.

    Parameters
    ----------
    fit : Fit
        A fit of a law with a tunable input (``lr``, ``batch``).
    points : pandas.DataFrame or mapping
        Where to tune, as :func:`bayescale.tune` takes them.
    seed : int, optional
        Seed of a new group's draws; the fit's seed by default.

    Returns
    -------
    dict
        Per ``<input>_opt``: lists (one per point) ``prior``, ``likelihood`` and ``prior_driven``, and
        ``note`` (the warning of its most prior-driven point, else None).
    """
    from bayescale.data.tunable import other_inputs
    from bayescale.forecast.tuning import optimum_draws

    table = prepare_points(points, other_inputs(fit.law))
    _, _, best = optimum_draws(fit, table, fit.settings["seed"] if seed is None else seed)
    labels = {f"{name}_opt": f"the best {name}" for name in best}
    point = {n: float(table[n].max()) for n in other_inputs(fit.law) if n in table}
    return draws_sensitivity(fit, {f"{name}_opt": values for name, values in best.items()}, point, labels)


# -- identifiability in words -----------------------------------------------------------------------
def _relative_sd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.std(values) / abs(np.median(values))) if len(values) else float("nan")


def _correlated_pairs(fit: Fit, params: Mapping[str, np.ndarray]) -> list[dict]:
    """Law parameters of different terms whose posteriors correlate beyond :data:`CORRELATED` (unconstrained)."""
    names = [n for n in fit.law.param_names if np.ndim(params[n]) == 1]
    if len(names) < 2:
        return []
    with np.errstate(all="ignore"):
        u = np.array([fit.spec.priors[n].support.to_unconstrained(params[n]) for n in names])
        corr = np.corrcoef(u)
    terms = fit.law.formula.terms()
    pairs = []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            shared = any(a in t.names and b in t.names for t in terms)
            if not shared and abs(corr[i, j]) >= CORRELATED:
                pairs.append({"pair": [a, b], "r": float(corr[i, j])})
    return pairs


def identifiability(fit: Fit) -> dict:
    """What the runs' design and the posterior say the data determine: narrow inputs, one ratio, sums of terms.

    Parameters
    ----------
    fit : Fit
        The fit to examine.

    Returns
    -------
    dict
        ``spans`` (decades each input spans), ``narrow`` (inputs spanning less than a decade),
        ``tokens_per_param`` (``median`` and ``decades``, for a law in N and D), ``correlated`` (pairs of
        parameters of different terms with ``r``), ``combinations`` (each ``sum``, ``at`` the runs' centre,
        ``relative_sd`` of the sum and ``parts``, each part's relative sd, ``reasons``) and ``findings`` (str).
    """
    frame, inputs = fit.runs.frame, list(fit.law.inputs)
    positive = [n for n in inputs if (frame[n] > 0).all()]
    spans = {n: float(np.log10(frame[n].max() / frame[n].min())) for n in positive}
    centre = {n: float(np.exp(np.log(frame[n]).mean())) for n in positive}
    narrow = [n for n, span in spans.items() if span < NARROW_DECADES]
    ratio = None
    if {"N", "D"} <= set(positive):
        r = frame["D"] / frame["N"]
        ratio = {"median": float(r.median()), "decades": float(np.log10(r.max() / r.min()))}
    params = flat_draws(fit)
    for name, pooled in fit.spec.pooled.items():  # pooled: the population value
        params[name] = params[pooled.pop_name]
    correlated = _correlated_pairs(fit, params)
    terms = fit.law.formula.terms()
    uses = [set(t.names) & set(inputs) for t in terms]
    floors = {i for i, used in enumerate(uses) if not used}
    wanted: dict[frozenset[int], list[str]] = {}  # sets of terms -> why their sum is what the runs determine
    for name in narrow:
        span = f"{frame[name].min():.3g} to {frame[name].max():.3g}"
        chosen = floors | {i for i, used in enumerate(uses) if name in used}
        wanted.setdefault(frozenset(chosen), []).append(f"the runs span {spans[name]:.2g} decades of {name} ({span})")
    if ratio is not None and ratio["decades"] < RATIO_DECADES:
        chosen = {i for i, used in enumerate(uses) if used & {"N", "D"}}
        reason = f"every run has about {ratio['median']:.3g} tokens per parameter, so N and D move together"
        wanted.setdefault(frozenset(chosen), []).append(reason)
    for pair in correlated:
        chosen = {i for i, t in enumerate(terms) if set(pair["pair"]) & set(t.names)}
        reason = f"{pair['pair'][0]} and {pair['pair'][1]} trade off in the posterior (r = {pair['r']:+.2f})"
        wanted.setdefault(frozenset(chosen), []).append(reason)
    env = {**{n: centre.get(n, float(frame[n].median())) for n in inputs}, **params}
    combinations, findings = [], []
    for together, reasons in wanted.items():
        if len(together) < 2:
            continue
        with np.errstate(all="ignore"):
            values = {terms[i].text: np.asarray(terms[i].numpy(env), float) for i in sorted(together)}
        total = _relative_sd(np.sum(list(values.values()), axis=0))
        parts = {text: _relative_sd(v) for text, v in values.items()}
        loose = [text for text, sd in parts.items() if sd >= UNDETERMINED_FACTOR * total]
        used = [n for n in inputs if any(n in terms[i].names for i in together)]
        at = {n: env[n] for n in used}
        combinations.append(
            {"sum": " + ".join(values), "at": at, "relative_sd": total, "parts": parts, "reasons": reasons}
        )
        if not loose:
            continue
        where = ", ".join(f"{n} around {v:.2g}" for n, v in at.items())
        nots = " nor ".join(f"{text} alone (±{parts[text]:.1%})" for text in loose)
        findings.append(
            f"identifiability: {'; '.join(reasons)}. The runs determine {' + '.join(values)}"
            f"{' at ' + where if where else ''} (±{total:.1%}), not {nots}: forecasts that need the parts "
            "separately (beyond the runs) rest on the priors and the law's form there."
        )
    return {
        "spans": spans,
        "narrow": narrow,
        "tokens_per_param": ratio,
        "correlated": correlated,
        "combinations": combinations,
        "findings": findings,
    }


# -- for check --------------------------------------------------------------------------------------
def check_sensitivity(fit: Fit, *, prior_draws: int = 500, seed: int | None = None) -> dict:
    """``check``'s part: ``sensitivity`` and ``contraction`` per parameter, ``prior_driven``, ``identifiability``."""
    table = sensitivity(fit, prior_draws=prior_draws, seed=seed)
    result = {
        "sensitivity": {
            name: {"prior": row["prior"], "likelihood": row["likelihood"], "diagnosis": row["diagnosis"]}
            for name, row in table.iterrows()
        },
        "contraction": {name: float(value) for name, value in table["contraction"].items()},
        "prior_driven": [str(name) for name in table.index[table["prior_driven"]]],
        "identifiability": identifiability(fit),
    }
    return result


def sensitivity_findings(result: dict) -> list[str]:
    """What the sensitivities and the identifiability say, in words."""
    sens, contraction = result["sensitivity"], result["contraction"]
    driven = result["prior_driven"]

    def figures(name: str) -> str:
        return (
            f"{name} (prior {sens[name]['prior']:.2f}, likelihood {sens[name]['likelihood']:.2f}, "
            f"contraction {contraction[name]:.2f})"
        )

    out = []
    if driven:
        out.append(
            f"prior sensitivity: {len(driven)} parameter(s) are prior-driven, the priors moving them at least half as "
            f"much as the runs (power-scaling prior vs likelihood sensitivity, Kallioinen et al. 2024): "
            f"{', '.join(map(figures, driven))}. Their values, and forecasts that lean on them, say what the "
            "priors say; the identifiability notes say what the runs do determine."
        )
    else:
        top = max(sens, key=lambda n: sens[n]["prior"])
        low = min(contraction, key=lambda n: contraction[n] if np.isfinite(contraction[n]) else np.inf)
        out.append(
            f"prior sensitivity: the runs carry every parameter (largest prior sensitivity {sens[top]['prior']:.2f}, "
            f"{top}; smallest contraction {contraction[low]:.2f}, {low})."
        )
    conflict = [n for n in sens if sens[n]["diagnosis"] == "prior-data conflict" and n not in driven]
    if conflict:
        out.append(
            f"prior-data conflict (priorsense's words) for {', '.join(conflict)}: the prior is informative "
            "(prior sensitivity >= 0.05) but the runs move the posterior more; check that the prior is meant for "
            "these runs (its centre, in the law card, against the posterior)."
        )
    weak = [n for n in sens if sens[n]["diagnosis"] == "strong prior / weak likelihood"]
    if weak:
        out.append(
            f"strong prior / weak likelihood (priorsense's words) for {', '.join(weak)}: the runs say little "
            f"about {'them' if len(weak) > 1 else 'it'}."
        )
    return out + list(result["identifiability"]["findings"])
