"""Law + priors + likelihood + runs -> the posterior density, in NumPy and as a PyMC model.

Every parameter (the law's and the noise model's) is mapped to an unconstrained coordinate ``u``
(log for positive parameters, logit for bounded ones). The PyMC model samples whitened coordinates
``z`` with ``u = center + scale @ z``, where ``center`` and ``scale`` come from a Laplace
approximation (see :mod:`bayescale.laplace`). That affine map has a constant Jacobian, so the
posterior is exactly the one the priors and likelihood define; it only makes the geometry round
for NUTS. Raw ``A / N**alpha`` coordinates are strongly correlated (log A moves with alpha times
log N); whitening removes that for any formula a user writes, not just the Chinchilla pattern.
Parameters are stored and reported in the law card's own convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import xarray as xr

from .data import Runs
from .laws import Law
from .likelihood import Likelihood
from .priors import Prior

OBS_DIM = "obs"


@dataclass
class ModelSpec:
    """Everything that defines one posterior: law, priors of all parameters, noise model, data."""

    law: Law
    likelihood: Likelihood
    priors: Mapping[str, Prior]       # law parameters first, then noise parameters, in order
    inputs: Mapping[str, np.ndarray]  # one array per law input
    log_loss: np.ndarray

    @classmethod
    def from_runs(cls, law: Law, likelihood: Likelihood, runs: Runs,
                  noise_priors: Mapping[str, object] | None = None) -> "ModelSpec":
        priors = {name: p.prior for name, p in law.params.items()}
        noise = dict(likelihood.noise_priors)
        for name, spec in (noise_priors or {}).items():
            noise[name] = Prior.parse(spec)
        priors.update(noise)
        runs.require(law.inputs, len(priors), law.name)
        inputs = {name: runs[name] for name in law.inputs}
        return cls(law, likelihood, priors, inputs, np.log(runs["loss"]))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.priors)

    # -- NumPy side ---------------------------------------------------------------------------
    def constrain(self, u: np.ndarray) -> tuple[dict[str, float], float]:
        """Parameter values for unconstrained ``u`` and the log-Jacobian of the map."""
        values, log_jac = {}, 0.0
        for u_i, (name, prior) in zip(u, self.priors.items()):
            values[name], jac = prior.support.from_unconstrained(u_i, np)
            log_jac += jac
        return values, log_jac

    def unconstrain(self, values: Mapping[str, float]) -> np.ndarray:
        return np.array([self.priors[n].support.to_unconstrained(values[n]) for n in self.names])

    def log_density(self, u: np.ndarray) -> float:
        """Log posterior density (up to a constant) in unconstrained coordinates; -inf if invalid."""
        values, log_jac = self.constrain(u)
        with np.errstate(all="ignore"):
            log_prior = sum(float(self.priors[n].logpdf(values[n])) for n in self.names)
            mu = np.log(self.law.formula.numpy({**self.inputs, **values}))
            log_lik = float(np.sum(self.likelihood.logpdf(self.log_loss, mu, values)))
        total = log_prior + log_lik + log_jac
        return total if np.isfinite(total) else -np.inf

    def pointwise_log_likelihood(self, posterior: xr.Dataset) -> xr.DataArray:
        """log p(y_i | draw) for every posterior draw and observation, as (chain, draw, obs)."""
        inputs = {k: xr.DataArray(v, dims=OBS_DIM) for k, v in self.inputs.items()}
        params = {n: posterior[n] for n in self.names}
        with np.errstate(all="ignore"):
            mu = np.log(self.law.formula.numpy({**inputs, **params}))
            y = xr.DataArray(self.log_loss, dims=OBS_DIM)
            out = self.likelihood.logpdf(y, mu, params)
        return out.transpose("chain", "draw", OBS_DIM)

    # -- PyMC side ----------------------------------------------------------------------------
    def to_pymc(self, center: np.ndarray, scale: np.ndarray):
        """The PyMC model that samples whitened coordinates ``z`` (``u = center + scale @ z``)."""
        import pymc as pm
        import pytensor.tensor as pt

        coords = {"free": list(self.names), OBS_DIM: np.arange(len(self.log_loss))}
        with pm.Model(coords=coords) as model:
            z = pm.Flat("z", dims="free")
            u = pt.as_tensor(center) + pt.dot(pt.as_tensor(scale), z)
            values, log_prior = {}, 0.0
            for i, (name, prior) in enumerate(self.priors.items()):
                value, log_jac = prior.support.from_unconstrained(u[i], pt)
                values[name] = pm.Deterministic(name, value)
                log_prior = log_prior + prior.pytensor_logp(value) + log_jac
            pm.Potential("log_prior", log_prior)
            inputs = {k: pt.as_tensor(v) for k, v in self.inputs.items()}
            mu = pt.log(self.law.formula.pytensor({**inputs, **values}))
            self.likelihood.pymc_observed("log_loss", mu, values, self.log_loss, dims=OBS_DIM)
        return model
