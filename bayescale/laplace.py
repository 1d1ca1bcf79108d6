"""The posterior mode and its curvature, in NumPy, to precondition the sampler.

A multi-start L-BFGS search on the log posterior in unconstrained coordinates, then a
finite-difference Hessian at the best mode. Its inverse square root is the whitening map used by
:meth:`bayescale.model.ModelSpec.to_pymc`. Only the sampler's efficiency depends on this step:
the sampled posterior is exact whatever the mode search finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from .model import ModelSpec

#: curvature floor: no whitened direction is wider than 10 units of the unconstrained scale
_MIN_EIGENVALUE = 1e-2


@dataclass
class LaplaceApproximation:
    center: np.ndarray     # mode in unconstrained coordinates
    scale: np.ndarray      # a square root of the approximate posterior covariance
    log_density: float     # at the mode
    converged: bool

    def mode(self, spec: ModelSpec) -> dict[str, object]:
        """Parameter values at the mode (lists for pooled parameters)."""
        return {k: np.asarray(v).tolist() for k, v in spec.constrain(self.center)[0].items()}


def _starts(spec: ModelSpec, rng: np.random.Generator, n_random: int) -> list[np.ndarray]:
    medians = spec.unconstrain({n: p.median() for n, p in spec.priors.items()})
    draws = [spec.unconstrain({n: p.sample(rng, None) for n, p in spec.priors.items()})
             for _ in range(n_random)]
    return [medians, *draws]


def hessian(f, x: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Central finite-difference Hessian of a scalar function."""
    k = len(x)
    h = np.zeros((k, k))
    eye = np.eye(k) * step
    for i in range(k):
        for j in range(i, k):
            value = (f(x + eye[i] + eye[j]) - f(x + eye[i] - eye[j])
                     - f(x - eye[i] + eye[j]) + f(x - eye[i] - eye[j])) / (4 * step**2)
            h[i, j] = h[j, i] = value
    return h


def laplace_approximation(spec: ModelSpec, rng: np.random.Generator, n_random_starts: int = 8
                          ) -> LaplaceApproximation:
    """Find the posterior mode (best of several starts) and a whitening map around it."""
    def objective(u):
        value = -spec.log_density(u)
        return value if np.isfinite(value) else 1e300

    best = None
    for start in _starts(spec, rng, n_random_starts):
        if not np.isfinite(spec.log_density(start)):
            continue
        result = optimize.minimize(objective, start, method="L-BFGS-B")
        if best is None or result.fun < best.fun:
            best = result
    if best is None:  # no start had finite density: fall back to the prior scale
        center = _starts(spec, rng, 0)[0]
        return LaplaceApproximation(center, np.eye(len(center)), -np.inf, False)
    h = hessian(objective, best.x)
    h = np.where(np.isfinite(h), h, 0.0)
    eigenvalues, eigenvectors = np.linalg.eigh((h + h.T) / 2)
    eigenvalues = np.maximum(eigenvalues, _MIN_EIGENVALUE)
    scale = eigenvectors / np.sqrt(eigenvalues)
    return LaplaceApproximation(best.x, scale, -float(best.fun), bool(best.success))
