"""Law + priors + likelihood + runs -> the posterior density, in NumPy and as a PyMC model.

Every free coordinate is unconstrained: log for positive parameters, logit for bounded ones, and
for a pooled parameter (see :mod:`bayescale.model.pooling`) its population value, the log of its group
spread, and one standard-normal offset per group. The PyMC model samples whitened coordinates
``z`` with ``u = center + scale @ z``, where ``center`` and ``scale`` come from a Laplace
approximation (see :mod:`bayescale.inference.laplace`). That affine map has a constant Jacobian, so the
posterior is exactly the one the priors and likelihood define; it only makes the geometry round
for NUTS. Raw ``A / N**alpha`` coordinates are strongly correlated (log A moves with alpha times
log N); whitening removes that for any formula a user writes, not just the Chinchilla pattern.
Parameters are stored and reported in the law card's own convention.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from bayescale.data.runs import Runs
from bayescale.errors import DataError, row_numbers
from bayescale.laws.card import Law
from bayescale.laws.likelihood import Likelihood
from bayescale.laws.priors import Prior, PriorSpec, ScaledPrior, fixed_prior
from bayescale.model.pooling import PooledParam, pooled_params

if TYPE_CHECKING:
    import pymc as pm

OBS_DIM = "obs"
#: noise parameter: the log noise scale changes by this much per e-fold of the law's first input (N)
SIGMA_SLOPE = "sigma_slope"


def _bound(prior: Prior | ScaledPrior) -> Prior:
    """A law parameter's prior; every law a spec is built from is bound to its runs (:meth:`Law.bind_data`)."""
    assert isinstance(prior, Prior), f"prior {prior} is relative to the data: bind the law to the runs first"
    return prior


def _centre(values: np.ndarray) -> float:
    """The geometric mean of an input; the arithmetic mean for one that can be zero (S2)."""
    return float(np.exp(np.mean(np.log(values)))) if np.all(values > 0) else float(np.mean(values))


