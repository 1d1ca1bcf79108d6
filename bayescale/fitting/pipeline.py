"""Fitting: runs + law + priors + likelihood -> sampled posterior, wrapped in a :class:`Fit`.

The steps are plain calls into the other modules: validate the runs (:mod:`.data`), build the
posterior (:mod:`.model`), precondition it (:mod:`.laplace`), sample (:mod:`.sampling`), store the
pointwise log-likelihood, diagnose (:mod:`.diagnostics`). A :class:`Fit` answers questions
(summary, predict) and saves itself (:mod:`.store`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from bayescale import defaults
from bayescale.data.runs import Runs, RunsSource, count_parameters, load_runs
from bayescale.data.tunable import check_columns as check_tunable_columns
from bayescale.data.tunable import check_runs as check_tunable_runs
from bayescale.errors import BayescaleError, SamplingExtended, warn_user
from bayescale.fitting.result import Fit, runs_dataset
from bayescale.inference.diagnostics import diagnose, report
from bayescale.inference.laplace import adaptive_coordinates, laplace_approximation, rewhiten
from bayescale.inference.sampling import check_settings, draw_posterior
from bayescale.laws.card import Law, get_law
from bayescale.laws.likelihood import Likelihood, get_likelihood
from bayescale.laws.priors import Prior
from bayescale.model.generative import adopt_model, mean_terms, observed_name, pointwise_log_likelihood, subset_model
from bayescale.model.spec import SIGMA_SLOPE, ModelSpec
from bayescale.model.whitened import build_whitened

if TYPE_CHECKING:
    import pymc as pm

#: why a law on the raw target scale has no calibrated extrapolation discrepancy (``settings["extrapolation"]``)
RAW_SCALE_NO_DISCREPANCY = (
    'no extrapolation discrepancy: the law is fitted on the raw target scale (the card\'s scale = "raw"), and '
    "the discrepancy is calibrated in log-loss per e-fold beyond the data; bands carry the parameters and noise only"
)

#: A fit's dense linear algebra is small (L-BFGS updates, the whitening's products): OpenBLAS threads
#: cost far more than they save there, several times over when another process or the sampler's own
#: chains share the cores (benchmarks/README.md, "One BLAS thread"). Fits run with one BLAS thread;
#: their parallelism is the sampler's chains.
one_blas_thread = threadpool_limits.wrap(limits=1, user_api="blas")


class StageTimer:
    """Wall seconds per stage of a fit (stored as ``fit.settings["timings"]``; ``benchmarks/stages.py`` reads them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 3)

    def split(self, stage: str, part: str, part_seconds: float, rest: str) -> None:
        """Split ``stage`` into ``part`` (measured inside it, e.g. the sampler's own clock) and the ``rest``."""
        if stage in self.seconds and np.isfinite(part_seconds):
            total = self.seconds.pop(stage)
            self.seconds[rest] = round(max(total - part_seconds, 0.0), 3)
            self.seconds[part] = round(part_seconds, 3)


def _split_priors(priors: Mapping[str, Any] | None, law: Law, likelihood: Likelihood, pool: Mapping[str, str]):
    """Sort prior overrides into law, noise and group-spread (``alpha_sd``) priors."""
    priors = dict(priors or {})
    spreads = {f"{p}_sd" for p in pool}
    noise_names = (*likelihood.noise_params, SIGMA_SLOPE)
    unknown = sorted(set(priors) - set(law.params) - set(noise_names) - spreads)
    if unknown:
        pooled = f" and the group spreads {', '.join(sorted(spreads))}" if spreads else ""
        raise BayescaleError(
            f"no parameter(s) {', '.join(unknown)} to put a prior on; law {law.name!r} has "
            f"{', '.join(law.params)}, the {likelihood.name} likelihood has "
            f"{', '.join(likelihood.noise_params)} (and {SIGMA_SLOPE}, the noise trend along "
            f"{law.inputs[0]}){pooled}"
        )
    law_priors = {k: v for k, v in priors.items() if k in law.params}
    noise_priors = {k: v for k, v in priors.items() if k in noise_names}
    sd_priors = {k: Prior.parse(v).to_dict() for k, v in priors.items() if k in spreads}
    return law_priors, noise_priors, sd_priors


