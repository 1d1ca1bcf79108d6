"""Honest intervals beyond the data: a discrepancy that grows with the distance from the observed runs.

A posterior fitted to the runs is certain of the law's form, so its bands stay narrow far past the
largest run, where the form itself is the main doubt. bayescale adds a model-discrepancy term to
the log-loss of a forecast,

    log L(x) = log f(x; theta) + d(x) * (delta + kappa * z),   z ~ Normal(0, 1),

where d(x) is the log-distance of the point outside the box of observed inputs (0 inside it, so
in-sample intervals are untouched; for a law in N and D the box also bounds compute C = 6ND and
tokens per parameter D/N, so a run beyond the compute frontier, or more over-trained than any seen,
counts as extrapolation even inside the ranges of N and D) and
kappa the discrepancy per e-fold of extrapolation, delta the drift per e-fold (``discrepancy_bias``:
where the internal splits err the same way, the forecasts' medians move that way; where they do
not, kappa grows instead). One z per posterior draw is shared by every point of a sweep (the law
bends away from the truth the same way for all larger runs). A sweep learns its drift only on request
(``extrapolation="calibrated-drift"``; otherwise delta = 0); the drift's prior
(:data:`SWEEP_DRIFT_PRIOR`) is fitted across the benchmark's sweeps: narrow, since on some of them
the internal splits drift one way and the runs beyond the data the other.

For learning curves (a table with ``run`` and ``step``) the distance is along each run instead, the
log of the step over the last step the fit saw of that run (a run the fit never saw is measured
against the box), and the discrepancy has three parts:

    log L(run, step) = log f + d * (bias + m_run * kappa * z_run),   z_run ~ Normal(0, 1),

a ``bias`` per e-fold shared by every run (the law describes the later part of every run the same
wrong way: on the misfitting runs it overestimates the loss after the seen part by about 2% per
e-fold, at every cut), each run's own bend ``kappa * z_run``, and ``m_run`` = :data:`OUTLIER_SCALE`
for a share ``outliers`` of the runs (1 for the rest): a few runs the law misfits badly must not
widen the bands of all the others.

Each fit learns these from its own internal leave-future-out splits: the largest runs by compute
(or the later part of every run) held out, fitted by the Laplace approximation from the fit's own
mode, give forecast errors at known distances. Errors that share a z are jointly Normal
(:func:`kappa_log_likelihood`, :func:`curve_log_likelihood`), so forty runs of a sweep that err
together count as about one observation of kappa, not forty. kappa's prior per kind of
extrapolation (sweep or curve) is fitted across ten public datasets (:data:`KAPPA_PRIORS`). An
internal split whose forecasts are an outlier among the splits' (a failed approximation) is checked
against a short sampled fit and mended or dropped (:mod:`bayescale.inference.internal_splits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayescale.data.runs import Runs, is_curves, point_label
from bayescale.errors import BayescaleError, ExtrapolationWarning, warn_user
from bayescale.inference.distance import (
    decision_ranges,
    distance,
    last_seen_steps,
    log_scale,
    observed_ranges,
    run_distance,
)
from bayescale.inference.internal_splits import check_outliers, internal_forecast, short_sample, split_words
from bayescale.laws.priors import Prior

#: prior of kappa (sd of the log-loss discrepancy per e-fold of extrapolation) per kind of
#: extrapolation: "sweep" (beyond the box of observed runs) and "curve" (further along a run).
#: Fitted across datasets: the hierarchical model of benchmarks/discrepancy_prior.py on the 30
#: leave-future-out splits of 10 public datasets in benchmarks/results/calibration_prior_input.json
#: (Epoch, Gadre, misfitting finals, datablations, BNSL / misfitting curves, Revisiting LM, NMT,
#: vision, OPT; refitted on 2026-11-30 (commit 8d7fcf8), once the internal splits' mode search no longer stopped at its
#: start), each dataset weighted equally; the predictive for a new dataset (median 0.7% and 0.9% per
#: e-fold, a factor 3.4 and 5.9 either way at one sd). Each fit's internal splits update it.
KAPPA_PRIORS = {
    "sweep": Prior("LogNormal", mu=-4.917, sigma=1.222),
    "curve": Prior("LogNormal", mu=-4.759, sigma=1.772),
}
#: internal splits: the share of the runs (largest by compute) held out in each
SPLITS = (0.15, 0.3)
#: internal splits of learning curves: checkpoints past this fraction of each run's last seen step are held out
CURVE_SPLITS = (0.5, 0.75)
#: internal splits of learning curves train on at least this share of each run's seen span (in log steps)
MIN_TRAIN_SPAN = 0.5
#: where kappa's posterior is evaluated: log-spaced, from far below any measured discrepancy to 100% per e-fold
KAPPA_GRID = np.geomspace(1e-5, 1.0, 801)
#: learning curves: prior of the bias shared by every run (log-loss per e-fold along the runs). Its scale is
#: the one of 0.01, 0.02 and 0.05 that the internal splits of the benchmark's learning-curve datasets favour;
#: with OUTLIER_SCALE it forecasts their real held-out checkpoints within 2 log units of the best of 20
#: settings (benchmarks/curve_discrepancy.py, results/curve_discrepancy.json)
CURVE_BIAS_PRIOR = Prior("Normal", mu=0.0, sigma=0.01)
#: learning curves: an outlying run bends this many times more than the others ...
OUTLIER_SCALE = 5.0
#: ... and the shares of outlying runs considered, equally likely a priori
OUTLIER_SHARES = np.array([0.0, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5])
#: the grids of the learning-curve discrepancy's posterior: bias (dense near 0, 5% steps, out to +-0.1 per
#: e-fold) and kappa (as KAPPA_GRID, coarser: the posterior has two more axes)
BIAS_GRID = 0.001 * np.sinh(np.linspace(-5.3, 5.3, 213))
CURVE_KAPPA_GRID = np.geomspace(1e-5, 1.0, 161)
#: kappa's grid per kind of extrapolation in the joint (bias or drift, kappa) posteriors
KAPPA_GRIDS = {"sweep": KAPPA_GRID, "curve": CURVE_KAPPA_GRID}
#: sweeps: prior of the drift per e-fold beyond the runs (log-loss; stored as ``discrepancy_bias``), the bias
#: every run beyond the data shares. Fitted across datasets (benchmarks/discrepancy_prior.py on the sweep
#: splits of calibration_prior_input.json, 2026-12-07): the drift's mean across datasets is not told from 0
#: (90% -0.006 to 0.006), and its sd is the one the held-out errors favour (type-II maximum likelihood; they
#: say little about it: within a nat from 1e-4 to 0.003, and drifts of 0.01 per e-fold and more fare worse,
#: since on Epoch's N splits and Gadre the internal splits drift one way and the held-out runs the other)
#: The drift is learned only on request (``bs.fit(..., extrapolation="calibrated-drift")``): on the benchmark's 12
#: sweep splits (2026-12-07, commit 90170f2) it raised pooled 90% coverage from 0.873 to 0.882 but lowered 80% from
#: 0.694 to 0.653 and 50% from 0.330 to 0.317, with the same interval score (0.212 -> 0.211) and median error (0.014)
SWEEP_DRIFT_PRIOR = Prior("Normal", mu=0.0, sigma=0.0018)
#: a sweep's grid of shares of outlying runs: none (one discrepancy is shared by all its runs)
NO_OUTLIERS = np.zeros(1)
#: the decision variable of the compute-optimal allocation's calibration cells (log N*; D* follows from the budget)
ALLOCATION = "N"
#: the posterior variables a calibrated fit stores (bias: the drift of a sweep, the shared bias of learning
#: curves; outliers for learning curves only; decision_tau and allocation_tau, the discrepancies of the best
#: values and of the compute-optimal size, for sweeps: :mod:`bayescale.inference.decision_discrepancy`)
DRAW_NAMES = ("kappa", "discrepancy_bias", "discrepancy_outliers", "decision_tau", "allocation_tau", "allocation_omega")


@dataclass
class Discrepancy:
    """The extrapolation discrepancy of one fit: observed box, posterior draws, and its calibration."""

    ranges: dict[str, tuple[float, float]]
    kappa: np.ndarray  # posterior draws, flat
    calibration: (
        pd.DataFrame
    )  # internal forecast errors: split, shares_with (run or "all"), distance, error, predictive scale
    supported_distance: float  # the largest distance the internal splits reached
    last_seen: dict[str, float] | None = None  # learning curves: each run's last step seen by the fit
    bias: np.ndarray | None = None  # draws of the bias every run shares (per e-fold): a sweep's drift, or the curves'
    outliers: np.ndarray | None = None  # learning curves: draws of the share of runs that bend OUTLIER_SCALE times more
    checks: list[dict] = field(default_factory=list)  # internal splits found outlying, checked and mended or dropped
    tau: np.ndarray | None = None  # draws of the best values' discrepancy per e-fold (a sweep; decision_discrepancy)
    decision: dict | None = None  # its calibration: the internal cells' forecast and observed optima, its prior
    allocation_tau: np.ndarray | None = None  # draws of the compute-optimal size's discrepancy per e-fold (plan)
    allocation_omega: np.ndarray | None = None  # draws of its sd inside the runs: the law's N* against observed optima

    @property
    def kind(self) -> str:
        return "curve" if self.last_seen is not None else "sweep"

    def to_settings(self) -> dict:
        curve = (
            {"last_seen": self.last_seen, "bias_prior": CURVE_BIAS_PRIOR.to_dict(), "outlier_scale": OUTLIER_SCALE}
            if self.kind == "curve"
            else {"bias_prior": SWEEP_DRIFT_PRIOR.to_dict()}
            if self.bias is not None
            else {}
        )
        return {
            "method": "calibrated",
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "supported_distance": self.supported_distance,
            "kind": self.kind,
            "prior": KAPPA_PRIORS[self.kind].to_dict(),
            "calibration": self.calibration.to_dict(orient="list"),
            "checks": self.checks,
            **({"decision": self.decision} if self.decision is not None else {}),
            **curve,
        }

    def posterior_draws(self) -> dict[str, np.ndarray]:
        """The draws a fit stores in its posterior group, by name (:data:`DRAW_NAMES`)."""
        values = (self.kappa, self.bias, self.outliers, self.tau, self.allocation_tau, self.allocation_omega)
        return {name: v for name, v in zip(DRAW_NAMES, values) if v is not None}

    @classmethod
    def from_settings(cls, settings: Mapping, draws: Mapping[str, np.ndarray]) -> Discrepancy:
        """Rebuild from a fit's settings and its stored draws (a fit saved before the bias (or a sweep's drift), the
        outliers, the checks or the decision discrepancy existed has none)."""
        return cls(
            {k: tuple(v) for k, v in settings["ranges"].items()},
            draws["kappa"],
            pd.DataFrame(settings["calibration"]),
            float(settings["supported_distance"]),
            settings.get("last_seen"),
            draws.get("discrepancy_bias"),
            draws.get("discrepancy_outliers"),
            list(settings.get("checks", [])),
            draws.get("decision_tau"),
            settings.get("decision"),
            draws.get("allocation_tau"),
            draws.get("allocation_omega"),
        )

    def describe(self) -> str:
        """What the discrepancy is and what the fit learned of it, in words (CLI and reports)."""
        n = int((self.calibration["distance"] > 0).sum()) if len(self.calibration) else 0
        beyond = "along each run, past its last checkpoint seen" if self.kind == "curve" else "beyond the fitted runs"
        text = (
            f"kappa (median {np.median(self.kappa):.3g}) is the extrapolation discrepancy: the sd of log-loss per "
            f"e-fold {beyond}, calibrated on {n} internal leave-future-out forecasts reaching "
            f"{self.supported_distance:.2f} e-folds."
        )
        if self.bias is not None and self.kind == "sweep":
            low, mid, high = 100 * np.quantile(self.bias, [0.05, 0.5, 0.95])
            text += (
                f" Beyond the runs the law drifts by {mid:+.2f}% per e-fold (discrepancy_bias, 90% {low:+.2f}% to "
                f"{high:+.2f}%): the forecasts' medians move by it, their bands carry its spread and kappa's."
            )
        elif self.bias is not None:
            assert self.outliers is not None  # drawn together with the bias (draw_curve_discrepancy)
            low, mid, high = 100 * np.quantile(self.bias, [0.05, 0.5, 0.95])
            text += (
                f" Every run shares a bias of {mid:+.2f}% per e-fold (discrepancy_bias, 90% {low:+.2f}% to "
                f"{high:+.2f}%), which the forecasts include; a share of about {np.mean(self.outliers):.0%} of the "
                f"runs bend {OUTLIER_SCALE:g} times more (discrepancy_outliers)."
            )
        for check in self.checks:
            text += (
                f" The internal split holding out {split_words(check['split'])} was an outlier ({check['why']}): "
                + {
                    "mended": "a short sampled fit of it replaced its Laplace forecasts.",
                    "kept": "a short sampled fit of it agreed, and gave its forecasts.",
                    "dropped": "its sampled check failed, so it was left out.",
                }[check["action"]]
            )
        for draws, label, what, tunable in (
            (self.tau, "decision_tau", "The best value of a tunable input", None),
            (self.allocation_tau, "allocation_tau", "The compute-optimal size N* of a budget", ALLOCATION),
        ):
            if draws is None or self.decision is None:
                continue
            low, mid, high = np.quantile(draws, [0.05, 0.5, 0.95])
            kinds = np.asarray(self.decision["cells"]["tunable"], dtype=str)
            n_cells = int(np.sum(kinds == tunable if tunable else kinds != ALLOCATION))
            text += (
                f" {what} errs by tau (median {mid:.3g}, 90% {low:.3g} to {high:.3g}) in log per e-fold beyond the "
                f"runs ({label}), "
                + (
                    f"calibrated on {n_cells} internal cells."
                    if n_cells
                    else "from its prior alone (no internal cell tried 3 values)."
                )
            )
        if self.allocation_omega is not None:
            low, mid, high = np.quantile(self.allocation_omega, [0.05, 0.5, 0.95])
            text += (
                f" Inside the runs the law's N* misses the observed IsoFLOP optima by omega (median {mid:.3g}, 90% "
                f"{low:.3g} to {high:.3g}) in log (allocation_omega), which every N* band carries."
            )
        return text + " Forecasts inside the data are unaffected; beyond it the intervals widen with distance."

    def distance(self, table: pd.DataFrame) -> np.ndarray:
        """How far each point lies beyond what the fit saw (e-folds)."""
        if self.last_seen is not None and is_curves(table):
            return run_distance(table, self.last_seen, self.ranges)
        return distance(table, self.ranges)

    def decision_distance(self, table: pd.DataFrame) -> np.ndarray:
        """How far each point lies beyond the runs, the tunable inputs left out: the best values' distance."""
        return distance(table, decision_ranges(self.ranges))

    def bends(self, table: pd.DataFrame, n_draws: int, seed: int) -> np.ndarray:
        """The log-loss discrepancy per e-fold for each draw (rows) and point (columns, or one column that broadcasts), which :meth:`widen` scales by distance.

        A sweep: ``drift + kappa * z`` with one z per draw, shared by all its runs (the law bends away
        from the truth the same way for all larger runs). Learning curves bend away each in their own
        way: ``bias + m * kappa * z`` with one z (and one outlier pick m) per draw and run, from a
        stream keyed by the run's name, so a run's band is the same whichever other runs are
        forecast with it, and a forecast split into blocks keeps each run's bend.
        """
        if self.last_seen is not None and is_curves(table):
            runs, codes = np.unique(table["run"].astype(str).to_numpy(), return_inverse=True)
            keys = pd.util.hash_pandas_object(pd.Series(runs), index=False).to_numpy()
            streams = [np.random.default_rng([seed, 1, int(key)]) for key in keys]
            z = np.column_stack([rng.standard_normal(n_draws) for rng in streams])
            bend = self.kappa[:, None] * z
            if self.outliers is not None:
                picked = np.column_stack([rng.random(n_draws) for rng in streams]) < self.outliers[:, None]
                bend = np.where(picked, OUTLIER_SCALE * bend, bend)
            if self.bias is not None:
                bend = self.bias[:, None] + bend
            return bend if len(runs) == 1 else bend[:, codes]  # one run: a column that broadcasts
        bend = self.kappa[:, None] * np.random.default_rng([seed, 1]).standard_normal((n_draws, 1))
        return bend if self.bias is None else self.bias[:, None] + bend  # a sweep's drift, shared by every point

    def widen(self, log_law: np.ndarray, table: pd.DataFrame, seed: int) -> np.ndarray:
        """Add the discrepancy to log-law draws (rows) at the points (columns); ``seed`` keys its streams (:meth:`bends`)."""
        d = self.distance(table)
        if np.any(d > 2 * self.supported_distance + 1e-12):
            far = int(np.argmax(d))
            row = table.iloc[far]
            names = ("run", "step") if is_curves(table) else [k for k in self.ranges if k in table.columns]
            where = point_label(row, names)
            warn_user(
                f"the forecast at {where} lies {d[far]:.2f} e-folds beyond the observed runs, more than "
                f"twice what the internal backtests checked ({self.supported_distance:.2f}); its interval "
                "rests on the prior for the extrapolation discrepancy",
                ExtrapolationWarning,
            )
        widened = d[None, :] * self.bends(table, log_law.shape[0], seed)
        widened += log_law  # in place: one array of draws x points fewer
        return widened


