"""Learning curves: checkpoint tables, the warm-up rule, joint fits across runs, forecasts of the rest.

A checkpoint table is long: one row per (run, step) with the loss, and optionally N, tokens, the
learning rate and group columns. Rules, checked with errors that name the run and rows:

- steps are positive and strictly increasing within each run (in table order);
- the early phase is excluded: the learning-rate warm-up and the first fast drop, which no law in
  the catalog describes. By default (:func:`default_warmup`) a run with a planned length (a
  ``total_steps`` column) drops its checkpoints at or before 20% of it, but never more than half
  of what the fit may see (``upto``); a run without one drops those at or before 5% of its last
  recorded step. ``warmup=0.1`` sets one fraction, ``warmup=2000`` drops steps <= 2000,
  ``warmup=0`` keeps everything;
- a run keeps all its checkpoints together: a fit sees a prefix of each run (``upto``).

Checkpoints of one run are not independent draws: they share the run's own curve. bayescale fits
all runs jointly with a run effect: the parameters a card names in ``run_effect`` (the floor and
the scale of the step term in the built-in cards) vary by run around a population, partially pooled, so a run with few checkpoints borrows from the others
and a run with none is forecast from the population (:func:`default_pool`). A run effect was
chosen over autocorrelated residuals because most of the correlation between a run's checkpoints
is its own level, which the effect carries, and because it is what a new run needs: a population
to be drawn from. The decay exponent is shared (pooling it too is possible, ``pool=...``, but the
per-run (E, A, alpha) ridge then makes sampling several times slower for little gain). Whether the
residuals left are white is not checked.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.filters import narrowed
from bayescale.data.runs import Runs, RunsSource, column_list, load_runs, read_table, row_numbers
from bayescale.data.schedules import (
    MPL_INPUTS,
    SCHEDULE_COLUMNS,
    Schedule,
    add_schedule_inputs,
    run_areas,
    run_schedule,
    schedule_areas,
)
from bayescale.defaults import check_ci_prob
from bayescale.errors import BayescaleError, DataError, ExtrapolationWarning, warn_user
from bayescale.forecast.predict import band_includes, loss_draws, warn_invalid_draws
from bayescale.laws.card import RUN_OFFSET, Law, get_law

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit

#: early phase left out of a run without a planned length: this share of its last recorded step
WARMUP_FRACTION = 0.05
#: early phase left out of a run with a planned length (total_steps): this share of it, at most half the seen part.
#: Measured on the misfitting runs (benchmarks/README.md): against 5%, the final-loss error fell from 4.1% to
#: 2.6% (runs cut at 50%) and from 2.4% to 1.5% (cut at 75%), with the 90% bands holding 0.97 and 0.92.
SCHEDULED_WARMUP = 0.2


def default_warmup(frame: pd.DataFrame, upto: float = 1.0) -> pd.Series:
    """The default early-phase cut of each row's run (a step): see the module docstring."""
    last = frame.groupby("run")["step"].transform("max")
    if "total_steps" not in frame.columns:
        return WARMUP_FRACTION * last
    share = min(SCHEDULED_WARMUP, upto / 2) if upto <= 1 else SCHEDULED_WARMUP
    return (share * frame["total_steps"]).where(frame["total_steps"].notna(), WARMUP_FRACTION * last)


