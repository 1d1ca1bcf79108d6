"""From loss to downstream accuracy: a metric law fitted on small models, chained with the loss law.

The established method has two steps (Gadre et al. 2024; the OLMo ladder of Bhagia et al. 2024):
a scaling law for the loss at (N, D), then a law from loss to accuracy fitted on the same small
models. Both publish point forecasts. Here both steps are posteriors and the forecast carries both:

- The metric law is a card of kind ``metric`` (input ``loss``, optionally ``chance``, the task's
  random baseline): ``metric_sigmoid`` (chance up to a ceiling) or ``metric_exp`` (Gadre's
  exponential). Its PyMC model has one named variable per parameter (the card's prior), the loss
  and chance as ``pm.Data``, and an observed accuracy around the law with precision ``phi``: Beta,
  or beta-binomial when the runs give ``n``, the number of questions, so an accuracy over 100
  questions counts for less than one over 10,000. ``phi`` is the variation between models that
  the law does not explain.
- With a group column (the training corpus), each group's accuracy follows the law at a shifted
  loss, ``loss - shift[group]``, the shifts partially pooled (``shift_sd``): models trained on C4
  reach a given C4 loss with lower downstream accuracy than models trained elsewhere.
- A forecast pairs posterior draws: each draw of the loss at (N, D) (the law's value, and a run's
  loss with noise and the extrapolation discrepancy, from :func:`bayescale.forecast.predict.loss_draws`)
  goes through one draw of the metric law, so the credible band of the accuracy carries the
  uncertainty of both laws and the predictive band the noise of both steps.
- Whether a task can be forecast at all: ``p_above_chance`` is the probability that the law's
  accuracy at the target is above chance by more than :data:`ABOVE_CHANCE`. A fit refuses runs
  with too few models above chance to locate the rise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale import defaults
from bayescale.data.runs import TableSource, column_list, row_numbers
from bayescale.errors import BayescaleError, DataError
from bayescale.inference.diagnostics import Diagnostics, diagnose, report
from bayescale.laws.card import Law, get_law

if TYPE_CHECKING:
    pass

#: the observed variable of the metric model
OBSERVED = "metric"
#: a model counts as above chance when its accuracy beats chance by this much (accuracy points/100) ...
ABOVE_CHANCE = 0.02
#: ... and by two binomial standard errors when the number of questions is known
ABOVE_CHANCE_SE = 2.0
#: prior of the precision phi of the Beta noise (an sd of about 0.02 around an accuracy of 0.3)
PHI_PRIOR = "LogNormal(mu=log(500.0), sigma=1.5)"
#: prior of the spread of the groups' loss shifts (nats)
SHIFT_SD_PRIOR = "HalfNormal(sigma=0.2)"
EPS = 1e-6
#: the metric law's discrepancy beyond the fitted models: logit(accuracy) gains kappa * d * z, where d
#: is the e-folds of loss below the lowest loss the metric law saw and z ~ Normal(0, 1) is shared by
#: every point of a draw. kappa's prior (logit units per e-fold): a guess, broad, updated by each
#: fit's internal splits; no cross-dataset calibration exists yet (Gadre's is the only such data).
METRIC_KAPPA_PRIOR = "LogNormal(mu=log(0.3), sigma=1.5)"
METRIC_KAPPA_GRID = np.geomspace(1e-3, 30.0, 801)
#: internal splits: the share of models with the lowest loss held out in each
METRIC_SPLITS = (0.15, 0.3)
#: fewer models than this and kappa keeps its prior
MIN_MODELS_FOR_SPLITS = 12


def chance_levels(law: Law, table: pd.DataFrame, chance: float | None) -> np.ndarray:
    """Each row's chance level (the task's random baseline, a fraction): the ``chance`` column, or ``chance``.

    A law with a chance floor needs it; for another law it only says whether a forecast is above
    chance (0 when not given).
    """
    if "chance" in table.columns:
        values = pd.to_numeric(table["chance"], errors="coerce").to_numpy(dtype=float)
        bad = table.index[~((values >= 0) & (values < 1))]
        if len(bad):
            raise DataError(
                f"column 'chance': the random baseline must be a fraction in [0, 1), but {row_numbers(bad)} "
                "are not (a baseline given in percent? divide by 100)"
            )
        return values
    if chance is not None:
        if not 0 <= chance < 1:
            raise BayescaleError(f"chance {chance!r}: the random baseline must be a fraction in [0, 1)")
        return np.full(len(table), float(chance))
    if "chance" in law.inputs:
        raise DataError(
            f"metric law {law.name!r} needs each row's chance level (the task's random baseline as a "
            f"fraction): give a 'chance' column or chance=0.25 (--chance 0.25)"
        )
    return np.zeros(len(table))


def forecast_chances(metric_fit: MetricFit, table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Each point's chance level for a forecast, and where it came from (in words).

    The points' ``chance`` column first; else the ``chance`` column of the runs the metric law was
    fitted on (those of the point's group, or all runs for a group it never saw), which must hold one
    value there; else the fit's ``chance`` (``--chance``); else 0.
    """
    if "chance" in table.columns:
        return chance_levels(metric_fit.law, table, None), ["the point's chance"] * len(table)
    runs, group = metric_fit.table, metric_fit.group
    given = metric_fit.settings.get("chance")
    if "chance" not in runs.columns:
        values = chance_levels(metric_fit.law, table, given)
        source = "given as --chance (chance=)" if given is not None else "none given, so 0 (give --chance)"
        return values, [source] * len(table)
    seen = set(metric_fit.levels)
    labels = table[group].astype(str) if group and group in table.columns else pd.Series([None] * len(table))
    values, sources = np.empty(len(table)), []
    for i, label in enumerate(labels):
        rows = runs[runs[group].astype(str) == label] if label in seen else runs
        where = f" of {group} {label}" if label in seen else ""
        distinct = np.unique(np.round(pd.to_numeric(rows["chance"], errors="coerce").to_numpy(dtype=float), 12))
        if len(distinct) > 1:
            raise DataError(
                f"the runs{where} hold {len(distinct)} chance levels ({', '.join(f'{v:g}' for v in distinct[:5])}): "
                f"give the point's own, e.g. --at ...,chance={distinct[0]:g} (a 'chance' column of the points)"
            )
        values[i] = distinct[0]
        sources.append(f"column 'chance' of the runs{where}")
    return values, sources


