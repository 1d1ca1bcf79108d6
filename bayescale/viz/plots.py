"""Figures: each function takes fits or results and returns a matplotlib Figure.

The generic Bayesian figures are ArviZ's own (arviz-plots, matplotlib backend); the domain figures
(fan charts, frontier, learning curves, downstream) are drawn here.

- :func:`forecast_fan` - the runs, the fitted law with credible and predictive bands over the
  observed and the extrapolated range (log axes), held-out runs marked with their forecasts;
- :func:`prior_posterior` - each parameter's prior against its posterior (arviz-plots);
- :func:`correlated_pairs` - the most correlated parameter against its partners (arviz-plots);
- :func:`loo_comparison` - elpd differences with standard errors from :func:`bayescale.compare` (arviz-plots);
- :func:`loo_pit` - the LOO-PIT ECDF with its simultaneous band (arviz-plots);
- :func:`calibration` - backtest coverage, nominal against observed;
- :func:`frontier_bands` - the compute-optimal N*, D* and L* against compute, with bands;
- :func:`learning_curves` - runs' checkpoints, the part a fit saw and the forecast of the rest;
- :func:`model_checks` - prior predictive, posterior predictive and LOO-PIT (:mod:`bayescale.forecast.checks`);
- :func:`sensitivity_bars` - each parameter's power-scaling prior and likelihood sensitivity and its contraction
  (:mod:`bayescale.forecast.sensitivity`);
- :func:`downstream_fan` - the two steps of a downstream forecast: accuracy against each group's
  own loss axis, then accuracy against compute with both laws' uncertainty chained.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

if "ipykernel" not in sys.modules:  # in a notebook the inline backend draws the figures
    matplotlib.use("Agg")  # elsewhere files, never windows: reports are built headless
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bayescale import defaults  # noqa: E402
from bayescale.errors import ExtrapolationWarning  # noqa: E402
from bayescale.viz.design_plots import design_choice, design_replay  # noqa: E402, F401  (bs.plots.design_*)

if TYPE_CHECKING:
    from bayescale.evaluation.backtesting import BacktestResult
    from bayescale.fitting.result import Fit

_TRAIN, _HELD, _LAW, _PRED = "#4d4d4d", "#d62728", "#1f77b4", "#9ecae1"


def _path(fit: Fit, x: str, grid: np.ndarray) -> pd.DataFrame:
    """Points along ``x``; other inputs follow the runs' median ratio to x (D = r N), group = first level."""
    frame = fit.runs.frame
    points = pd.DataFrame({x: grid})
    for name in fit.law.inputs:
        if name != x:
            ratio = np.median(frame[name] / frame[x])
            points[name] = ratio * grid
    for pooled in fit.spec.pooled.values():
        points[pooled.column] = pooled.levels[0]
    if {"N", "D", "C"} <= set(frame.columns) and "C" not in points and {"N", "D"} <= set(points):
        points["C"] = 6 * points["N"] * points["D"]
    return points


