"""Power-scaling sensitivity of a forecast drawn from several posteriors: a stack's mixture, a chain of two fits.

:mod:`bayescale.forecast.sensitivity` scales one fit's prior. Here each draw of the quantity comes from draws
of several independent posteriors (each a :class:`Source`), and the scaled density of a draw is the sum of
their log densities at the draws behind it:

- **A mixture** (a stacked forecast, :func:`stacked_sensitivity`): each fit gives its stacking weight's share
  of the draws, a block whose mass stays fixed; scaling a fit's prior reweights its own draws
  (Pareto-smoothed importance weights within its block, as ``arviz_stats.psense`` smooths them), so a fit
  moves the mixture only as far as its draws move, in proportion to its weight.
- **A chain** (a downstream accuracy: each loss draw through a metric-law draw,
  :mod:`bayescale.downstream.sensitivity`): the two posteriors are independent, so their joint prior is the
  product, and every draw of the quantity pairs one draw of each; one block.

The sensitivity is the cumulative Jensen-Shannon distance per log2 of the power (0.99 and 1.01), as
priorsense's; prior-driven is :func:`bayescale.forecast.sensitivity.prior_driven` with every source's
priors, then every source's likelihood, scaled together. What carries a prior-driven quantity: each source's
priors scaled alone (``source_sensitivity``: which fit, or which step), then each of its priors alone (the
note names up to three, as ``forecast_sensitivity``'s does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import Points, point_label, prepare_points
from bayescale.forecast.predict import flat_draws, law_mean, params_at
from bayescale.forecast.sensitivity import _carriers, _note, log_densities, prior_driven, runs_that_determine

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit

#: the powers of the finite difference (``arviz_stats.psense``'s default)
ALPHAS = (0.99, 1.01)


@dataclass
class Source:
    """One posterior behind some draws of a quantity: its densities per draw and which draws serve which rows."""

    #: its key in ``source_sensitivity``: a fit's name, a step (``"loss fit"``)
    name: str
    #: how notes name it, possessive: ``"chinchilla's"``, ``"the metric law's"``
    label: str
    #: each top-level prior's log density (unconstrained coordinate) per posterior draw, chains stacked
    log_prior: Mapping[str, np.ndarray]
    #: the log-likelihood of all its observations per posterior draw
    log_likelihood: np.ndarray
    #: the posterior draw behind each row of the quantity it serves
    draws: np.ndarray
    #: which runs would determine a prior's parameter, for the quantity's column: ``advise(name, column)``
    advise: Callable[[str, int], str]
    #: the rows of the quantity it serves (a mixture's block); None: every row
    rows: np.ndarray | None = None
    #: whether ``bayescale design`` can choose runs that determine its priors (a loss fit's)
    designable: bool = True


def fit_source(fit: Fit, name: str, label: str, draws: np.ndarray, points: pd.DataFrame, rows=None) -> Source:
    """A loss fit as a :class:`Source`; its advice names the runs that would determine a parameter at ``points``."""
    log_prior, log_likelihood = log_densities(fit)
    total = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]

    def flat(group: xr.Dataset) -> np.ndarray:
        return sum((v.to_numpy().reshape(total, -1).sum(axis=1) for v in group.data_vars.values()), np.zeros(total))

    return Source(
        name,
        label,
        {str(name): value.to_numpy().reshape(total) for name, value in log_prior.data_vars.items()},
        flat(log_likelihood),
        np.asarray(draws),
        lambda name, j: runs_that_determine(fit, name, points.iloc[j].to_dict()),
        rows,
    )


def _weights(log_density: np.ndarray, blocks: np.ndarray, alpha: float) -> np.ndarray:
    """Power-scaling weights: Pareto-smoothed within each block, each block keeping its share of the rows."""
    from arviz_stats.base import array_stats

    weights = np.empty(len(log_density))
    for block in np.unique(blocks):
        rows = blocks == block
        part = log_density[rows]
        if np.ptp(part) > 0:  # a density equal at every draw: scaling it moves nothing
            log_w = np.asarray(array_stats.power_scale_lw(part, alpha=alpha))
            part = np.exp(log_w - log_w.max())
        else:
            part = np.ones(rows.sum())
        weights[rows] = part / part.sum() * rows.mean()
    return weights


def scaled_sensitivity(values: np.ndarray, log_density: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Power-scaling sensitivity of each column of ``values`` (rows: draws) to scaling ``log_density`` (per row)."""
    from arviz_stats.base import array_stats

    n, k = values.shape
    if all(np.ptp(log_density[blocks == block]) == 0 for block in np.unique(blocks)):
        return np.zeros(k)  # nothing to scale: the weights stay uniform
    lower, upper = (np.broadcast_to(_weights(log_density, blocks, alpha), (k, 1, n)) for alpha in ALPHAS)
    found = np.atleast_1d(array_stats.power_scale_sense(values.T[:, None, :], lower, upper, *ALPHAS))
    return np.where(np.ptp(values, axis=0) == 0, 0.0, found)  # a quantity equal at every draw does not move


def _density(sources: Sequence[Source], n: int, part: Callable[[Source], np.ndarray | None]) -> np.ndarray:
    """The sum over ``sources`` of ``part(source)`` (a log density per posterior draw) at each row's draws."""
    total = np.zeros(n)
    for source in sources:
        value = part(source)
        if value is not None:
            total[slice(None) if source.rows is None else source.rows] += value[source.draws]
    return total


def _all_priors(source: Source) -> np.ndarray:
    return sum(source.log_prior.values(), np.zeros(len(source.log_likelihood)))