@dataclass
class ModelSpec:
    """Everything that defines one posterior: law, priors of all parameters, noise model, data, pooling."""

    law: Law
    likelihood: Likelihood
    priors: Mapping[str, Prior]  # law parameters first, then noise parameters, in order
    inputs: Mapping[str, np.ndarray]  # one array per law input
    #: each run's loss on the law's observation scale (``law.observation``): its log, or the value itself
    observed: np.ndarray
    pooled: Mapping[str, PooledParam] = field(default_factory=dict)
    #: the data's centre (geometric mean of each input) where an anchored floor is reached; None: no anchor
    reference: Mapping[str, float] | None = None
    #: mean log of the law's first input over the runs, where the noise scale has a trend (``sigma_slope``)
    trend_centre: float | None = None
    #: a user's own generative model (``bs.build_model``, changed in ``with model:``), sampled in place of the
    #: spec's; see :func:`bayescale.model.generative.adopt_model`
    model: pm.Model | None = field(default=None, compare=False, repr=False)
    #: that model's free variables beyond the spec's own, sampled as they are (value variable = coordinate):
    #: (name, shape) in the model's order
    extra: tuple[tuple[str, tuple[int, ...]], ...] = ()
    #: that model's deterministics beyond the spec's own (reported with the posterior)
    extra_deterministics: tuple[str, ...] = ()

    @classmethod
    def from_runs(
        cls,
        law: Law,
        likelihood: Likelihood,
        runs: Runs,
        noise_priors: Mapping[str, PriorSpec] | None = None,
        pool: Mapping[str, str] | None = None,
        sd_priors: Mapping[str, PriorSpec] | None = None,
    ) -> ModelSpec:
        priors = {name: _bound(p.prior) for name, p in law.params.items()}
        scale = law.observation
        loss = runs["loss"] if "loss" in runs.columns else np.array([])
        if scale.is_log and np.any(loss <= 0):
            bad = runs.frame.index[loss <= 0]
            raise DataError(
                f"column 'loss': law {law.name!r} fits log-loss, so every loss must be > 0, but {row_numbers(bad)} "
                'are not (a card with scale = "raw" fits the loss itself, which may be zero or negative)'
            )
        observed = scale.observe(loss)
        noise = {**likelihood.noise_priors, **scale.default_noise(observed)}
        noise.update({name: prior for name, prior in law.noise.items() if name in likelihood.noise_priors})
        for name, spec in (noise_priors or {}).items():
            noise[name] = fixed_prior(spec, name)
        priors.update(noise)
        pooled = pooled_params(pool or {}, law.params, runs.frame, sd_priors)
        n_free = len(priors) + sum(len(p.free_names) - 1 for p in pooled.values())
        runs.require(law.inputs, n_free, law.name)
        inputs = {name: runs[name] for name in law.inputs}
        reference = None
        if law.anchor is not None and (law.anchor not in pooled or priors[law.anchor].support.kind == "positive"):
            reference = {name: _centre(values) for name, values in inputs.items()}
        trend_centre = None
        if SIGMA_SLOPE in priors:
            trend_centre = float(np.mean(np.log(np.asarray(inputs[law.inputs[0]], float))))
        return cls(law, likelihood, priors, inputs, observed, pooled, reference, trend_centre=trend_centre)

    @property
    def anchor(self) -> str | None:
        """The floor parameter reached through the loss at the data's centre, if any."""
        return self.law.anchor if self.reference is not None else None

    @property
    def names(self) -> tuple[str, ...]:
        """Posterior variables: every parameter, then each pooled parameter's population value and spread."""
        hyper = [n for p in self.pooled.values() for n in (p.pop_name, p.sd_name)]
        return (*self.priors, *hyper)

    @property
    def noise_names(self) -> tuple[str, ...]:
        """The noise parameters: the likelihood's, then ``sigma_slope`` where the noise scale has a trend."""
        return tuple(n for n in self.priors if n not in self.law.params)

    @property
    def reported_names(self) -> tuple[str, ...]:
        """What the posterior holds: :attr:`names`, then a user model's own variables and deterministics."""
        return (*self.names, *(name for name, _ in self.extra), *self.extra_deterministics)

    @property
    def free_names(self) -> list[str]:
        """The sampler's coordinates, in order."""
        out = []
        for name in self.priors:
            if name == self.anchor:
                centre = (
                    f"{self.law.observation.variable}_at_centre (sets {name}{'_pop' if name in self.pooled else ''})"
                )
                out += [centre, *self.pooled[name].free_names[1:]] if name in self.pooled else [centre]
            else:
                out += self.pooled[name].free_names if name in self.pooled else [name]
        for name, shape in self.extra:
            out += [name] if not shape else [f"{name}[{i}]" for i in range(int(np.prod(shape)))]
        return out

    # -- coordinates ----------------------------------------------------------------------------
    def _split(self, u):
        """Walk the coordinates: yield (name, prior, pooled or None, slice of u); a user model's own variables last
        (prior None, their slice in their shape)."""
        i = 0
        for name, prior in self.priors.items():
            pooled = self.pooled.get(name)
            width = len(pooled.free_names) if pooled else 1
            yield name, prior, pooled, u[i : i + width] if pooled else u[i]
            i += width
        for name, shape in self.extra:
            width = int(np.prod(shape))
            yield name, None, None, u[i] if not shape else u[i : i + width].reshape(shape)
            i += width

    def value_variables(self, u, xp=np, reference=None, centring=None, adaptive=None):
        """The generative model's value variables at sampler coordinates ``u``, and the log-Jacobian of that map.

        Returns ({variable name: its unconstrained value}, log |det d values / d u|). The names are
        the generative model's free variables (:mod:`bayescale.model.generative`): every parameter, and
        for a pooled one ``<p>_pop``, ``<p>_sd`` and ``<p>_offset`` instead; their unconstrained
        values are PyMC's value variables (log for positive parameters, log-odds for bounded ones).
        The coordinates differ from them in three places, each with its Jacobian: an anchored floor
        is reached through the law's mean (log-loss, or the loss on the raw scale) at the data's centre; a group sampled centred has its own
        unconstrained value as coordinate, not its standard-normal offset; and when every group of
        a parameter is centred, the population value is written relative to the groups' mean; a group in
        adaptive coordinates (:mod:`bayescale.model.pooling`) has w_g. ``xp`` is NumPy or PyTensor;
        ``reference`` (the data's centre), ``centring`` (masks per pooled parameter) and ``adaptive``
        (per pooled parameter, the groups' data estimates and standard errors) default to the spec's
        numbers, and the whitened model passes its inputs.
        """
        reference = self.reference if reference is None else reference
        centring = centring or {}
        adaptive = adaptive or {}
        out, log_jac, anchored = {}, 0.0, None
        for name, prior, pooled, part in self._split(u):
            if prior is not None and name == self.anchor:
                anchored = (prior, pooled, part)  # needs the other parameters first
            elif pooled is None:
                out[name] = part
            else:
                log_jac = log_jac + self._pooled(
                    name,
                    pooled,
                    part,
                    xp,
                    out,
                    centring.get(name, pooled.centring),
                    adaptive=adaptive.get(name, pooled.adaptive),
                )
        if anchored is not None:
            prior, pooled, part = anchored
            u_centre = part if pooled is None else part[0]
            population = {
                p: self._population(p, out, xp) for p in self.law.param_names if p != self.anchor and p in self.pooled
            }
            plain = {
                p: self.priors[p].support.from_unconstrained(out[p], xp)[0]
                for p in self.law.param_names
                if p != self.anchor and p not in self.pooled
            }
            env = {**reference, **plain, **population, self.anchor: 0.0}
            rest = self.law.formula.numpy(env) if xp is np else self.law.formula.pytensor(env)
            at_centre, log_jac_centre = self.law.observation.to_loss_jacobian(u_centre, xp)
            floor = at_centre - rest
            u_floor = prior.support.to_unconstrained(floor, xp)
            log_jac = log_jac + log_jac_centre - prior.support.from_unconstrained(u_floor, xp)[1]
            if pooled is None:
                out[self.anchor] = u_floor
            else:
                log_jac = log_jac + self._pooled(
                    self.anchor,
                    pooled,
                    part,
                    xp,
                    out,
                    centring.get(self.anchor, pooled.centring),
                    u_pop=u_floor,
                    adaptive=adaptive.get(self.anchor, pooled.adaptive),
                )
        return out, log_jac

    def _population(self, name, out, xp):
        return self.priors[name].support.from_unconstrained(out[self.pooled[name].pop_name], xp)[0]

    @staticmethod
    def _pooled(name, pooled, part, xp, out, centred, u_pop=None, adaptive=None):
        """A pooled parameter's value variables (``_pop``, ``_sd``, ``_offset``) into ``out``; returns the log-Jacobian.

        ``u_pop`` given (an anchored floor): the population value is not a coordinate of its own.
        """
        u_sd = part[1]
        sd = pooled.sd_prior.support.from_unconstrained(u_sd, xp)[0]
        coords = part[2:]
        n_groups = len(pooled.levels)
        if adaptive is not None:  # coordinates: u_pop (or the anchor's), log sd, per group w_g
            u_pop = part[0] if u_pop is None else u_pop
            u_hat, s = (xp.as_tensor_variable(v) if xp is not np else np.asarray(v, float) for v in adaptive)
            variance = sd**2 + s**2
            offsets = (u_hat - u_pop) * sd / variance + s / xp.sqrt(variance) * coords
            log_jac = xp.sum(xp.log(s)) - 0.5 * xp.sum(xp.log(variance))
        elif pooled.all_centred and u_pop is None:  # coordinates: loc, log sd, u_g
            u_pop = xp.mean(coords) + sd / np.sqrt(n_groups) * part[0]
            log_jac = (1 - n_groups) * xp.log(sd) - 0.5 * np.log(n_groups)
            offsets = (coords - u_pop) / sd
        else:  # coordinates: u_pop (or the anchor's), log sd, then per group u_g (centred) or its offset
            u_pop = part[0] if u_pop is None else u_pop
            offsets = xp.where(centred, (coords - u_pop) / sd, coords)
            log_jac = -xp.sum(centred) * xp.log(sd)
        out[pooled.pop_name], out[pooled.sd_name], out[pooled.offset_name] = u_pop, u_sd, offsets
        return log_jac

    def constrain(self, u: np.ndarray) -> dict[str, Any]:
        """Parameter values (groups' arrays for pooled ones, and ``_pop`` and ``_sd``) at coordinates ``u``."""
        with np.errstate(all="ignore"):  # extreme coordinates give inf/nan values, judged by the caller
            unconstrained = self.value_variables(np.asarray(u, dtype=float))[0]
            values = {}
            for name, prior in self.priors.items():
                pooled = self.pooled.get(name)
                if pooled is None:
                    values[name] = prior.support.from_unconstrained(unconstrained[name], np)[0]
                    continue
                u_pop = unconstrained[pooled.pop_name]
                sd = pooled.sd_prior.support.from_unconstrained(unconstrained[pooled.sd_name], np)[0]
                u_groups = u_pop + sd * unconstrained[pooled.offset_name]
                values[pooled.pop_name] = prior.support.from_unconstrained(u_pop, np)[0]
                values[pooled.sd_name] = sd
                values[name] = prior.support.from_unconstrained(u_groups, np)[0]
        return values

    def per_observation(self, values: Mapping, codes: Mapping[str, np.ndarray] | None = None) -> dict:
        """Law parameter values with pooled ones spread to one value per observation."""
        out = {n: values[n] for n in self.law.param_names}
        for name, pooled in self.pooled.items():
            out[name] = values[name][pooled.codes if codes is None else codes[name]]
        return out

    def trend_coordinate(self, size) -> np.ndarray | float:
        """Where points sit along the noise trend: log of the law's first input minus the runs' mean (0 without a trend)."""
        if self.trend_centre is None:
            return 0.0
        return np.log(np.asarray(size, float)) - self.trend_centre

    def observed_trend(self, as_xarray: bool = False):
        """:meth:`trend_coordinate` of the runs themselves (along ``obs`` as xarray if asked)."""
        coordinate = self.trend_coordinate(self.inputs[self.law.inputs[0]])
        return xr.DataArray(coordinate, dims=OBS_DIM) if as_xarray and np.ndim(coordinate) else coordinate

    def noise_values(self, values: Mapping, coordinate, xp=np) -> dict:
        """The likelihood's noise parameters at points ``coordinate`` along the trend (:meth:`trend_coordinate`).

        Without a trend these are just ``values``' noise parameters. With one, ``sigma`` is the
        scale at the runs' centre and moves by ``exp(sigma_slope * coordinate)`` away from it.
        """
        out = {n: values[n] for n in self.likelihood.noise_params}
        if self.trend_centre is not None:
            out["sigma"] = values["sigma"] * xp.exp(values[SIGMA_SLOPE] * coordinate)
        return out

    def noise_at(self, draws: Mapping[str, np.ndarray], points) -> dict:
        """Noise parameters for every draw (rows) at ``points`` (columns; anything indexed by the law's first input)."""
        coordinate = self.trend_coordinate(np.asarray(points[self.law.inputs[0]], float))
        return self.noise_values({n: np.asarray(draws[n])[:, None] for n in self.noise_names}, coordinate)

    def unconstrain(self, values: Mapping[str, Any]) -> np.ndarray:
        """Coordinates for parameter values.

        A pooled parameter's value is one number (every group starts there, no spread) or a mapping
        from group level to value (a level it lacks starts at the population value); ``<p>_pop`` and
        ``<p>_sd`` may be given too. So the mode of a fit on other runs (:meth:`named_values`) is a
        start for a fit on a subset of them.
        """
        u = []
        for name, prior in self.priors.items():
            pooled = self.pooled.get(name)
            given = values[name]
            if pooled is not None and isinstance(given, Mapping):
                pop = values.get(pooled.pop_name, float(np.median(list(given.values()))))
                groups = [given.get(level, pop) for level in pooled.levels]
            else:
                pop, groups = given, None
            x = prior.support.to_unconstrained(pop)
            if name == self.anchor:
                assert self.reference is not None  # an anchor is reached through the loss at the reference
                population = {
                    p.param: values.get(p.pop_name, values[p.param]) for p in self.pooled.values() if p.param != name
                }
                with np.errstate(all="ignore"):
                    at_centre = self.law.formula.numpy({**self.reference, **values, **population, name: pop})
                    first = float(self.law.observation.observe(at_centre))
            else:
                first = x
            if pooled is None:
                u.append(first)
                continue
            sd = values.get(pooled.sd_name, pooled.sd_prior.median())
            u_sd = pooled.sd_prior.support.to_unconstrained(sd)
            u_groups = (
                np.full(len(pooled.levels), x)
                if groups is None
                else np.asarray(prior.support.to_unconstrained(np.asarray(groups, float)), float)
            )
            if pooled.adaptive is not None:
                u_hat, s = (np.asarray(v, float) for v in pooled.adaptive)
                variance = sd**2 + s**2
                w = ((u_groups - x) / sd - (u_hat - x) * sd / variance) / (s / np.sqrt(variance))
                u += [first, u_sd, *w]
                continue
            if pooled.all_centred and name != self.anchor:
                first = (x - u_groups.mean()) * np.sqrt(len(u_groups)) / sd
            u += [first, u_sd, *np.where(pooled.centring, u_groups, (u_groups - x) / sd)]
        if self.extra:  # a user model's own variables start where PyMC starts them
            assert self.model is not None  # extra variables are a user model's
            start = self.model.initial_point()
            for name, _ in self.extra:
                u += list(np.ravel(start[self.model.rvs_to_values[self.model[name]].name]))
        return np.array(u, dtype=float)

    def named_values(self, u: np.ndarray) -> dict[str, Any]:
        """Parameter values at ``u``, pooled ones as {level: value}: the form :meth:`unconstrain` takes."""
        values = dict(self.constrain(u))
        for name, pooled in self.pooled.items():
            values[name] = {level: float(v) for level, v in zip(pooled.levels, np.ravel(values[name]))}
        return values

    # -- PyMC side ----------------------------------------------------------------------------
    def structure_key(self) -> str:
        """A hash of everything the sampler's compiled log-density depends on, but not the data's numbers.

        Law formula, priors (bound to the data's scale where a card says so), likelihood, pooling
        (column, number of groups, all groups centred or not), anchor and the number of sampler
        coordinates. Runs, the whitening, the data's centre and which groups are centred are
        ``pm.Data`` inputs of :func:`bayescale.model.whitened.build_whitened`, so two fits with the same key can share one
        compiled sampler (:mod:`bayescale.inference.sampling`).
        """
        parts = {
            "formula": self.law.formula.text,
            "inputs": list(self.inputs),
            "likelihood": self.likelihood.name,
            "scale": self.law.scale,
            "priors": [(name, prior.to_dict()) for name, prior in self.priors.items()],
            "pooled": [
                (name, p.column, len(p.levels), p.sd_prior.to_dict(), p.all_centred, p.adaptive is not None)
                for name, p in self.pooled.items()
            ],
            "anchor": self.anchor,
            "free": len(self.free_names),
        }
        if self.model is not None:  # a user's model: its own graph, named by the model object and its variables
            tag = self.model.__dict__.setdefault("_bayescale_tag", hashlib.sha256(os.urandom(16)).hexdigest())
            parts["model"] = [tag, sorted(self.model.named_vars)]
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