def _scale_order(frame: pd.DataFrame, inputs) -> np.ndarray:
    """Runs from small to large: by compute when known, else by the sum of log inputs."""
    if "C" in frame.columns:
        return frame["C"].to_numpy(dtype=float)
    return np.sum([log_scale(n, frame[n].to_numpy(dtype=float)) for n in inputs], axis=0)


def _splits(frame: pd.DataFrame, inputs):
    """Internal leave-future-out splits: (label, held-out mask, distance of the held-out points from the rest).

    Learning curves: each run's checkpoints past a share (:data:`CURVE_SPLITS`) of its last seen
    step, but never so many that the run trains on less than :data:`MIN_TRAIN_SPAN` of its seen
    span in log steps. After a schedule's warm-up rule the seen part of a run can be short (20% to
    50% of the run); a forecast from its first one or two checkpoints then errs by 5-20% where the
    real forecast, from the whole seen part, errs by 2% (misfitting runs, benchmarks/README.md).
    """
    if is_curves(frame):
        step = frame["step"].to_numpy(dtype=float)
        first, last = (frame.groupby("run")["step"].transform(f).to_numpy(dtype=float) for f in ("min", "max"))
        for share in CURVE_SPLITS:
            held = step > np.maximum(share, (first / last) ** (1 - MIN_TRAIN_SPAN)) * last
            yield (
                share,
                held,
                lambda heldout, train: run_distance(
                    heldout.frame, last_seen_steps(train.frame), observed_ranges(train, inputs)
                ),
            )
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
        quad = np.sum(e * e / s2) - k2[:, 0] * b**2 / (1 + k2[:, 0] * a)
        total += -0.5 * (len(e) * np.log(2 * np.pi) + np.sum(np.log(s2)) + np.log1p(k2[:, 0] * a) + quad)
    return total


