"""Learning curves: checkpoint tables, the warm-up rule, joint fits across runs, forecasts of the rest.

A checkpoint table is long: one row per (run, step) with the loss, and optionally N, tokens, the
learning rate and group columns. Rules, checked with errors that name the run and rows:

- steps are positive and strictly increasing within each run (in table order);
- warm-up checkpoints are excluded: by default those at or before 5% of the run's planned length
  (its ``total_steps`` column, else its last recorded step); ``warmup=0.1`` changes the fraction,
  ``warmup=2000`` drops steps <= 2000, ``warmup=0`` keeps everything;
- a run keeps all its checkpoints together: a fit sees a prefix of each run (``upto``).

Checkpoints of one run are not independent draws: they share the run's own curve. bayescale fits
all runs jointly with the run's parameters pooled (``pool={"E": "run", "A": "run", "alpha": "run"}``
by default): a run-level effect on every parameter, partially pooled, so a run with few
checkpoints borrows the shape of the others. (Autocorrelated residuals were the alternative; the
run effect was chosen because most of the correlation between a run's checkpoints is its own
curve, which the run's parameters carry. Whether the residuals left are white is not yet checked.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from . import defaults
from .data import Runs, load_runs, read_table
from .errors import BayescaleError, DataError
from .predict import check_ci_prob

if TYPE_CHECKING:
    from .fit import Fit

WARMUP_FRACTION = 0.05
#: default pooling for the per-run learning-curve law
CURVE_POOL = {"E": "run", "A": "run", "alpha": "run"}


def _rows(index) -> str:
    rows = [str(i) for i in list(index)[:8]]
    return ", ".join(rows) + (f" and {len(index) - 8} more" if len(index) > 8 else "")


def load_checkpoints(source, columns: Mapping[str, str] | None = None, *, warmup: float = WARMUP_FRACTION,
                     keep=()) -> Runs:
    """Read and validate a checkpoint table (``run``, ``step``, ``loss``, ...) and drop warm-up rows."""
    raw, where = (source.frame.copy(), source.source) if isinstance(source, Runs) else read_table(source)
    keep = [*(["total_steps"] if "total_steps" in raw.columns else []), *keep]
    runs = load_runs(raw, columns, extra_inputs=("step",), keep=keep)
    runs.source = where
    frame = runs.frame
    for col in ("run", "step"):
        if col not in frame.columns:
            raise DataError(f"a checkpoint table needs a {col!r} column (map yours with columns={{'{col}': ...}}); "
                            f"it has {', '.join(map(str, frame.columns))}")
    bad = frame.index[~(frame["step"] > 0)]
    if len(bad):
        raise DataError(f"column 'step': must be > 0, but rows {_rows(bad)} are not")
    frame["run"] = frame["run"].astype(str)
    for run, part in frame.groupby("run", sort=False):
        steps = part["step"].to_numpy()
        back = part.index[1:][np.diff(steps) <= 0]
        if len(back):
            raise DataError(f"run {run!r}: steps must increase within a run, but rows {_rows(back)} do not "
                            f"(steps {', '.join(f'{s:g}' for s in part.loc[back, 'step'][:5])})")
    if not (isinstance(warmup, (int, float)) and warmup >= 0):
        raise BayescaleError(f"warmup must be a fraction in [0, 1) or a number of steps >= 1, got {warmup!r}")
    if warmup:
        planned = frame["total_steps"] if "total_steps" in frame.columns else frame.groupby("run")["step"].transform("max")
        limit = warmup * planned if warmup < 1 else pd.Series(float(warmup), index=frame.index)
        dropped = frame.index[frame["step"] <= limit]
        if len(dropped):
            frame = frame.drop(dropped)
            rule = f"{warmup:.0%} of each run's planned steps" if warmup < 1 else f"step {warmup:g}"
            runs.notes.append(f"{len(dropped)} warm-up checkpoints at or before {rule} were excluded")
    runs.frame = frame.reset_index(drop=True)
    runs.frame.index.name = "row"
    return runs


def upto_steps(frame: pd.DataFrame, upto: float) -> pd.Series:
    """The last step each run's fit may see: a step number, or a fraction (0, 1] of the run's planned length."""
    if not (isinstance(upto, (int, float)) and upto > 0):
        raise BayescaleError(f"upto must be a step number or a fraction in (0, 1], got {upto!r}")
    if upto <= 1:
        planned = frame["total_steps"] if "total_steps" in frame.columns else frame.groupby("run")["step"].transform("max")
        return upto * planned
    return pd.Series(float(upto), index=frame.index)


def fit_curves(runs: Runs, law: str = "curve_power", *, upto: float = 1.0, pool: Mapping[str, str] | None = None,
               **options) -> "Fit":
    """Fit ``law`` jointly to every run's checkpoints up to ``upto`` (pooled by run by default)."""
    from .fit import fit

    frame = runs.frame
    seen = frame[frame["step"] <= upto_steps(frame, upto)].reset_index(drop=True)
    if len(seen) == 0:
        raise BayescaleError(f"no checkpoints at or before upto={upto}: nothing to fit")
    pool = dict(CURVE_POOL if pool is None else pool)
    if pool and seen["run"].nunique() < 2:
        pool = {}
    return fit(Runs(seen, list(runs.notes), runs.source), law, pool=pool, **options)


