"""Law + priors + likelihood + runs -> the posterior density, in NumPy and as a PyMC model.

Every free coordinate is unconstrained: log for positive parameters, logit for bounded ones, and
for a pooled parameter (see :mod:`bayescale.pooling`) its population value, the log of its group
spread, and one standard-normal offset per group. The PyMC model samples whitened coordinates
``z`` with ``u = center + scale @ z``, where ``center`` and ``scale`` come from a Laplace
approximation (see :mod:`bayescale.laplace`). That affine map has a constant Jacobian, so the
posterior is exactly the one the priors and likelihood define; it only makes the geometry round
for NUTS. Raw ``A / N**alpha`` coordinates are strongly correlated (log A moves with alpha times
log N); whitening removes that for any formula a user writes, not just the Chinchilla pattern.
Parameters are stored and reported in the law card's own convention.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np
import xarray as xr

from .data import Runs
from .laws import Law
from .likelihood import Likelihood
from .pooling import PooledParam, pooled_params
from .priors import Prior

OBS_DIM = "obs"
#: noise parameter: the log noise scale changes by this much per e-fold of the law's first input (N)
SIGMA_SLOPE = "sigma_slope"


def _centre(values: np.ndarray) -> float:
    """The geometric mean of an input; the arithmetic mean for one that can be zero (S2)."""
    return float(np.exp(np.mean(np.log(values)))) if np.all(values > 0) else float(np.mean(values))


@dataclass
class ModelSpec:
    """Everything that defines one posterior: law, priors of all parameters, noise model, data, pooling."""

    law: Law
    likelihood: Likelihood
    priors: Mapping[str, Prior]       # law parameters first, then noise parameters, in order
    inputs: Mapping[str, np.ndarray]  # one array per law input
    log_loss: np.ndarray
    pooled: Mapping[str, PooledParam] = field(default_factory=dict)
    #: the data's centre (geometric mean of each input) where an anchored floor is reached; None: no anchor
    reference: Mapping[str, float] | None = None
    #: the PyMC model's per-group centring masks (``pm.Data``) in place of each pooled parameter's own
    centring_inputs: Mapping[str, object] | None = field(default=None, compare=False, repr=False)
    #: mean log of the law's first input over the runs, where the noise scale has a trend (``sigma_slope``)
    trend_centre: float | None = None

    @classmethod
    def from_runs(cls, law: Law, likelihood: Likelihood, runs: Runs,
                  noise_priors: Mapping[str, object] | None = None, pool: Mapping[str, str] | None = None,
                  sd_priors: Mapping[str, object] | None = None) -> "ModelSpec":
        priors = {name: p.prior for name, p in law.params.items()}
        noise = dict(likelihood.noise_priors)
        for name, spec in (noise_priors or {}).items():
            noise[name] = Prior.parse(spec)
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
        return cls(law, likelihood, priors, inputs, np.log(runs["loss"]), pooled, reference,
                   trend_centre=trend_centre)

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
    def free_names(self) -> list[str]:
        """The sampler's coordinates, in order."""
        out = []
        for name in self.priors:
            if name == self.anchor:
                centre = f"log_loss_at_centre (sets {name}{'_pop' if name in self.pooled else ''})"
                out += [centre, *self.pooled[name].free_names[1:]] if name in self.pooled else [centre]
            else:
                out += self.pooled[name].free_names if name in self.pooled else [name]
        return out

    # -- NumPy side ---------------------------------------------------------------------------
    def _split(self, u, xp):
        """Walk the coordinates: yield (name, prior, pooled or None, slice of u)."""
        i = 0
        for name, prior in self.priors.items():
            pooled = self.pooled.get(name)
            width = len(pooled.free_names) if pooled else 1
            yield name, prior, pooled, u[i:i + width] if pooled else u[i]
            i += width

    def _values(self, u, xp):
        """Parameter values (group arrays for pooled ones, plus _pop and _sd), log prior, log Jacobian."""
        values, log_prior, log_jac = {}, 0.0, 0.0
        anchored = None
        for name, prior, pooled, part in self._split(u, xp):
            if name == self.anchor:
                anchored = (prior, pooled, part)  # needs the other parameters first; see _anchored
                continue
            if pooled is None:
                values[name], jac = prior.support.from_unconstrained(part, xp)
                log_prior = log_prior + self._logp(prior, values[name], xp)
                log_jac = log_jac + jac
            else:
                lp, jac = self._pooled(name, prior, pooled, part, xp, values)
                log_prior, log_jac = log_prior + lp, log_jac + jac
        if anchored is not None:
            lp, jac = self._anchored(*anchored, xp, values)
            log_prior, log_jac = log_prior + lp, log_jac + jac
        return values, log_prior, log_jac

    @staticmethod
    def _logp(prior, value, xp):
        return prior.logpdf(value) if xp is np else prior.pytensor_logp(value)

    def _pooled(self, name, prior, pooled, part, xp, values, u_pop=None):
        """Group values of one pooled parameter into ``values``; returns its log prior and log Jacobian.

        ``u_pop`` given (an anchored floor): the population value is not a coordinate of its own.
        """
        sd, jac_sd = pooled.sd_prior.support.from_unconstrained(part[1], xp)
        n_groups = len(pooled.levels)
        if pooled.all_centred and u_pop is None:  # coordinates: loc, log sd, u_g
            u_groups = part[2:]
            u_pop = xp.mean(u_groups) + sd / np.sqrt(n_groups) * part[0]
            jac_loc = xp.log(sd) - 0.5 * np.log(n_groups)
            group_logp = -0.5 * xp.sum(((u_groups - u_pop) / sd) ** 2) - n_groups * xp.log(sd)
        else:  # coordinates: u_pop (or the anchor's), log sd, then per group u_g (centred) or its offset
            centred = (self.centring_inputs or {}).get(name, pooled.centring)
            u_pop, jac_loc, coords = (part[0] if u_pop is None else u_pop), 0.0, part[2:]
            u_groups = xp.where(centred, coords, u_pop + sd * coords)
            z = xp.where(centred, (coords - u_pop) / sd, coords)
            group_logp = -0.5 * xp.sum(z ** 2) - xp.sum(centred) * xp.log(sd)
        pop, jac_pop = prior.support.from_unconstrained(u_pop, xp)
        values[pooled.pop_name], values[pooled.sd_name] = pop, sd
        values[name] = prior.support.from_unconstrained(u_groups, xp)[0]
        log_prior = self._logp(prior, pop, xp) + self._logp(pooled.sd_prior, sd, xp) + group_logp
        return log_prior, jac_loc + jac_pop + jac_sd

    def _anchored(self, prior, pooled, part, xp, values):
        """floor = loss at the data's centre - the rest of the law there; returns log prior and log Jacobian.

        With the Chinchilla law, a lower beta is offset by a lower E: a curved ridge in (E, B, beta)
        that no linear map straightens. The loss at the centre of the data is pinned down by the
        data whatever beta is, so sampling its log instead of E (a triangular change of variables
        whose Jacobian is that loss) leaves a nearly linear ridge that the whitening removes.
        A pooled floor is anchored through its population value: the loss at the centre under
        the population values of every pooled parameter.
        """
        u_centre = part if pooled is None else part[0]
        population = {p.param: values[p.pop_name] for p in self.pooled.values() if p.param != self.anchor}
        env = {**self.reference, **values, **population, self.anchor: 0.0}
        rest = self.law.formula.numpy(env) if xp is np else self.law.formula.pytensor(env)
        floor = xp.exp(u_centre) - rest
        if pooled is None:
            values[self.anchor] = floor
            return self._logp(prior, floor, xp), u_centre
        u_pop = xp.log(floor)  # the floor's support is positive (checked in from_runs)
        log_prior, log_jac = self._pooled(self.anchor, prior, pooled, part, xp, values, u_pop=u_pop)
        return log_prior, log_jac + u_centre - u_pop

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

    def constrain(self, u: np.ndarray) -> tuple[dict[str, object], float]:
        """Parameter values for unconstrained ``u`` and the log-Jacobian of the map."""
        with np.errstate(all="ignore"):  # extreme coordinates give inf/nan values, judged by the caller
            values, _, log_jac = self._values(np.asarray(u, dtype=float), np)
        return values, log_jac

    def unconstrain(self, values: Mapping[str, object]) -> np.ndarray:
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
                population = {p.param: values.get(p.pop_name, values[p.param]) for p in self.pooled.values()
                              if p.param != name}
                with np.errstate(all="ignore"):
                    first = float(np.log(self.law.formula.numpy({**self.reference, **values, **population,
                                                                 name: pop})))
            else:
                first = x
            if pooled is None:
                u.append(first)
                continue
            sd = values.get(pooled.sd_name, pooled.sd_prior.median())
            u_sd = pooled.sd_prior.support.to_unconstrained(sd)
            u_groups = (np.full(len(pooled.levels), x) if groups is None
                        else np.asarray(prior.support.to_unconstrained(np.asarray(groups, float)), float))
            if pooled.all_centred and name != self.anchor:
                first = (x - u_groups.mean()) * np.sqrt(len(u_groups)) / sd
            u += [first, u_sd, *np.where(pooled.centring, u_groups, (u_groups - x) / sd)]
        return np.array(u, dtype=float)

    def named_values(self, u: np.ndarray) -> dict[str, object]:
        """Parameter values at ``u``, pooled ones as {level: value}: the form :meth:`unconstrain` takes."""
        values = dict(self.constrain(u)[0])
        for name, pooled in self.pooled.items():
            values[name] = {level: float(v) for level, v in zip(pooled.levels, np.ravel(values[name]))}
        return values

    def log_density(self, u: np.ndarray) -> float:
        """Log posterior density (up to a constant) in unconstrained coordinates; -inf if invalid."""
        with np.errstate(all="ignore"):
            values, log_prior, log_jac = self._values(np.asarray(u, dtype=float), np)
            params = self.per_observation(values)
            mu = np.log(self.law.formula.numpy({**self.inputs, **params}))
            noise = self.noise_values(values, self.observed_trend())
            log_lik = float(np.sum(self.likelihood.logpdf(self.log_loss, mu, noise)))
        total = float(log_prior) + log_lik + float(log_jac)
        return total if np.isfinite(total) else -np.inf

    def pointwise_log_likelihood(self, posterior: xr.Dataset) -> xr.DataArray:
        """log p(y_i | draw) for every posterior draw and observation, as (chain, draw, obs)."""
        inputs = {k: xr.DataArray(v, dims=OBS_DIM) for k, v in self.inputs.items()}
        params = {n: posterior[n] for n in self.priors}
        for name, pooled in self.pooled.items():
            params[name] = posterior[name].isel({pooled.column: xr.DataArray(pooled.codes, dims=OBS_DIM)},
                                                drop=True)
        with np.errstate(all="ignore"):
            mu = np.log(self.law.formula.numpy({**inputs, **params}))
            y = xr.DataArray(self.log_loss, dims=OBS_DIM)
            out = self.likelihood.logpdf(y, mu, self.noise_values(params, self.observed_trend(as_xarray=True)))
        return out.transpose("chain", "draw", OBS_DIM)

    # -- PyMC side ----------------------------------------------------------------------------
    def structure_key(self) -> str:
        """A hash of everything the sampler's compiled log-density depends on, but not the data's numbers.

        Law formula, priors (bound to the data's scale where a card says so), likelihood, pooling
        (column, number of groups, all groups centred or not), anchor and the number of sampler
        coordinates. Runs, the whitening, the data's centre and which groups are centred are
        ``pm.Data`` inputs of :meth:`to_pymc`, so two fits with the same key can share one
        compiled sampler (:mod:`bayescale.sampling`).
        """
        parts = {
            "formula": self.law.formula.text, "inputs": list(self.inputs), "likelihood": self.likelihood.name,
            "priors": [(name, prior.to_dict()) for name, prior in self.priors.items()],
            "pooled": [(name, p.column, len(p.levels), p.sd_prior.to_dict(), p.all_centred)
                       for name, p in self.pooled.items()],
            "anchor": self.anchor, "free": len(self.free_names),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def to_pymc(self, center: np.ndarray, scale: np.ndarray):
        """The PyMC model that samples whitened coordinates ``z`` (``u = center + scale @ z``).

        Every number that comes from the runs is ``pm.Data``, packed into as few inputs as possible
        (nutpie's compiled wrapper grows by about 0.6 s per input): ``whitening`` (the centre, then
        the scale's columns), ``runs`` (one column per law input, then the observed log-loss),
        ``group_idx`` (one column of group codes per pooling column) and ``fixed`` (the data's centre
        for an anchored floor, then which groups are sampled centred). The graph itself depends
        only on :meth:`structure_key`.
        """
        import pymc as pm
        import pytensor.tensor as pt

        coords = {"free": self.free_names}
        for pooled in self.pooled.values():
            coords[pooled.column] = list(pooled.levels)
        partly_centred = {name: p for name, p in self.pooled.items() if not p.all_centred}
        fixed = [*(self.reference or {}).values(), *(c for p in partly_centred.values() for c in p.centring),
                 *([self.trend_centre] if self.trend_centre is not None else [])]
        columns = list(dict.fromkeys(p.column for p in self.pooled.values()))
        with pm.Model(coords=coords) as model:
            z = pm.Flat("z", dims="free")
            u = _whitened(center, scale, z)
            runs = pm.Data("runs", np.column_stack([*(np.asarray(v, float) for v in self.inputs.values()),
                                                     self.log_loss]))
            packed = pm.Data("fixed", np.asarray(fixed, float)) if fixed else None
            reference, masks, i = None, {}, 0
            if self.reference is not None:
                reference = {k: packed[i + j] for j, k in enumerate(self.reference)}
                i += len(self.reference)
            for name, p in partly_centred.items():
                masks[name] = packed[i:i + len(p.levels)] > 0.5
                i += len(p.levels)
            trend = 0.0 if self.trend_centre is None else pt.log(runs[:, 0]) - packed[i]
            spec = replace(self, reference=reference, centring_inputs=masks)
            values, log_prior, log_jac = spec._values(u, pt)
            for name in self.names:
                dims = self.pooled[name].column if name in self.pooled else None
                values[name] = pm.Deterministic(name, values[name], dims=dims)
            pm.Potential("log_prior", log_prior + log_jac)
            inputs = {k: runs[:, j] for j, k in enumerate(self.inputs)}
            codes = {}
            if columns:
                index = pm.Data("group_idx", np.column_stack([next(p.codes for p in self.pooled.values()
                                                                   if p.column == c) for c in columns]))
                codes = {n: index[:, columns.index(p.column)] for n, p in self.pooled.items()}
            mu = pt.log(self.law.formula.pytensor({**inputs, **self.per_observation(values, codes)}))
            # no dims: the number of runs is not part of the compiled graph
            self.likelihood.pymc_observed("log_loss", mu, self.noise_values(values, trend, pt), runs[:, -1], dims=None)
        return model


#: up to this many sampler coordinates the whitening is an elementwise product and a row sum, not BLAS's dot
ELEMENTWISE_WHITENING_UP_TO = 64


def _whitened(center: np.ndarray, scale: np.ndarray, z):
    """``u = center + scale @ z``, the whitening a ``pm.Data`` input (centre, then the scale's columns).

    Numba compiles ``np.dot`` and its gradient in about 4.5 s on an empty cache, a quarter of an
    Epoch fit's compile; an elementwise product summed along rows compiles in a fraction of that and
    runs as fast for the few coordinates most laws have (benchmarks/README.md). Its input gets a
    static shape (the number of coordinates is part of the structure key, so this costs no
    recompile), which spares the gradient a shape check. Large pooled models keep BLAS and the
    dynamic shape: the graph, and draws, of earlier releases.
    """
    import pymc as pm
    import pytensor.tensor as pt

    values = np.column_stack([center, scale])
    if len(center) > ELEMENTWISE_WHITENING_UP_TO:
        whitening = pm.Data("whitening", values)
        return whitening[:, 0] + pt.dot(whitening[:, 1:], z)
    whitening = pm.Data("whitening", values, shape=values.shape)
    return whitening[:, 0] + (whitening[:, 1:] * z[None, :]).sum(axis=1)
