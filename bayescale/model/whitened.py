"""The model NUTS samples: the generative model's density in whitened coordinates.

:func:`build_whitened` takes the named PyMC model of :mod:`bayescale.model.generative` and replaces
its value variables by functions of flat coordinates ``z`` (``pytensor.graph.replace``, as
nutpie and pymc-extras' Laplace code do): ``u = center + scale @ z`` (an affine whitening from a
Laplace approximation, :mod:`bayescale.inference.laplace`), then the map of
:meth:`bayescale.model.spec.ModelSpec.value_variables` (an anchored floor, centred groups) with its
log-Jacobian. The log-density is therefore the generative model's own, not a second copy; the
named parameters are deterministics of the same graph.

Every number that comes from the runs is ``pm.Data`` (the generative model's inputs and observed
log-loss, and here the whitening, the data's centre for an anchored floor and which groups are
sampled centred), so the graph depends only on :meth:`~bayescale.model.spec.ModelSpec.structure_key`
and a compiled sampler takes new runs with ``with_data`` (:mod:`bayescale.inference.sampling`).
"""

from __future__ import annotations

import numpy as np

from bayescale.model.generative import OBSERVED_DATA, build_generative
from bayescale.model.spec import OBS_DIM, ModelSpec

#: up to this many sampler coordinates the whitening is an elementwise product and a row sum, not BLAS's dot
ELEMENTWISE_WHITENING_UP_TO = 64


def build_whitened(spec: ModelSpec, center: np.ndarray, scale: np.ndarray):
    """The PyMC model that samples whitened coordinates ``z`` of ``spec``'s generative model.

    Inputs besides the generative model's: ``whitening`` (the centre, then the scale's columns) and
    ``fixed`` (the data's centre for an anchored floor, then which groups are sampled centred).
    """
    import pymc as pm
    import pytensor.tensor as pt
    from pytensor.graph.replace import graph_replace

    generative = spec.model if spec.model is not None else build_generative(spec)
    coords = {"free": spec.free_names}
    for dim, values in generative.coords.items():
        if dim != OBS_DIM and values is not None:
            coords[dim] = list(values)
    partly_centred = {name: p for name, p in spec.pooled.items() if not p.all_centred and p.adaptive is None}
    adaptive_groups = {name: p for name, p in spec.pooled.items() if p.adaptive is not None}
    fixed = [
        *(spec.reference or {}).values(),
        *(c for p in partly_centred.values() for c in p.centring),
        *(v for p in adaptive_groups.values() for part in (p.adaptive or ()) for v in part),
    ]
    with pm.Model(coords=coords) as model:
        z = pm.Flat("z", dims="free")
        u = _whitened(center, scale, z)
        packed = pm.Data("fixed", np.asarray(fixed, float)) if fixed else None
        reference, centring, i = None, {}, 0
        if spec.reference is not None:
            assert packed is not None  # fixed starts with the reference's values (a law has inputs)
            reference = {k: packed[i + j] for j, k in enumerate(spec.reference)}
            i += len(spec.reference)
        for name, p in partly_centred.items():
            assert packed is not None  # fixed holds which of the groups are centred
            centring[name] = packed[i : i + len(p.levels)] > 0.5
            i += len(p.levels)
        adaptive = {}
        for name, p in adaptive_groups.items():
            assert packed is not None
            n = len(p.levels)
            adaptive[name] = (packed[i : i + n], packed[i + n : i + 2 * n])
            i += 2 * n
        unconstrained, log_jacobian = spec.value_variables(u, pt, reference, centring, adaptive)
        replacements = {generative.rvs_to_values[generative[name]]: value for name, value in unconstrained.items()}
        # dimension lengths: the number of runs from the data (not part of the compiled graph), groups fixed
        for dim, length in generative.dim_lengths.items():
            replacements[length] = (
                generative[OBSERVED_DATA].shape[0]
                if dim == OBS_DIM
                else pt.constant(len(generative.coords[dim]), dtype=length.dtype)
            )
        log_density = generative.logp()
        reported = spec.reported_names
        named = generative.replace_rvs_by_values([generative[name] for name in reported])
        log_density, *named = graph_replace([log_density, *named], replacements, strict=False)
        pm.Potential("log_density", log_density + log_jacobian)
        for name, value in zip(reported, named):
            dims = generative.named_vars_to_dims.get(name)
            pm.Deterministic(name, value, dims=None if dims and OBS_DIM in dims else dims)
        for data in generative.data_vars:
            model.register_data_var(data)
    return model


def _whitened(center: np.ndarray, scale: np.ndarray, z):
    """``u = center + scale @ z``, the whitening a ``pm.Data`` input (centre, then the scale's columns).

    Numba compiles ``np.dot`` and its gradient in about 4.5 s on an empty cache, a quarter of an
    Epoch fit's compile; an elementwise product summed along rows compiles in a fraction of that and
    runs as fast for the few coordinates most laws have (benchmarks/README.md). Its input gets a
    static shape (the number of coordinates is part of the structure key, so this costs no
    recompile), which spares the gradient a shape check. Large pooled models keep BLAS and the
    dynamic shape.
    """
    import pymc as pm
    import pytensor.tensor as pt

    values = np.column_stack([center, scale])
    if len(center) > ELEMENTWISE_WHITENING_UP_TO:
        whitening = pm.Data("whitening", values)
        return whitening[:, 0] + pt.dot(whitening[:, 1:], z)
    whitening = pm.Data("whitening", values, shape=values.shape)
    return whitening[:, 0] + (whitening[:, 1:] * z[None, :]).sum(axis=1)