def forecast_curves(fit: "Fit", runs: Runs, *, upto: float = 1.0, horizon: float | None = None, delta: float = 0.01,
                    ci_prob: float = defaults.CI_PROB, run: str | None = None, seed: int | None = None) -> pd.DataFrame:
    """Per run: the forecast final loss, P(the loss falls by more than ``delta`` from upto to horizon), the saturation step.

    The horizon defaults to each run's last recorded step. The saturation step is the first step
    after ``upto`` at which the expected gain over the next 1,000 steps falls below ``delta``
    (NaN if that does not happen before 100 times the horizon).
    """
    from .predict import flat_draws, log_law, params_at

    ci_prob = check_ci_prob(ci_prob)
    frame = runs.frame
    if run is not None:
        frame = frame[frame["run"] == str(run)]
        if frame.empty:
            raise BayescaleError(f"no run {run!r}; runs are {', '.join(runs.frame['run'].unique()[:10])}")
    ends = frame.assign(upto_step=upto_steps(frame, upto)).groupby("run", sort=False)
    rng = np.random.default_rng(fit.settings["seed"] if seed is None else seed)
    draws = flat_draws(fit)
    rows = []
    for name, part in ends:
        upto_step = float(min(part["upto_step"].iloc[0], part["step"].max()))
        seen = part[part["step"] <= upto_step]
        upto_step = float(seen["step"].max()) if len(seen) else upto_step
        horizon_step = float(horizon or part["step"].max())
        grid = np.unique(np.concatenate([[upto_step, horizon_step],
                                         np.geomspace(upto_step, 100 * horizon_step, 60)]))
        points = pd.DataFrame({"step": np.concatenate([grid, grid + 1000.0]), "run": name})
        for col in fit.law.inputs:
            if col != "step":
                points[col] = part[col].iloc[0]
        params = {**draws, **params_at(fit, draws, points, rng)}
        law = np.exp(log_law(fit, {n: params[n] for n in fit.law.param_names}, points))
        now, later = law[:, :len(grid)], law[:, len(grid):]
        at = {s: i for i, s in enumerate(grid)}
        final = law[:, at[horizon_step]]
        noisy = np.log(final) + draws["sigma"] * fit.likelihood.standard_noise(rng, draws, (len(final), 1))[:, 0]
        lo, hi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
        gain = (now - later).mean(axis=0)
        after = np.flatnonzero((grid >= upto_step) & (gain < delta))
        rows.append({"run": name, "upto_step": upto_step, "horizon_step": horizon_step,
                     "final_median": float(np.median(final)), "final_pred_lower": float(np.exp(np.quantile(noisy, lo))),
                     "final_pred_upper": float(np.exp(np.quantile(noisy, hi))),
                     "p_improve": float(np.mean(now[:, at[upto_step]] - final > delta)),
                     "saturation_step": float(grid[after[0]]) if len(after) else np.nan,
                     "n_seen": int(len(seen))})
    out = pd.DataFrame(rows)
    out.attrs["ci_prob"] = ci_prob
    return out
