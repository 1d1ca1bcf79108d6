"""Observation noise on log-loss: Student-t (default, robust), Normal or Laplace.

Each likelihood gives the same density three ways from one definition: the PyMC observed
variable for sampling, a NumPy log-density for the mode search and the stored pointwise
log-likelihood (so LOO always works), and noise draws for predictive intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from . import densities
from .errors import BayescaleError
from .priors import Prior


@dataclass(frozen=True)
class Likelihood:
    name: str
    noise_priors: Mapping[str, Prior]
    description: str

    @property
    def noise_params(self) -> tuple[str, ...]:
        return tuple(self.noise_priors)

    def logpdf(self, y, mu, p: Mapping):
        """Pointwise log-density of observed log-loss ``y`` given ``mu`` (NumPy or xarray)."""
        if self.name == "normal":
            return densities.normal(y, mu, p["sigma"])
        if self.name == "laplace":
            return densities.laplace(y, mu, p["sigma"])
        return densities.studentt(y, p["nu"], mu, p["sigma"])

    def pymc_observed(self, name: str, mu, p: Mapping, observed, dims: str):
        import pymc as pm

        if self.name == "normal":
            return pm.Normal(name, mu=mu, sigma=p["sigma"], observed=observed, dims=dims)
        if self.name == "laplace":
            return pm.Laplace(name, mu=mu, b=p["sigma"], observed=observed, dims=dims)
        return pm.StudentT(name, nu=p["nu"], mu=mu, sigma=p["sigma"], observed=observed, dims=dims)

    def standard_noise(self, rng: np.random.Generator, p: Mapping, shape: tuple[int, ...]) -> np.ndarray:
        """Unit-scale noise draws of ``shape`` = (chain, draw, point); nu broadcasts per draw."""
        if self.name == "normal":
            return rng.standard_normal(shape)
        if self.name == "laplace":
            return rng.laplace(0.0, 1.0, shape)
        nu = np.asarray(p["nu"])[..., None]
        return rng.standard_t(np.broadcast_to(nu, shape))


_SIGMA = Prior("HalfNormal", sigma=0.1)
LIKELIHOODS: dict[str, Likelihood] = {
    "studentt": Likelihood("studentt", {"sigma": _SIGMA, "nu": Prior("Gamma", alpha=2.0, beta=0.1)},
                           "Student-t on log-loss: robust to outlying runs (the default)"),
    "normal": Likelihood("normal", {"sigma": _SIGMA}, "Normal on log-loss (multiplicative Gaussian noise)"),
    "laplace": Likelihood("laplace", {"sigma": _SIGMA}, "Laplace on log-loss (absolute-error, like a Huber fit)"),
}


def get_likelihood(name: str | Likelihood) -> Likelihood:
    if isinstance(name, Likelihood):
        return name
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in LIKELIHOODS:
        raise BayescaleError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[key]