def forecast_fan(
    fit: Fit,
    x: str | None = None,
    *,
    heldout: pd.DataFrame | None = None,
    extend: float = 30.0,
    ci_prob: float = defaults.CI_PROB,
    points: pd.DataFrame | None = None,
):
    """The runs and the law's bands along ``x`` (default: the first input), out to ``extend`` times the data.

    ``heldout`` runs are drawn with their forecast at their own inputs: the backtest's own forecast
    (columns ``median``, ``pred_lower``, ``pred_upper`` of a fit that did not see them, 90% bands)
    when the table has it, so the chart and the backtest table agree; else this fit's. ``points``
    (the user's forecast points) are drawn with their predictive bands.
    """
    x = x or fit.law.inputs[0]
    frame = fit.runs.frame
    low, high = frame[x].min(), frame[x].max()
    far = max(
        [
            high * extend,
            *(float(t[x].max()) * 1.5 for t in (heldout, points) if t is not None and len(t) and x in t.columns),
        ]
    )
    grid = np.geomspace(low, far, 120)
    path = _path(fit, x, grid)
    with warnings.catch_warnings():  # the drawing grid is not the user's question: no warnings about its far end
        warnings.simplefilter("ignore", ExtrapolationWarning)
        forecast = fit.predict(path, ci_prob=ci_prob)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    pct = f"{ci_prob:.0%}"
    ax.fill_between(
        grid,
        forecast["pred_lower"],
        forecast["pred_upper"],
        color=_PRED,
        alpha=0.5,
        label=f"{pct} predictive (a new run)",
    )
    ax.fill_between(
        grid, forecast["lower"], forecast["upper"], color=_LAW, alpha=0.35, label=f"{pct} credible (the law)"
    )
    ax.plot(grid, forecast["median"], color=_LAW, lw=1.5, label="posterior median")
    ax.scatter(frame[x], frame["loss"], s=10, color=_TRAIN, alpha=0.6, label=f"fitted runs ({len(frame)})", zorder=3)
    if heldout is not None and len(heldout):
        scored = {"median", "pred_lower", "pred_upper"} <= set(heldout.columns)
        held = (
            heldout
            if scored
            else fit.predict(
                heldout[
                    [
                        c
                        for c in heldout.columns
                        if c != "loss" and c in (*fit.law.inputs, *(p.column for p in fit.spec.pooled.values()))
                    ]
                ],
                ci_prob=ci_prob,
            )
        )
        loss = heldout["loss"].to_numpy()
        inside = (held["pred_lower"].to_numpy() <= loss) & (loss <= held["pred_upper"].to_numpy())
        ax.errorbar(
            heldout[x],
            held["median"],
            yerr=[held["median"] - held["pred_lower"], held["pred_upper"] - held["median"]],
            fmt="none",
            ecolor=_HELD,
            alpha=0.5,
            lw=1,
            zorder=4,
        )
        label = (
            f"held-out runs, backtest forecasts ({int(inside.sum())}/{len(heldout)} inside 90%)"
            if scored
            else f"held-out runs ({int(inside.sum())}/{len(heldout)} inside {pct})"
        )
        ax.scatter(heldout[x], loss, s=28, marker="D", color=_HELD, zorder=5, label=label)
    if points is not None and len(points):
        asked = fit.predict(points, ci_prob=ci_prob)
        ax.errorbar(
            asked[x],
            asked["median"],
            yerr=[asked["median"] - asked["pred_lower"], asked["pred_upper"] - asked["median"]],
            fmt="X",
            color="black",
            ms=7,
            lw=1.2,
            capsize=3,
            zorder=6,
            label=f"asked points ({pct} predictive, at their own inputs)",
        )
    ax.axvspan(high, far, color="0.93", zorder=0)
    ax.text(high * 1.1, ax.get_ylim()[1], "extrapolation", va="top", fontsize=8, color="0.4")
    ax.set_xscale("log")
    if fit.law.observation.is_log:  # a raw target (a card's scale = "raw") may be negative: a linear axis
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.1f"))
    others = ", ".join(f"{n} = {np.median(frame[n] / frame[x]):.3g}·{x}" for n in fit.law.inputs if n != x)
    ax.set_xlabel(x + (f"   (bands along {others})" if others else ""))
    ax.set_ylabel("loss (nats)" if fit.law.observation.is_log else "loss (the raw target)")
    ax.set_title(f"{fit.law.name}: forecast with credible and predictive bands")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def _log_scale_tree(fit: Fit, names: list[str], groups=("posterior", "prior")):
    """``fit.idata``'s groups with the named parameters only, positive ones as ``log <name>``."""
    import xarray as xr

    tree = {}
    for group in groups:
        data = fit.idata[group].to_dataset()
        variables = {}
        for name in names:
            values = data[name]
            positive = fit.spec.priors[name].support.kind == "positive" and bool((fit.posterior[name] > 0).all())
            variables[f"log {name}" if positive else name] = np.log(values) if positive else values
        tree[group] = xr.Dataset(variables)
    return xr.DataTree.from_dict(tree)


def _figure(plot_collection):
    """The matplotlib Figure of an arviz-plots PlotCollection, laid out so that every label shows."""
    figure = plot_collection.viz["figure"].item()
    figure.tight_layout()
    return figure


def prior_posterior(fit: Fit, prior_draws: int = 500):
    """One panel per law parameter: prior against posterior (``arviz_plots.plot_prior_posterior``).

    Positive parameters are shown as their logs, where their priors are spread. The prior draws come
    from ``fit.prior_predictive`` (the ``prior`` group is added to ``fit.idata`` if missing).
    """
    import arviz_plots as azp

    names = [n for n in fit.law.param_names if n not in fit.spec.pooled]
    if "prior" not in fit.idata.children:
        fit.prior_predictive(prior_draws)
    tree = _log_scale_tree(fit, names)
    return _figure(azp.plot_prior_posterior(tree, backend="matplotlib"))


