"""The posterior mode and its curvature, to precondition the sampler.

A multi-start L-BFGS search on the log posterior in the sampler's unconstrained coordinates, with
the log-density and gradient compiled from the very model the sampler runs (:mod:`bayescale.model.whitened`,
with the identity whitening; once per law structure and thread), then a Hessian by differences of
that gradient at the best mode. Its inverse square root is the whitening. Only the sampler's
efficiency depends on this step: the sampled posterior is exact whatever the mode search finds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize

from bayescale.model.spec import ModelSpec
from bayescale.model.whitened import build_whitened

#: curvature floor: no whitened direction is wider than 10 units of the unconstrained scale
_MIN_EIGENVALUE = 1e-2


@dataclass
class LaplaceApproximation:
    center: np.ndarray  # mode in unconstrained coordinates
    scale: np.ndarray  # a square root of the approximate posterior covariance
    log_density: float  # at the mode
    converged: bool
    hessian: np.ndarray | None = None  # of -log density at the mode

    def mode(self, spec: ModelSpec) -> dict[str, object]:
        """Parameter values at the mode (lists for pooled parameters)."""
        return {k: np.asarray(v).tolist() for k, v in spec.constrain(self.center).items()}


def _starts(spec: ModelSpec, rng: np.random.Generator, n_random: int) -> list[np.ndarray]:
    medians = spec.unconstrain({n: p.median() for n, p in spec.priors.items()})
    draws = [spec.unconstrain({n: p.sample(rng, None) for n, p in spec.priors.items()}) for _ in range(n_random)]
    return [medians, *draws]


#: two modes whose log densities differ by less than this are the same mode for the whitening (a draw
#: lies about half a nat per coordinate below the mode). Pooled posteriors have flat ridges towards a
#: funnel's neck, along which searches from different starts end 0.01-0.06 nats apart after 15000
#: densities each: on Gadre pooled by corpus every start ran to that limit (benchmarks/README.md, 2026-11-30, commit 6503fc9)
_SAME_MODE = 0.1

#: how far above its start (in nats) a search values a point where the density is not finite (an
#: anchored floor E below 0, an overflow). L-BFGS's line search steps back from such a point only if
#: its value is finite: with 1e300 it stopped after one step, at its start, on Epoch's 211 smallest
#: runs (benchmarks/README.md, 2026-11-30, commit 8d7fcf8)
_INVALID_ABOVE_START = 1e4

#: a centred mode whose group spread is below this share of the non-centred mode's lies in the funnel's neck
#: (Gadre, all five Chinchilla parameters pooled by corpus: E_sd 0.31 -> 2e-5, beta_sd 0.31 -> 1.5e-4)
NECK_SHRINKAGE = 0.05

#: above this many coordinates (pooling over many groups) the search tries fewer random starts
_MANY_COORDINATES = 25


def _compiled_objective(spec: ModelSpec):
    """-log density with its gradient in unwhitened coordinates: nutpie's compiled callback of the sampler's model.

    The mode search runs on the very function the sampler will call (the whitened model of
    :mod:`bayescale.model.whitened` with the identity whitening), compiled once per structure key and
    cached on disk (:mod:`bayescale.inference.sampling`, :mod:`bayescale.inference.callbacks`): the fit that follows,
    internal splits, backtests and refits of the same structure pay for no further compile. The
    returned function holds this spec's numbers.
    """
    from bayescale.inference.callbacks import log_density_function
    from bayescale.inference.sampling import compiled_nutpie

    k = len(spec.free_names)
    log_density = log_density_function(
        compiled_nutpie(build_whitened(spec, np.zeros(k), np.eye(k)), list(spec.reported_names), spec.structure_key())
    )

    def value_and_grad(u):
        value, gradient = log_density(u)
        return -value, -gradient

    return value_and_grad


def gradient_hessian(value_and_grad, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Hessian by central differences of an exact gradient: 2k gradients, no second-derivative graph.

    PyTensor's Hessian of a model with hundreds of coordinates took longer to compile and run than
    the whole mode search (a gradient per row, in a scan); this is accurate to ``step**2``.
    """
    k = len(x)
    h = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = step
        h[i] = (value_and_grad(x + e)[1] - value_and_grad(x - e)[1]) / (2 * step)
    return (h + h.T) / 2


