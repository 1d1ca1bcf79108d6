"""The named-variable PyMC model of a fit: what a PyMC user reads, extends and predicts with.

:func:`build_generative` turns a :class:`~bayescale.model.spec.ModelSpec` into a generative
``pm.Model``: one random variable per law parameter with the card's prior as the PyMC
distribution of that name, pooled parameters as hierarchical variables (population value
``<p>_pop``, spread ``<p>_sd`` and standard-normal ``<p>_offset`` with the group column as its
``dims``, the group values ``<p>`` a Deterministic), the noise parameters named, every input and
each pooling column's group index as ``pm.Data``, and the observed log-loss ``log_loss`` (for a card with
``scale = "raw"``: the observed loss itself, ``loss``, with the law's value as its mean).

It is the model the sampler explores: :mod:`bayescale.model.whitened` takes this model's log-density
and replaces its value variables by functions of the sampler's whitened coordinates (the map of
:meth:`bayescale.model.spec.ModelSpec.value_variables`, with its log-Jacobian), so the density is
written once. PyMC's default transforms (log for positive variables, log-odds for bounded ones)
are the unconstrained coordinates :mod:`bayescale.laws.priors` uses.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import xarray as xr

from bayescale.model.spec import OBS_DIM, ModelSpec

#: the observed variable's name in the generative model and in ArviZ groups, for a law on log-loss (the
#: default); a law on the raw scale names it ``loss`` (:func:`observed_name`)
OBSERVED = "log_loss"
#: the ``pm.Data`` holding the observations (data, so a compiled model takes new runs without a recompile)
OBSERVED_DATA = "observed_log_loss"


def observed_name(spec: ModelSpec) -> str:
    """The observed variable's name: ``log_loss``, or ``loss`` for a law on the raw scale (``law.observation``)."""
    return spec.law.observation.variable


#: the ``pm.Data`` holding the runs' mean log N, where the noise scale has a trend along N
TREND_CENTRE = "noise_trend_centre"


def group_index_name(column: str) -> str:
    """The ``pm.Data`` holding each observation's group index for a pooling column."""
    return f"{column}_idx"


def _prior_variable(pm, name: str, prior, dims=None):
    """A PyMC random variable with ``prior``'s distribution (the family table names the PyMC class)."""
    return getattr(pm, prior.family.pymc_name)(name, **prior.params, dims=dims)


def _unconstrained(prior, value, pt):
    """The map of :mod:`bayescale.laws.priors` from ``prior``'s support to the real line, in PyTensor."""
    support = prior.support
    if support.kind == "real":
        return value
    if support.kind == "positive":
        return pt.log(value)
    return pt.log(value - support.lower) - pt.log(support.upper - value)


def build_generative(spec: ModelSpec, groups: dict[str, np.ndarray] | None = None, terms=()):
    """The generative PyMC model of ``spec`` (see the module docstring).

    ``groups`` maps more group columns to their labels per observation (each gets coords and a
    ``<column>_idx`` ``pm.Data``); each of ``terms`` is called with the model under construction
    and returns a tensor added to the mean log-loss (one value per observation, or a scalar).
    """
    import pymc as pm
    import pytensor.tensor as pt

    coords: dict[str, np.ndarray | list[str]] = {OBS_DIM: np.arange(len(spec.observed))}
    group_codes = {}
    for pooled_param in spec.pooled.values():
        coords[pooled_param.column] = list(pooled_param.levels)
        group_codes[pooled_param.column] = pooled_param.codes
    for column, labels in (groups or {}).items():
        if column not in coords:
            levels, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
            coords[column], group_codes[column] = list(levels), codes
    with pm.Model(coords=coords) as model:
        inputs = {
            name: pm.Data(name, np.asarray(values, dtype=float), dims=OBS_DIM) for name, values in spec.inputs.items()
        }
        index = {
            column: pm.Data(group_index_name(column), codes, dims=OBS_DIM) for column, codes in group_codes.items()
        }
        values = {}
        for name, prior in spec.priors.items():
            pooled = spec.pooled.get(name)
            if pooled is None:
                values[name] = _prior_variable(pm, name, prior)
                continue
            population = _prior_variable(pm, pooled.pop_name, prior)
            spread = _prior_variable(pm, pooled.sd_name, pooled.sd_prior)
            offset = pm.Normal(f"{name}_offset", 0.0, 1.0, dims=pooled.column)
            u_groups = _unconstrained(prior, population, pt) + spread * offset
            group_values, _ = prior.support.from_unconstrained(u_groups, pt)
            values[name] = pm.Deterministic(name, group_values, dims=pooled.column)
        per_obs = {
            n: values[n][index[spec.pooled[n].column]] if n in spec.pooled else values[n] for n in spec.law.param_names
        }
        mu = spec.law.observation.observe(spec.law.formula.pytensor({**inputs, **per_obs}), pt)
        for term in terms:
            mu = mu + term(model)
        trend = 0.0
        if spec.trend_centre is not None:
            trend = pt.log(inputs[spec.law.inputs[0]]) - pm.Data(TREND_CENTRE, spec.trend_centre)
        observed = pm.Data(OBSERVED_DATA, np.asarray(spec.observed, dtype=float), dims=OBS_DIM)
        spec.likelihood.pymc_observed(
            observed_name(spec), mu, spec.noise_values(values, trend, pt), observed, dims=OBS_DIM
        )
    return model