def load_checkpoints(
    source: RunsSource,
    columns: Mapping[str, str] | None = None,
    *,
    warmup: float | None = None,
    keep: Iterable[str] = (),
    upto: float = 1.0,
    where: str | None = None,
) -> Runs:
    """Read and validate a checkpoint table (``run``, ``step``, ``loss``, ...) and drop the early phase.

    ``warmup=None`` (default) applies :func:`default_warmup` for a fit that will see each run up to
    ``upto``; a number overrides it (a fraction of planned steps, or a step).

    Parameters
    ----------
    source : str, pathlib.Path, pandas.DataFrame or Runs
        The checkpoint table: a ``.csv``/``.tsv``/``.parquet`` path, a DataFrame (copied), or a :class:`Runs`
        whose frame is validated again (its ``source`` is kept). One row per (run, step).
    columns : Mapping[str, str], optional
        Canonical name -> the table's name, e.g. ``{"step": "iteration", "loss": "train/loss"}``; as in
        :func:`~bayescale.data.runs.load_runs`.
    warmup : float, optional
        The early-phase cut. None (default): :func:`default_warmup`. A number in [0, 1): that fraction of
        each run's ``total_steps`` (its last recorded step without that column). A number >= 1: checkpoints
        at or before that step. 0 keeps every checkpoint.
    keep : iterable of str, default ()
        Further columns to carry along unchanged, e.g. group columns to pool by. The schedule columns
        (``peak_lr``, ``total_steps``, ``warmup_steps``, ``decay``, ``final_lr_ratio``, ``decay_fraction``)
        and ``S1``, ``S2`` are kept whenever present.
    upto : float, default 1.0
        How much of each run the fit will see (a fraction in (0, 1] of its planned length, or a step > 1);
        only the default cut uses it, to drop at most half of that part.
    where : str, optional
        Only the checkpoints this row filter keeps, such as ``"run in ['a', 'b']"`` or ``"model == '1b'"``
        (:func:`~bayescale.data.runs.load_runs`), before the early-phase cut.

    Returns
    -------
    Runs
        The checkpoints left after the cut, in table order, with ``run`` as strings and index ``row``
        (the table's row numbers, from 0); ``notes`` say how many early-phase checkpoints were excluded
        and by which rule.

    Raises
    ------
    DataError
        If the table has no ``run`` or ``step`` column, a step is not positive, or steps do not increase
        within a run (the error names the run and rows).
    BayescaleError
        If ``warmup`` is negative or not a number.
    """
    raw, origin = (source.frame.copy(), source.source) if isinstance(source, Runs) else read_table(source)
    keep = [*(c for c in (*SCHEDULE_COLUMNS, "S1", "S2", *MPL_INPUTS) if c in raw.columns), *keep]
    runs = load_runs(raw, columns, extra_inputs=("step",), keep=keep, where=where)
    runs.source = origin if where is None else narrowed(origin, where)
    frame = runs.frame
    for col in ("run", "step"):
        if col not in frame.columns:
            raise DataError(
                f"a checkpoint table needs a {col!r} column (map yours with columns={{'{col}': ...}}); "
                f"it has {column_list(frame.columns, [col])}"
            )
    bad = frame.index[~(frame["step"] > 0)]
    if len(bad):
        raise DataError(f"column 'step': must be > 0, but {row_numbers(bad)} are not")
    frame["run"] = frame["run"].astype(str)
    for run, part in frame.groupby("run", sort=False):
        steps = part["step"].to_numpy()
        back = part.index[1:][np.diff(steps) <= 0]
        if len(back):
            raise DataError(
                f"run {run!r}: steps must increase within a run, but {row_numbers(back)} do not "
                f"(steps {', '.join(f'{s:g}' for s in part.loc[back, 'step'][:5])})"
            )
    if warmup is not None and not (isinstance(warmup, (int, float)) and warmup >= 0):
        raise BayescaleError(f"warmup must be a fraction in [0, 1) or a number of steps >= 1, got {warmup!r}")
    if warmup is None or warmup:
        if warmup is None:
            limit = default_warmup(frame, upto)
            rule = (
                f"the default early-phase cut ({SCHEDULED_WARMUP:.0%} of a run's planned steps, at most half the "
                f"part fitted; {WARMUP_FRACTION:.0%} of the last recorded step for a run without total_steps; "
                "--warmup to change)"
            )
        else:
            planned = (
                frame["total_steps"]
                if "total_steps" in frame.columns
                else frame.groupby("run")["step"].transform("max")
            )
            limit = warmup * planned if warmup < 1 else pd.Series(float(warmup), index=frame.index)
            rule = f"{warmup:.0%} of each run's planned steps" if warmup < 1 else f"step {warmup:g}"
        dropped = frame.index[frame["step"] <= limit]
        if len(dropped):
            frame = frame.drop(dropped)
            runs.notes.append(f"{len(dropped)} early-phase checkpoints at or before {rule} were excluded")
    runs.frame = frame
    return runs


