"""Observation noise: Student-t (default, robust), Normal or Laplace, on log-loss or on the loss itself.

What a fit observes of each run is its :class:`ObservationScale`: the log of the loss (the default, where
the noise is relative) or, for a card with ``scale = "raw"``, the loss column's value itself (a target that
can be zero or negative, such as ScaleBench's unigram-normalised loss; the noise is then in its units).

Each likelihood names a family of the one distribution table (:data:`bayescale.laws.priors.FAMILIES`,
keyed by PyMC names), which gives the PyMC observed variable of the generative model (the one
density: sampling, mode search and the stored pointwise log-likelihood all come from it), SciPy's
density for held-out runs, and noise draws for predictive intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayescale.errors import BayescaleError, FormulaError
from bayescale.laws.formula import scipy_special
from bayescale.laws.priors import FAMILIES, Prior


@dataclass(frozen=True)
class ObservationScale:
    """What a fit observes of a run's loss, and so what the law's mean is on: its log, or the value itself.

    The one place where the loss and the observation convert into each other: :meth:`observe` (a run's loss ->
    its observation ``y``, also the law's value -> the mean of ``y``) and :meth:`to_loss` (back). Every
    likelihood, forecast and score works on ``y``.
    """

    name: str
    #: the name of the observed variable in the generative model and in ArviZ groups
    variable: str
    #: what ``y`` is, in words for summaries
    description: str

    @property
    def is_log(self) -> bool:
        return self.name == "log"

    def observe(self, loss, xp=np):
        """A loss (or the law's value) on the observation scale: its natural log, or itself."""
        return xp.log(loss) if self.is_log else loss

    def to_loss(self, y, xp=np):
        """An observation (or the law's mean, a quantile of either) back as a loss: exp, or itself."""
        return xp.exp(y) if self.is_log else y

    def to_loss_jacobian(self, y, xp=np):
        """:meth:`to_loss` and its log-Jacobian ``log |d loss / d y|`` (``y``, or 0), for a floor reached through it."""
        return (xp.exp(y), y) if self.is_log else (y, 0.0)

    def default_noise(self, y: np.ndarray) -> dict[str, Prior]:
        """Noise priors this scale puts in place of the likelihood's own, for observations ``y``.

        On log-loss none: ``HalfNormal(sigma=0.1)`` says a run's noise is about 10% of its loss whatever the
        units. The loss itself has no unit bayescale knows, so its noise scale is
        ``HalfNormal(sigma=s)`` with ``s`` the power of ten at or above the spread (sd) of the observed ``y``:
        noise larger than the whole spread of the runs is implausible, smaller noise is left to the data, and
        rounding to a power of ten keeps the prior (and the compiled sampler) the same for subsets of one
        sweep (backtests, design replays). A card's ``[noise.sigma]`` replaces it.
        """
        if self.is_log:
            return {}
        spread = float(np.std(np.asarray(y, float)))
        scale = 10.0 ** np.ceil(np.log10(spread)) if np.isfinite(spread) and spread > 0 else 1.0
        return {"sigma": Prior("HalfNormal", sigma=float(scale))}


#: observation scales by the name a card gives (``scale = "raw"``; default ``"log"``)
SCALES: dict[str, ObservationScale] = {
    "log": ObservationScale("log", "log_loss", "log-loss"),
    "raw": ObservationScale("raw", "loss", 'the raw target scale (the card\'s scale = "raw")'),
}


def get_scale(name: str, where: str = "law card") -> ObservationScale:
    """The observation scale named ``name``; a one-line error naming ``where`` for any other value."""
    if name not in SCALES:
        raise FormulaError(
            f'{where}: scale {name!r} is not known; use "log" (the likelihood on log-loss, the default) or '
            '"raw" (on the loss column\'s value itself, which may be zero or negative)'
        )
    return SCALES[name]


@dataclass(frozen=True)
class Likelihood:
    """A noise model of the observation (log-loss or the loss itself, :class:`ObservationScale`).

    A location-scale family of :data:`bayescale.laws.priors.FAMILIES` (by its PyMC name).

    ``sigma`` is always the noise scale (the family calls it ``scale``: ``b`` for Laplace); other
    noise parameters (``nu``) pass to the family by name.
    """

    name: str
    family: str
    noise_priors: Mapping[str, Prior]
    description: str
    scale: str = "sigma"

    @property
    def noise_params(self) -> tuple[str, ...]:
        return tuple(self.noise_priors)

    def _args(self, mu, p: Mapping) -> dict:
        return {"mu": mu, self.scale: p["sigma"], **{k: p[k] for k in self.noise_params if k != "sigma"}}

    def logpdf(self, y, mu, p: Mapping):
        """Pointwise log-density of observations ``y`` given ``mu`` (SciPy's), for held-out runs' predictive density.

        A fit's own density and pointwise log-likelihood are PyMC's, from the generative model.
        """
        return FAMILIES[self.family].scipy(**self._args(mu, p)).logpdf(y)

    def logpdf_numpy(self, y, mu, p: Mapping):
        """:meth:`logpdf` in closed NumPy form, for the many points of :func:`bayescale.forecast.design.design`.

        The terms that depend only on the noise parameters are computed at their own (small) shape, then
        broadcast. On 16M points SciPy's Student-t took 7.3 s and this 0.45 s (2 cores, 2026-12-07).
        Families without a closed form here use :meth:`logpdf`.
        """
        if self.family not in _LOG_KERNELS:
            return self.logpdf(y, mu, p)
        constant, kernel = _LOG_KERNELS[self.family]
        sigma = np.asarray(p["sigma"])
        shape = {k: np.asarray(p[k]) for k in self.noise_params if k != "sigma"}
        z = np.subtract(y, mu)
        z /= sigma
        out = kernel(z, **shape)
        out += constant(**shape) - np.log(sigma)
        return out

    def pymc_observed(self, name: str, mu, p: Mapping, observed, dims: str):
        import pymc as pm

        return getattr(pm, FAMILIES[self.family].pymc_name)(name, **self._args(mu, p), observed=observed, dims=dims)

    def standard_noise(self, rng: np.random.Generator, p: Mapping, shape: tuple[int, ...]) -> np.ndarray:
        """Unit-scale noise draws of ``shape`` = (draw, point); nu and the like broadcast per draw."""
        shape_args = {k: np.broadcast_to(np.asarray(p[k])[..., None], shape) for k in self.noise_params if k != "sigma"}
        standard = FAMILIES[self.family].standard
        assert standard is not None  # a likelihood's family is a location-scale family, which has one
        return standard(rng, shape, **shape_args)


def _studentt_kernel(z, nu):
    """-(nu + 1) / 2 * log(1 + z^2 / nu), in place of ``z``'s square; log(1 + x), not log1p: NumPy's log is
    vectorised and log1p is not (4x on float32), and the difference (below 1e-16 absolute in float64) is no
    matter for a density."""
    out = z * z
    out *= 1.0 / nu
    out += 1.0
    np.log(out, out=out)
    out *= -(nu + 1) / 2
    return out


#: family -> (log normalising constant of the unit-scale density, log kernel of the standardised value z)
_LOG_KERNELS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "Normal": (lambda: -0.5 * np.log(2 * np.pi), lambda z: -0.5 * z * z),
    "StudentT": (
        lambda nu: scipy_special().gammaln((nu + 1) / 2) - scipy_special().gammaln(nu / 2) - 0.5 * np.log(nu * np.pi),
        _studentt_kernel,
    ),
    "Laplace": (lambda: -np.log(2.0), lambda z: -np.abs(z)),
}

_SIGMA = Prior("HalfNormal", sigma=0.1)
LIKELIHOODS: dict[str, Likelihood] = {
    "studentt": Likelihood(
        "studentt",
        "StudentT",
        {"sigma": _SIGMA, "nu": Prior("Gamma", alpha=2.0, beta=0.1)},
        "Student-t on log-loss: robust to outlying runs (the default)",
    ),
    "normal": Likelihood("normal", "Normal", {"sigma": _SIGMA}, "Normal on log-loss (multiplicative Gaussian noise)"),
    "laplace": Likelihood(
        "laplace", "Laplace", {"sigma": _SIGMA}, "Laplace on log-loss (absolute-error, like a Huber fit)", scale="b"
    ),
}


def get_likelihood(name: str | Likelihood) -> Likelihood:
    if isinstance(name, Likelihood):
        return name
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in LIKELIHOODS:
        raise BayescaleError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[key]