def check_metric(table: pd.DataFrame, metric: str) -> np.ndarray:
    """The metric column as fractions in [0, 1], or an error naming the column and rows at fault."""
    if metric not in table.columns:
        raise DataError(f"no metric column {metric!r} in the runs; they have {column_list(table.columns, [metric])}")
    values = pd.to_numeric(table[metric], errors="coerce")
    bad = table.index[values.isna()]
    if len(bad):
        raise DataError(f"column {metric!r}: {row_numbers(bad)} are not numbers")
    if values.median() > 1 and (values <= 100).all() and (values >= 0).all():
        raise DataError(
            f"column {metric!r} holds values up to {values.max():g}: percentages? bayescale takes "
            "accuracies as fractions in [0, 1]; divide the column by 100"
        )
    outside = table.index[(values < 0) | (values > 1)]
    if len(outside):
        raise DataError(
            f"column {metric!r}: accuracies must lie in [0, 1], but {row_numbers(outside)} are "
            f"{', '.join(f'{v:g}' for v in values[outside][:6])}"
        )
    return values.to_numpy(dtype=float)


def question_counts(table: pd.DataFrame) -> np.ndarray | None:
    """The ``n`` column (each row's number of questions, for beta-binomial noise), checked; None without one."""
    if "n" not in table.columns:
        return None
    values = pd.to_numeric(table["n"], errors="coerce").to_numpy(dtype=float)
    bad = table.index[~((values >= 1) & (np.round(values) == values))]
    if len(bad):
        raise DataError(
            f"column 'n' (the number of questions behind each accuracy) must hold whole numbers >= 1, but "
            f"{row_numbers(bad)} do not"
        )
    return values


