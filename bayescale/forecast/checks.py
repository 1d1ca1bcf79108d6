"""Model checks a user runs before trusting a fit: prior predictive, posterior predictive, LOO-PIT.

- **Prior predictive**: do the priors (and noise model) put the observed losses within reach? A
  run outside the central 99% of the prior predictive means the priors rule it out before seeing
  any data (wrong units, or a prior meant for another scale).
- **Posterior predictive** (in sample): do the runs fall inside the fit's own predictive bands as
  often as the bands say? Far fewer means the law or the noise model misses something.
- **Noise along N**: does the scatter change with size (the law's first input)? A Spearman rank
  correlation of each run's absolute residual with log N, and the 50%-band coverage of the
  smallest and the largest third. Scatter that grows with size leaves the largest runs too often
  outside their bands, and forecasts beyond them too narrow: fit with a noise trend (``--noise-trend``).
- **LOO-PIT**: for each run, where its loss falls in the predictive distribution of a fit without
  it (PSIS-LOO, ``arviz_stats.loo_pit``). Calibrated forecasts give uniform values. The values
  are not independent draws (every fit shares the other runs), so no test of independent draws
  applies; the criterion is the one ArviZ draws (``arviz_plots.plot_loo_pit``): the ECDF of the
  values must stay inside the simultaneous 99% band of a uniform ECDF (Säilynoja, Bürkner and
  Vehtari 2022). Where it leaves the band, the shape says how (bias, too narrow, too wide).
- **Loss scale**: does the loss column look like a perplexity, exp of a loss (:func:`loss_scale`)?
- **What the data determine**: power-scaling prior and likelihood sensitivity, contraction and
  identifiability in words (:mod:`bayescale.forecast.sensitivity`).

All draws come from ``fit.model`` (the generative PyMC model), so the checks are those a PyMC user
would run by hand, with ArviZ's group names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit

#: a run outside this central share of the prior predictive is "ruled out by the priors"
PRIOR_BAND = 0.99
#: the LOO-PIT ECDF must stay inside the simultaneous band of this probability (ArviZ's ``stats.envelope_prob``)
PIT_ENVELOPE_PROB = 0.99
#: simulations that set the simultaneous band (arviz_stats.ecdf_utils.ecdf_pit)
PIT_SIMULATIONS = 1000
#: a rank correlation of |residual| with log N below this p-value is reported (noise along N)
SCATTER_P_VALUE = 0.01
#: the loss floors (nats per token) that fits of language-model sweeps find lie well inside this range:
#: 1.69 (Hoffmann et al. 2022), 1.82 (Besiroglu et al. 2024, Epoch), 1.87 (Muennighoff et al. 2023);
#: bayescale's chinchilla fits: Epoch 1.86, Gadre et al. 2024's three corpora 1.53-1.63, the demo 1.55
PLAUSIBLE_FLOORS = (1.0, 2.5)


def loss_scale(fit: Fit) -> dict | None:
    """Does the loss column look like exp(loss), a perplexity? Judged by the floor the law finds in the runs.

    A perplexity is e^loss, so a law with an additive floor fitted to perplexities finds the floor e^E
    of the real loss: above every published floor, yet its log is one. The floor is the law's best fit
    to the runs on the log scale (least squares from the posterior median), not the posterior's: the
    floor's prior, centred on text's 1.69 nats, holds the posterior near text floors on a short sweep
    of perplexities (the demo's exponentiated: posterior median 2.37, the runs alone 4.52). Known
    answers (chinchilla): Epoch 1.86, Gadre et al.'s corpora 1.53 to 1.63, the demo 1.55 and Epoch's
    23 runs below 1.5e8 parameters 2.02 are losses; the same runs exponentiated give 7.05, 9.7 to
    10.3, 4.52 and 3.80, whose logs (1.95, 2.27 to 2.34, 1.51, 1.34) are plausible floors. The values
    alone cannot tell (losses of 3 to 8 nats are common for small models), nor could the law's fit to
    the loss against its fit to ln(loss): on Gadre's over-trained runs, where the law misfits, ln(loss)
    fitted the real losses better. Other data (image or audio tokens) can have floors above text's,
    so this is a flag, not an error.

    Returns
    -------
    dict or None
        ``floor`` (the law's floor, the card's ``anchor``, as the runs alone set it; a pooled fit's
        posterior median), ``log_floor``, ``plausible_floors`` and ``looks_like_perplexity`` (the floor
        lies above the plausible range and its log inside it); None for a law without an additive floor, or a
        law on the raw target scale (a card's ``scale = "raw"``: its target is no loss in nats).
    """
    anchor = fit.law.anchor
    if anchor is None or anchor not in fit.posterior or not fit.law.observation.is_log:
        return None
    floor = float(np.median(fit.posterior[anchor].to_numpy()))
    if not fit.spec.pooled:
        floor = _floor_from_runs(fit)
    low, high = PLAUSIBLE_FLOORS
    log_floor = float(np.log(floor)) if floor > 0 else float("nan")
    return {
        "floor": floor,
        "log_floor": log_floor,
        "plausible_floors": list(PLAUSIBLE_FLOORS),
        "looks_like_perplexity": bool(floor > high and low <= log_floor <= high),
    }


def _floor_from_runs(fit: Fit) -> float:
    """The law's floor that fits the runs best on the log scale, whatever its prior says (least squares)."""
    from scipy.optimize import least_squares

    names = fit.law.param_names
    supports = [fit.spec.priors[n].support for n in names]
    start = [s.to_unconstrained(np.median(fit.posterior[n].to_numpy())) for n, s in zip(names, supports)]
    env = {n: np.asarray(fit.runs[n], float) for n in fit.law.inputs}
    observed = np.log(np.asarray(fit.runs["loss"], float))

    def residuals(u: np.ndarray) -> np.ndarray:
        values = {n: s.from_unconstrained(x, np)[0] for n, s, x in zip(names, supports, u)}
        with np.errstate(all="ignore"):
            r = observed - np.log(fit.law.formula.numpy({**env, **values}))
        return np.where(np.isfinite(r), r, 10.0)  # an invalid loss is a large misfit

    best = least_squares(residuals, np.asarray(start, float)).x
    i = names.index(fit.law.anchor)
    return float(supports[i].from_unconstrained(best[i], np)[0])


def _inside(draws: np.ndarray, observed: np.ndarray, level: float) -> np.ndarray:
    """Per observation (columns of ``draws``): inside the central ``level`` band of the draws?"""
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return (observed >= lo) & (observed <= hi)


def _flat(group, name: str) -> np.ndarray:
    """Observed variable ``name``'s (chain, draw, obs) -> (draws, obs)."""
    values = group[name].to_numpy()
    return values.reshape(-1, values.shape[-1])


def check(fit: Fit, *, prior_draws: int = 500, seed: int | None = None) -> dict:
    """Run the three checks; returns figures per check and a list of findings in words.

    Adds the ``prior``, ``prior_predictive`` and ``posterior_predictive`` groups to ``fit.idata``.

    Parameters
    ----------
    fit : Fit
        The fit to check.
    prior_draws : int, default 500
        Number of prior predictive draws.
    seed : int, optional
        Random seed of the prior and posterior predictive draws; the fit's seed by default.

    Returns
    -------
    dict
        ``n_runs``, ``likelihood``; ``prior_predictive`` (``band``, ``outside``, ``outside_rows`` numbered from
        1, ``loss_range``, ``observed_range``); ``posterior_predictive`` (``coverage_0.5``, ``coverage_0.9``);
        ``noise_along_size`` (``input``, ``noise_trend``, ``rank_correlation``, ``p_value`` and the 50%
        coverage of the smallest and largest thirds); ``loo_pit`` (``values``, ``mean``,
        ``share_outside_central_90``, ``envelope_prob``, ``inside_envelope``, ``ecdf_points_outside`` and
        ``ecdf``: the ECDF and its simultaneous band at ``points``); ``loss_scale`` (:func:`loss_scale`);
        ``sensitivity`` (per parameter ``prior``, ``likelihood``, ``diagnosis``), ``contraction`` (per
        parameter), ``prior_driven`` (names) and ``identifiability`` (:mod:`bayescale.forecast.sensitivity`);
        ``discrepancy``, the extrapolation discrepancy in words (kappa, a sweep's drift, internal splits checked;
        None without one); and ``findings``, a list of str.

    """
    from arviz_stats import loo_pit
    from arviz_stats.ecdf_utils import ecdf_pit

    from bayescale.forecast.sensitivity import check_sensitivity

    scale = fit.law.observation
    observed = scale.observe(fit.runs["loss"])
    idata = fit.prior_predictive(prior_draws, seed=seed)
    prior = _flat(idata["prior_predictive"], scale.variable)
    ruled_out = ~_inside(prior, observed, PRIOR_BAND)
    idata = fit.posterior_predictive(seed=seed)
    replicated = _flat(idata["posterior_predictive"], scale.variable)
    coverage = {level: float(np.mean(_inside(replicated, observed, level))) for level in (0.5, 0.9)}
    size_name = fit.law.inputs[0]
    size = np.asarray(fit.runs[size_name], float)
    inside_half = _inside(replicated, observed, 0.5)
    low, high = np.quantile(size, [1 / 3, 2 / 3])
    scatter = stats.spearmanr(np.abs(observed - np.median(replicated, axis=0)), np.log(size))
    pit = np.asarray(loo_pit(idata, var_names=[scale.variable])[scale.variable]).ravel()
    points, ecdf, lower, upper = ecdf_pit(pit, PIT_ENVELOPE_PROB, PIT_SIMULATIONS, rng=np.random.default_rng(0))
    outside = (ecdf < lower) | (ecdf > upper)
    result = {
        "n_runs": int(len(observed)),
        "likelihood": fit.likelihood.name,
        "prior_predictive": {
            "band": PRIOR_BAND,
            "outside": int(ruled_out.sum()),
            "outside_rows": [int(i) + 1 for i in np.flatnonzero(ruled_out)],
            "loss_range": [float(scale.to_loss(np.quantile(prior, q))) for q in (0.005, 0.995)],
            "observed_range": [float(scale.to_loss(observed.min())), float(scale.to_loss(observed.max()))],
        },
        "posterior_predictive": {"coverage_0.5": coverage[0.5], "coverage_0.9": coverage[0.9]},
        "noise_along_size": {
            "input": size_name,
            "noise_trend": "sigma_slope" in fit.spec.priors,
            "rank_correlation": float(scatter.statistic),
            "p_value": float(scatter.pvalue),
            "coverage_0.5_smallest_third": float(np.mean(inside_half[size <= low])),
            "coverage_0.5_largest_third": float(np.mean(inside_half[size >= high])),
        },
        "loo_pit": {
            "values": [float(v) for v in pit],
            "mean": float(pit.mean()),
            "share_outside_central_90": float(np.mean((pit < 0.05) | (pit > 0.95))),
            "envelope_prob": PIT_ENVELOPE_PROB,
            "inside_envelope": bool(not outside.any()),
            "ecdf_points_outside": float(outside.mean()),
            "ecdf": {
                "points": points.tolist(),
                "ecdf": ecdf.tolist(),
                "lower": lower.tolist(),
                "upper": upper.tolist(),
            },
        },
        "loss_scale": loss_scale(fit),
        "discrepancy": None if fit.discrepancy is None else fit.discrepancy.describe(),
    }
    result.update(check_sensitivity(fit, prior_draws=prior_draws, seed=seed))
    result["findings"] = findings(result)
    return result


def findings(result: dict) -> list[str]:
    """What the checks say, in words, with what to do."""
    out = []
    prior = result["prior_predictive"]
    if prior["outside"]:
        rows = ", ".join(map(str, prior["outside_rows"][:8]))
        out.append(
            f"prior predictive: {prior['outside']} of {result['n_runs']} runs (rows {rows}; 1 = the first "
            f"data row) lie outside the central {prior['band']:.0%} of what the priors allow (losses "
            f"{prior['loss_range'][0]:.3g} to {prior['loss_range'][1]:.3g}): check the units of the table "
            "or widen the priors (--prior)."
        )
    else:
        out.append(
            f"prior predictive: every run lies within what the priors allow (losses {prior['loss_range'][0]:.3g} "
            f"to {prior['loss_range'][1]:.3g})."
        )
    scale = result.get("loss_scale")
    if scale and scale["looks_like_perplexity"]:
        out.append(
            f"loss scale: the loss floor that fits the runs best ({scale['floor']:.3g}) is above the floors fits of language-model "
            f"sweeps find ({scale['plausible_floors'][0]:g} to {scale['plausible_floors'][1]:g} nats), but its log, "
            f"{scale['log_floor']:.3g}, is one: the loss column looks like perplexity (exp of the loss). If it is, "
            "fit ln(perplexity): the laws and their priors are for losses in nats."
        )
    post = result["posterior_predictive"]
    robust = "" if result.get("likelihood") == "studentt" else ", or likelihood=studentt for outlying runs"
    verdict = (
        "as they should"
        if post["coverage_0.9"] >= 0.8
        else f"too rarely: the law or the noise model misses something (compare other laws{robust})"
    )
    out.append(
        f"posterior predictive: {post['coverage_0.9']:.0%} of runs inside their 90% band and "
        f"{post['coverage_0.5']:.0%} inside their 50% band, {verdict}."
    )
    thirds = result.get("noise_along_size")
    if thirds and not thirds["noise_trend"] and thirds["p_value"] < SCATTER_P_VALUE:
        grows, name = thirds["rank_correlation"] > 0, thirds["input"]
        out.append(
            f"noise along {name}: the scatter {'grows' if grows else 'shrinks'} with {name} (rank correlation "
            f"of |residual| with log {name} {thirds['rank_correlation']:+.2f}, p = {thirds['p_value']:.2g}; "
            f"{thirds['coverage_0.5_largest_third']:.0%} of the largest third of runs inside their 50% band, "
            f"{thirds['coverage_0.5_smallest_third']:.0%} of the smallest), so forecasts at larger {name} are "
            f"likely too {'narrow' if grows else 'wide'}. Fit with a noise trend (--noise-trend, "
            "noise_trend=True) and compare the two by LOO."
        )
    pit = result["loo_pit"]
    band = f"the {pit['envelope_prob']:.0%} simultaneous band of calibrated forecasts"
    if pit["inside_envelope"]:
        out.append(f"LOO-PIT: consistent with calibrated forecasts of left-out runs (the ECDF stays inside {band}).")
    else:
        if abs(pit["mean"] - 0.5) > 0.1:
            how = "runs come out lower than forecast" if pit["mean"] < 0.5 else "runs come out higher than forecast"
        elif pit["share_outside_central_90"] > 0.2:
            how = "bands too narrow: too many runs outside the central 90%"
        else:
            how = "bands too wide: runs crowd the middle of their predictive distributions"
        out.append(
            f"LOO-PIT: left-out runs are not forecast calibrated (the ECDF leaves {band} at "
            f"{pit['ecdf_points_outside']:.0%} of its points): {how}."
        )
    if "sensitivity" in result:
        from bayescale.forecast.sensitivity import sensitivity_findings

        out += sensitivity_findings(result)
    if result.get("discrepancy"):
        out.append(f"extrapolation: {result['discrepancy']}")
    return out
