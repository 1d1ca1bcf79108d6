"""Partial pooling: a law parameter that varies by group (model family, dataset, run).

``pool={"alpha": "family"}`` gives every level of the ``family`` column its own ``alpha``, drawn
from a population: on the parameter's unconstrained scale (log for positive parameters)

    u_g ~ Normal(u_pop, sd)

Groups whose data say little about them are sampled non-centred (u_g = u_pop + sd * offset_g,
offset_g ~ Normal(0, 1)), which avoids the funnel. Groups whose data pin u_g down more tightly than
the groups differ are sampled centred (u_g itself). When every group is centred, the population
value is written relative to the groups' mean, u_pop = mean(u_g) + sd / sqrt(G) * loc, which
removes the funnel between u_pop and sd that few groups would otherwise leave; when only some are
(runs with many checkpoints next to runs with none), u_pop is a coordinate of its own.
:func:`bayescale.inference.laplace.choose_centring` decides per group at the posterior mode.

A fit samples neither: it writes each group around what its data alone say (an estimate u_hat_g with
standard error s_g, read off the curvature at the non-centred mode), u_g = m_g + v_g * w_g with m_g and
v_g the mean and sd of u_g given u_pop and sd under a Gaussian likelihood,

    m_g = (u_hat_g sd^2 + u_pop s_g^2) / (sd^2 + s_g^2),   v_g = sd s_g / sqrt(sd^2 + s_g^2),

non-centred where sd << s_g and centred at the data where sd >> s_g, so a spread whose posterior spans
two orders of magnitude (three corpora) keeps every group's coordinate near unit scale
(:func:`bayescale.inference.laplace.adaptive_coordinates`; benchmarks/README.md, "hierarchical.py").
All are the same model; only the sampler's coordinates differ.

The card's prior for ``alpha`` becomes the prior of the population value ``alpha_pop`` (the
median of the population on the parameter's own scale), and ``alpha_sd`` (the spread between
groups, on the unconstrained scale) gets a half-normal prior. A group the fit never saw is
predicted with a fresh offset: it borrows strength from the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from bayescale.data.runs import column_list, row_numbers
from bayescale.errors import BayescaleError, DataError
from bayescale.laws.priors import Prior, PriorSpec, fixed_prior

#: spread between groups on the unconstrained scale: 0.3 on a log scale is about +-30% between groups
DEFAULT_SD_PRIOR = Prior("HalfNormal", sigma=0.3)


@dataclass(frozen=True)
class PooledParam:
    """One pooled law parameter: the grouping column, its levels, and each observation's level."""

    param: str
    column: str
    levels: tuple[str, ...]
    codes: np.ndarray  # level index of every observation
    sd_prior: Prior = DEFAULT_SD_PRIOR
    #: sampler coordinates: centred (u_g) or non-centred (offsets, the default), for all groups or per group
    centred: bool | tuple[bool, ...] = False
    #: adaptive coordinates: per group the data's own estimate of u_g and its standard error (None: not adaptive)
    adaptive: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @cached_property  # fields are frozen; the NumPy log density asks for it at every evaluation
    def centring(self) -> np.ndarray:
        """Per group: sampled centred?"""
        return np.broadcast_to(np.asarray(self.centred, dtype=bool), (len(self.levels),))

    @cached_property
    def all_centred(self) -> bool:
        return bool(self.centring.all())

    @property
    def pop_name(self) -> str:
        return f"{self.param}_pop"

    @property
    def sd_name(self) -> str:
        return f"{self.param}_sd"

    @property
    def offset_name(self) -> str:
        return f"{self.param}_offset"

    @cached_property
    def free_names(self) -> tuple[str, ...]:
        if self.adaptive is not None:
            return (self.pop_name, self.sd_name, *(f"{self.param}_w[{lvl}]" for lvl in self.levels))
        if self.all_centred:
            return (f"{self.param}_loc", self.sd_name, *(f"{self.param}_u[{lvl}]" for lvl in self.levels))
        return (
            self.pop_name,
            self.sd_name,
            *(f"{self.param}_{'u' if c else 'offset'}[{lvl}]" for lvl, c in zip(self.levels, self.centring)),
        )

    def codes_for(self, values) -> np.ndarray:
        """Level index of each value; -1 for a level the fit never saw (a new group)."""
        lookup = {lvl: i for i, lvl in enumerate(self.levels)}
        return np.array([lookup.get(str(v), -1) for v in values], dtype=int)


def parse_pool(items) -> dict[str, str]:
    """``{"alpha": "family"}`` or CLI items ``alpha=family`` -> mapping param -> column."""
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    pool = {}
    for item in items or ():
        if "=" not in item:
            raise BayescaleError(f"--pool {item!r} should look like alpha=family (parameter=group column)")
        param, column = (s.strip() for s in item.split("=", 1))
        pool[param] = column
    return pool


def pooled_params(
    pool: Mapping[str, str], law_params, frame: pd.DataFrame, sd_priors: Mapping[str, PriorSpec] | None = None
) -> dict[str, PooledParam]:
    """Check a pool mapping against the law and the runs table, and index the groups."""
    out = {}
    for param, column in pool.items():
        if param not in law_params:
            raise BayescaleError(
                f"cannot pool {param!r}: it is not a parameter of the law (parameters: {', '.join(law_params)})"
            )
        if column not in frame.columns:
            raise DataError(
                f"pooling column {column!r} (for {param!r}) is not in the runs table; it has "
                f"{column_list(frame.columns, [column])}"
            )
        labels = frame[column]
        missing = frame.index[labels.isna()]
        if len(missing):
            raise DataError(f"pooling column {column!r}: {row_numbers(missing)} have no group")
        labels = labels.astype(str)
        levels = tuple(dict.fromkeys(labels))
        if len(levels) < 2:
            raise DataError(
                f"pooling column {column!r} has only one group ({levels[0]!r}); pooling {param!r} "
                "needs at least two groups"
            )
        sd_prior = (sd_priors or {}).get(f"{param}_sd", DEFAULT_SD_PRIOR)
        codes = np.array([levels.index(v) for v in labels], dtype=int)
        out[param] = PooledParam(param, column, levels, codes, fixed_prior(sd_prior, f"{param}_sd"))
    return out
