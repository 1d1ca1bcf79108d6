"""A fitted law: the sampled posterior with the law, the runs and the settings that produced it.

:class:`Fit` holds what a fit is and converts itself to and from a DataTree (and so a netCDF file).
The questions it answers (``summary``, ``predict``, ``plan``, ``check``) are the functions of
:mod:`bayescale.forecast`, offered here as methods for convenience.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale import __version__, defaults
from bayescale.data.runs import Points, Runs
from bayescale.errors import BayescaleError
from bayescale.fitting.store import read_fit_file, write_fit_file
from bayescale.forecast.checks import check
from bayescale.forecast.plan import plan
from bayescale.forecast.predict import predict
from bayescale.forecast.summary import summary
from bayescale.inference.diagnostics import Diagnostics
from bayescale.inference.diagnostics import from_dict as diagnostics_from_dict
from bayescale.inference.discrepancy import DRAW_NAMES, Discrepancy
from bayescale.laws.card import Law
from bayescale.laws.likelihood import Likelihood, get_likelihood
from bayescale.laws.priors import Prior, PriorSpec
from bayescale.model.generative import adopt_model, build_generative, observed_name, posterior_offsets
from bayescale.model.spec import OBS_DIM, ModelSpec

if TYPE_CHECKING:
    import pymc as pm

#: the version of the DataTree layout that :meth:`Fit.to_datatree` writes
FORMAT_VERSION = 1
#: the root attribute holding bayescale's metadata (JSON)
META_ATTRIBUTE = "bayescale"
#: the coordinate of ``constant_data`` that keeps each run's row number in the user's table (from 0)
ROW_COORDINATE = "table_row"


class Fit:
    """A sampled posterior over a law's parameters, with the data and settings that produced it.

    Made by :func:`~bayescale.fitting.pipeline.fit` or read back by :meth:`load` and :meth:`from_datatree`.

    Parameters
    ----------
    law : Law
        The fitted law, its priors bound to the runs' data.
    likelihood : Likelihood
        The noise model of the log-loss.
    runs : Runs
        The validated runs the law was fitted to.
    idata : xarray.DataTree
        ArviZ groups: ``posterior``, ``sample_stats``, ``log_likelihood`` and ``constant_data`` (the runs).
    settings : mapping
        How the fit was made: sampler settings, ``seed``, ``params``, ``extrapolation`` (the calibrated
        discrepancy, if any), ``pool`` and ``sd_priors`` (which rebuild the pooling), ``timings``, ...
    diagnostics : Diagnostics
        The sampler diagnostics (divergences, R-hat, ESS and the problems found).
    noise_priors : mapping of str to Prior, optional
        Priors of noise parameters that replace the likelihood's defaults (and ``sigma_slope``'s).
    model : pymc.Model, optional
        A user's own generative model that was sampled (:func:`fit`'s ``model``).
    """

    def __init__(
        self,
        law: Law,
        likelihood: Likelihood,
        runs: Runs,
        idata: xr.DataTree,
        settings: Mapping[str, Any],
        diagnostics: Diagnostics,
        noise_priors: Mapping[str, PriorSpec] | None = None,
        model: pm.Model | None = None,
    ) -> None:
        """``settings["pool"]`` and ``settings["sd_priors"]`` (if any) rebuild the pooling; ``model``: a user's own
        generative model that was sampled (:func:`fit`'s ``model``)."""
        self.law = law
        self.likelihood = likelihood
        self.runs = runs
        self.idata = idata
        self.settings = dict(settings)
        self.diagnostics = diagnostics
        self.spec = ModelSpec.from_runs(
            law, likelihood, runs, noise_priors, self.settings.get("pool"), self.settings.get("sd_priors")
        )
        self._model = model
        if model is not None:
            self.spec = adopt_model(self.spec, model)
        self.discrepancy = None
        extrapolation = self.settings.get("extrapolation") or {}
        if extrapolation.get("method") == "calibrated" and "kappa" in self.posterior:
            draws = {n: self.posterior[n].to_numpy().reshape(-1) for n in DRAW_NAMES if n in self.posterior}
            self.discrepancy = Discrepancy.from_settings(extrapolation, draws)

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws: the ``posterior`` group of ``fit.idata`` as a Dataset.

        Returns
        -------
        xarray.Dataset
            Dims ``chain`` and ``draw``: every parameter (a pooled one also along its group column), then a
            user model's own variables and the extrapolation discrepancy's draws where there are any.
        """
        return self.idata["posterior"].to_dataset()

    @property
    def n_obs(self) -> int:
        """The number of runs fitted.

        Returns
        -------
        int
            Rows of ``fit.runs``.
        """
        return len(self.runs)

    @property
    def priors(self) -> dict[str, Prior]:
        """Every parameter's prior as the model uses it.

        Returns
        -------
        dict of str to Prior
            Law parameters first, then the noise parameters.
        """
        return dict(self.spec.priors)

    def summary(self, ci_prob: float = defaults.CI_PROB) -> pd.DataFrame:
        """Parameters in the card's convention with mean, median and equal-tailed interval.

        See :func:`bayescale.forecast.summary.summary`.

        Parameters
        ----------
        ci_prob : float, default 0.9
            Probability mass of the equal-tailed interval, strictly between 0 and 1.

        Returns
        -------
        pandas.DataFrame
            One row per parameter (index ``param``), columns ``mean``, ``median``, ``sd``, ``lower``, ``upper``,
            ``ess_bulk``, ``r_hat`` and ``reference``.
        """
        return summary(self, ci_prob)

    def predict(
        self, points: Points | None = None, *, ci_prob: float = defaults.CI_PROB, seed: int | None = None, **inputs: Any
    ) -> pd.DataFrame:
        """Credible and predictive intervals of the loss at new scales; see :func:`bayescale.forecast.predict.predict`.

        Parameters
        ----------
        points : pandas.DataFrame or mapping, optional
            The points: a value (or array of values) per law input; ``D`` may be given as ``C`` with ``N``.
        ci_prob : float, default 0.9
            Probability mass of both intervals, strictly between 0 and 1.
        seed : int, optional
            Seed of the noise and discrepancy draws; the fit's seed by default.
        **inputs
            The points as keywords instead (``N=[1e10, 1e11], D=2e11``).

        Returns
        -------
        pandas.DataFrame
            The points, then ``mean``, ``median``, ``lower``, ``upper`` (the law's value), ``pred_lower``,
            ``pred_upper`` (a new run's loss), ``<input>_vs_max`` and ``extrapolation``.
        """
        return predict(self, points, ci_prob=ci_prob, seed=seed, **inputs)

    def plan(
        self,
        flops: float,
        *,
        ci_prob: float = defaults.CI_PROB,
        cost: str | None = None,
        unique_tokens: float | None = None,
    ) -> dict:
        """Compute-optimal N*, D*, D/N and loss for a FLOP budget; see :mod:`bayescale.forecast.plan`.

        ``cost`` is a formula in N and D (default ``6*N*D``); ``unique_tokens`` caps the fresh data.

        Parameters
        ----------
        flops : float
            The compute budget in FLOPs (positive, finite).
        ci_prob : float, default 0.9
            Probability mass of the intervals, strictly between 0 and 1.
        cost : str, optional
            The cost in FLOPs as a formula in ``N`` and ``D``, positive and growing with D; ``6*N*D`` if None.
        unique_tokens : float, optional
            A cap on the unique (fresh) tokens: a law with input ``U`` sees U = min(cap, D), others keep D <= cap.

        Returns
        -------
        dict
            ``flops``, ``ci_prob``, ``flops_vs_largest_run``; ``N_opt``, ``D_opt``, ``tokens_per_param``,
            ``loss_opt`` (and ``<input>_opt`` per tunable input) each as ``{"median", "lower", "upper"}``;
            ``run_at_plan`` (the forecast of a run at the median N*, D*); with ``cost`` also ``cost``, with
            ``unique_tokens`` also ``unique_tokens``, ``p_data_limited`` and ``data_constraint``.

        Raises
        ------
        BayescaleError
            For a budget that is not a positive number, a bad ``cost`` or ``unique_tokens``, a law not in N and
            D (and tunable inputs), or a pooled fit.
        """
        return plan(self, flops, ci_prob, cost=cost, unique_tokens=unique_tokens)

    @property
    def model(self) -> pm.Model:
        """The generative PyMC model of this fit: named variables, ``pm.Data`` inputs, observed ``log_loss``.

        See :mod:`bayescale.model.generative`; the sampler explored the same posterior in whitened coordinates.

        Returns
        -------
        pymc.Model
            The user's own model where the fit sampled one, else bayescale's, built on first use.
        """
        if self._model is None:
            self._model = build_generative(self.spec)
        return self._model

    def prior_predictive(self, draws: int = 500, *, seed: int | None = None) -> xr.DataTree:
        """Draw from the priors and the likelihood: adds ArviZ groups ``prior`` and ``prior_predictive``.

        Parameters
        ----------
        draws : int, default 500
            Number of prior draws.
        seed : int, optional
            Random seed; the fit's seed by default.

        Returns
        -------
        xarray.DataTree
            ``fit.idata`` itself, with groups ``prior``, ``prior_predictive`` and ``observed_data`` added
            (or replaced).
        """

        import pymc as pm

        seed = self.settings["seed"] if seed is None else seed
        with defaults.reproducible_compilation():
            drawn = pm.sample_prior_predictive(draws, model=self.model, random_seed=seed)
        return self._add_groups(drawn, ("prior", "prior_predictive", "observed_data"))

    def posterior_predictive(self, *, seed: int | None = None) -> xr.DataTree:
        """Replicate the observations (log-loss, or the loss for a raw-scale law) from every posterior draw.

        Parameters
        ----------
        seed : int, optional
            Random seed; the fit's seed by default.

        Returns
        -------
        xarray.DataTree
            ``fit.idata`` itself, with groups ``posterior_predictive`` (``log_loss``, or ``loss`` for a law on the
            raw scale, per draw and run) and
            ``observed_data`` added (or replaced).
        """

        import pymc as pm

        seed = self.settings["seed"] if seed is None else seed
        free = [rv.name for rv in self.model.free_RVs]
        posterior = self.posterior
        trace = posterior.merge(posterior_offsets(self.spec, posterior))[free]
        with defaults.reproducible_compilation():
            drawn = pm.sample_posterior_predictive(
                trace, model=self.model, var_names=[observed_name(self.spec)], random_seed=seed, progressbar=False
            )
        return self._add_groups(drawn, ("posterior_predictive", "observed_data"))

    def check(self, *, prior_draws: int = 500, seed: int | None = None) -> dict:
        """Prior predictive, posterior predictive and LOO-PIT checks, with findings in words (:mod:`bayescale.forecast.checks`).

        See :func:`bayescale.forecast.checks.check`.

        Parameters
        ----------
        prior_draws : int, default 500
            Number of prior predictive draws.
        seed : int, optional
            Random seed of the predictive draws; the fit's seed by default.

        Returns
        -------
        dict
            Figures per check (``prior_predictive``, ``posterior_predictive``, ``noise_along_size``,
            ``loo_pit``), ``n_runs``, ``likelihood`` and ``findings``, a list of str.
        """
        return check(self, prior_draws=prior_draws, seed=seed)

    def _add_groups(self, drawn: xr.DataTree, groups) -> xr.DataTree:
        for group in groups:
            if group in drawn.children:
                self.idata[group] = drawn[group].to_dataset()
        return self.idata

    def to_datatree(self) -> xr.DataTree:
        """The fit as one DataTree: ArviZ's groups as sampled, bayescale's metadata in one JSON root attribute.

        Returns
        -------
        xarray.DataTree
            A copy of ``fit.idata`` (without sample statistics of object dtype, which netCDF cannot hold),
            with root attribute ``"bayescale"``: JSON of the format version, bayescale version, law,
            likelihood, noise priors, settings, diagnostics, and the runs' notes and source.
        """
        tree = self.idata.copy()
        stats = tree["sample_stats"].to_dataset()
        objects = [name for name, var in stats.data_vars.items() if var.dtype == object]
        if objects:  # e.g. nutpie's divergence messages: not representable in netCDF
            tree["sample_stats"] = stats.drop_vars(objects)
        noise = {n: self.spec.priors[n].to_dict() for n in self.spec.noise_names}
        meta = {
            "format_version": FORMAT_VERSION,
            "bayescale_version": __version__,
            "law": self.law.to_dict(),
            "likelihood": self.likelihood.name,
            "noise_priors": noise,
            "settings": self.settings,
            "diagnostics": self.diagnostics.to_dict(),
            "notes": self.runs.notes,
            "source": self.runs.source,
        }
        tree.attrs = {**tree.attrs, META_ATTRIBUTE: json.dumps(meta)}
        return tree

    @classmethod
    def from_datatree(cls, tree: xr.DataTree, source: str = "a DataTree") -> Fit:
        """The fit that :meth:`to_datatree` wrote; ``source`` names it in errors.

        A user's own model (:func:`fit`'s ``model``) is not stored: the fit read back has bayescale's own
        generative model as :attr:`model`.

        Parameters
        ----------
        tree : xarray.DataTree
            A DataTree written by :meth:`to_datatree`.
        source : str, default "a DataTree"
            What to call the tree in error messages (and the runs' source, if the metadata lack one).

        Returns
        -------
        Fit
            The fit, with the runs rebuilt from the ``constant_data`` group.

        Raises
        ------
        BayescaleError
            If the tree has no bayescale metadata, or was written in a newer format.
        """
        if META_ATTRIBUTE not in tree.attrs:
            raise BayescaleError(f"{source} is not a bayescale fit (no '{META_ATTRIBUTE}' attribute)")
        meta = json.loads(tree.attrs[META_ATTRIBUTE])
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise BayescaleError(
                f"{source} was written by bayescale {meta.get('bayescale_version')} in a newer "
                f"format ({meta['format_version']}); upgrade bayescale to read it"
            )
        constant = tree["constant_data"].to_dataset()
        frame = pd.DataFrame({name: np.asarray(var.values) for name, var in constant.data_vars.items()})
        rows = constant.coords.get(ROW_COORDINATE)
        frame.index = pd.RangeIndex(len(frame), name="row") if rows is None else pd.Index(rows.values, name="row")
        runs = Runs(frame, list(meta.get("notes", [])), meta.get("source", source))
        noise = {k: Prior.parse(v) for k, v in meta.get("noise_priors", {}).items()}
        return cls(
            Law.from_dict(meta["law"]),
            get_likelihood(meta["likelihood"]),
            runs,
            tree,
            meta["settings"],
            diagnostics_from_dict(meta["diagnostics"]),
            noise,
        )

    def save(self, path: str | Path) -> Path:
        """Write the fit to one netCDF file, atomically (an earlier file survives a failed save).

        Parameters
        ----------
        path : str or pathlib.Path
            The file to write: a name ending in ``.nc`` in an existing folder; an existing file is replaced.

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        BayescaleError
            If ``path`` does not end in ``.nc`` or its folder does not exist.
        """
        return write_fit_file(self.to_datatree(), path)

    @classmethod
    def load(cls, path: str | Path) -> Fit:
        """The fit saved at ``path`` (:meth:`save`).

        Parameters
        ----------
        path : str or pathlib.Path
            A netCDF file written by :meth:`save`.

        Returns
        -------
        Fit
            The fit as saved (see :meth:`from_datatree`).

        Raises
        ------
        BayescaleError
            If the file does not exist, cannot be read, or is not a bayescale fit.
        """
        return cls.from_datatree(read_fit_file(path), repr(str(path)))

    def __repr__(self) -> str:
        return (
            f"<Fit {self.law.name} ({self.likelihood.name} likelihood), {self.n_obs} runs, "
            f"{self.diagnostics.n_draws} draws, {'ok' if self.diagnostics.ok else 'WITH SAMPLER WARNINGS'}>"
        )


def runs_dataset(runs: Runs) -> xr.Dataset:
    """The runs as a fit stores them (``constant_data``): a variable per column along ``obs``, and the
    rows' numbers in the user's table as coordinate :data:`ROW_COORDINATE` (read back as the index)."""
    index = runs.frame.index
    rows = {ROW_COORDINATE: (OBS_DIM, index.to_numpy(dtype=np.int64))} if pd.api.types.is_integer_dtype(index) else {}
    return xr.Dataset({c: (OBS_DIM, runs.frame[c].to_numpy()) for c in runs.columns}, coords=rows)