def correlated_pairs(fit: Fit, threshold: float = 0.5):
    """The parameter most correlated with others against each of them (``arviz_plots.plot_pair_focus``).

    Correlations are of logs for positive parameters; only partners beyond ``threshold`` (absolute)
    are drawn, and a note says so when no pair is.
    """
    import arviz_plots as azp

    names = [n for n in fit.law.param_names if n not in fit.spec.pooled]
    tree = _log_scale_tree(fit, names, groups=("posterior",))
    labels = list(tree["posterior"].data_vars)
    flat = np.array([tree["posterior"][n].to_numpy().reshape(-1) for n in labels])
    corr = np.corrcoef(flat)
    np.fill_diagonal(corr, 0.0)
    focus = int(np.argmax(np.abs(corr).max(axis=1)))
    partners = [labels[j] for j in np.argsort(-np.abs(corr[focus])) if abs(corr[focus, j]) >= threshold]
    if not partners:
        fig, ax = plt.subplots(figsize=(4, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no parameter pair correlated beyond |r| = {threshold}", ha="center", va="center")
        return fig
    tree["sample_stats"] = fit.idata["sample_stats"].to_dataset()[["diverging"]]
    return _figure(azp.plot_pair_focus(tree, labels[focus], var_names=partners, backend="matplotlib"))


def loo_comparison(table: pd.DataFrame):
    """elpd differences from the best fit with their standard errors (``arviz_plots.plot_compare``)."""
    import arviz_plots as azp

    return _figure(azp.plot_compare(table.sort_values("elpd", ascending=False), backend="matplotlib"))


def loo_pit(fit: Fit):
    """The LOO-PIT ECDF of the observed runs with its simultaneous band (``arviz_plots.plot_loo_pit``).

    Needs the ``posterior_predictive`` group (``fit.posterior_predictive()`` adds it).
    """
    import arviz_plots as azp

    if "posterior_predictive" not in fit.idata.children:
        fit.posterior_predictive()
    return _figure(azp.plot_loo_pit(fit.idata, var_names=[fit.law.observation.variable], backend="matplotlib"))


def calibration(result: BacktestResult):
    """Observed coverage of the held-out runs against the nominal probability, one line per candidate.

    Shaded: the 5-95% range of coverage the candidate's bands would show on these runs if its
    forecast were right (``coverage_if_right``).
    """
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
    for label, r in result.results.items():
        if "coverage" not in r:
            continue
        levels = sorted(float(k) for k in r["coverage"])
        (line,) = ax.plot(levels, [r["coverage"][str(k)] for k in levels], marker="o", label=label)
        if r.get("coverage_if_right"):
            ranges = np.array([r["coverage_if_right"][str(k)] for k in levels])
            ax.fill_between(levels, ranges[:, 0], ranges[:, 1], color=line.get_color(), alpha=0.12, lw=0)
    ax.set_xlim(0.4, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("nominal probability of the predictive interval")
    ax.set_ylabel(f"share of {result.n_heldout} held-out runs inside")
    ax.set_title(f"backtest calibration ({result.holdout})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def frontier_bands(fit: Fit, budgets=None, ci_prob: float = defaults.CI_PROB):
    """N*, D* and the optimal loss against compute, with their bands (``frontier``'s: the loss's as ``predict``'s).

    Without ``budgets`` the chart's own grid (1e20 to 1e26 FLOPs) raises no extrapolation warning: it is
    not the user's question.
    """
    from bayescale.forecast.plan import frontier

    with warnings.catch_warnings():
        if budgets is None:
            warnings.simplefilter("ignore", ExtrapolationWarning)
        table = frontier(fit, np.geomspace(1e20, 1e26, 13) if budgets is None else budgets, ci_prob)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    for ax, key, label in zip(axes, ("N_opt", "D_opt", "loss_opt"), ("parameters N*", "tokens D*", "loss at optimum")):
        ax.fill_between(table["flops"], table[f"{key}_lower"], table[f"{key}_upper"], color=_PRED, alpha=0.6)
        ax.plot(table["flops"], table[f"{key}_median"], color=_LAW)
        ax.set_xscale("log")
        ax.set_yscale("log" if key != "loss_opt" or fit.law.observation.is_log else "linear")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_title(label, fontsize=10)
    fig.suptitle(f"compute-optimal frontier, median and {ci_prob:.0%} band", fontsize=10)
    fig.tight_layout()
    return fig


def learning_curves(
    fit: Fit,
    runs,
    *,
    upto: float = 1.0,
    show: list[str] | None = None,
    max_runs: int = 6,
    ci_prob: float = defaults.CI_PROB,
):
    """One panel per run: checkpoints the fit saw, the forecast of the rest with bands, the checkpoints it did not see.

    ``runs`` is the whole checkpoint table (:func:`bayescale.curves.learning_curves.load_checkpoints`), ``upto`` the
    cut the fit used; ``show`` picks runs (default: up to ``max_runs``, spread over the table).
    """
    from bayescale.curves.learning_curves import _last_step, run_points, upto_steps

    frame = runs.frame.assign(upto_step=upto_steps(runs.frame, upto))
    names = list(dict.fromkeys(frame["run"]))
    if show is None:
        show = [
            names[i] for i in np.unique(np.linspace(0, len(names) - 1, min(max_runs, len(names))).round().astype(int))
        ]
    cols = min(3, len(show))
    rows = int(np.ceil(len(show) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    pct = f"{ci_prob:.0%}"
    for ax, name in zip(axes.flat, show):
        part = frame[frame["run"] == str(name)]
        cut = part["upto_step"].iloc[0]
        seen, rest = part[part["step"] <= cut], part[part["step"] > cut]
        end = min(_last_step(fit, part, name, part["step"].max()), part["step"].max())
        grid = np.linspace(part["step"].min(), end, 120)
        band = fit.predict(run_points(fit, runs, name, grid), ci_prob=ci_prob)
        ax.fill_between(grid, band["pred_lower"], band["pred_upper"], color=_PRED, alpha=0.5, label=f"{pct} predictive")
        ax.fill_between(grid, band["lower"], band["upper"], color=_LAW, alpha=0.35, label=f"{pct} credible")
        ax.plot(grid, band["median"], color=_LAW, lw=1.2, label="posterior median")
        ax.scatter(seen["step"], seen["loss"], s=8, color=_TRAIN, label="seen by the fit", zorder=3)
        if len(rest):
            ax.scatter(
                rest["step"],
                rest["loss"],
                s=12,
                marker="D",
                facecolors="none",
                edgecolors=_HELD,
                label="not seen",
                zorder=4,
            )
        ax.axvline(cut, color="0.5", ls=":", lw=1)
        ax.set_title(str(name), fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    for ax in list(axes.flat)[len(show) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"{fit.law.name}: forecasts of the rest of each run from checkpoints up to the dotted line", fontsize=10
    )
    fig.tight_layout()
    return fig


def model_checks(fit: Fit, result: dict):
    """Three panels: prior predictive vs observed losses, in-sample posterior predictive bands, LOO-PIT ECDF."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    scale = fit.law.observation
    observed = scale.observe(fit.runs["loss"])
    label = "log loss" if scale.is_log else "loss (raw scale)"
    prior = fit.idata["prior_predictive"][scale.variable].to_numpy().ravel()
    ax = axes[0]
    prior = prior[np.isfinite(prior)]
    # the central 98% of the prior draws and every run: broad priors reach log-losses of +-1000, where
    # the runs would be one invisible bar
    low, high = np.quantile(prior, [0.01, 0.99])
    low, high = min(low, float(observed.min())), max(high, float(observed.max()))
    ax.hist(prior, bins=80, range=(low, high), density=True, color="0.75", label="prior predictive")
    ax.hist(observed, bins=30, density=True, color="tab:blue", alpha=0.7, label="observed runs")
    ax.set(title="prior predictive (central 98%)", xlabel=label, yticks=[], xlim=(low, high))
    ax.legend(fontsize=8)
    replicated = fit.idata["posterior_predictive"][scale.variable].to_numpy()
    replicated = replicated.reshape(-1, replicated.shape[-1])
    order = np.argsort(observed)
    lo, mid, hi = np.quantile(replicated[:, order], [0.05, 0.5, 0.95], axis=0)
    ax = axes[1]
    x = np.arange(len(order))
    ax.fill_between(x, lo, hi, color="tab:blue", alpha=0.25, label="90% posterior predictive")
    ax.plot(x, mid, color="tab:blue", lw=1)
    ax.plot(x, observed[order], "k.", ms=3, label="observed")
    ax.set(
        title=f"posterior predictive ({result['posterior_predictive']['coverage_0.9']:.0%} inside 90%)",
        xlabel="runs, sorted by loss",
        ylabel=label,
    )
    ax.legend(fontsize=8)
    pit = result["loo_pit"]
    band = pit["ecdf"]
    points = np.asarray(band["points"])
    ax = axes[2]
    ax.fill_between(
        points,
        np.asarray(band["lower"]) - points,
        np.asarray(band["upper"]) - points,
        color="0.85",
        step="post",
        label=f"{pit['envelope_prob']:.0%} simultaneous band of a calibrated fit",
    )
    ax.step(points, np.asarray(band["ecdf"]) - points, where="post", color="tab:blue", label="LOO-PIT")
    ax.axhline(0, color="0.5", lw=0.8)
    verdict = "inside the band" if pit["inside_envelope"] else f"{pit['ecdf_points_outside']:.0%} outside the band"
    ax.set(title=f"LOO-PIT ECDF ({verdict})", xlabel="PIT value", ylabel="ECDF - uniform", xlim=(0, 1))
    ax.legend(fontsize=8, loc="lower center")
    fig.tight_layout()
    return fig


def _group_runs(loss_fit, metric_fit, level) -> pd.DataFrame:
    """The runs (N, D) of one group: the metric fit's table when it has N and D, else the loss fit's runs."""
    from collections.abc import Mapping

    group, table = metric_fit.group, metric_fit.table
    if {"N", "D"} <= set(table.columns):
        return table if level is None else table[table[group].astype(str) == level]
    fit = loss_fit[level] if isinstance(loss_fit, Mapping) else loss_fit
    frame = fit.runs.frame
    return frame[frame[group].astype(str) == level] if level is not None and group in frame.columns else frame


def sensitivity_bars(result: dict):
    """Per parameter: power-scaling prior and likelihood sensitivity (priorsense's 0.05 marked), and contraction.

    ``result`` is :func:`bayescale.check`'s (its ``sensitivity``, ``contraction`` and ``prior_driven``).
    """
    from bayescale.forecast.sensitivity import THRESHOLD

    names = list(result["sensitivity"])[::-1]
    y = np.arange(len(names))
    prior = [result["sensitivity"][n]["prior"] for n in names]
    likelihood = [result["sensitivity"][n]["likelihood"] for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.9 + 0.32 * len(names)), sharey=True)
    ax = axes[0]
    ax.barh(y + 0.2, prior, height=0.4, color="tab:orange", label="prior")
    ax.barh(y - 0.2, likelihood, height=0.4, color="tab:blue", label="likelihood")
    ax.axvline(THRESHOLD, color="0.3", ls="--", lw=0.8, label=f"{THRESHOLD} (priorsense)")
    ax.set(yticks=y, title="power-scaling sensitivity", xlabel="sensitivity (CJS distance per log2 power)")
    ax.set_yticklabels([f"{n} (prior-driven)" if n in result["prior_driven"] else n for n in names])
    ax.legend(fontsize=8)
    ax = axes[1]
    contraction = [result["contraction"][n] for n in names]
    ax.barh(y, np.clip(np.nan_to_num(contraction), 0, 1), color="0.5")
    ax.set(title="contraction (1 - posterior / prior variance)", xlim=(0, 1), xlabel="unconstrained scale")
    fig.tight_layout()
    return fig


def downstream_fan(
    loss_fit,
    metric_fit,
    *,
    heldout: pd.DataFrame | None = None,
    extend: float = 30.0,
    ci_prob: float = defaults.CI_PROB,
):
    """One panel per group of the metric law against that group's loss, then the chained forecast against compute.

    Losses of different groups (training corpora) may be measured on different validation sets, so
    each group has its own loss axis; accuracy against compute is comparable and shares one panel,
    where each group follows its runs at their median tokens per parameter out to ``extend`` times
    the largest N. ``loss_fit`` is one fit or one per group (as :func:`bayescale.chained` takes it);
    ``heldout`` runs (N, D, loss, the metric and the group) are drawn as diamonds with their forecasts.
    """
    from collections.abc import Mapping

    from bayescale.downstream.chain import chained, metric_at_loss

    table, metric, group = metric_fit.table, metric_fit.metric, metric_fit.group
    levels = metric_fit.levels or [None]
    colours = dict(zip(levels, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    width = min(3, len(levels))
    rows_of_panels = -(-len(levels) // width)
    fig = plt.figure(figsize=(4.4 * max(width, 2), 3.8 * (rows_of_panels + 1)))
    panels = fig.add_gridspec(rows_of_panels + 1, width)
    right = fig.add_subplot(panels[rows_of_panels, :])
    pct = f"{ci_prob:.0%}"
    laws = sorted({f.law.name for f in (loss_fit.values() if isinstance(loss_fit, Mapping) else [loss_fit])})
    for i, level in enumerate(levels):
        colour = colours[level]
        left = fig.add_subplot(panels[i // width, i % width])
        rows = table if level is None else table[table[group].astype(str) == level]
        held = None
        if heldout is not None and len(heldout):
            held = heldout if level is None else heldout[heldout[group].astype(str) == level]
        losses = pd.concat([rows["loss"], held["loss"] if held is not None else rows["loss"]]).astype(float)
        grid = np.linspace(losses.min() * 0.97, losses.max(), 100)
        band = metric_at_loss(metric_fit, grid, group=level, ci_prob=ci_prob)
        left.fill_between(grid, band["lower"], band["upper"], color=colour, alpha=0.25)
        left.plot(grid, band["median"], color=colour, lw=1.2, label=f"law ({pct} credible)")
        left.scatter(rows["loss"], rows[metric], s=12, color=colour, alpha=0.7, label="runs")
        if grid[0] < metric_fit.loss_min:
            left.axvline(metric_fit.loss_min, color="0.5", lw=0.8, ls=":")
            left.text(
                metric_fit.loss_min,
                band["upper"].max(),
                "lowest fitted loss ",
                ha="right",
                va="top",
                fontsize=7,
                color="0.4",
            )
        left.invert_xaxis()
        left.set_xlabel(f"loss{f' of {group} {level}' if level is not None else ''} (nats; lower is better)")
        left.set_ylabel(metric)
        left.set_title(f"{level if level is not None else 'all runs'}: {metric} from the loss", fontsize=10)
        runs = _group_runs(loss_fit, metric_fit, level)
        ratio = float(np.median(runs["D"].astype(float) / runs["N"].astype(float)))
        n = np.geomspace(float(runs["N"].min()), float(runs["N"].max()) * extend, 60)
        path = pd.DataFrame({"N": n, "D": ratio * n, **({group: level} if group else {})})
        right.scatter(
            6.0 * rows["N"].astype(float) * rows["D"].astype(float), rows[metric], s=12, color=colour, alpha=0.7
        )
        if isinstance(loss_fit, Mapping) and level not in {str(k) for k in loss_fit}:
            left.legend(fontsize=7)
            continue  # no loss fit for this group: no forecast
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtrapolationWarning)
            forecast = chained(loss_fit, metric_fit, path, ci_prob=ci_prob, by=group)
        compute = 6.0 * path["N"] * path["D"]
        right.fill_between(compute, forecast["pred_lower"], forecast["pred_upper"], color=colour, alpha=0.15)
        right.fill_between(compute, forecast["lower"], forecast["upper"], color=colour, alpha=0.3)
        right.plot(
            compute, forecast["median"], color=colour, lw=1.2, label=f"{level or 'forecast'} (D = {ratio:.0f} N)"
        )
        if held is not None and len(held):
            left.scatter(
                held["loss"],
                held[metric],
                s=30,
                marker="D",
                color=colour,
                edgecolor="black",
                zorder=5,
                label="held out",
            )
            asked = chained(
                loss_fit,
                metric_fit,
                held[[c for c in held.columns if c in ("N", "D", group, "chance") and c]],
                ci_prob=ci_prob,
                by=group,
            )
            c = 6.0 * held["N"].astype(float) * held["D"]
            right.errorbar(
                c,
                asked["median"],
                yerr=[asked["median"] - asked["pred_lower"], asked["pred_upper"] - asked["median"]],
                fmt="none",
                ecolor=colour,
                lw=1,
                capsize=3,
                zorder=4,
            )
            right.scatter(c, held[metric], s=30, marker="D", color=colour, edgecolor="black", zorder=5)
        left.legend(fontsize=7)
    right.set_xscale("log")
    right.set_xlabel("compute C = 6ND (FLOPs)")
    right.set_ylabel(metric)
    right.set_title(f"both steps: {', '.join(laws)} then {metric_fit.law.name} ({pct} law and run bands)")
    right.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> Path:
    """Write a figure as PNG atomically (an earlier file survives a failed write) and close it."""

    from bayescale.errors import BayescaleError
    from bayescale.files import atomic_write

    path = Path(path)
    if not path.parent.is_dir():
        raise BayescaleError(f"cannot write the figure to {str(path)!r}: folder {str(path.parent)!r} does not exist")
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
