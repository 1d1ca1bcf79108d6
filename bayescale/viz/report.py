"""Reports people read: one self-contained HTML or Markdown file per set of fits (images inline).

The law as mathematics, the data, the parameter table with credible intervals, diagnostics,
forecasts at the scales asked for (with a sentence in plain words), the figures of
:mod:`bayescale.viz.plots`, and, when given, the LOO comparison of several fits and a backtest.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayescale import __version__, defaults
from bayescale.errors import BayescaleError, ExtrapolationWarning
from bayescale.files import atomic_write
from bayescale.forecast.predict import band_includes
from bayescale.viz import plots
from bayescale.viz.latex import formula_latex

if TYPE_CHECKING:
    from bayescale.evaluation.backtesting import BacktestResult
    from bayescale.evaluation.sweep import Sweep
    from bayescale.fitting.result import Fit

_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:0.9em;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}.warn{color:#a33}
.plain{background:#f5f8fc;border-left:4px solid #1f77b4;padding:0.6em 1em}code{background:#f3f3f3;padding:1px 4px}"""


def human(value: float) -> str:
    """70000000000 -> '70B', 1.4e12 -> '1.4T' (counts of parameters or tokens)."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _math_png(latex: str) -> str:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(0.01, 0.01))
    fig.text(0, 0, f"${latex}$", fontsize=15)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


class _Doc:
    """Accumulates a report as HTML or Markdown with the same calls."""

    def __init__(self, fmt: str):
        if fmt not in ("html", "markdown"):
            raise BayescaleError(f"report format must be 'html' or 'markdown', got {fmt!r}")
        self.fmt = fmt
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2):
        self.parts.append(
            f"<h{level}>{html.escape(text)}</h{level}>" if self.fmt == "html" else f"{'#' * level} {text}\n"
        )

    def para(self, text: str, css: str = ""):
        if self.fmt == "html":
            self.parts.append(f"<p class='{css}'>{html.escape(text)}</p>")
        else:
            self.parts.append(("> " if css == "plain" else "") + text + "\n")

    def math(self, latex: str):
        if self.fmt == "html":
            self.parts.append(f"<p><img alt='{html.escape(latex)}' src='data:image/png;base64,{_math_png(latex)}'></p>")
        else:
            self.parts.append(f"$$\n{latex}\n$$\n")

    def table(self, frame: pd.DataFrame):
        formatted = frame.copy()
        for col in formatted.columns:
            if pd.api.types.is_float_dtype(formatted[col]):
                formatted[col] = formatted[col].map(lambda v: "-" if pd.isna(v) else f"{v:.4g}")
        self.parts.append(formatted.to_html(border=0) if self.fmt == "html" else formatted.to_markdown() + "\n")

    def figure(self, fig, caption: str):
        data = _png(fig)
        if self.fmt == "html":
            self.parts.append(
                f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        else:
            self.parts.append(f"![{caption}](data:image/png;base64,{data})\n")

    def render(self, title: str) -> str:
        if self.fmt == "html":
            return (
                f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{_CSS}</style></head><body>{''.join(self.parts)}</body></html>\n"
            )
        return "\n".join(self.parts)


def default_points(fit: Fit) -> list[dict]:
    """Forecast points when none are asked for: 10x and 100x the largest run (D = 20 N for N, D laws).

    A pooled fit is forecast for a new group (a level the fit never saw, drawn from the population).
    """
    largest = {n: float(np.max(fit.runs[n])) for n in fit.law.inputs}
    points = []
    for k in (10, 100):
        point: dict[str, float | str]
        if {"N", "D"} <= set(fit.law.inputs):
            n = largest["N"] * k
            point = {"N": n, "D": 20 * n}
            point.update({i: largest[i] * k for i in fit.law.inputs if i not in point})
        else:
            point = {i: v * k for i, v in largest.items()}
        point.update({p.column: "(new group)" for p in fit.spec.pooled.values()})
        points.append(point)
    return points


def bands_sentence(fit: Fit, ci_prob: float) -> str:
    """What the report's bands include, in words (the JSON's ``band_includes`` of the commands)."""
    includes = band_includes(fit)
    return (
        f"Bands are equal-tailed at {ci_prob:.0%}: credible (the law) includes {' + '.join(includes['credible'])}; "
        f"predictive (a new run) includes {' + '.join(includes['predictive'])}."
    )


@contextmanager
def _notes_in(doc: _Doc, asked: bool) -> Iterator[None]:
    """Extrapolation warnings about points the user did not ask for go into the document, once each, not to stderr.

    The report's own points (:func:`default_points`, the frontier's budgets) are not the user's
    question: a warning about them on stderr would be noise (a sweep of 3 groups x 2 laws printed
    each one 2-4 times). What they say stays in the report.
    """
    if asked:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExtrapolationWarning)
        yield
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, ExtrapolationWarning)):
        doc.para("Note: " + message, "warn")
    for w in caught:
        if not issubclass(w.category, ExtrapolationWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _plain_words(row: pd.Series, inputs, ci_prob: float) -> str:
    where = " and ".join(f"{name} = {human(row[name])}" for name in inputs)
    beyond = (
        f" This is {row['extrapolation']:.2f} e-folds beyond the fitted runs."
        if row.get("extrapolation", 0) > 0
        else ""
    )
    return (
        f"At {where} the forecast loss is {row['median']:.3f}; {ci_prob:.0%} of new runs would land between "
        f"{row['pred_lower']:.3f} and {row['pred_upper']:.3f}, and the law itself lies between "
        f"{row['lower']:.3f} and {row['upper']:.3f}.{beyond}"
    )


def _fit_section(
    doc: _Doc, fit: Fit, name: str, points, ci_prob: float, heldout, progress, checks: bool = True, asked: bool = True
):
    doc.heading(f"{name}: {fit.law.title or fit.law.name}")
    doc.math("L = " + formula_latex(fit.law.formula.text))
    doc.para(f"{fit.law.description} Source: {fit.law.source}".strip())
    frame = fit.runs.frame
    ranges = ", ".join(f"{n} from {human(frame[n].min())} to {human(frame[n].max())}" for n in fit.law.inputs)
    doc.para(
        f"Data: {len(frame)} runs from {fit.runs.source}; {ranges}; loss from {frame['loss'].min():.3f} to "
        f"{frame['loss'].max():.3f}. Likelihood: {fit.likelihood.name} on {fit.law.observation.description}. "
        + " ".join(fit.runs.notes)
    )
    for param, pooled in fit.spec.pooled.items():
        doc.para(
            f"{param} varies by {pooled.column} ({', '.join(pooled.levels)}) under a population prior; "
            f"{param}_pop is the population value and {param}_sd the spread between groups."
        )
    doc.heading("Parameters", 3)
    table = fit.summary(ci_prob)[["mean", "median", "lower", "upper", "ess_bulk", "r_hat", "reference"]]
    doc.table(table.rename(columns={"lower": f"{ci_prob:.0%} lower", "upper": f"{ci_prob:.0%} upper"}))
    d = fit.diagnostics
    doc.para(
        f"Sampler: {d.divergences} divergences in {d.n_draws} draws, max R-hat {d.rhat_max:.3f}, "
        f"min bulk ESS {d.ess_bulk_min:.0f}, min tail ESS {d.ess_tail_min:.0f}."
    )
    for problem in d.problems:
        doc.para("Warning: " + problem, "warn")
    if fit.discrepancy is not None:
        doc.para(fit.discrepancy.describe())
    if fit.law.breaks:
        from bayescale.forecast.derived import break_table

        doc.heading("Breaks", 3)
        doc.table(break_table(fit, ci_prob))
    doc.heading("Forecasts", 3)
    doc.para(bands_sentence(fit, ci_prob))
    if points:
        with _notes_in(doc, asked):
            forecast = fit.predict(pd.DataFrame(points), ci_prob=ci_prob)
        shown = [*fit.law.inputs, "median", "lower", "upper", "pred_lower", "pred_upper", "extrapolation"]
        doc.table(forecast[[c for c in shown if c in forecast.columns]])
        for _, row in forecast.iterrows():
            doc.para(_plain_words(row, fit.law.inputs, ci_prob), "plain")
        from bayescale.forecast.sensitivity import forecast_sensitivity

        for note in forecast_sensitivity(fit, pd.DataFrame(points))["note"].dropna():
            doc.para("Warning: " + note, "warn")
    else:
        doc.para(
            "Each run's forecast is in the learning-curve figure below; `bayescale curve` gives the final "
            "loss, P(improvement) and the saturation step of every run, and what-if schedules."
        )
    if {"run", "step"} <= set(fit.runs.columns):
        progress("learning curves")
        doc.figure(
            plots.learning_curves(fit, fit.runs, ci_prob=ci_prob),
            "Checkpoints of each run and the fitted curve with credible (dark) and predictive (light) bands, "
            "to the end of the run's schedule where the law knows it",
        )
    else:
        progress("fan chart")
        with warnings.catch_warnings():  # said once, above, with the forecast table
            warnings.simplefilter("ignore", ExtrapolationWarning)
            fan = plots.forecast_fan(
                fit, heldout=heldout, ci_prob=ci_prob, points=pd.DataFrame(points) if points else None
            )
        doc.figure(
            fan,
            "The runs and the fitted law with credible (dark) and predictive (light) bands"
            + (
                "; diamonds are the held-out runs with the backtest's forecasts (a fit without them)"
                if heldout is not None
                else ""
            )
            + ("; crosses are the forecast points" if points else ""),
        )
    if checks:
        progress("model checks")
        doc.heading("Model checks", 3)
        checked = fit.check()
        for finding in checked["findings"]:
            doc.para(finding)
        doc.figure(
            plots.model_checks(fit, checked),
            "Prior predictive against the observed losses, posterior "
            "predictive bands of each run, and the LOO-PIT ECDF (bayescale check)",
        )
        doc.figure(
            plots.sensitivity_bars(checked),
            "What the data determine: each parameter's power-scaling prior and likelihood sensitivity "
            "(prior-driven where the prior's is at least half the likelihood's) and its contraction",
        )
    progress("prior and posterior")
    doc.figure(plots.prior_posterior(fit), "Prior against posterior for each parameter")
    doc.figure(
        plots.correlated_pairs(fit), "The parameter most correlated with others, against its partners (|r| >= 0.5)"
    )
    if {"N", "D"} <= set(fit.law.inputs) and not fit.spec.pooled:
        progress("compute-optimal frontier")
        try:
            doc.figure(
                plots.frontier_bands(fit, ci_prob=ci_prob),
                "Compute-optimal frontier: N* and D* with the parameters' uncertainty only, the loss at the "
                "optimum with predict's credible band (" + " + ".join(band_includes(fit)["credible"]) + ")",
            )
        except BayescaleError as exc:
            doc.para(f"No compute-optimal frontier: {exc}")


def backtest_runs(backtest: BacktestResult | None, fit: Fit) -> pd.DataFrame | None:
    """The held-out runs with the backtest's forecasts by the same law as ``fit`` (None if it has no such entry).

    The same numbers as the backtest table, never this fit's forecasts of runs it was trained on.
    """
    if backtest is None:
        return None
    same_law = [r for label, r in backtest.results.items() if "error" not in r and label.split()[0] == fit.law.name]
    if len(same_law) != 1 or not set(fit.law.inputs) <= set(same_law[0]["runs"].columns):
        return None
    return same_law[0]["runs"]


def build_report(
    fits: dict[str, Fit],
    *,
    backtest: BacktestResult | None = None,
    points: Sequence[dict] | None = None,
    ci_prob: float = defaults.CI_PROB,
    fmt: str = "html",
    progress: Callable[[str], None] | None = None,
    design: Mapping | None = None,
) -> str:
    """The report as a string (``fmt`` is ``"html"`` or ``"markdown"``).

    Parameters
    ----------
    fits : dict[str, Fit]
        Label -> fit, one section each in this order (the law, data, parameters, diagnostics, forecasts,
        figures); with more than one, a PSIS-LOO comparison follows.
    backtest : BacktestResult, optional
        A backtest (:func:`bayescale.backtest`): its table and calibration figure, and the held-out runs in
        the fan chart of the fit of the same law.
    points : sequence of dict, optional
        Forecast points for every fit, e.g. ``[{"N": 7e10, "D": 1.4e12}]`` (with the group column for a
        pooled fit). None (default): :func:`default_points` (10 and 100 times the largest run), and none
        for a learning-curve fit.
    ci_prob : float, default 0.9
        Probability of the credible and predictive intervals (equal-tailed).
    fmt : str, default "html"
        ``"html"`` (one self-contained file) or ``"markdown"``; figures are inline PNG images in both.
    progress : callable, optional
        Called with a short description of each stage (``"section for chinchilla"``, ``"model checks"``, ...)
        as the report is built.
    design : dict, optional
        A design or a replay as ``bayescale design --json`` or ``design --replay --json`` writes it: its tables
        and figure (:func:`bayescale.viz.design_plots.report_parts`).

    Returns
    -------
    str
        The whole document; :func:`write_report` saves it.

    Raises
    ------
    BayescaleError
        If ``fmt`` is neither ``"html"`` nor ``"markdown"``, ``fits`` is empty, or ``design`` is neither a design nor a replay.
    """
    doc = _Doc(fmt)
    if not fits:
        raise BayescaleError("a report needs at least one fit")
    progress = progress or (lambda _: None)
    doc.heading("bayescale report", 1)
    doc.para(
        f"Generated {datetime.date.today().isoformat()} by bayescale {__version__}. Intervals are "
        f"equal-tailed at {ci_prob:.0%}: credible for the law, predictive for a new run."
    )
    for name, fit in fits.items():
        progress(f"section for {name}")
        fit_points = points or ([] if {"run", "step"} <= set(fit.runs.columns) else default_points(fit))
        _fit_section(doc, fit, name, fit_points, ci_prob, backtest_runs(backtest, fit), progress, asked=bool(points))
    if len(fits) > 1:
        from bayescale.evaluation.comparison import compare

        doc.heading("Law comparison (PSIS-LOO)")
        try:
            table = compare(fits)
            doc.table(table)
            doc.figure(plots.loo_comparison(table), "elpd difference from the best fit, with standard errors")
        except BayescaleError as exc:
            doc.para(f"Not compared: {exc}")
    if backtest is not None:
        progress("backtest")
        doc.heading(f"Backtest: forecasting {backtest.n_heldout} held-out runs ({backtest.holdout})")
        doc.para(f"Each law was fitted on the other {backtest.n_train} runs and asked to forecast the held-out ones.")
        doc.table(backtest.table)
        doc.figure(
            plots.calibration(backtest),
            "Share of held-out runs inside each predictive interval; shaded, "
            "the range a right forecast would show on these runs (held-out runs share their extrapolation "
            "error, so they fall inside or outside together)",
        )
    if design is not None:
        from bayescale.viz.design_plots import report_parts

        progress("design")
        doc.heading("Which runs next (design)" if "chosen" in design else "Which runs next: a replay of the choice")
        fitted = [f.runs.frame for f in fits.values() if f.law.name == design.get("law")]
        for kind, payload in report_parts(dict(design), fitted[0] if fitted else None):
            if kind == "figure":
                doc.figure(*payload)
            else:
                getattr(doc, kind)(payload)
    return doc.render("bayescale report")


def build_downstream_report(
    loss_fit: Fit | Mapping[str, Fit],
    metric_fit,
    forecast: pd.DataFrame,
    *,
    backtest: dict | None = None,
    heldout: pd.DataFrame | None = None,
    ci_prob: float = defaults.CI_PROB,
    fmt: str = "html",
) -> str:
    """A downstream forecast as a report: both laws, their parameters, the chained forecast and the fan chart.

    Parameters
    ----------
    loss_fit : Fit or mapping of str to Fit
        The fit of the loss law in N and D (:func:`bayescale.fit`), or one per group of the metric fit's
        group column (as :func:`bayescale.chained` takes them): step 1.
    metric_fit : MetricFit
        The fit of the law from loss to the metric (:func:`bayescale.downstream.fit_metric`): step 2.
    forecast : pandas.DataFrame
        The chained forecast (:func:`bayescale.chained`); the report's table shows those of its columns
        ``N``, ``D``, the metric fit's group column, ``loss_median``, ``median``, ``lower``, ``upper``,
        ``pred_lower``, ``pred_upper``, ``chance`` and ``p_above_chance`` that it has.
    backtest : dict, optional
        A backtest of both steps (:func:`bayescale.downstream.backtest`), summarised in one paragraph; it
        needs the keys ``holdout``, ``n_train``, ``n_heldout``, ``coverage`` (``"0.5"``, ``"0.8"``,
        ``"0.9"`` -> share of held-out runs inside that predictive band) and ``median_abs_error``
        (accuracy as a fraction). None (default): no backtest paragraph.
    heldout : pandas.DataFrame, optional
        Held-out runs (N, D, loss, the metric and the group column) drawn as diamonds in the fan chart.
    ci_prob : float, default 0.9
        Probability of the credible and predictive intervals (equal-tailed) in the parameter tables and
        the fan chart.
    fmt : str, default "html"
        ``"html"`` (one self-contained file) or ``"markdown"``; figures are inline PNG images in both.

    Returns
    -------
    str
        The whole document; :func:`write_report` saves it.

    Raises
    ------
    BayescaleError
        If ``fmt`` is neither ``"html"`` nor ``"markdown"``.
    """
    metric, law = metric_fit.metric, metric_fit.law
    loss_fits = dict(loss_fit) if isinstance(loss_fit, Mapping) else {None: loss_fit}
    names = ", ".join(sorted({fit.law.name for fit in loss_fits.values()}))
    doc = _Doc(fmt)
    doc.heading(f"bayescale downstream report: {metric}", 1)
    doc.para(
        f"Generated {datetime.date.today().isoformat()} by bayescale {__version__}. Two steps, both posteriors: "
        f"the loss at (N, D) from {names}, then {metric} from the loss by {law.name}; every draw of "
        f"the loss goes through a draw of the metric law. Intervals are equal-tailed at {ci_prob:.0%}."
    )
    for key, fit in loss_fits.items():
        where = f" ({metric_fit.group} {key})" if key is not None else ""
        doc.heading(f"Step 1{where}: {fit.law.title or fit.law.name}")
        doc.math("L = " + formula_latex(fit.law.formula.text))
        doc.para(f"{fit.n_obs} runs from {fit.runs.source}.")
        doc.table(fit.summary(ci_prob)[["mean", "median", "lower", "upper", "ess_bulk", "r_hat"]])
    doc.heading(f"Step 2: {law.title or law.name}")
    doc.math(f"\\mathrm{{{metric.replace('_', ' ')}}} = " + formula_latex(law.formula.text))
    doc.para(f"{law.description} Source: {law.source}".strip())
    doc.table(metric_fit.summary(ci_prob))
    for fit_diagnostics in (*(fit.diagnostics for fit in loss_fits.values()), metric_fit.diagnostics):
        for problem in fit_diagnostics.problems:
            doc.para("Warning: " + problem, "warn")
    doc.heading("Forecast")
    shown = [
        c
        for c in forecast.columns
        if c
        in (
            "N",
            "D",
            metric_fit.group,
            "loss_median",
            "median",
            "lower",
            "upper",
            "pred_lower",
            "pred_upper",
            "chance",
            "p_above_chance",
        )
        and c
    ]
    doc.table(forecast[shown])
    if backtest is not None:
        cov = backtest["coverage"]
        doc.para(
            f"Backtest ({backtest['holdout']}): both steps fitted on {backtest['n_train']} runs; of the "
            f"{backtest['n_heldout']} held-out runs {cov['0.9']:.0%} fall inside the 90% predictive band "
            f"(80%: {cov['0.8']:.0%}, 50%: {cov['0.5']:.0%}); median |error| "
            f"{backtest['median_abs_error'] * 100:.2f} points."
        )
    doc.figure(
        plots.downstream_fan(loss_fit, metric_fit, heldout=heldout, ci_prob=ci_prob),
        f"Top: {metric} against each group's own loss (its own axis), the metric law with its credible band "
        f"(diamonds: held-out runs). Bottom: {metric} against compute, both steps chained, law and run bands.",
    )
    return doc.render(f"bayescale downstream report: {metric}")


def build_sweep_report(
    sweep: Sweep,
    *,
    ci_prob: float = defaults.CI_PROB,
    fmt: str = "html",
    progress: Callable[[str], None] | None = None,
) -> str:
    """One report for a sweep: the comparison table of every group and law, then each group's fits.

    Parameters
    ----------
    sweep : Sweep
        The fits of a sweep (:func:`bayescale.fit_many`), keyed by ``(group, law label)``: its
        :meth:`~bayescale.evaluation.sweep.Sweep.comparison` table, the errors of failed fits, then per
        group a LOO figure (with two or more fits) and one section per fit with its sampler warnings.
    ci_prob : float, default 0.9
        Probability of the credible and predictive intervals (equal-tailed).
    fmt : str, default "html"
        ``"html"`` (one self-contained file) or ``"markdown"``; figures are inline PNG images in both.
    progress : callable, optional
        Called with a short description of each stage (``"section for chinchilla on rpj"``, ...) as the
        report is built.

    Returns
    -------
    str
        The whole document; :func:`write_report` saves it.

    Raises
    ------
    BayescaleError
        If ``fmt`` is neither ``"html"`` nor ``"markdown"``.
    """
    progress = progress or (lambda _: None)
    doc = _Doc(fmt)
    doc.heading("bayescale sweep report", 1)
    split = f"split by {sweep.by!r} into {len(sweep.groups)} groups" if sweep.by else "on all runs"
    doc.para(
        f"Generated {datetime.date.today().isoformat()} by bayescale {__version__}: every law fitted {split}. "
        f"Within each group the laws are ranked by PSIS-LOO (higher elpd is better; elpd_diff is the distance "
        f"from the group's best with its standard error dse; weight is the stacking weight). Intervals are "
        f"equal-tailed at {ci_prob:.0%}. For one fit's prior and posterior predictive checks, run "
        f"bayescale check on its file."
    )
    comparison = sweep.comparison()
    shown = comparison.drop(columns=["se", "n_runs", *(["error"] if not sweep.errors else [])], errors="ignore")
    doc.table(shown.set_index(["group", "law"]))
    for (group, label), message in sweep.errors.items():
        doc.para(f"{label} on {group}: the fit failed: {message}", "warn")
    for group in sweep.groups:
        fits = {label: fit for (g, label), fit in sweep.fits.items() if g == group}
        if not fits:
            continue
        doc.heading(f"{sweep.by} = {group}" if sweep.by else "All runs")
        rows = comparison[(comparison["group"] == group) & (comparison["error"] == "")]
        if len(rows) > 1:
            doc.figure(
                plots.loo_comparison(rows.set_index("law")),
                f"{group}: elpd difference from the best law, with standard errors",
            )
        for label, fit in fits.items():
            progress(f"section for {label} on {group}")
            points = [] if {"run", "step"} <= set(fit.runs.columns) else default_points(fit)
            _fit_section(doc, fit, f"{label} on {group}", points, ci_prob, None, progress, checks=False, asked=False)
            for message in sweep.warnings.get((group, label), []):
                doc.para("Warning: " + message, "warn")
    return doc.render("bayescale sweep report")


def write_report(path: str | Path, text: str) -> Path:
    """Write atomically: an earlier report survives a failed write.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to write (replaced if it exists); its folder must exist.
    text : str
        The report, from :func:`build_report`.

    Returns
    -------
    pathlib.Path
        ``path``, as a Path.

    Raises
    ------
    BayescaleError
        If the folder of ``path`` does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise BayescaleError(f"cannot write the report to {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return atomic_write(path, lambda tmp: tmp.write_text(text))