def upto_steps(frame: pd.DataFrame, upto: float) -> pd.Series:
    """The last step each run's fit may see: a step number, or a fraction (0, 1] of the run's planned length."""
    if not (isinstance(upto, (int, float)) and upto > 0):
        raise BayescaleError(f"upto must be a step number or a fraction in (0, 1], got {upto!r}")
    if upto <= 1:
        planned = (
            frame["total_steps"] if "total_steps" in frame.columns else frame.groupby("run")["step"].transform("max")
        )
        return upto * planned
    return pd.Series(float(upto), index=frame.index)


def _needs_schedule(law: Law) -> bool:
    return bool({"S1", "S2", *MPL_INPUTS} & set(law.inputs))


def _needs_mpl(law: Law) -> bool:
    return bool(set(MPL_INPUTS) & set(law.inputs))


def default_pool(law: Law) -> dict[str, str]:
    """The run effect: the card's ``run_effect`` parameters vary by run (else its anchor, the loss floor)."""
    names = law.run_effect or ((law.anchor,) if law.anchor else ())
    return {name: "run" for name in names}


def fit_curves(
    runs: Runs,
    law: str | Law = "curve_power",
    *,
    upto: float = 1.0,
    pool: Mapping[str, str] | None = None,
    **options: Any,
) -> Fit:
    """Fit ``law`` jointly to every run's checkpoints up to ``upto``, with a run effect.

    By default the card's ``run_effect`` parameters vary by run (:func:`default_pool`). When
    ``pool`` groups parameters by something else (``{"L0": "model", "A": "model"}``: by model
    size), the run effect is an additive ``run_offset`` per run (:meth:`Law.with_run_offset`,
    spread ``run_offset_sd`` with a HalfNormal(0.05) prior unless ``priors`` says otherwise).

    A schedule-aware law (inputs S1, S2) gets them from each run's schedule or ``lr`` column
    (:mod:`bayescale.data.schedules`). The likelihood defaults to ``normal``: along a run the loss is
    smooth, and where the law misfits it misfits whole runs (an unstable high-learning-rate run),
    which the run effect and the noise scale should absorb. A heavy-tailed likelihood instead
    writes such runs off as outliers: on the misfitting runs Student-t's nu fell below 0.5 and
    the posterior lost its mode.

    Parameters
    ----------
    runs : Runs
        The checkpoint table, from :func:`load_checkpoints`.
    law : str or Law, default "curve_power"
        A catalog name, the path of a ``.toml`` card, or a :class:`~bayescale.laws.card.Law` with input ``step``
        (or ``S1``, ``S2`` for a schedule-aware law).
    upto : float, default 1.0
        What the fit sees of each run: a fraction in (0, 1] of its planned length (``total_steps``, else
        its last recorded step), or a step number > 1. Checkpoints after it are left out.
    pool : Mapping[str, str], optional
        Parameter -> the column it varies by under a population prior. None (default): the card's run
        effect, :func:`default_pool`. Pooling by ``run`` is dropped when the fit sees a single run.
    **options
        Passed on to :func:`bayescale.fit`: ``priors``, ``likelihood`` (here ``"normal"`` unless given),
        ``draws``, ``tune``, ``chains``, ``seed``, ``sampler``, ``extrapolation``, ...

    Returns
    -------
    Fit
        The joint posterior; its ``runs`` are the checkpoints it saw, and its law is ``law`` (``law`` plus
        ``run_offset`` when ``pool`` groups by something other than ``run``).

    Raises
    ------
    BayescaleError
        If no checkpoint lies at or before ``upto``, or the law is on the raw target scale (a card's
        ``scale = "raw"``).
    """
    from bayescale.fitting.pipeline import fit

    options.setdefault("likelihood", "normal")
    law = get_law(law)
    law.require_log_scale("learning-curve forecasts", "their discrepancy along a run is in log-loss")
    frame = runs.frame
    if _needs_schedule(law) and not set(law.inputs) & {"S1", "S2", *MPL_INPUTS} <= set(frame.columns):
        frame = add_schedule_inputs(frame, mpl=_needs_mpl(law))
    seen = frame[frame["step"] <= upto_steps(frame, upto)]
    if len(seen) == 0:
        raise BayescaleError(f"no checkpoints at or before upto={upto}: nothing to fit")
    pool = default_pool(law) if pool is None else dict(pool)
    if seen["run"].nunique() < 2:
        pool = {param: column for param, column in pool.items() if column != "run"}
    elif "run" not in pool.values():
        law = law.with_run_offset()
        pool[RUN_OFFSET] = "run"
        options["priors"] = {f"{RUN_OFFSET}_sd": "HalfNormal(sigma=0.05)", **(options.get("priors") or {})}
    return fit(Runs(seen, list(runs.notes), runs.source), law, pool=pool, **options)