def _only(source: Source, density: np.ndarray) -> Callable[[Source], np.ndarray | None]:
    """``density`` for ``source``, nothing for the others: scaling one source's priors alone."""
    return lambda other: density if other is source else None


def joint_sensitivity(
    values: np.ndarray, sources: Sequence[Source], whats: Sequence[str], blocks: np.ndarray | None = None
) -> pd.DataFrame:
    """Power-scaling sensitivity of each column of ``values`` (draws x points) drawn from ``sources``.

    ``whats`` name the columns in the notes; ``blocks`` (an integer per row) are a mixture's components,
    each keeping its mass. Returns one row per column: ``prior_sensitivity``, ``likelihood_sensitivity``,
    ``prior_driven``, ``source_sensitivity`` (each source's priors scaled alone, by name), ``driven_by``
    (the priors carrying a prior-driven column, each scaled alone, as ``"<label> <name>"``) and ``note``.
    """
    values = np.where(np.isfinite(values), values, np.nan)
    n = len(values)
    blocks = np.zeros(n, int) if blocks is None else np.asarray(blocks)

    def sense(part: Callable[[Source], np.ndarray | None]) -> np.ndarray:
        return scaled_sensitivity(values, _density(sources, n, part), blocks)

    prior = sense(_all_priors)
    likelihood = sense(lambda s: s.log_likelihood)
    flags = [prior_driven(a, b) for a, b in zip(prior, likelihood)]
    by_source = {s.name: sense(_only(s, _all_priors(s))) for s in sources}
    chosen = [j for j, flag in enumerate(flags) if flag]
    alone: dict[str, xr.Dataset] = {}
    advice: dict[str, tuple[Source, str]] = {}
    for s in sources if chosen else ():
        for name, log_prior in s.log_prior.items():
            carrier = f"{s.label} {name}"
            found = sense(_only(s, log_prior))
            alone[carrier] = xr.Dataset({"q": ("point", found)})
            advice[carrier] = (s, name)
    driven_by: list[list[str]] = [[] for _ in flags]
    notes: list[str | None] = [None for _ in flags]
    for j in chosen:
        carriers = _carriers(alone, "q", j)
        driven_by[j] = [name for name, _ in carriers]
        advise = lambda carrier, j=j: advice[carrier][0].advise(advice[carrier][1], j)  # noqa: E731
        design = any(advice[carrier][0].designable for carrier in driven_by[j])
        notes[j] = _note(whats[j], prior[j], likelihood[j], carriers, advise, design)
    return pd.DataFrame(
        {
            "prior_sensitivity": prior,
            "likelihood_sensitivity": likelihood,
            "prior_driven": flags,
            "source_sensitivity": [{label: float(v[j]) for label, v in by_source.items()} for j in range(len(flags))],
            "driven_by": driven_by,
            "note": notes,
        }
    )


def stacked_sensitivity(
    fits: Mapping[str, Fit], points: Points, weights: Mapping[str, float], *, seed: int | None = None
) -> pd.DataFrame:
    """Power-scaling sensitivity of a stacked forecast: the law's value at ``points``, mixed over ``fits`` by ``weights``.

    Parameters
    ----------
    fits : dict of str to Fit
        The fits stacked, by name (as :func:`bayescale.predict_stacked` names them).
    points : pandas.DataFrame or mapping
        Where to forecast: every fit's inputs.
    weights : dict of str to float
        The stacking weights by fit name (``predict_stacked(...).attrs["weights"]``); held fixed.
    seed : int, optional
        Seed of a new group's draws and of the draws mixed; the first fit's seed by default.

    Returns
    -------
    pandas.DataFrame
        One row per point (index ``point``): ``prior_sensitivity``, ``likelihood_sensitivity`` and
        ``prior_driven`` of the mixture (every fit's priors, then likelihoods, scaled together; its draws
        are each fit's law without the extrapolation discrepancy, as ``forecast_sensitivity``'s),
        ``source_sensitivity`` (each fit's priors scaled alone, by fit name), ``driven_by`` (``"<fit>'s <prior>"``,
        each scaled alone, largest first) and ``note`` (the sentence a user reads, naming the fits and priors
        that carry a prior-driven forecast, or None).
    """
    named = {name: fit for name, fit in fits.items() if weights.get(name, 0) > 0}
    seed = next(iter(fits.values())).settings["seed"] if seed is None else seed
    rng = np.random.default_rng([seed, 7])
    sizes = {name: fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"] for name, fit in named.items()}
    total = sum(weights[name] for name in named)
    scale = min(sizes[name] * total / weights[name] for name in named)  # the most draws every share allows
    parts, sources, blocks, start = [], [], [], 0
    table = prepare_points(points, ())
    for k, (name, fit) in enumerate(named.items()):
        at = prepare_points(points, fit.law.inputs)
        mu = law_mean(fit, params_at(fit, flat_draws(fit), at, np.random.default_rng(seed)), at)
        keep = rng.choice(sizes[name], size=max(1, int(scale * weights[name] / total)), replace=False)
        parts.append(mu[keep])
        blocks.append(np.full(len(keep), k))
        rows = np.arange(start, start + len(keep))
        sources.append(fit_source(fit, name, f"{name}'s", keep, at, rows))
        start += len(keep)
    inputs = list(dict.fromkeys(i for fit in named.values() for i in fit.law.inputs))
    whats = [f"the stacked forecast at {point_label(row, inputs)}" for _, row in table.iterrows()]
    out = joint_sensitivity(np.concatenate(parts), sources, whats, np.concatenate(blocks))
    return out.set_index(table.index)
