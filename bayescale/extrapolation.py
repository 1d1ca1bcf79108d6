"""Honest intervals beyond the data: a discrepancy that grows with the distance from the observed runs.

A posterior fitted to the runs is certain of the law's form, so its bands stay narrow far past the
largest run, where the form itself is the main doubt. bayescale adds a model-discrepancy term to
the log-loss of a forecast,

    log L(x) = log f(x; theta) + kappa * d(x) * z,   z ~ Normal(0, 1),

where d(x) is the log-distance of the point outside the box of observed inputs (0 inside it, so
in-sample intervals are untouched; for a law in N and D the box also bounds compute C = 6ND, so a
run beyond the compute frontier counts as extrapolation even inside the ranges of N and D) and
kappa the discrepancy per e-fold of extrapolation. One z per posterior draw is shared by every
point of a sweep (the law bends away from the truth the same way for all larger runs). For
learning curves (a table with ``run`` and ``step``) the distance is along each run instead, the
log of the step over the last step the fit saw of that run (a run the fit never saw is measured
against the box), and each run has its own z: curves bend away each in their own way.

kappa has a prior per kind of extrapolation (sweep or curve), fitted across ten public datasets
(:data:`KAPPA_PRIORS`), and each fit updates it with its own internal leave-future-out splits:
the largest runs by compute (or the later part of every run) held out, fitted by the Laplace
approximation from the fit's own mode, give forecast errors at known distances. Errors that share
a z are jointly Normal (:func:`kappa_log_likelihood`), so forty runs that err together count as
about one observation of kappa, not forty.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from .data import NONNEGATIVE, Runs, point_label
from .errors import BayescaleError, ExtrapolationWarning
from .laplace import choose_centring, laplace_approximation
from .priors import Prior

#: prior of kappa (sd of the log-loss discrepancy per e-fold of extrapolation) per kind of
#: extrapolation: "sweep" (beyond the box of observed runs) and "curve" (further along a run).
#: Fitted across datasets: the hierarchical model of benchmarks/discrepancy_prior.py on the 30
#: leave-future-out splits of 10 public datasets in benchmarks/results/calibration_prior_input.json
#: (Epoch, Gadre, misfitting finals, datablations, BNSL / misfitting curves, Revisiting LM, NMT,
#: vision, OPT), each dataset weighted equally; the predictive for a new dataset (median 0.6% and
#: 1.1% per e-fold, a factor 3.4 and 4.2 either way at one sd). Each fit's internal splits update it.
KAPPA_PRIORS = {"sweep": Prior("LogNormal", mu=-5.098, sigma=1.217),
                "curve": Prior("LogNormal", mu=-4.51, sigma=1.442)}
#: internal splits: the share of the runs (largest by compute) held out in each
SPLITS = (0.15, 0.3)
#: internal splits of learning curves: checkpoints past this fraction of each run's last seen step are held out
CURVE_SPLITS = (0.5, 0.75)
#: where kappa's posterior is evaluated: log-spaced, from far below any measured discrepancy to 100% per e-fold
KAPPA_GRID = np.geomspace(1e-5, 1.0, 801)
_INTERNAL_DRAWS = 1000


def distance_axes(inputs) -> list[str]:
    """The axes extrapolation is measured along: the law's inputs, plus compute C = 6ND for a law in N and D.

    A run at more compute than any seen can lie inside the observed ranges of N and of D (an
    IsoFLOP grid covers both at lower compute), yet it is beyond the data where it matters most.
    """
    axes = list(inputs)
    if {"N", "D"} <= set(axes) and "C" not in axes:
        axes.append("C")
    return axes


def axis_values(table: pd.DataFrame, name: str) -> np.ndarray:
    if name == "C" and "C" not in table.columns:
        return 6.0 * table["N"].to_numpy(dtype=float) * table["D"].to_numpy(dtype=float)
    return table[name].to_numpy(dtype=float)


def observed_ranges(runs: Runs, inputs) -> dict[str, tuple[float, float]]:
    frame = runs.frame if isinstance(runs, Runs) else runs
    return {name: (float(np.min(values)), float(np.max(values)))
            for name in distance_axes(inputs) for values in [axis_values(frame, name)]}


def _log_scale(name: str, x):
    """Natural log; log(1 + x) for an input that may be zero (S2)."""
    return np.log1p(x) if name in NONNEGATIVE else np.log(x)


def distance(table: pd.DataFrame, ranges: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """Euclidean distance in natural-log units outside the box of observed inputs (0 inside it).

    ``ranges`` come from :func:`observed_ranges`: for a law in N and D they include compute C = 6ND.
    """
    total = np.zeros(len(table))
    for name, (low, high) in ranges.items():
        x = _log_scale(name, axis_values(table, name))
        total += (np.maximum(0.0, x - _log_scale(name, high)) ** 2
                  + np.maximum(0.0, _log_scale(name, low) - x) ** 2)
    return np.sqrt(total)


def is_curves(frame: pd.DataFrame) -> bool:
    """A checkpoint table: extrapolation is measured along each run."""
    return {"run", "step"} <= set(frame.columns)


def last_seen_steps(frame: pd.DataFrame) -> dict[str, float]:
    return {str(k): float(v) for k, v in frame.groupby("run")["step"].max().items()}


def run_distance(table: pd.DataFrame, last_seen: Mapping[str, float], ranges) -> np.ndarray:
    """log(step / the run's last seen step), 0 before it; the box distance for a run never seen."""
    last = table["run"].astype(str).map(last_seen).to_numpy(dtype=float)
    along = np.maximum(0.0, np.log(table["step"].to_numpy(dtype=float) / last))
    return np.where(np.isnan(last), distance(table, ranges), along)


@dataclass
class Discrepancy:
    """The extrapolation discrepancy of one fit: observed box, kappa draws, and its calibration."""

    ranges: dict[str, tuple[float, float]]
    kappa: np.ndarray             # posterior draws, flat
    calibration: pd.DataFrame     # internal forecast errors: split, shares_with (run or "all"), distance, error, predictive scale
    supported_distance: float     # the largest distance the internal splits reached
    last_seen: dict[str, float] | None = None  # learning curves: each run's last step seen by the fit

    @property
    def kind(self) -> str:
        return "curve" if self.last_seen is not None else "sweep"

    def to_settings(self) -> dict:
        return {"method": "calibrated", "ranges": {k: list(v) for k, v in self.ranges.items()},
                "supported_distance": self.supported_distance, "kind": self.kind,
                "prior": KAPPA_PRIORS[self.kind].to_dict(),
                "calibration": self.calibration.to_dict(orient="list"),
                **({"last_seen": self.last_seen} if self.last_seen is not None else {})}

    @classmethod
    def from_settings(cls, settings: Mapping, kappa: np.ndarray) -> "Discrepancy":
        return cls({k: tuple(v) for k, v in settings["ranges"].items()}, kappa,
                   pd.DataFrame(settings["calibration"]), float(settings["supported_distance"]),
                   settings.get("last_seen"))

    def distance(self, table: pd.DataFrame) -> np.ndarray:
        """How far each point lies beyond what the fit saw (e-folds)."""
        if self.last_seen is not None and is_curves(table):
            return run_distance(table, self.last_seen, self.ranges)
        return distance(table, self.ranges)

    def shared_errors(self, table: pd.DataFrame, n_draws: int, seed: int) -> np.ndarray:
        """Standard-normal z per draw (rows) and point (columns) that :meth:`widen` scales by kappa * distance.

        One z per draw for a sweep: the law bends away from the truth the same way for all larger
        runs. Learning curves bend away each in their own way: one z per draw and run, from a
        stream keyed by the run's name, so a run's band is the same whichever other runs are
        forecast with it, and a forecast split into blocks keeps each run's z.
        """
        if self.last_seen is not None and is_curves(table):
            runs, codes = np.unique(table["run"].astype(str).to_numpy(), return_inverse=True)
            keys = pd.util.hash_pandas_object(pd.Series(runs), index=False).to_numpy()
            z = np.column_stack([np.random.default_rng([seed, 1, int(key)]).standard_normal(n_draws) for key in keys])
            return z[:, codes]
        return np.random.default_rng([seed, 1]).standard_normal((n_draws, 1))

    def widen(self, log_law: np.ndarray, table: pd.DataFrame, seed: int) -> np.ndarray:
        """Add the discrepancy to log-law draws (rows) at the points (columns); ``seed`` keys its z (:meth:`shared_errors`)."""
        d = self.distance(table)
        if np.any(d > 2 * self.supported_distance + 1e-12):
            far = int(np.argmax(d))
            row = table.iloc[far]
            names = ("run", "step") if is_curves(table) else [k for k in self.ranges if k in table.columns]
            where = point_label(row, names)
            warnings.warn(f"the forecast at {where} lies {d[far]:.2f} e-folds beyond the observed runs, more than "
                          f"twice what the internal backtests checked ({self.supported_distance:.2f}); its interval "
                          "rests on the prior for the extrapolation discrepancy", ExtrapolationWarning, stacklevel=4)
        z = self.shared_errors(table, log_law.shape[0], seed)
        return log_law + self.kappa[:, None] * d[None, :] * z


def _scale_order(frame: pd.DataFrame, inputs) -> np.ndarray:
    """Runs from small to large: by compute when known, else by the sum of log inputs."""
    if "C" in frame.columns:
        return frame["C"].to_numpy(dtype=float)
    return np.sum([_log_scale(n, frame[n].to_numpy(dtype=float)) for n in inputs], axis=0)


def _internal_forecast(spec_factory, train: Runs, heldout: Runs, law, likelihood, rng,
                       start_values=None) -> tuple[np.ndarray, np.ndarray]:
    """Median error and predictive scale of a Laplace-approximation forecast of ``heldout`` from ``train``.

    ``start_values`` (the full fit's mode, as :meth:`ModelSpec.named_values`) is the first start of
    the mode search: the fit on fewer runs has its mode nearby.
    """
    spec = spec_factory(train)
    starts = () if start_values is None else (spec.unconstrain(start_values),)
    laplace = laplace_approximation(spec, rng, n_random_starts=4, starts=starts)
    chosen = choose_centring(spec, laplace)  # as the fit does: groups the data pin down, centred
    if chosen.free_names != spec.free_names:
        start = chosen.unconstrain(spec.named_values(laplace.center))
        spec, laplace = chosen, laplace_approximation(chosen, rng, n_random_starts=0, starts=(start,))
    u = laplace.center + rng.standard_normal((_INTERNAL_DRAWS, len(laplace.center))) @ laplace.scale.T
    draws = [spec.constrain(row)[0] for row in u]
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
    env = {**{n: heldout[n][None, :] for n in law.inputs}, **params}
    with np.errstate(all="ignore"):
        mu = np.log(law.formula.numpy(env))
    noise = {n: np.array([d[n] for d in draws]) for n in spec.noise_names}
    y = mu + spec.noise_at(noise, heldout)["sigma"] * likelihood.standard_noise(rng, noise, mu.shape)
    lo, med, hi = np.nanquantile(y, [0.1587, 0.5, 0.8413], axis=0)
    return np.log(heldout["loss"]) - med, (hi - lo) / 2


def _splits(frame: pd.DataFrame, inputs):
    """Internal leave-future-out splits: (label, held-out mask, distance of the held-out points from the rest)."""
    if is_curves(frame):
        last = frame.groupby("run")["step"].transform("max").to_numpy(dtype=float)
        for share in CURVE_SPLITS:
            held = frame["step"].to_numpy(dtype=float) > share * last
            yield share, held, lambda heldout, train: run_distance(
                heldout.frame, last_seen_steps(train.frame), observed_ranges(train, inputs))
        return
    order = _scale_order(frame, inputs)
    for share in SPLITS:
        held = order >= np.quantile(order, 1 - share)
        yield share, held, lambda heldout, train: distance(heldout.frame, observed_ranges(train, inputs))


def kappa_log_likelihood(error, scale, distance, shared, grid: np.ndarray = KAPPA_GRID) -> np.ndarray:
    """log p(errors | kappa) on :data:`KAPPA_GRID`; points with the same ``shared`` label share one discrepancy.

    Such points err by ``kappa * d_i * z + scale_i * eps_i`` with one z ~ Normal(0, 1): the law bends
    away from the truth the same way for all of them (every run of a sweep; the checkpoints of one
    learning curve), as :meth:`Discrepancy.widen` assumes. They are jointly Normal with covariance
    diag(scale^2) + kappa^2 d d', so forty points that err together are about one observation of
    kappa, not forty.
    """
    error, scale, distance = (np.asarray(x, float) for x in (error, scale, distance))
    shared = np.asarray(shared)
    k2 = grid[:, None] ** 2
    total = np.zeros(len(grid))
    for label in np.unique(shared):
        at = shared == label
        e, s2, d = error[at], scale[at] ** 2, distance[at]
        a, b = np.sum(d * d / s2), np.sum(e * d / s2)
        quad = np.sum(e * e / s2) - k2[:, 0] * b ** 2 / (1 + k2[:, 0] * a)
        total += -0.5 * (len(e) * np.log(2 * np.pi) + np.sum(np.log(s2)) + np.log1p(k2[:, 0] * a) + quad)
    return total


def draw_kappa(log_posterior: np.ndarray, n_draws: int, rng: np.random.Generator,
               grid: np.ndarray = KAPPA_GRID) -> np.ndarray:
    """Draws from a posterior given on ``grid`` (log-spaced; spread uniformly in log within each cell)."""
    weights = np.exp(log_posterior - log_posterior.max())
    step = np.log(grid[1] / grid[0])
    cells = rng.choice(len(grid), size=n_draws, p=weights / weights.sum())
    return grid[cells] * np.exp(rng.uniform(-step / 2, step / 2, n_draws))


def calibrate(runs: Runs, law, likelihood, spec_factory, n_draws: int, seed: int,
              start_values=None) -> Discrepancy | None:
    """Posterior draws of kappa from internal leave-future-out splits of ``runs`` (None if too few runs).

    ``start_values``: the fit's mode (:meth:`ModelSpec.named_values`), where each internal mode search starts.
    """
    rng = np.random.default_rng(seed)
    frame = runs.frame.reset_index(drop=True)
    rows = []
    for share, held, distance_of in _splits(frame, law.inputs):
        if held.all() or not held.any():
            continue
        train = Runs(frame[~held].reset_index(drop=True), source=runs.source)
        heldout = Runs(frame[held].reset_index(drop=True), source=runs.source)
        try:
            error, scale = _internal_forecast(spec_factory, train, heldout, law, likelihood, rng, start_values)
        except BayescaleError:
            continue  # too few runs left to fit: this split says nothing
        d = distance_of(heldout, train)
        shared = heldout.frame["run"].astype(str) if is_curves(frame) else np.full(len(d), "all")
        rows += [{"split": share, "shares_with": gi, "distance": di, "error": ei, "scale": si}
                 for gi, di, ei, si in zip(shared, d, error, scale)]
    if not rows:
        return None  # no internal split could be fitted: nothing to calibrate on
    table = pd.DataFrame(rows, columns=["split", "shares_with", "distance", "error", "scale"])
    table = table[np.isfinite(table["error"]) & np.isfinite(table["scale"])]
    outside = table[table["distance"] > 0]
    if len(outside) < 2:
        return None
    kind = "curve" if is_curves(frame) else "sweep"
    # the grid is even in log kappa: the prior's density per unit of log kappa is p(kappa) * kappa
    log_posterior = KAPPA_PRIORS[kind].logpdf(KAPPA_GRID) + np.log(KAPPA_GRID) + kappa_log_likelihood(
        outside["error"], outside["scale"], outside["distance"],
        outside["split"].astype(str) + "/" + outside["shares_with"].astype(str))
    return Discrepancy(observed_ranges(runs, law.inputs), draw_kappa(log_posterior, n_draws, rng),
                       table.reset_index(drop=True), float(outside["distance"].max()),
                       last_seen_steps(frame) if is_curves(frame) else None)