def adopt_model(spec: ModelSpec, model) -> ModelSpec:
    """``spec`` sampling a user's own generative model: ``bs.build_model``'s, changed in ``with model:``.

    The model must hold every variable and input the spec's own model has (built from the same runs,
    law and options); what a user added is kept: a ``pm.Potential`` (a tighter prior), free
    variables (sampled as they are, whitened with the rest) and deterministics (reported). A prior
    replaced by another distribution of the same name and support is sampled as given.
    """
    from bayescale.errors import BayescaleError

    own = build_generative(spec)
    missing = [v.name for v in (*own.free_RVs, *own.observed_RVs, *own.data_vars) if v.name not in model.named_vars]
    if missing:
        raise BayescaleError(
            f"the model lacks {', '.join(missing)}: give bs.fit the model bs.build_model made from the "
            "same runs, law and options, changed only by additions in 'with model:'"
        )
    for data in own.data_vars:
        given = model[data.name]
        if (
            not hasattr(given, "get_value")
            or np.shape(given.get_value()) != np.shape(data.get_value())
            or not np.allclose(given.get_value(), data.get_value(), equal_nan=True)
        ):
            raise BayescaleError(
                f"the model's input {data.name!r} differs from these runs: build the model from the "
                "runs you fit (bs.build_model(runs, law, ...))"
            )
    own_free = {rv.name for rv in own.free_RVs}
    start = model.initial_point()
    extra = tuple(
        (rv.name, tuple(np.shape(start[model.rvs_to_values[rv].name])))
        for rv in model.free_RVs
        if rv.name not in own_free
    )
    own_named = set(own.named_vars)
    deterministics = tuple(d.name for d in model.deterministics if d.name not in own_named)
    return replace(spec, model=model, extra=extra, extra_deterministics=deterministics)


def subset_model(model, rows: np.ndarray):
    """A copy of a generative model with every input along the runs (``dims="obs"``) cut to ``rows``."""
    import pymc as pm

    copy = model.copy()
    along = {
        data.name: data.get_value()[rows]
        for data in copy.data_vars
        if copy.named_vars_to_dims.get(data.name, (None,))[0] == OBS_DIM
    }
    pm.set_data(along, model=copy, coords={OBS_DIM: np.arange(len(rows))})
    return copy


def mean_terms(spec: ModelSpec) -> list[str]:
    """The free variables of a user's model that its mean log-loss carries beyond the law (``terms=``)."""
    from pytensor.graph.traversal import ancestors

    if spec.model is None or not spec.extra:
        return []
    model = spec.model
    observed = model[observed_name(spec)]
    inputs = set(ancestors(observed.owner.inputs[2:]))  # the observed variable's inputs: rng, size, then its parameters
    return [name for name, _ in spec.extra if model[name] in inputs]


def pointwise_log_likelihood(spec: ModelSpec, posterior: xr.Dataset) -> xr.DataArray:
    """log p(y_i | draw) of every run under the generative model, for posterior draws of its parameters.

    For draws that did not come from a sampled fit (the sampled fits store it as they draw):
    PyMC's own ``compute_log_likelihood`` on :func:`build_generative`'s model.
    """
    import pymc as pm

    from bayescale.defaults import reproducible_compilation

    model = spec.model if spec.model is not None else build_generative(spec)
    trace = posterior.merge(posterior_offsets(spec, posterior))[[rv.name for rv in model.free_RVs]]
    with reproducible_compilation():
        computed = pm.compute_log_likelihood(
            xr.DataTree.from_dict({"posterior": trace}),
            var_names=[observed_name(spec)],
            model=model,
            extend_inferencedata=False,
            progressbar=False,
        )
    return computed[observed_name(spec)].transpose("chain", "draw", OBS_DIM)


def free_variable_values(spec: ModelSpec, values) -> dict[str, np.ndarray]:
    """Values of the generative model's free variables for parameter ``values`` (as from ``spec.constrain``).

    Pooled parameters give their standard-normal offsets, ``(u_g - u_pop) / sd`` on the
    unconstrained scale. Works on scalars per draw and on xarray posteriors alike.
    """
    out = {}
    for name, prior in spec.priors.items():
        pooled = spec.pooled.get(name)
        if pooled is None:
            out[name] = values[name]
            continue
        pop, sd = values[pooled.pop_name], values[pooled.sd_name]
        out[pooled.pop_name], out[pooled.sd_name] = pop, sd
        out[f"{name}_offset"] = (_unconstrained(prior, values[name], np) - _unconstrained(prior, pop, np)) / sd
    return out


def posterior_offsets(spec: ModelSpec, posterior: xr.Dataset) -> xr.Dataset:
    """The pooled parameters' ``<p>_offset`` draws, so the posterior holds every free variable of the model."""
    with np.errstate(all="ignore"):
        free = free_variable_values(spec, posterior)
    return xr.Dataset({f"{name}_offset": free[f"{name}_offset"] for name in spec.pooled})