def curve_log_likelihood(
    error,
    scale,
    distance,
    shared,
    bias: np.ndarray = BIAS_GRID,
    kappa: np.ndarray = CURVE_KAPPA_GRID,
    shares: np.ndarray = OUTLIER_SHARES,
    outlier_scale: float = OUTLIER_SCALE,
) -> np.ndarray:
    """log p(errors | bias, kappa, share of outlying runs) of learning curves, on the grids (axes in that order).

    Points with the same ``shared`` label (one run in one internal split) err by
    ``d_i * (bias + m * kappa * z) + scale_i * eps_i`` with one z ~ Normal(0, 1) for them and m =
    ``outlier_scale`` with probability ``share`` (else 1): per label, a two-part mixture of the
    joint Normal of :func:`kappa_log_likelihood`, with the bias taken off the errors.
    """
    error, scale, distance = (np.asarray(x, float) for x in (error, scale, distance))
    _, codes = np.unique(np.asarray(shared), return_inverse=True)
    s2 = scale**2

    def per_label(x):
        return np.bincount(codes, weights=x)

    a, b, c = per_label(distance**2 / s2), per_label(error * distance / s2), per_label(error**2 / s2)
    const = per_label(np.log(2 * np.pi * s2))
    k2 = (kappa[:, None] * np.array([1.0, outlier_scale])) ** 2  # (kappa, part)
    with np.errstate(divide="ignore"):
        log_part = np.log(np.column_stack([1 - shares, shares]))  # (share, part)
    total = np.zeros((len(bias), len(kappa), len(shares)))
    for start in range(0, len(a), 16):  # labels in blocks: (label, bias, kappa, part) arrays stay small
        ga, gb, gc, gk = (x[start : start + 16, None, None, None] for x in (a, b, c, const))
        off = gb - bias[None, :, None, None] * ga  # e'd / s^2 with the bias taken off
        quad = gc - 2 * bias[None, :, None, None] * gb + bias[None, :, None, None] ** 2 * ga
        den = 1 + k2[None, None] * ga
        ll = -0.5 * (gk + np.log(den) + quad - k2[None, None] * off**2 / den)  # (label, bias, kappa, part)
        mixed = np.logaddexp(ll[..., None, 0] + log_part[:, 0], ll[..., None, 1] + log_part[:, 1])
        total += mixed.sum(axis=0)
    return total