def laplace_approximation(
    spec: ModelSpec, rng: np.random.Generator, n_random_starts: int = 8, starts: tuple[np.ndarray, ...] = ()
) -> LaplaceApproximation:
    """Find the posterior mode (best of several starts) and a whitening map around it.

    ``starts`` are tried first (for example the mode of a fit to more of the same runs): sharp
    posteriors (a noise scale of 0.1% on log-loss) have saddles and poor local modes that the
    prior's median and random draws do not escape. The search stops once two starts agree on the
    best mode. The log-density and its gradient are the compiled ones of the sampler's own model
    (:func:`_compiled_objective`), and the Hessian is differences of that gradient.
    """
    value_and_grad = _compiled_objective(spec)
    if len(spec.free_names) > _MANY_COORDINATES:
        n_random_starts = min(n_random_starts, 2)
    best, found = None, 0
    for start in [*starts, *_starts(spec, rng, n_random_starts)]:
        start_value = value_and_grad(start)[0]
        if not np.isfinite(start_value):
            continue
        ceiling = start_value + _INVALID_ABOVE_START
        result = optimize.minimize(
            _capped(value_and_grad, ceiling), start, jac=True, method="L-BFGS-B", options={"maxiter": 5000}
        )
        if best is not None and abs(result.fun - best.fun) < _SAME_MODE:
            found += 1
        elif best is None or result.fun < best.fun:
            best, found = result, 1
        if found == 2:  # two starts agree on the best mode: further starts rarely beat it
            break
    if best is None:  # no start had finite density: fall back to the prior scale
        center = _starts(spec, rng, 0)[0]
        return LaplaceApproximation(center, np.eye(len(center)), -np.inf, False)
    h = gradient_hessian(_capped(value_and_grad, 1e300), best.x)
    h = np.where(np.isfinite(h), h, 0.0)
    h = (h + h.T) / 2
    eigenvalues, eigenvectors = np.linalg.eigh(h)
    eigenvalues = np.maximum(eigenvalues, _MIN_EIGENVALUE)
    scale = eigenvectors / np.sqrt(eigenvalues)
    return LaplaceApproximation(best.x, scale, -float(best.fun), bool(best.success), h)


def _capped(objective, ceiling: float):
    """``objective`` (a value, or a value and its gradient) with a non-finite value replaced by ``ceiling``."""

    def capped(u):
        out = objective(u)
        value = out[0] if isinstance(out, tuple) else out
        if np.isfinite(value):
            return out
        return (ceiling, out[1]) if isinstance(out, tuple) else ceiling

    return capped


def rewhiten(laplace: LaplaceApproximation, z: np.ndarray, effective_draws: float) -> LaplaceApproximation:
    """The whitening refitted to draws ``z`` (rows) of its own coordinates: centred at their mean, scaled by their covariance.

    The mode and curvature of a hierarchical posterior describe its typical set poorly (the joint
    mode sits near a funnel's neck, where the group spreads are small): on the pooled Gadre fit the
    whitened draws had standard deviations up to 300. A first run's draws measure the typical set
    itself. With k coordinates and ``effective_draws`` (the run's smallest ESS) the covariance is
    shrunk towards its diagonal by k / (k + effective_draws): a dense estimate from a few hundred
    effective draws is noise in hundreds of dimensions (benchmarks/README.md, 2026-11-30, commit ad8383c). The map
    stays affine, so the posterior is unchanged; only the sampler's efficiency is.
    """
    z = np.asarray(z, dtype=float)
    covariance = np.atleast_2d(np.cov(z, rowvar=False))
    k = len(covariance)
    shrinkage = k / (k + max(float(effective_draws), 1.0))
    covariance = (1 - shrinkage) * covariance + shrinkage * np.diag(np.diag(covariance))
    root = np.linalg.cholesky(covariance + 1e-12 * np.eye(k))
    return replace(laplace, center=laplace.center + laplace.scale @ z.mean(axis=0), scale=laplace.scale @ root)