def above_chance(accuracy: np.ndarray, chance: np.ndarray, n: np.ndarray | None) -> np.ndarray:
    """Which models beat chance clearly: by :data:`ABOVE_CHANCE`, and by 2 binomial sd when n is known."""
    margin = np.full(len(accuracy), ABOVE_CHANCE)
    if n is not None:
        margin = np.maximum(margin, ABOVE_CHANCE_SE * np.sqrt(np.maximum(chance * (1 - chance), 1e-4) / n))
    return accuracy > chance + margin


@dataclass
class MetricFit:
    """A fitted metric law: posterior of its parameters (and group shifts, noise precision) and its runs."""

    law: Law
    idata: xr.DataTree
    table: pd.DataFrame
    metric: str
    group: str | None
    diagnostics: Diagnostics
    settings: dict[str, Any] = field(default_factory=dict)
    #: posterior draws of the discrepancy scale (logit units per e-fold of loss below ``loss_min``)
    kappa: np.ndarray | None = None
    #: the lowest loss the metric law was fitted on: below it the discrepancy grows
    loss_min: float = np.nan

    @property
    def posterior(self) -> xr.Dataset:
        return self.idata["posterior"].to_dataset()

    @property
    def levels(self) -> list[str]:
        return list(self.posterior["shift"].coords[self.group].values) if self.group else []

    def flat(self, name: str) -> np.ndarray:
        values = self.posterior[name].to_numpy()
        return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])

    def summary(self, ci_prob: float = defaults.CI_PROB):
        import arviz_stats as azs

        names = [*self.law.param_names, "phi", *(["shift_sd", "shift"] if self.group else [])]
        return azs.summary(self.idata, var_names=names, ci_prob=ci_prob, ci_kind=defaults.CI_KIND)


def build_metric_model(law: Law, data: Mapping[str, Any], levels: list[str] | None = None, group: str | None = None):
    """The PyMC model of a metric law: named priors, Beta or beta-binomial noise, every input a ``pm.Data``.

    ``data``: the runs' ``loss``, ``chance``, ``accuracy``, ``n`` (None without question counts) and
    ``codes`` (each run's index into ``levels``, the group column's values). Runs carry no fixed
    dimension, so one compiled model takes any subset of them (:func:`metric_structure_key`).
    """
    import pymc as pm
    import pytensor.tensor as pt

    from bayescale.laws.priors import Prior
    from bayescale.model.generative import _prior_variable

    with pm.Model(coords={group: list(levels)} if levels is not None else {}) as model:
        env = {"loss": pm.Data("loss", data["loss"])}
        if "chance" in law.inputs:
            env["chance"] = pm.Data("chance", data["chance"])
        values = {name: _prior_variable(pm, name, param.prior) for name, param in law.params.items()}
        if levels is not None:
            index = pm.Data(f"{group}_idx", data["codes"])
            spread = _prior_variable(pm, "shift_sd", Prior.parse(SHIFT_SD_PRIOR))
            offset = pm.Normal("shift_offset", 0.0, 1.0, dims=group)
            shift = pm.Deterministic("shift", spread * offset, dims=group)
            env["loss"] = env["loss"] - shift[index]
        mean = pt.clip(law.formula.pytensor({**env, **values}), EPS, 1 - EPS)
        pm.Deterministic("accuracy", mean)
        phi = _prior_variable(pm, "phi", Prior.parse(PHI_PRIOR))
        if data["n"] is not None:
            n = pm.Data("questions", np.asarray(data["n"]).astype(int))
            correct = pm.Data("correct", np.round(data["accuracy"] * data["n"]).astype(int))
            pm.BetaBinomial(OBSERVED, n=n, alpha=mean * phi, beta=(1 - mean) * phi, observed=correct)
        else:
            observed = pm.Data("observed_accuracy", np.clip(data["accuracy"], EPS, 1 - EPS))
            pm.Beta(OBSERVED, alpha=mean * phi, beta=(1 - mean) * phi, observed=observed)
    return model