def curve_log_prior(
    bias_prior: Prior | None = CURVE_BIAS_PRIOR, n_shares: int = len(OUTLIER_SHARES), kind: str = "curve"
) -> np.ndarray:
    """log prior mass of each cell of the grids (bias, kappa, share; shares equally likely).

    ``bias_prior=None``: no bias term, a bias axis of one cell at 0 (as ``bias=np.zeros(1)`` in
    :func:`curve_log_likelihood`). ``kind="sweep"``: kappa's sweep prior on :data:`KAPPA_GRID` (the
    drift of a sweep is the bias, on :data:`BIAS_GRID`, with ``n_shares=1``: no outlying runs).
    """
    bias = np.zeros(1) if bias_prior is None else bias_prior.logpdf(BIAS_GRID) + np.log(np.diff(_cell_edges(BIAS_GRID)))
    grid = KAPPA_GRIDS[kind]
    kappa = KAPPA_PRIORS[kind].logpdf(grid) + np.log(grid)  # the grid is even in log kappa
    return bias[:, None, None] + kappa[None, :, None] - np.log(n_shares)


def _cell_edges(grid: np.ndarray) -> np.ndarray:
    """Edges of the cell around each grid point: midway to its neighbours."""
    mid = (grid[1:] + grid[:-1]) / 2
    return np.concatenate([[2 * grid[0] - mid[0]], mid, [2 * grid[-1] - mid[-1]]])