def _points(
    fit: Fit, part: pd.DataFrame, run: str, steps: np.ndarray, schedule: Schedule | None = None
) -> pd.DataFrame:
    """The law's inputs for one run at ``steps``: step, S1/S2 from its schedule, its other inputs and groups."""
    points = pd.DataFrame({"step": steps, "run": run})
    if _needs_schedule(fit.law):
        mpl = _needs_mpl(fit.law)
        areas = (
            schedule_areas(schedule, steps, mpl=mpl) if schedule is not None else run_areas(part, run, steps, mpl=mpl)
        )
        names = ["S1", "S2", *(MPL_INPUTS if mpl else ())]
        points[names] = areas[names].to_numpy()
    for col in (*fit.law.inputs, *(p.column for p in fit.spec.pooled.values())):
        if col not in points.columns:
            if col not in part.columns:
                raise BayescaleError(f"run {run!r} has no {col!r}, which the fit needs to forecast it")
            points[col] = part[col].iloc[0]
    return points


def _run_rows(runs: Runs, run: str) -> pd.DataFrame:
    part = runs.frame[runs.frame["run"] == str(run)]
    if part.empty:
        raise BayescaleError(f"no run {run!r}; runs are {', '.join(runs.frame['run'].unique()[:10])}")
    return part


def run_points(fit: Fit, runs: Runs, run: str, steps) -> pd.DataFrame:
    """Points along one run of ``runs`` at ``steps``, ready for :meth:`Fit.predict` (credible and predictive bands)."""
    return _points(fit, _run_rows(runs, run), str(run), np.asarray(steps, dtype=float))


def _last_step(fit: Fit, part: pd.DataFrame, run: str, wanted: float) -> float:
    """How far a run's curve can be followed: its schedule's end for a schedule-aware law, else ``wanted``."""
    if _needs_schedule(fit.law):
        schedule = run_schedule(part, run)
        if schedule is not None:
            return float(schedule.total_steps)
    return wanted