def metric_structure_key(law: Law, data: Mapping[str, Any], levels: list[str] | None, group: str | None) -> str:
    """What the metric model's compiled density depends on besides the runs: one compile serves every subset."""
    import hashlib
    import json

    parts = {
        "kind": "metric",
        "formula": law.formula.text,
        "inputs": list(law.inputs),
        "priors": [(name, param.prior.to_dict()) for name, param in law.params.items()],
        "phi": PHI_PRIOR,
        "shift_sd": SHIFT_SD_PRIOR,
        "counts": data["n"] is not None,
        "groups": None if levels is None else [group, len(levels)],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _traced_names(model) -> list[str]:
    """The metric model's parameters as traced: every free variable and deterministic but the runs' accuracy."""
    return [v.name for v in (*model.free_RVs, *model.deterministics) if v.name != "accuracy"]


def fit_metric(
    runs: TableSource,
    metric: str,
    law: Law | str = "metric_sigmoid",
    *,
    group: str | None = None,
    chance: float | None = None,
    draws: int = defaults.DRAWS,
    tune: int = defaults.TUNE,
    chains: int = defaults.CHAINS,
    cores: int = defaults.CORES,
    seed: int = defaults.SEED,
    sampler: str = defaults.SAMPLER,
    target_accept: float = defaults.TARGET_ACCEPT,
    progressbar: bool = False,
) -> MetricFit:
    """Fit a metric law to the runs' ``loss`` and ``metric`` columns (and ``n``, ``chance``, the ``group`` column).

    Parameters
    ----------
    runs : pandas.DataFrame, str or pathlib.Path
        One row per model: a DataFrame, or the path of a ``.csv``/``.tsv``/``.parquet`` table. It needs
        ``loss`` (nats, > 0) and the ``metric`` column; optionally ``n`` (questions behind each accuracy,
        for beta-binomial noise), ``chance`` (each row's random baseline) and the ``group`` column.
    metric : str
        The column of downstream accuracies, as fractions in [0, 1].
    law : Law or str, default "metric_sigmoid"
        A metric law (card ``kind = "metric"``): a catalog name (``metric_sigmoid``, ``metric_exp``), the
        path of a ``.toml`` card, or a :class:`~bayescale.laws.card.Law`.
    group : str, optional
        A column (e.g. the training corpus) whose groups see the law at a shifted loss, the shifts
        partially pooled. None (default): one law for every run.
    chance : float, optional
        The task's random baseline, a fraction in [0, 1), for runs without a ``chance`` column. Needed by
        a law with input ``chance``; otherwise 0 when not given.
    draws : int, default 1000
        Posterior draws per chain.
    tune : int, default 1000
        Tuning steps per chain.
    chains : int, default 4
        Number of chains.
    cores : int, default 2
        Chains sampled in parallel.
    seed : int, default 20240417
        Seed of the sampler and of the discrepancy draws.
    sampler : str, default "nutpie"
        ``"nutpie"``, ``"pymc"`` or ``"numpyro"``.
    target_accept : float, default 0.95
        NUTS target acceptance rate, in [0.5, 1).
    progressbar : bool, default False
        Show the sampler's progress bar.

    Returns
    -------
    MetricFit
        The posterior of the law's parameters, the noise precision ``phi`` (and ``shift_sd``, ``shift``
        with a group), the validated table, the diagnostics, the settings, the draws of the metric
        discrepancy ``kappa`` and ``loss_min``, the lowest loss fitted.

    Raises
    ------
    BayescaleError
        If ``law`` is not a metric law, or a sampler setting is impossible.
    DataError
        If a column is missing or holds invalid values (accuracies in percent, a non-positive loss, ...),
        or too few models score clearly above chance (at least one more than the law has parameters).
    """
    from bayescale.data.runs import read_table
    from bayescale.inference.sampling import check_settings, draw_posterior

    check_settings(sampler=sampler, draws=draws, tune=tune, chains=chains, cores=cores, target_accept=target_accept)
    law = get_law(law)
    if law.kind != "metric":
        raise BayescaleError(
            f"law {law.name!r} is a scaling law of the loss; a metric law maps the loss to "
            "accuracy (metric_sigmoid, metric_exp)"
        )
    table = runs.copy() if isinstance(runs, pd.DataFrame) else read_table(runs)[0]
    table = table.reset_index(drop=True)
    table.index.name = "row"
    data, levels = metric_data(law, table, metric, group, chance)
    clear = above_chance(data["accuracy"], data["chance"], data["n"])
    needed = len(law.params) + 1
    if clear.sum() < needed:
        raise DataError(
            f"only {int(clear.sum())} of {len(table)} models score clearly above chance on {metric!r} "
            f"(by {ABOVE_CHANCE:g} and 2 binomial sd where n is known); at least {needed} are needed to "
            "locate the rise: the metric is not forecastable from these models yet"
        )
    model = build_metric_model(law, data, levels, group)
    idata = draw_posterior(
        model,
        _traced_names(model),
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=int(seed),
        sampler=sampler,
        target_accept=target_accept,
        progressbar=progressbar,
        reuse_key=metric_structure_key(law, data, levels, group),
    )
    free = [rv.name for rv in model.free_RVs]
    diagnostics = diagnose(idata["posterior"].to_dataset(), idata["sample_stats"].to_dataset(), free)
    report(diagnostics)
    settings = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seed": int(seed),
        "chance": None if chance is None else float(chance),
    }
    kappa = calibrate_kappa(law, data, levels, group, draws * chains, int(seed))
    return MetricFit(law, idata, table, metric, group, diagnostics, settings, kappa, float(data["loss"].min()))


