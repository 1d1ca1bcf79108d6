"""Sampler diagnostics (divergences, R-hat, ESS) and the advice shown when they look bad.

Trouble is never silenced: :func:`report` emits a :class:`~bayescale.errors.SamplerWarning` for
every problem, with what to try, and the numbers are stored with the fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import arviz_stats as azs
import numpy as np
import xarray as xr

from bayescale import defaults
from bayescale.errors import SamplerWarning, warn_user


@dataclass
class Diagnostics:
    divergences: int
    n_draws: int
    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def more_draws_would_help(self) -> bool:
        """R-hat or ESS short without divergences: a better whitening or longer chains usually fix it (divergences they do not)."""
        return bool(self.problems) and self.divergences == 0

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose(posterior: xr.Dataset, sample_stats: xr.Dataset, names: list[str]) -> Diagnostics:
    """Compute diagnostics of ``names`` and list the problems with advice."""
    params = posterior[names]
    rhat = azs.rhat(params)
    ess_bulk = azs.ess(params, method="bulk")
    ess_tail = azs.ess(params, method="tail")
    divergences = int(sample_stats["diverging"].sum())
    n_draws = int(params.sizes["chain"] * params.sizes["draw"])
    rhat_by = {n: float(rhat[n].max()) for n in names}  # pooled parameters: the worst group
    bulk_by = {n: float(ess_bulk[n].min()) for n in names}
    tail_by = {n: float(ess_tail[n].min()) for n in names}
    problems = []
    if divergences:
        problems.append(
            f"{divergences} of {n_draws} draws diverged: the posterior has regions the sampler cannot explore "
            f"reliably, so intervals may be wrong. Try target_accept=0.99 (CLI: --target-accept 0.99; the default is "
            f"{defaults.TARGET_ACCEPT}), "
            "tighter priors on weakly identified parameters, or a simpler law."
        )
    if params.sizes["chain"] > 1:
        bad = {n: v for n, v in rhat_by.items() if not v <= defaults.RHAT_MAX}
        if bad:
            shown = ", ".join(f"{n} {v:.3f}" for n, v in bad.items())
            problems.append(
                f"R-hat above {defaults.RHAT_MAX} ({shown}): the chains disagree. Run longer (tune=2000, draws=2000; "
                "CLI: --tune 2000 --draws 2000); if it persists the posterior may be multimodal (for example a break outside the "
                "data): check the law and its priors."
            )
    low = {n: min(bulk_by[n], tail_by[n]) for n in names if not min(bulk_by[n], tail_by[n]) >= defaults.ESS_MIN}
    if low:
        shown = ", ".join(f"{n} {v:.0f}" for n, v in low.items())
        problems.append(
            f"low effective sample size ({shown}; want at least {defaults.ESS_MIN}): interval ends are noisy. "
            "Draw more (draws=2000; CLI: --draws 2000) or use more chains."
        )
    return Diagnostics(
        divergences, n_draws, max(rhat_by.values()), min(bulk_by.values()), min(tail_by.values()), problems
    )


def report(diagnostics: Diagnostics) -> None:
    """Warn once per problem; nothing is printed for a clean fit."""
    for problem in diagnostics.problems:
        warn_user(problem, SamplerWarning)


def from_dict(data: dict) -> Diagnostics:
    data = dict(data)
    data["problems"] = list(data.get("problems", []))
    for key in ("rhat_max", "ess_bulk_min", "ess_tail_min"):
        data[key] = float(data[key]) if data[key] is not None else np.nan
    return Diagnostics(**data)