def _prepare(
    runs, law, columns, inputs, priors, pool, likelihood, params, keep=(), noise_trend=False, where=None
) -> tuple[Law, Likelihood, Runs, dict[str, str], dict[str, Any], dict[str, dict[str, Any]]]:
    """Read and check everything a model needs: the law with its priors bound to the data, the runs, the pooling.

    ``noise_trend``: let the noise scale move along the law's first input (``sigma_slope``; a prior
    on it does the same).
    """
    from bayescale.model.pooling import parse_pool

    law = get_law(law, inputs)
    if law.kind != "loss":
        raise BayescaleError(
            f"law {law.name!r} maps the loss to a downstream metric, it is not a scaling law of the "
            "loss; fit it with bayescale.downstream.metric (bayescale downstream RUNS --metric COLUMN)"
        )
    lik = get_likelihood(likelihood)
    pool = parse_pool(pool or {})
    law_priors, noise_priors, sd_priors = _split_priors(priors, law, lik, pool)
    law = law.with_priors(law_priors)
    runs = count_parameters(
        load_runs(
            runs, columns, extra_inputs=law.inputs, keep=sorted({*pool.values(), *keep}), where=where, scale=law.scale
        ),
        params,
    )
    check_tunable_columns(runs, law)
    runs.require(law.inputs, len(law.params) + len(lik.noise_params), law.name)
    check_tunable_runs(runs, law)
    law = law.bind_data({name: runs[name] for name in law.inputs})
    if noise_trend:
        noise_priors.setdefault(SIGMA_SLOPE, defaults.SIGMA_SLOPE_PRIOR)
    return law, lik, runs, pool, noise_priors, sd_priors


def build_model(
    runs: RunsSource,
    law: Law | str = "chinchilla",
    *,
    columns: Mapping[str, str] | None = None,
    where: str | None = None,
    inputs: Mapping[str, str] | None = None,
    priors: Mapping[str, Any] | None = None,
    pool: Mapping[str, str] | None = None,
    likelihood: str = defaults.LIKELIHOOD,
    params: str = "total",
    groups: Iterable[str] = (),
    terms: Iterable[Callable[[pm.Model], Any]] = (),
    noise_trend: bool = False,
) -> pm.Model:
    """The generative PyMC model :func:`fit` would sample, with terms of your own added to the mean log-loss.

    Same arguments as :func:`fit`, plus ``groups`` (columns to index: coords and a ``<column>_idx``
    ``pm.Data`` each) and ``terms``: functions of the model under construction that return a tensor
    added to the mean log-loss (``lambda m: pm.Normal("shift", 0, 0.1, dims="corpus")[m["corpus_idx"]]``).
    Sample it with :func:`sample_model` (the package's sampler settings and diagnostics).

    Parameters
    ----------
    runs : str, pathlib.Path, pandas.DataFrame or Runs
        The runs table: a ``.csv``, ``.tsv`` or ``.parquet`` file, a DataFrame or validated :class:`Runs`.
    law : Law or str, default "chinchilla"
        A :class:`Law`, a catalog name or the path of a ``.toml`` law card; it must be a law of the loss.
    columns : mapping of str to str, optional
        Canonical column names to the table's (``{"N": "Model Size"}``).
    where : str, optional
        Only the runs this row filter keeps, such as ``"data == 'rpj'"`` or ``"N >= 1e8 and data != 'c4'"``
        (:func:`bayescale.load_runs`); the fit's ``runs.source`` records it.
    inputs : mapping of str to str, optional
        Binds the law's generic inputs to columns (``{"X": "D"}``).
    priors : mapping of str to Prior, str or dict, optional
        Prior overrides of law, noise (``sigma``, ``nu``, ``sigma_slope``) or group-spread (``<param>_sd``)
        parameters, as :class:`Prior`, text (``"Normal(mu=0.3, sigma=0.1)"``) or a card table.
    pool : mapping of str to str, optional
        Law parameters that vary by a group column under a population prior (``{"alpha": "family"}``).
    likelihood : str, default "studentt"
        The noise model of the log-loss: ``"studentt"``, ``"normal"`` or ``"laplace"``.
    params : str, default "total"
        What N counts: ``"total"`` or ``"non_embedding"`` (see :func:`fit`).
    groups : iterable of str, default ()
        Further columns of the runs to index: each gets coords and a ``<column>_idx`` ``pm.Data``.
    terms : iterable of callable, default ()
        Functions of the model under construction (``pymc.Model``) returning a tensor (one value per run,
        or a scalar) added to the mean log-loss.
    noise_trend : bool, default False
        Let the noise scale move along the law's first input (``sigma_slope``).

    Returns
    -------
    pymc.Model
        The generative model: a named variable per parameter with its prior, the law's inputs as ``pm.Data``,
        and the observed natural log of the loss, ``log_loss``, along dim ``obs``.

    Raises
    ------
    BayescaleError
        For an unknown law, likelihood or prior name, a law of a downstream metric, or a runs table
        that cannot be fitted (:class:`~bayescale.errors.DataError`).
    """
    from bayescale.model.generative import build_generative

    law, lik, runs, pool, noise_priors, sd_priors = _prepare(
        runs, law, columns, inputs, priors, pool, likelihood, params, groups, noise_trend, where
    )
    spec = ModelSpec.from_runs(law, lik, runs, noise_priors, pool, sd_priors)
    return build_generative(spec, {c: runs.frame[c].to_numpy() for c in groups}, terms)