def metric_data(
    law: Law, table: pd.DataFrame, metric: str, group: str | None, chance: float | None
) -> tuple[dict[str, Any], list[str] | None]:
    """The metric model's data from the runs (``loss``, ``chance``, ``accuracy``, ``n``, ``codes``, checked) and the
    group column's levels (None without a group): what :func:`build_metric_model` takes."""
    if "loss" not in table.columns:
        raise DataError(
            f"the runs need a 'loss' column (the loss the metric law maps from); they have "
            f"{column_list(table.columns, ['loss'])}"
        )
    accuracy = check_metric(table, metric)
    loss = pd.to_numeric(table["loss"], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(loss) & (loss > 0)):
        raise DataError(
            f"column 'loss': {row_numbers(table.index[~(np.isfinite(loss) & (loss > 0))])} are not positive numbers"
        )
    chances = chance_levels(law, table, chance)
    n = question_counts(table)
    if group is not None and group not in table.columns:
        raise DataError(f"no group column {group!r} in the runs; they have {column_list(table.columns, [group])}")
    unique, codes = (
        np.unique(table[group].astype(str), return_inverse=True) if group else (None, np.zeros(len(table), int))
    )
    levels = None if unique is None else [str(level) for level in unique]
    return {"loss": loss, "chance": chances, "accuracy": accuracy, "n": n, "codes": codes}, levels


def logit(p):
    """log(p / (1 - p)), elementwise."""
    return np.log(p) - np.log1p(-p)


def expit(x):
    """The inverse of :func:`logit`."""
    return 1.0 / (1.0 + np.exp(-x))


