"""What carries a downstream accuracy forecast: power-scaling both steps' priors and likelihoods.

The quantity is the chained accuracy at a point: each draw of the loss law's value there (without its
extrapolation discrepancy, as :func:`bayescale.forecast_sensitivity` takes the loss) through one draw of the
metric law (without its discrepancy, which is not a function of the parameters), the two posteriors paired
draw by draw as :func:`bayescale.downstream.chained` pairs them. The loss fit and the metric law are two
independent posteriors (:mod:`bayescale.forecast.joint_sensitivity`): scaling both steps' priors, then both
likelihoods, says whether the accuracy is prior-driven; each step's priors alone say which step carries it
(``step_sensitivity``), and each prior alone which parameters (the note names them).

The metric law's log prior is PyMC's on :func:`~bayescale.downstream.metric.build_metric_model` at its draws:
the top-level priors (the law's, the noise precision ``phi``, the groups' spread ``shift_sd``; not the groups'
shifts, as a loss fit's pooled groups are not scaled), the density of each one's unconstrained coordinate;
its log-likelihood the model's pointwise one. Both are kept in the metric fit's ``idata``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from bayescale import defaults
from bayescale.data.runs import Points, point_label, prepare_points
from bayescale.defaults import reproducible_compilation
from bayescale.downstream.chain import _through_metric
from bayescale.downstream.loss import fits_for_points, loss_points
from bayescale.downstream.metric import (
    OBSERVED,
    PHI_PRIOR,
    SHIFT_SD_PRIOR,
    MetricFit,
    build_metric_model,
    forecast_chances,
    metric_data,
)
from bayescale.forecast.joint_sensitivity import Source, fit_source, joint_sensitivity
from bayescale.forecast.predict import flat_draws, law_mean, params_at
from bayescale.forecast.sensitivity import unconstrained_log_prior

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit

#: the steps, as ``step_sensitivity`` keys them
LOSS_STEP, METRIC_STEP = "loss fit", "metric law"


def metric_log_densities(metric_fit: MetricFit) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The metric law's top-level log priors (unconstrained coordinates) and summed log-likelihood per draw, flat."""
    import pymc as pm

    from bayescale.laws.priors import Prior

    if "log_prior" not in metric_fit.idata.children:
        data, levels = metric_data(
            metric_fit.law, metric_fit.table, metric_fit.metric, metric_fit.group, metric_fit.settings.get("chance")
        )
        model = build_metric_model(metric_fit.law, data, levels, metric_fit.group)
        posterior = metric_fit.posterior
        if metric_fit.group and "shift_offset" not in posterior:  # a posterior that kept only the shifts
            posterior = posterior.assign(shift_offset=posterior["shift"] / posterior["shift_sd"])
        free = [rv.name for rv in model.free_RVs]
        priors = {name: param.prior for name, param in metric_fit.law.params.items()}
        priors.update(phi=Prior.parse(PHI_PRIOR), shift_sd=Prior.parse(SHIFT_SD_PRIOR))
        top = [name for name in free if name != "shift_offset"]
        log_prior = unconstrained_log_prior(
            model, posterior[free], top, lambda name: getattr(priors.get(name), "support", None)
        )
        with reproducible_compilation():
            log_likelihood = pm.compute_log_likelihood(
                xr.DataTree.from_dict({"posterior": posterior[free]}),
                var_names=[OBSERVED],
                model=model,
                extend_inferencedata=False,
                progressbar=False,
            )
        metric_fit.idata["log_prior"] = log_prior
        metric_fit.idata["log_likelihood"] = log_likelihood
    total = len(metric_fit.flat("phi"))
    priors_flat = {str(k): v.to_numpy().reshape(total) for k, v in metric_fit.idata["log_prior"].data_vars.items()}
    return priors_flat, metric_fit.idata["log_likelihood"][OBSERVED].to_numpy().reshape(total, -1).sum(axis=1)