def sample_model(
    model: pm.Model,
    *,
    draws: int = defaults.DRAWS,
    tune: int = defaults.TUNE,
    chains: int = defaults.CHAINS,
    cores: int = defaults.CORES,
    seed: int = defaults.SEED,
    sampler: str = defaults.SAMPLER,
    target_accept: float = defaults.TARGET_ACCEPT,
    progressbar: bool = True,
) -> xr.DataTree:
    """Sample any PyMC model with bayescale's sampler settings; sampler trouble is reported as warnings.

    Unlike :func:`fit`, the model is sampled in its own coordinates (no whitening: bayescale cannot
    whiten terms it did not write), so it may need more tuning.

    Parameters
    ----------
    model : pymc.Model
        Any PyMC model, for example :func:`build_model`'s with your own additions.
    draws : int, default 1000
        Posterior draws per chain, after tuning (``defaults.DRAWS``).
    tune : int, default 1000
        Tuning (warm-up) steps per chain (``defaults.TUNE``).
    chains : int, default 4
        Number of chains (``defaults.CHAINS``).
    cores : int, default 2
        Chains sampled in parallel (``defaults.CORES``).
    seed : int, default 20240417
        Random seed of the sampler (``defaults.SEED``).
    sampler : str, default "nutpie"
        ``"nutpie"``, ``"pymc"`` or ``"numpyro"`` (which needs JAX and NumPyro).
    target_accept : float, default 0.95
        Target acceptance rate of NUTS, in [0.5, 1).
    progressbar : bool, default True
        Show progress on stderr: a bar on a terminal, otherwise a line every few seconds.

    Returns
    -------
    xarray.DataTree
        ArviZ groups as sampled: ``posterior`` (every free variable and deterministic) and ``sample_stats``.

    Raises
    ------
    BayescaleError
        For an unknown sampler or impossible settings (``draws < 1``, ``target_accept`` outside [0.5, 1), ...).
    """
    names = [v.name for v in (*model.free_RVs, *model.deterministics)]
    idata = draw_posterior(
        model,
        names,
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=int(seed),
        target_accept=target_accept,
        progressbar=progressbar,
    )
    free = [rv.name for rv in model.free_RVs]
    report(diagnose(idata["posterior"].to_dataset(), idata["sample_stats"].to_dataset(), free))
    return idata