def choose_centring(spec: ModelSpec, laplace: LaplaceApproximation) -> ModelSpec:
    """Sample a pooled group centred when its data pin it down more than the groups differ.

    At the mode of the non-centred posterior, each group's data precision is read off the curvature
    of its offset (``sd^2 * precision + 1``). Centring pays for a group whose data standard error
    is below the spread of the group values, when the groups clearly differ (spread above a tenth
    of the spread prior's median); groups that look alike stay non-centred, where a spread that may
    be near zero does no harm, and so do groups with little data of their own (a run with no
    checkpoints yet). Only the sampler's efficiency depends on this choice.
    """
    if not spec.pooled or laplace.hessian is None:
        return spec
    names, values = spec.free_names, spec.constrain(laplace.center)
    pooled = dict(spec.pooled)
    for param, group in spec.pooled.items():
        if group.centring.any():
            continue
        sd = float(values[group.sd_name])
        u_groups = spec.priors[param].support.to_unconstrained(np.asarray(values[param]))
        curvature = np.array([laplace.hessian[i, i] for i, n in enumerate(names) if n.startswith(f"{param}_offset[")])
        data_sd = sd / np.sqrt(np.maximum(curvature - 1, 1e-12))
        distinct = np.std(u_groups) > 0.1 * group.sd_prior.median()
        centred = (data_sd < np.std(u_groups)) & distinct
        pooled[param] = replace(
            group, centred=bool(centred[0]) if np.all(centred == centred[0]) else tuple(centred.tolist())
        )
    return replace(spec, pooled=pooled)


def centred_where_pinned(
    spec: ModelSpec, laplace: LaplaceApproximation, rng: np.random.Generator
) -> tuple[ModelSpec, LaplaceApproximation]:
    """The coordinates to sample in: :func:`choose_centring`'s, with their own mode searched from ``laplace``'s.

    Centred coordinates have a density that grows without bound where a group spread reaches zero
    with every group at the population value (the funnel's neck). A search can end there: on
    misfitting cut at 25% it reached a run spread of 0 and a noise scale 100 times the fit's. Such a
    point is judged by the non-centred density, which has no neck: if it lies further below the
    non-centred mode than one nat per coordinate (a typical draw lies half that below), or if a
    centred parameter's spread there is below :data:`NECK_SHRINKAGE` of its non-centred mode's,
    that choice is rejected. Then each pooled parameter in turn is left non-centred (the neck is usually one
    parameter's: the run effect's), and the best choice that passes is kept; if none does, every
    group stays non-centred. That matters beyond speed for the internal splits' Laplace forecasts
    (:mod:`bayescale.inference.discrepancy`): the non-centred Gaussian of groups that the data pin down is
    far too wide along each spread (an sd of 6 in log ``L0_sd`` on misfitting cut at 25%).
    """
    chosen = choose_centring(spec, laplace)
    if chosen.free_names == spec.free_names:
        return spec, laplace
    found = _centred_mode(spec, laplace, chosen, rng)
    if found is not None:
        return found[:2]
    best = None
    for param in [name for name, group in chosen.pooled.items() if group.centring.any()]:
        fewer = replace(chosen, pooled={**chosen.pooled, param: spec.pooled[param]})
        if fewer.free_names == spec.free_names:
            continue
        found = _centred_mode(spec, laplace, fewer, rng)
        if found is not None and (best is None or found[2] > best[2]):
            best = found
    return (spec, laplace) if best is None else best[:2]