def forecast_curves(
    fit: Fit,
    runs: Runs,
    *,
    upto: float = 1.0,
    horizon: float | None = None,
    delta: float = 0.01,
    ci_prob: float = defaults.CI_PROB,
    run: str | None = None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Per run: the forecast final loss, P(the loss falls by more than ``delta`` from upto to horizon), the saturation step.

    The horizon defaults to each run's last recorded step. The saturation step is the first step
    after ``upto`` at which the expected gain over the next 1,000 steps falls below ``delta``
    (NaN if that does not happen before 100 times the horizon, or before a schedule-aware run's
    last scheduled step). ``distance`` is how far the horizon lies beyond what the fit saw of the run
    (e-folds of steps; NaN without the extrapolation discrepancy).

    Parameters
    ----------
    fit : Fit
        A learning-curve fit, from :func:`fit_curves`.
    runs : Runs
        The checkpoint table (:func:`load_checkpoints`); every run in it is forecast, seen by the fit or not
        (a run the fit never saw is drawn from the population).
    upto : float, default 1.0
        Where each run's forecast starts: a fraction in (0, 1] of its planned length, or a step > 1; use
        the ``upto`` the fit was given.
    horizon : float, optional
        The step to forecast the final loss at, the same for every run. None (default): each run's last
        recorded step.
    delta : float, default 0.01
        The loss drop (nats) that counts as an improvement, for ``p_improve``, and the expected gain per
        1,000 steps below which a run counts as saturated.
    ci_prob : float, default 0.9
        Probability of the predictive interval (equal-tailed).
    run : str, optional
        Forecast only this run. None (default): every run.
    seed : int, optional
        Seed of the forecast draws. None (default): the fit's seed.

    Returns
    -------
    pandas.DataFrame
        One row per run, with columns ``run``; ``upto_step`` (its last checkpoint at or before ``upto``);
        ``horizon_step``; ``final_median`` (the law's loss at the horizon); ``final_pred_lower``,
        ``final_pred_upper`` (the predictive interval of the loss a run would record there); ``p_improve``
        (P(the law's loss falls by more than ``delta`` from ``upto_step`` to the horizon)); ``saturation_step``;
        ``n_seen`` (checkpoints seen); ``distance``. ``attrs["ci_prob"]`` holds ``ci_prob`` and
        ``attrs["band_includes"]`` what the bands include (the law's and ``p_improve``: ``credible``; a
        run's: ``predictive``), the extrapolation discrepancy along each run among them.

    Raises
    ------
    BayescaleError
        If ``run`` is not in ``runs``, the horizon lies past a schedule-aware run's last scheduled step, or the
        fit's law is on the raw target scale (a card's ``scale = "raw"``).
    """
    ci_prob = check_ci_prob(ci_prob)
    fit.law.require_log_scale("learning-curve forecasts", "their discrepancy along a run is in log-loss")
    frame = runs.frame if run is None else _run_rows(runs, run)
    ends = frame.assign(upto_step=upto_steps(frame, upto)).groupby("run", sort=False)
    seed = fit.settings["seed"] if seed is None else seed
    lo, hi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    rows, invalid, far, finals = [], [], [], []
    for name, part in ends:
        seen = part[part["step"] <= part["upto_step"].iloc[0]]
        upto_step = float(seen["step"].max()) if len(seen) else float(part["upto_step"].iloc[0])
        horizon_step = float(horizon or part["step"].max())
        end = _last_step(fit, part, name, 100 * horizon_step)
        if horizon_step > end:
            raise BayescaleError(f"run {name!r}: horizon {horizon_step:g} is past its schedule's last step {end:g}")
        grid = np.unique(np.concatenate([[upto_step, horizon_step], np.geomspace(upto_step, end, 60)]))
        later = np.minimum(grid + 1000.0, end)
        points = _points(fit, part, name, np.concatenate([grid, later]))
        horizon_at = int(np.searchsorted(grid, horizon_step))  # only the final loss needs new-run draws
        with warnings.catch_warnings():  # the grid reaches past the horizon; only the horizon is the user's point
            warnings.simplefilter("ignore", ExtrapolationWarning)
            mu, y = next(loss_draws(fit, points, seed, new_runs=np.arange(len(points)) == horizon_at))
        at = {s: i for i, s in enumerate(grid)}
        finals.append(points.iloc[[at[horizon_step]]])
        beyond_seen = (
            float(fit.discrepancy.distance(points.iloc[[at[horizon_step]]])[0])
            if fit.discrepancy is not None
            else np.nan
        )
        if fit.discrepancy is not None:
            far.append((beyond_seen, f"run {name} at step {horizon_step:g}"))
        law = np.exp(mu)
        now, after = law[:, : len(grid)], law[:, len(grid) :]
        final = law[:, at[horizon_step]]
        invalid.append((mu[:, at[horizon_step]], f"run {name} at step {horizon_step:g}"))
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.nanmean(now - after, axis=0) * 1000.0 / (later - grid)
        saturated = np.flatnonzero((grid >= upto_step) & (later > grid) & (gain < delta))
        noisy = y[:, at[horizon_step]]
        drop = now[:, at[upto_step]] - final  # NaN for a draw whose law is invalid at either step
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all draws invalid: NaN, and warn_invalid_draws says so
            rows.append(
                {
                    "run": name,
                    "upto_step": upto_step,
                    "horizon_step": horizon_step,
                    "final_median": float(np.nanmedian(final)),
                    "final_pred_lower": float(np.exp(np.nanquantile(noisy, lo))),
                    "final_pred_upper": float(np.exp(np.nanquantile(noisy, hi))),
                    "p_improve": float(np.nanmean(np.where(np.isfinite(drop), drop > delta, np.nan))),
                    "saturation_step": float(grid[saturated[0]]) if len(saturated) else np.nan,
                    "n_seen": int(len(seen)),
                    "distance": beyond_seen,
                }
            )
    draws, labels = zip(*invalid) if invalid else ((), ())
    if draws:
        warn_invalid_draws(np.column_stack(draws), labels)
    supported = fit.discrepancy.supported_distance if fit.discrepancy is not None else np.inf  # else far is empty
    beyond = [(d, label) for d, label in far if d > 2 * supported + 1e-12]
    if beyond:
        d, label = max(beyond)
        warn_user(
            f"the forecast of {label} lies {d:.2f} e-folds beyond the checkpoints the fit saw, more than "
            f"twice what the internal backtests checked ({supported:.2f})"
            + (f", as do {len(beyond) - 1} other runs' forecasts" if len(beyond) > 1 else "")
            + "; its interval rests on the prior for the extrapolation discrepancy",
            ExtrapolationWarning,
        )
    out = pd.DataFrame(rows)
    out.attrs["ci_prob"] = ci_prob
    out.attrs["band_includes"] = band_includes(fit)
    out.attrs["final_points"] = pd.concat(finals, ignore_index=True) if finals else None  # the law's inputs there
    return out


def peak_rate_variants(runs: Runs, run: str, peaks) -> dict[str, Schedule]:
    """``run``'s own schedule ("as run") and the same schedule at each other peak learning rate.

    For a run in progress: what would its final loss be with another peak rate, everything else
    as planned? Feed the result to :func:`compare_schedules`.

    Parameters
    ----------
    runs : Runs
        The checkpoint table (:func:`load_checkpoints`) that holds ``run``, with the schedule columns
        ``peak_lr`` and ``total_steps`` (and optionally ``warmup_steps``, ``decay``,
        ``final_lr_ratio``, ``decay_fraction``), each the same on every row of a run.
    run : str
        The run's name in the ``run`` column (compared as text).
    peaks : iterable of float
        The other peak learning rates, each in (0, 1].

    Returns
    -------
    dict of str to Schedule
        ``"as run"`` -> the run's own :class:`~bayescale.data.schedules.Schedule`, then, in the order
        of ``peaks``, ``"peak {value:g}"`` (such as ``"peak 0.003"``) -> the same schedule with that
        peak learning rate.

    Raises
    ------
    BayescaleError
        If ``run`` is not in ``runs``, the run has no schedule columns, or a peak is not in (0, 1].
    DataError
        If a schedule column of the run is empty or differs between its rows.
    """
    schedule = run_schedule(_run_rows(runs, run), str(run))
    if schedule is None:
        raise BayescaleError(
            f"run {run!r} has no schedule columns (peak_lr, total_steps): give the other peak rates "
            "as whole schedules, e.g. --schedule hot='cosine(peak=3e-3, total=16000, warmup=50)'"
        )
    out = {"as run": schedule}
    for peak in peaks:
        if not (np.isfinite(peak) and 0 < peak <= 1):
            raise BayescaleError(f"peak learning rate {peak!r} must lie in (0, 1]")
        out[f"peak {peak:g}"] = replace(schedule, peak_lr=float(peak))
    return out


def compare_schedules(
    fit: Fit,
    runs: Runs,
    schedules: Mapping[str, Schedule | str],
    *,
    run: str,
    ci_prob: float = defaults.CI_PROB,
    seed: int | None = None,
) -> pd.DataFrame:
    """What if ``run`` had followed another schedule? Its final loss under each, and P(each is best).

    ``run`` names a run in ``runs`` (its size, groups and run effect are kept; a run the fit never
    saw is a new group, drawn from the population). Each schedule's final loss is the law at its
    last step; the same posterior draws serve every schedule, so P(best) compares them draw by draw.
    A peak learning rate outside the fitted runs' range is flagged: the law has no term for a
    learning rate that is too high, so it cannot see the loss rise there.

    Parameters
    ----------
    fit : Fit
        A fit of a schedule-aware law (inputs ``S1``, ``S2``: ``schedule_aware``, ``schedule_aware_n``).
    runs : Runs
        The checkpoint table that holds ``run``.
    schedules : Mapping[str, Schedule or str]
        Label -> schedule: a :class:`~bayescale.data.schedules.Schedule`, or text such as
        ``"cosine(peak=1e-3, total=16000, warmup=50, final=0.1)"``. :func:`peak_rate_variants` builds
        ``run``'s own schedule at other peak learning rates.
    run : str
        The run whose size, groups and run effect the schedules are applied to.
    ci_prob : float, default 0.9
        Probability of the credible and predictive intervals (equal-tailed).
    seed : int, optional
        Seed of the forecast draws. None (default): the fit's seed.

    Returns
    -------
    pandas.DataFrame
        One row per schedule, in the order given, with columns ``schedule`` (the label), ``spec`` (the
        schedule as text), ``final_median``, ``final_lower``, ``final_upper`` (the law's loss at the
        schedule's last step and its credible interval), ``final_pred_lower``, ``final_pred_upper`` (the
        predictive interval of a run's loss there), ``p_best`` (P(this schedule's final loss is the lowest))
        and ``peak_outside_fitted`` (bool). ``attrs["ci_prob"]`` holds ``ci_prob`` and ``attrs["band_includes"]``
        what the bands include (``credible``, ``predictive``).

    Raises
    ------
    BayescaleError
        If the law is not schedule-aware, ``schedules`` is empty or a schedule's text cannot be read, or
        ``run`` is not in ``runs``.
    """
    if not _needs_schedule(fit.law):
        raise BayescaleError(
            f"law {fit.law.name!r} has no schedule inputs (S1, S2); fit a schedule-aware law "
            "(schedule_aware, schedule_aware_n, multi_power) to compare schedules"
        )
    if not schedules:
        raise BayescaleError("give at least one schedule to compare")
    ci_prob = check_ci_prob(ci_prob)
    part = _run_rows(runs, run)
    parsed = {name: s if isinstance(s, Schedule) else Schedule.parse(s) for name, s in schedules.items()}
    seed = fit.settings["seed"] if seed is None else seed
    final_draws, noisy = [], []
    for schedule in parsed.values():
        points = _points(fit, part, str(run), np.array([float(schedule.total_steps)]), schedule)
        mu, y = next(loss_draws(fit, points, seed))
        final_draws.append(np.exp(mu[:, 0]))
        noisy.append(np.exp(y[:, 0]))
    finals = np.array(final_draws)
    best = np.argmin(finals, axis=0)
    lo, hi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    peaks = fit.runs.frame["peak_lr"] if "peak_lr" in fit.runs.frame.columns else None
    rows = []
    for i, (name, schedule) in enumerate(parsed.items()):
        outside = peaks is not None and not (peaks.min() <= schedule.peak_lr <= peaks.max())
        rows.append(
            {
                "schedule": name,
                "spec": str(schedule),
                "final_median": float(np.median(finals[i])),
                "final_lower": float(np.quantile(finals[i], lo)),
                "final_upper": float(np.quantile(finals[i], hi)),
                "final_pred_lower": float(np.quantile(noisy[i], lo)),
                "final_pred_upper": float(np.quantile(noisy[i], hi)),
                "p_best": float(np.mean(best == i)),
                "peak_outside_fitted": bool(outside),
            }
        )
    out = pd.DataFrame(rows)
    if out["peak_outside_fitted"].any():
        assert peaks is not None  # a peak is outside the fitted ones only where there are fitted ones
        warn_user(
            f"schedule(s) {', '.join(out.loc[out['peak_outside_fitted'], 'schedule'])} have a peak learning "
            f"rate outside the fitted runs' {peaks.min():g} .. {peaks.max():g}: the law cannot see the loss "
            "rise at a learning rate that is too high",
            ExtrapolationWarning,
        )
    out.attrs["ci_prob"] = ci_prob
    out.attrs["band_includes"] = band_includes(fit)
    return out