@one_blas_thread
def fit(
    runs: RunsSource,
    law: Law | str = "chinchilla",
    *,
    columns: Mapping[str, str] | None = None,
    where: str | None = None,
    inputs: Mapping[str, str] | None = None,
    priors: Mapping[str, Any] | None = None,
    pool: Mapping[str, str] | None = None,
    likelihood: str = defaults.LIKELIHOOD,
    params: str = "total",
    extrapolation: str = defaults.EXTRAPOLATION,
    draws: int = defaults.DRAWS,
    tune: int = defaults.TUNE,
    chains: int = defaults.CHAINS,
    cores: int = defaults.CORES,
    seed: int = defaults.SEED,
    sampler: str = defaults.SAMPLER,
    target_accept: float = defaults.TARGET_ACCEPT,
    extend: bool = True,
    noise_trend: bool = False,
    progressbar: bool = True,
    model: pm.Model | None = None,
) -> Fit:
    """Fit ``law`` to ``runs`` (a path, DataFrame or :class:`Runs`) and return the :class:`Fit`.

    ``columns`` maps canonical names to the table's (``{"N": "Model Size"}``); ``inputs`` binds a
    law's generic inputs (``{"X": "D"}``); ``priors`` overrides priors of law or noise parameters
    (``{"alpha": "LogNormal(mu=log(0.3), sigma=0.3)", "nu": ...}``). ``pool`` lets parameters vary by
    a group column under a population prior (``{"alpha": "family"}``; see :mod:`bayescale.model.pooling`);
    ``priors`` may then also set the spread between groups (``{"alpha_sd": "HalfNormal(sigma=0.1)"}``).
    ``noise_trend=True`` lets the noise scale move along the law's first input (N): log sigma changes
    by ``sigma_slope`` per e-fold, prior ``defaults.SIGMA_SLOPE_PRIOR`` (a prior on ``sigma_slope`` in
    ``priors`` turns it on too). For sweeps whose scatter grows with size, as Epoch's does.
    ``params`` says what N counts: ``"total"`` (as the table gives it) or ``"non_embedding"`` (from
    column ``N_no_embed``, or 12 n_layers d_model^2; see :func:`bayescale.data.runs.count_parameters`);
    forecasts then take N in that convention. ``extrapolation="calibrated"`` (default) widens forecasts beyond the observed runs by a
    discrepancy calibrated on internal backtests (see :mod:`bayescale.inference.discrepancy`); ``"none"``
    gives the plain posterior. ``extend``: when R-hat or ESS fall short without divergences at the
    default draws and tuning (or more), sample once more with ``defaults.EXTEND_FACTOR`` times the draws,
    whitened by the first run's draws (:func:`~bayescale.inference.laplace.rewhiten`); if that run diverges, or the
    sampler keeps only the named parameters, with that many times the tuning and draws in the first run's
    coordinates instead; and say so (:class:`~bayescale.errors.SamplingExtended`);
    problems left after that are reported as usual. Pooled
    groups are sampled in adaptive coordinates (:func:`~bayescale.inference.laplace.adaptive_coordinates`:
    centred where their data pin them down, non-centred where the spread does, in between elsewhere);
    if that run diverges (at the default draws and tuning, with ``extend``), the fit samples again with
    every group non-centred (a funnel's neck, where a group spread nears zero, is what centred groups
    diverge on) and says so the same way.
    ``model``: your own generative model, :func:`build_model`'s for the same arguments changed in
    ``with model:`` (a ``pm.Potential``, new variables, deterministics); it is whitened and sampled like
    any fit (:func:`bayescale.model.generative.adopt_model`). Forecasts refuse a model whose mean log-loss
    carries new variables (``terms``), naming them.

    Parameters
    ----------
    runs : str, pathlib.Path, pandas.DataFrame or Runs
        The runs table: a ``.csv``, ``.tsv`` or ``.parquet`` file, a DataFrame or validated :class:`Runs`;
        it needs a ``loss`` column and the law's inputs.
    law : Law or str, default "chinchilla"
        A :class:`Law`, a catalog name or the path of a ``.toml`` law card; it must be a law of the loss.
    columns : mapping of str to str, optional
        Canonical column names to the table's (``{"N": "Model Size"}``).
    where : str, optional
        Only the runs this row filter keeps, such as ``"data == 'rpj'"`` or ``"N >= 1e8 and data != 'c4'"``
        (:func:`bayescale.load_runs`); the fit's ``runs.source`` records it.
    inputs : mapping of str to str, optional
        Binds the law's generic inputs to columns (``{"X": "D"}``).
    priors : mapping of str to Prior, str or dict, optional
        Prior overrides of law, noise (``sigma``, ``nu``, ``sigma_slope``) or group-spread (``<param>_sd``)
        parameters, as :class:`Prior`, text or a card table; other names raise.
    pool : mapping of str to str, optional
        Law parameters that vary by a group column under a population prior (``{"alpha": "family"}``).
    likelihood : str, default "studentt"
        The noise model of the log-loss: ``"studentt"``, ``"normal"`` or ``"laplace"``.
    params : str, default "total"
        What N counts: ``"total"`` or ``"non_embedding"``.
    extrapolation : str, default "calibrated"
        ``"calibrated"`` widens forecasts beyond the runs by a backtested discrepancy; ``"calibrated-drift"``
        also moves a sweep's forecasts by a drift per e-fold learned from the same internal splits (not the
        default: benchmarks/README.md, "discrepancy_prior.py"); ``"none"`` does neither.
    draws : int, default 1000
        Posterior draws per chain, after tuning (``defaults.DRAWS``).
    tune : int, default 1000
        Tuning (warm-up) steps per chain (``defaults.TUNE``).
    chains : int, default 4
        Number of chains (``defaults.CHAINS``).
    cores : int, default 2
        Chains sampled in parallel (``defaults.CORES``).
    seed : int, default 20240417
        Random seed (a whole number >= 0) of the mode search, the sampler and the calibration; the fit's
        forecasts and checks use it unless given another (``defaults.SEED``).
    sampler : str, default "nutpie"
        ``"nutpie"``, ``"pymc"`` or ``"numpyro"`` (which needs JAX and NumPyro).
    target_accept : float, default 0.95
        Target acceptance rate of NUTS, in [0.5, 1).
    extend : bool, default True
        Sample again when R-hat or ESS fall short, or adaptive coordinates diverge (see above).
    noise_trend : bool, default False
        Let the noise scale move along the law's first input (``sigma_slope``).
    progressbar : bool, default True
        Show progress on stderr: a bar on a terminal, otherwise a line every few seconds.
    model : pymc.Model, optional
        Your own generative model, :func:`build_model`'s for the same arguments with additions.

    Returns
    -------
    Fit
        The sampled posterior with the law, runs, settings (``fit.settings``, including the stage timings)
        and sampler diagnostics; sampler problems left are also reported as warnings.

    Raises
    ------
    BayescaleError
        For impossible settings, an unknown law, likelihood or prior name, a law of a downstream metric,
        a model not built from these runs, or a runs table that cannot be fitted
        (:class:`~bayescale.errors.DataError`).
    """
    check_settings(sampler=sampler, draws=draws, tune=tune, chains=chains, cores=cores, target_accept=target_accept)
    if extrapolation not in defaults.EXTRAPOLATIONS:
        raise BayescaleError(
            f"extrapolation must be one of {', '.join(map(repr, defaults.EXTRAPOLATIONS))}, got {extrapolation!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BayescaleError(f"seed must be a whole number >= 0, got {seed!r}")
    user_model, model = model, None  # below, ``model`` is the sampler's
    timer = StageTimer()
    with timer("read and validate"):
        law, lik, runs, pool, noise_priors, sd_priors = _prepare(
            runs, law, columns, inputs, priors, pool, likelihood, params, noise_trend=noise_trend, where=where
        )
    with timer("mode search"):
        spec = ModelSpec.from_runs(law, lik, runs, noise_priors, pool, sd_priors)
        if user_model is not None:
            spec = adopt_model(spec, user_model)
        rng = np.random.default_rng(seed)
        laplace = laplace_approximation(spec, rng)
        non_centred = spec, laplace
        spec, laplace = adaptive_coordinates(spec, laplace, rng)
    sampling: dict[str, Any] = dict(
        sampler=sampler,
        chains=chains,
        cores=cores,
        seed=int(seed),
        target_accept=target_accept,
        progressbar=progressbar,
    )
    with timer("build model"):
        model = build_whitened(spec, laplace.center, laplace.scale)
    with timer("compile and sample"):
        idata = draw_posterior(
            model, list(spec.reported_names), draws=draws, tune=tune, reuse_key=spec.structure_key(), **sampling
        )
    posterior = idata["posterior"].to_dataset()
    timer.split(
        "compile and sample", "sampling", float(posterior.attrs.get("sampling_time", np.nan)), "compile and set-up"
    )
    with timer("diagnostics"):
        diagnostics = diagnose(posterior, idata["sample_stats"].to_dataset(), list(spec.reported_names))

    def sample_again(model, spec, draws, tune):
        again = draw_posterior(
            model, list(spec.reported_names), draws=draws, tune=tune, reuse_key=spec.structure_key(), **sampling
        )
        drawn = again["posterior"].to_dataset()
        return again, drawn, diagnose(drawn, again["sample_stats"].to_dataset(), list(spec.reported_names))

    at_defaults = draws >= defaults.DRAWS and tune >= defaults.TUNE  # fewer draws asked for: speed was chosen
    if extend and at_defaults and diagnostics.divergences and spec is not non_centred[0]:
        # divergences in adaptive coordinates: a funnel's neck (a group spread near zero) where a group
        # was written around its data; non-centred coordinates have none: the same posterior, sampled in those
        first = f"{diagnostics.divergences} divergences, R-hat {diagnostics.rhat_max:.3f}"
        spec, laplace = non_centred
        with timer("sampling non-centred"):
            model = build_whitened(spec, laplace.center, laplace.scale)
            idata, posterior, diagnostics = sample_again(model, spec, draws, tune)
        warn_user(
            f"{first} with groups written around their data: sampled again with every group non-centred; now "
            f"{diagnostics.divergences} divergences, R-hat {diagnostics.rhat_max:.3f}"
            + ("" if diagnostics.ok else " (see below)"),
            SamplingExtended,
        )
    if extend and at_defaults and diagnostics.more_draws_would_help:
        short = (
            f"R-hat {diagnostics.rhat_max:.3f}, min ESS {diagnostics.ess_bulk_min:.0f} at tune={tune}, draws={draws}"
        )
        how, rewhitened = "with longer chains", None
        if "z" in posterior:  # the first run's draws show the whitening's faults: refit it to them, draw longer
            whitening = rewhiten(
                laplace, posterior["z"].to_numpy().reshape(-1, len(laplace.center)), diagnostics.ess_bulk_min
            )  # laplace itself stays: its centre is the mode
            with timer("sampling again"):
                rewhitened = sample_again(
                    build_whitened(spec, whitening.center, whitening.scale), spec, defaults.EXTEND_FACTOR * draws, tune
                )
            diverged = rewhitened[2].divergences
            if diverged:  # it reached where the first run's coordinates never went: longer chains there
                how, rewhitened = (
                    f"with longer chains (whitened by the first run's draws it had {diverged} divergences)",
                    None,
                )
        if rewhitened is None:  # also a sampler that keeps only the named parameters (no whitened draws)
            draws, tune = defaults.EXTEND_FACTOR * draws, defaults.EXTEND_FACTOR * tune
            with timer("sampling again"):
                idata, posterior, diagnostics = sample_again(model, spec, draws, tune)
        else:
            how, draws = "whitened by the first run's draws", defaults.EXTEND_FACTOR * draws
            idata, posterior, diagnostics = rewhitened
        warn_user(
            f"{short}: sampled again {how} (tune={tune}, draws={draws}); now R-hat {diagnostics.rhat_max:.3f}, "
            f"min ESS {diagnostics.ess_bulk_min:.0f}" + ("" if diagnostics.ok else " (still short: see below)"),
            SamplingExtended,
        )
    report(diagnostics)
    with timer("log-likelihood"):  # PyMC's, on the generative model (LOO works on every fit)
        idata["log_likelihood"] = xr.Dataset({observed_name(spec): pointwise_log_likelihood(spec, posterior)})
        idata["constant_data"] = runs_dataset(runs)
    extrapolation_settings: dict[str, Any] = {"method": "none"}
    terms = mean_terms(spec)
    if extrapolation.startswith("calibrated") and not law.observation.is_log:  # kappa is per e-fold of log-loss
        extrapolation_settings["skipped"] = RAW_SCALE_NO_DISCREPANCY
    elif extrapolation.startswith("calibrated") and not terms:  # forecasts of a model with terms are refused (predict)
        from bayescale.inference.decision_discrepancy import calibrate_tau
        from bayescale.inference.discrepancy import calibrate

        def spec_factory(train, rows):
            internal = ModelSpec.from_runs(law, lik, train, noise_priors, pool, sd_priors)
            return internal if user_model is None else adopt_model(internal, subset_model(user_model, rows))

        with timer("calibration"):
            discrepancy = calibrate(
                runs,
                law,
                lik,
                spec_factory,
                chains * draws,
                int(seed),
                spec.named_values(laplace.center),
                sampler,
                drift=extrapolation == "calibrated-drift",
                decide=calibrate_tau,
            )
        if discrepancy is not None:
            idata["posterior"] = posterior.assign(
                {
                    name: (("chain", "draw"), values.reshape(chains, draws))
                    for name, values in discrepancy.posterior_draws().items()
                }
            )
            extrapolation_settings = discrepancy.to_settings()
    settings = {
        "extrapolation": extrapolation_settings,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "cores": cores,
        "seed": int(seed),
        "sampler": sampler,
        "target_accept": target_accept,
        "params": params.replace("-", "_"),
        "mode": laplace.mode(spec),
        "pool": pool,
        "sd_priors": sd_priors,
        "timings": timer.seconds,
        **(
            {"model": {"extra": list(spec.reported_names[len(spec.names) :]), "mean_terms": terms}}
            if user_model is not None
            else {}
        ),
    }
    return Fit(
        law, lik, runs, idata, settings, diagnostics, {k: Prior.parse(v) for k, v in noise_priors.items()}, user_model
    )
