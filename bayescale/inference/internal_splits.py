"""Internal leave-future-out forecasts of a fit's own runs, and the check of a split whose forecasts are an outlier.

:mod:`bayescale.inference.discrepancy` calibrates the extrapolation discrepancy on these forecasts:
each split's training runs fitted by the Laplace approximation from the fit's mode, its held-out
runs forecast with their median error and predictive scale. One failed approximation could set the
discrepancy alone (issue #36: a split's scales 10-30x the other's, kappa 0.045 instead of 0.0075),
so a split whose forecasts are an outlier among the splits' is fitted again by a short run of the
sampler and mended (or dropped), and the fit says so.
"""

from __future__ import annotations

import time

import numpy as np

from bayescale.data.runs import Runs
from bayescale.errors import ExtrapolationWarning, warn_user
from bayescale.inference.laplace import centred_where_pinned, laplace_approximation

#: posterior draws of an internal split's Laplace approximation
INTERNAL_DRAWS = 1000
#: an internal split whose forecasts' median scale or error is this many times the other splits' is checked
#: (:func:`check_outliers`) against a sampled fit of CHECK_DRAWS draws (and as many tuning steps) per chain
SPLIT_OUTLIER_RATIO = 5.0
CHECK_DRAWS = 300


def internal_forecast(
    spec_factory,
    train: Runs,
    rows: np.ndarray,
    heldout: Runs,
    law,
    likelihood,
    rng,
    start_values=None,
    sample=None,
    keep: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Median error and predictive scale of a forecast of ``heldout`` from ``train``.

    The posterior is the Laplace approximation from the fit's mode, or with ``sample`` (a function of
    the model and that approximation giving draws of its unconstrained coordinates: :func:`short_sample`)
    a sampled one. ``start_values`` (the full fit's mode, as :meth:`ModelSpec.named_values`) is the
    first start of the mode search: the fit on fewer runs has its mode nearby. ``keep``, a dict, receives
    the draws of the law's parameters at the held-out runs as ``keep["params"]`` (the decision discrepancy's
    forecasts of the best values there: :mod:`bayescale.inference.decision_discrepancy`).
    """
    spec = spec_factory(train, rows)
    starts = () if start_values is None else (spec.unconstrain(start_values),)
    laplace = laplace_approximation(spec, rng, n_random_starts=4, starts=starts)
    spec, laplace = centred_where_pinned(spec, laplace, rng)  # as the fit does: groups the data pin down, centred
    if sample is None:
        u = laplace.center + rng.standard_normal((INTERNAL_DRAWS, len(laplace.center))) @ laplace.scale.T
    else:
        u = sample(spec, laplace)
    draws = [spec.constrain(row) for row in u]
    params = {}
    for name in law.param_names:
        values = np.array([np.broadcast_to(d[name], np.shape(d[name])) for d in draws])
        if name in spec.pooled:
            codes = spec.pooled[name].codes_for(heldout.frame[spec.pooled[name].column].astype(str))
            pop = np.array([d[spec.pooled[name].pop_name] for d in draws])[:, None]
            values = np.where(codes[None, :] >= 0, values[:, np.maximum(codes, 0)], pop)
        else:
            values = values[:, None]
        params[name] = values
    if keep is not None:
        keep["params"] = params
    env = {**{n: heldout[n][None, :] for n in law.inputs}, **params}
    with np.errstate(all="ignore"):
        mu = np.log(law.formula.numpy(env))
    noise = {n: np.array([d[n] for d in draws]) for n in spec.noise_names}
    y = mu + spec.noise_at(noise, heldout)["sigma"] * likelihood.standard_noise(rng, noise, mu.shape)
    lo, med, hi = np.nanquantile(y, [0.1587, 0.5, 0.8413], axis=0)
    return np.log(heldout["loss"]) - med, (hi - lo) / 2


def short_sample(sampler: str, seed: int):
    """A function of (model, Laplace approximation) giving the unconstrained draws of a short sampled fit.

    The sampler works in the coordinates the approximation whitens (exact whatever it is: only the
    sampler's efficiency depends on it), so a failed approximation cannot fail the check too.
    """

    def sample(spec, laplace) -> np.ndarray:
        from bayescale.inference.sampling import draw_posterior
        from bayescale.model.whitened import build_whitened

        model = build_whitened(spec, laplace.center, laplace.scale)
        idata = draw_posterior(
            model,
            ["z", *spec.reported_names],
            sampler=sampler,
            draws=CHECK_DRAWS,
            tune=CHECK_DRAWS,
            chains=2,
            cores=1,
            seed=seed,
            target_accept=0.9,
            progressbar=False,
            reuse_key=spec.structure_key(),
        )
        z = idata["posterior"]["z"].to_numpy().reshape(-1, len(laplace.center))
        return laplace.center + z @ laplace.scale.T

    return sample


def _outlying(split: dict, others: list[dict]) -> str | None:
    """Why an internal split's forecasts are an outlier among the other splits' (None if they are not).

    Its median predictive scale, or its median absolute error, more than :data:`SPLIT_OUTLIER_RATIO`
    times the other splits' (the error against the larger of their error and scale: a right law's
    errors can be near zero). Across the benchmark's sweeps the larger split's scale is 0.9-1.9 times
    the smaller's; a failed internal fit gave 10-30 times (issue #36).
    """
    if not others:
        return None
    scale, error = np.nanmedian(split["scale"]), np.nanmedian(np.abs(split["error"]))
    other_scale = np.median([np.nanmedian(o["scale"]) for o in others])
    other_error = np.median([max(np.nanmedian(np.abs(o["error"])), np.nanmedian(o["scale"])) for o in others])
    if scale > SPLIT_OUTLIER_RATIO * other_scale:
        return f"its forecasts' scale ({scale:.3g}) is {scale / other_scale:.0f}x the other splits' ({other_scale:.3g})"
    if error > SPLIT_OUTLIER_RATIO * other_error:
        return f"its forecasts' error ({error:.3g}) is {error / other_error:.0f}x the other splits' ({other_error:.3g})"
    return None


def check_outliers(splits: dict, refit) -> list[dict]:
    """Check each outlying internal split against a sampled fit (``refit(share)``) and mend or drop it, in place.

    The sampled forecasts replace the split's (mended; or kept, if they are still an outlier: then the
    data say so, not a failed approximation); a split whose sampled fit fails is dropped. Returns a
    record per split checked, and warns about each.
    """
    records = []
    for share in [s for s in splits if _outlying(splits[s], [o for k, o in splits.items() if k != s])]:
        split, others = splits[share], [o for k, o in splits.items() if k != share]
        why = _outlying(split, others)
        start = time.perf_counter()
        record = {
            "split": share,
            "why": why,
            "laplace_error": float(np.nanmedian(split["error"])),
            "laplace_scale": float(np.nanmedian(split["scale"])),
        }
        try:
            error, scale = refit(share)
        except Exception as failure:  # any failure of the sampled fit: the split says nothing reliable
            del splits[share]
            record.update(action="dropped", reason=f"{type(failure).__name__}: {failure}")
            outcome = "the sampled fit failed, so the split was dropped"
        else:
            split["error"], split["scale"] = error, scale
            still = _outlying(split, others)
            record.update(
                action="kept" if still else "mended",
                sampled_error=float(np.nanmedian(error)),
                sampled_scale=float(np.nanmedian(scale)),
            )
            outcome = (
                f"a short sampled fit of the same runs gives error {record['sampled_error']:+.3g}, scale "
                f"{record['sampled_scale']:.3g}, "
                + ("still an outlier: kept, from the sampled fit" if still else "used instead")
            )
        record["seconds"] = round(time.perf_counter() - start, 2)
        records.append(record)
        warn_user(
            f"the internal split holding out {split_words(share)} forecast its runs with median error "
            f"{record['laplace_error']:+.3g} and scale {record['laplace_scale']:.3g}: {why}; {outcome} "
            "(the fit's discrepancy.checks records it)",
            ExtrapolationWarning,
        )
    return records


def split_words(share) -> str:
    return f"the top {float(share):.0%} of the runs" if float(share) < 1 else str(share)