def metric_mode(
    law: Law, data: Mapping[str, Any], levels: list[str] | None = None, group: str | None = None
) -> dict[str, np.ndarray]:
    """The posterior mode of the metric model on these runs (its traced parameters), in the sampler's coordinates.

    Found by L-BFGS on the compiled log density and gradient of the very model that
    :func:`fit_metric` samples (nutpie's callback, the same route as the loss law's mode in
    :mod:`bayescale.inference.laplace`); one compile serves the fit and every internal split.
    """
    from scipy import optimize

    from bayescale.inference.callbacks import expanded_values, log_density_function
    from bayescale.inference.sampling import compiled_nutpie

    model = build_metric_model(law, data, levels, group)
    compiled = compiled_nutpie(model, _traced_names(model), metric_structure_key(law, data, levels, group))
    log_density = log_density_function(compiled)

    def objective(x):
        value, gradient = log_density(x)
        return (-value, -gradient) if np.isfinite(value) else (1e300, np.zeros_like(gradient))

    best = optimize.minimize(
        objective, _unconstrained_start(model, compiled), jac=True, method="L-BFGS-B", options={"maxiter": 5000}
    )
    return expanded_values(compiled, best.x)


def _map_fit(law: Law, data: Mapping[str, Any], levels: list[str] | None, group: str | None):
    """The metric model at its mode (:func:`metric_mode`), as a function that forecasts the mean accuracy, and phi."""
    mode = metric_mode(law, data, levels, group)
    values = {name: float(mode[name]) for name in law.param_names}
    shifts = mode["shift"] if levels is not None else None

    def mean(part):
        loss = part["loss"] - (shifts[part["codes"]] if shifts is not None else 0.0)
        with np.errstate(all="ignore"):
            return np.clip(law.formula.numpy({**values, "loss": loss, "chance": part["chance"]}), EPS, 1 - EPS)

    return mean, float(mode["phi"])


def _unconstrained_start(model, compiled) -> np.ndarray:
    """The model's initial point (its priors' support points, unjittered) in the compiled model's coordinates."""
    point = model.initial_point()
    names, slices, _ = compiled.shape_info
    start = np.zeros(compiled.n_dim)
    for name, part in zip(names, slices):
        if part.stop <= compiled.n_dim:
            start[part] = np.ravel(point[name])
    return start


def _subset(data: dict, mask: np.ndarray) -> dict:
    return {k: (v[mask] if isinstance(v, np.ndarray) else v) for k, v in data.items()}


def calibrate_kappa(
    law: Law, data: dict, levels: list[str] | None, group: str | None, n_draws: int, seed: int
) -> np.ndarray:
    """Draws of the metric discrepancy kappa: its prior, updated by internal leave-lowest-loss-out splits.

    Each split holds out the models with the lowest loss, fits the rest at its mode, and compares
    the held-out accuracies (logit) with the forecast at their distance below the split's lowest
    loss; the errors of one split share their z (:func:`bayescale.inference.discrepancy.kappa_log_likelihood`).
    """
    from bayescale.inference.discrepancy import draw_kappa, kappa_log_likelihood
    from bayescale.laws.priors import Prior

    kappa_prior = Prior.parse(METRIC_KAPPA_PRIOR)
    assert isinstance(kappa_prior, Prior)  # fixed text, not relative to the data
    log_post = kappa_prior.logpdf(METRIC_KAPPA_GRID) + np.log(METRIC_KAPPA_GRID)
    order = np.argsort(data["loss"])
    if len(order) >= MIN_MODELS_FOR_SPLITS:
        for split, share in enumerate(METRIC_SPLITS):
            held = np.zeros(len(order), bool)
            held[order[: max(2, int(round(share * len(order))))]] = True
            train = _subset(data, ~held)
            forecast, phi = _map_fit(law, train, levels, group)
            part = _subset(data, held)
            m = forecast(part)
            acc = np.clip(part["accuracy"], EPS, 1 - EPS)
            var = 1.0 / ((phi + 1) * m * (1 - m))
            if part["n"] is not None:
                var = var + 1.0 / (part["n"] * m * (1 - m))
            distance = np.maximum(0.0, np.log(train["loss"].min()) - np.log(part["loss"]))
            log_post = log_post + kappa_log_likelihood(
                logit(acc) - logit(m), np.sqrt(var), distance, np.full(len(m), split), grid=METRIC_KAPPA_GRID
            )
    return draw_kappa(log_post, n_draws, np.random.default_rng([seed, 4]), grid=METRIC_KAPPA_GRID)