def _spread(grid: np.ndarray, cells: np.ndarray, rng: np.random.Generator, log: bool = False) -> np.ndarray:
    """Draws spread uniformly over the chosen cells of ``grid`` (in log for a log-spaced grid)."""
    edges = _cell_edges(np.log(grid) if log else grid)
    values = rng.uniform(edges[cells], edges[cells + 1])
    return np.exp(values) if log else values


def _draw_cells(log_posterior: np.ndarray, n_draws: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    weights = np.exp(log_posterior - log_posterior.max())
    flat = rng.choice(weights.size, size=n_draws, p=(weights / weights.sum()).ravel())
    return np.unravel_index(flat, weights.shape)


def draw_kappa(
    log_posterior: np.ndarray, n_draws: int, rng: np.random.Generator, grid: np.ndarray = KAPPA_GRID
) -> np.ndarray:
    """Draws from a posterior given on ``grid`` (log-spaced; spread uniformly in log within each cell)."""
    (cells,) = _draw_cells(log_posterior, n_draws, rng)
    return _spread(grid, cells, rng, log=True)


def draw_curve_discrepancy(log_posterior: np.ndarray, n_draws: int, rng: np.random.Generator, kind: str = "curve"):
    """Draws (bias, kappa, share of outlying runs) from a posterior on the grids of :func:`curve_log_prior`."""
    bias, kappa, share = _draw_cells(log_posterior, n_draws, rng)
    return _spread(BIAS_GRID, bias, rng), _spread(KAPPA_GRIDS[kind], kappa, rng, log=True), OUTLIER_SHARES[share]


def calibrate(
    runs: Runs,
    law,
    likelihood,
    spec_factory,
    n_draws: int,
    seed: int,
    start_values=None,
    sampler: str | None = "nutpie",
    drift: bool = False,
    decide=None,
) -> Discrepancy | None:
    """The discrepancy's posterior from internal leave-future-out splits of ``runs`` (None if too few runs).

    A sweep: draws of kappa, and of the drift too with ``drift`` (see :data:`SWEEP_DRIFT_PRIOR` for why it is
    not the default). Learning curves: draws of the bias, kappa and the share of outlying runs.

    ``spec_factory(train, rows)`` gives the model of a split's training runs (``rows`` of ``runs``);
    ``start_values``: the fit's mode (:meth:`ModelSpec.named_values`), where each internal mode search starts.
    An internal split whose forecasts are an outlier among the splits' is checked against a short fit
    with ``sampler`` and mended or dropped (:func:`~bayescale.inference.internal_splits.check_outliers`; ``sampler=None``: dropped).
    ``decide(splits, law, n_draws, seed)``: for a sweep of a law with a tunable input, the draws of the best
    values' discrepancy and its calibration from the same splits
    (:func:`~bayescale.inference.decision_discrepancy.calibrate_tau`; None: none).
    """
    rng = np.random.default_rng(seed)
    frame = runs.frame.reset_index(drop=True)
    fitted: dict = {}
    for share, held, distance_of in _splits(frame, law.inputs):
        if held.all() or not held.any():
            continue
        train = Runs(frame[~held].reset_index(drop=True), source=runs.source)
        heldout = Runs(frame[held].reset_index(drop=True), source=runs.source)
        forecast = (spec_factory, train, np.flatnonzero(~held), heldout, law, likelihood)
        keep: dict = {}
        try:
            error, scale = internal_forecast(*forecast, rng, start_values, keep=keep)
        except BayescaleError:
            continue  # too few runs left to fit: this split says nothing
        shared = heldout.frame["run"].astype(str) if is_curves(frame) else np.full(len(heldout.frame), "all")
        fitted[share] = {
            "forecast": forecast,
            "distance": distance_of(heldout, train),
            "shared": shared,
            "error": error,
            "scale": scale,
            "params": keep.get("params"),
        }

    def refit(share):
        if sampler is None:
            raise BayescaleError("no sampler to check it with")
        sample = short_sample(sampler, seed)
        rng = np.random.default_rng([seed, 5])
        return internal_forecast(*fitted[share]["forecast"], rng, start_values, sample, keep=fitted[share])

    checks = check_outliers(fitted, refit)
    rows = [
        {"split": share, "shares_with": gi, "distance": di, "error": ei, "scale": si}
        for share, f in fitted.items()
        for gi, di, ei, si in zip(f["shared"], f["distance"], f["error"], f["scale"])
    ]
    if not rows:
        return None  # no internal split could be fitted: nothing to calibrate on
    table = pd.DataFrame(rows, columns=["split", "shares_with", "distance", "error", "scale"])
    table = table[np.isfinite(table["error"]) & np.isfinite(table["scale"])]
    outside = table[table["distance"] > 0]
    if len(outside) < 2:
        return None
    kind = "curve" if is_curves(frame) else "sweep"
    curve = kind == "curve"
    taus: dict[str, np.ndarray] = {}
    decision = None
    if decide is not None and not curve:  # the decisions' own discrepancies (best values, N*), same splits
        taus, decision = decide(fitted, law, n_draws, seed)
    tau, allocation_tau, omega = (taus.get(k) for k in ("decision_tau", "allocation_tau", "allocation_omega"))
    if not curve and not drift:
        # the grid is even in log kappa: the prior's density per unit of log kappa is p(kappa) * kappa
        log_posterior = (
            KAPPA_PRIORS["sweep"].logpdf(KAPPA_GRID)
            + np.log(KAPPA_GRID)
            + kappa_log_likelihood(
                outside["error"], outside["scale"], outside["distance"], outside["split"].astype(str)
            )
        )
        ranges, calibration = observed_ranges(runs, law.inputs), table.reset_index(drop=True)
        kappa = draw_kappa(log_posterior, n_draws, rng)
        supported = float(outside["distance"].max())
        return Discrepancy(
            ranges,
            kappa,
            calibration,
            supported,
            checks=checks,
            tau=tau,
            decision=decision,
            allocation_tau=allocation_tau,
            allocation_omega=omega,
        )
    # one discrepancy per split (a sweep) or per run and split (learning curves); a sweep's drift is the bias
    # axis of the curves' posterior, with no outlying runs
    log_posterior = curve_log_prior() if curve else curve_log_prior(SWEEP_DRIFT_PRIOR, len(NO_OUTLIERS), kind="sweep")
    log_posterior = log_posterior + curve_log_likelihood(
        outside["error"],
        outside["scale"],
        outside["distance"],
        outside["split"].astype(str) + ("/" + outside["shares_with"].astype(str) if curve else ""),
        kappa=KAPPA_GRIDS[kind],
        shares=OUTLIER_SHARES if curve else NO_OUTLIERS,
    )
    bias, kappa, outliers = draw_curve_discrepancy(log_posterior, n_draws, rng, kind=kind)
    return Discrepancy(
        observed_ranges(runs, law.inputs),
        kappa,
        table.reset_index(drop=True),
        float(outside["distance"].max()),
        last_seen_steps(frame) if curve else None,
        bias,
        outliers if curve else None,
        checks,
        tau,
        decision,
        allocation_tau,
        omega,
    )