def _centred_mode(spec: ModelSpec, laplace: LaplaceApproximation, chosen: ModelSpec, rng: np.random.Generator):
    """(``chosen``, its Laplace approximation, its mode's non-centred density), or None if that mode is in the neck."""
    start = chosen.unconstrain(spec.named_values(laplace.center))
    centred = laplace_approximation(chosen, rng, n_random_starts=0, starts=(start,))
    judged = -_compiled_objective(spec)(spec.unconstrain(chosen.named_values(centred.center)))[0]
    if not judged >= laplace.log_density - len(laplace.center):
        return None
    before, after = spec.constrain(laplace.center), chosen.constrain(centred.center)
    for group in chosen.pooled.values():  # a spread collapsed towards zero: the neck, however good its density
        if group.centring.any() and not after[group.sd_name] >= before[group.sd_name] * NECK_SHRINKAGE:
            return None
    return chosen, centred, judged


#: the largest data standard error (unconstrained scale) a group gets, its data's precision floored at
#: 1 / this squared: a group with no data of its own keeps w_g as its non-centred offset
_NO_DATA_SD = 1e3


def adaptive_coordinates(spec: ModelSpec, laplace: LaplaceApproximation, rng: np.random.Generator):
    """Adaptive coordinates: each group written around what its data alone say, scaled by the conditional spread.

    At the non-centred mode, group g's data estimate and marginal standard error on the unconstrained
    scale (u_hat, s) are read off the curvature of its offsets (the block of every pooled parameter of
    that group: sd_p sd_q P_pq + I, with P the data's precision). The coordinate w then gives
    u_g = m + v w, with m and v the mean and sd of u_g given the population value and spread under a
    Gaussian likelihood: non-centred when sd << s, centred at the data's estimate when sd >> s.
    """
    if not spec.pooled or laplace.hessian is None:
        return spec, laplace
    names = list(spec.free_names)
    values = spec.constrain(laplace.center)
    unconstrained = spec.value_variables(laplace.center)[0]
    sds = {param: float(values[group.sd_name]) for param, group in spec.pooled.items()}
    # the data's precision of each group's parameters jointly: the offsets' curvature less the prior's
    data_sd: dict[str, np.ndarray] = {param: np.full(len(g.levels), _NO_DATA_SD) for param, g in spec.pooled.items()}
    cells: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for param, group in spec.pooled.items():
        for j, level in enumerate(group.levels):
            index = names.index(f"{param}_offset[{level}]") if f"{param}_offset[{level}]" in names else None
            if index is not None:
                cells.setdefault((group.column, level), []).append((param, j, index))
    for members in cells.values():
        idx = [i for _, _, i in members]
        scale = np.array([sds[param] for param, _, _ in members])
        precision = (laplace.hessian[np.ix_(idx, idx)] - np.eye(len(idx))) / np.outer(scale, scale)
        eigenvalues, eigenvectors = np.linalg.eigh((precision + precision.T) / 2)
        inverse = eigenvectors @ np.diag(1 / np.maximum(eigenvalues, _NO_DATA_SD**-2)) @ eigenvectors.T
        for (param, j, _), variance in zip(members, np.diag(inverse)):
            data_sd[param][j] = min(np.sqrt(variance), _NO_DATA_SD)
    pooled = dict(spec.pooled)
    for param, group in spec.pooled.items():
        if group.centring.any() or group.adaptive is not None:
            continue
        sd, s = sds[param], data_sd[param]
        u_pop = float(unconstrained[group.pop_name])
        offsets = np.asarray(unconstrained[group.offset_name], float)
        u_hat = u_pop + offsets * (sd**2 + s**2) / sd
        pooled[param] = replace(group, adaptive=(tuple(u_hat.tolist()), tuple(s.tolist())))
    chosen = replace(spec, pooled=pooled)
    start = chosen.unconstrain(spec.named_values(laplace.center))
    return chosen, laplace_approximation(chosen, rng, n_random_starts=0, starts=(start,))