def _metric_advice(metric_fit: MetricFit, loss: np.ndarray):
    """Which models would determine a metric-law parameter for the forecast at column j (median loss ``loss[j]``)."""

    def advise(name: str, j: int) -> str:
        if name == "shift_sd":
            return f"models in more {metric_fit.group} groups"
        if loss[j] < metric_fit.loss_min:
            return (
                f"models at lower loss (the metric law saw losses down to {metric_fit.loss_min:.3g}, the forecast "
                f"is at {loss[j]:.3g})"
            )
        return f"more models where {metric_fit.metric} rises from chance"

    return advise


def accuracy_sensitivity(
    loss_fit: Fit | Mapping[str, Fit],
    metric_fit: MetricFit,
    points: Points,
    *,
    seed: int | None = None,
    by: str | None = None,
) -> pd.DataFrame:
    """Power-scaling sensitivity of the chained accuracy forecast at ``points``, and which step carries it.

    Parameters
    ----------
    loss_fit : Fit or mapping of str to Fit
        The loss fit, or one per group, as :func:`bayescale.downstream.chained` takes them.
    metric_fit : MetricFit
        The fit of the metric law (:func:`bayescale.downstream.fit_metric`).
    points : pandas.DataFrame or Mapping
        Where to forecast, as ``chained`` takes them.
    seed : int, optional
        Seed of a new group's draws (each loss fit's own by default) and of the pairing (the metric fit's).
    by : str, optional
        The column whose values key a mapping of loss fits; default the metric fit's group column.

    Returns
    -------
    pandas.DataFrame
        One row per point (index ``point``): ``prior_sensitivity``, ``likelihood_sensitivity`` and
        ``prior_driven`` (both steps' priors, then likelihoods, scaled together), ``step_sensitivity``
        (``{"loss fit": ..., "metric law": ...}``: each step's priors scaled alone), ``driven_by`` (the priors
        that carry a prior-driven accuracy, each scaled alone, as ``"the metric law's k"``) and ``note``
        (the sentence a user reads, or None).
    """
    table = prepare_points(points, ())
    parts = fits_for_points(loss_fit, table, by or metric_fit.group)
    rng = np.random.default_rng([metric_fit.settings.get("seed", defaults.SEED) if seed is None else seed, 6])
    chances, _ = forecast_chances(metric_fit, table)
    metric_prior, metric_likelihood = metric_log_densities(metric_fit)
    frames = []
    for key, fit, where in parts:
        at = loss_points(fit, table.iloc[where], f"the loss fit for {key}" if key else "the loss fit")
        fit_seed = fit.settings["seed"] if seed is None else seed
        mu = law_mean(fit, params_at(fit, flat_draws(fit), at, np.random.default_rng(fit_seed)), at)
        n = min(len(mu), len(metric_likelihood))
        pick_loss, pick_metric = rng.permutation(len(mu))[:n], rng.permutation(len(metric_likelihood))[:n]
        rows = table.iloc[where]
        (accuracy,) = _through_metric(
            metric_fit, [np.exp(mu[pick_loss])], rows, pick_metric, rng, chances[where], discrepancy=False
        )
        advise = _metric_advice(metric_fit, np.exp(np.median(mu, axis=0)))
        sources = [
            fit_source(fit, LOSS_STEP, "the loss fit's", pick_loss, at),
            Source(METRIC_STEP, "the metric law's", metric_prior, metric_likelihood, pick_metric, advise, None, False),
        ]
        group = [metric_fit.group] if metric_fit.group and metric_fit.group in rows.columns else []
        inputs = [*fit.law.inputs, *group]
        whats = [f"the {metric_fit.metric} forecast at {point_label(row, inputs)}" for _, row in rows.iterrows()]
        found = joint_sensitivity(accuracy, sources, whats).rename(columns={"source_sensitivity": "step_sensitivity"})
        frames.append(found.set_index(rows.index))
    out = pd.concat(frames).loc[table.index]
    return out.assign(note=[note if isinstance(note, str) else None for note in out["note"]])
