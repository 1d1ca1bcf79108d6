"""Commands on one law: list the catalog, fit, summarise, forecast, plan, check, compare, report, demo."""

from __future__ import annotations

from pathlib import Path

import click
import cloup

import bayescale as bs
from bayescale import defaults
from bayescale.cli.design_commands import read_design
from bayescale.cli.options import (
    file_argument,
    fit_model_options,
    fits_argument,
    input_group,
    law_group,
    law_option,
    output_group,
    plot_option,
    sampling_group,
    sampling_settings,
    sensitivity_option,
)
from bayescale.cli.parsing import at_points, fit_names, forecast_points, pairs
from bayescale.cli.render import (
    band,
    bands_line,
    decision_calibration_lines,
    emit,
    fmt,
    prior_driven_lines,
    records,
    wrap,
)
from bayescale.errors import BayescaleError

#: what summary's two sensitivity columns mean (``bayescale check`` says what the runs determine)
SENSITIVITY_LEGEND = (
    "prior_sens: power-scaling prior sensitivity (Kallioinen et al. 2024); contract: 1 - posterior / prior "
    "variance, unconstrained. Prior-driven (prior sensitivity at least half the likelihood's; bayescale check "
    "says what the runs determine)"
)


# -- laws -------------------------------------------------------------------------------------------
def _laws_text(result: dict):
    width = max(len(law["name"]) for law in result["laws"])
    for law in result["laws"]:
        yield f"{law['name']:<{width}}  {law['formula']}"
        yield f"{'':<{width}}  {law['title']}"


@cloup.command("laws")
@output_group(ci=False)
def laws_command(as_json):
    """List the law catalog."""

    laws = [
        {
            "name": law.name,
            "kind": law.kind,
            "inputs": list(law.inputs),
            "params": list(law.param_names),
            "formula": f"{'L' if law.kind == 'loss' else 'accuracy'}({', '.join(law.inputs)}) = {law.formula.text}",
            "title": law.title,
        }
        for law in bs.catalog().values()
    ]
    emit({"laws": laws}, as_json, _laws_text)


# -- fit, summary -----------------------------------------------------------------------------------
def summary_result(fit, ci_prob: float, sensitivity: bool = False) -> dict:
    """The parameter table, pooling, discrepancy, breaks and diagnostics of a fit, JSON-ready.

    ``sensitivity`` adds each parameter's power-scaling sensitivities and contraction (``bs.sensitivity``),
    which ``summary`` asks for and ``fit`` does not (a few seconds: the log prior and the prior draws).
    """

    table = bs.summary(fit, ci_prob)
    legend = None
    if sensitivity:
        sens = bs.sensitivity(fit)
        table = table.join(sens.rename(columns={"prior": "prior_sensitivity", "likelihood": "likelihood_sensitivity"}))
        legend = f"{SENSITIVITY_LEGEND}: {', '.join(sens.index[sens['prior_driven']]) or 'none'}."
    d = fit.diagnostics
    return {
        "law": fit.law.name,
        "formula": str(fit.law),
        "likelihood": fit.likelihood.name,
        "scale": fit.law.scale,
        "observed": fit.law.observation.description,
        "n_obs": fit.n_obs,
        "source": fit.runs.source,
        "ci_prob": ci_prob,
        "params_convention": fit.settings.get("params", "total"),
        "pooled": [
            {
                "param": param,
                "column": pooled.column,
                "levels": list(pooled.levels),
                "log_scale": fit.spec.priors[param].support.kind == "positive",
            }
            for param, pooled in fit.spec.pooled.items()
        ],
        "params": {name: dict(row) for name, row in table.iterrows()},
        "discrepancy": None if fit.discrepancy is None else fit.discrepancy.describe(),
        "discrepancy_skipped": (fit.settings.get("extrapolation") or {}).get("skipped"),
        "breaks": {name: dict(row) for name, row in bs.break_table(fit, ci_prob).iterrows()} if fit.law.breaks else {},
        **({"sensitivity_legend": legend} if legend else {}),
        "diagnostics": {
            "divergences": d.divergences,
            "rhat_max": d.rhat_max,
            "ess_bulk_min": d.ess_bulk_min,
            "ess_tail_min": d.ess_tail_min,
            "n_draws": d.n_draws,
            "problems": list(d.problems),
        },
    }


def summary_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    params = result["params"]
    width = max(8, *(len(name) for name in params))
    observed = result.get("observed", "log-loss")
    yield f"{result['formula']}  ({result['likelihood']} likelihood on {observed}, {result['n_obs']} runs)"
    yield f"runs from {result['source']}"
    if result["params_convention"] == "non_embedding":
        yield "N counts non-embedding parameters: give forecasts N in the same convention"
    for p in result["pooled"]:
        yield (
            f"{p['param']} varies by {p['column']} ({', '.join(p['levels'])}): population value {p['param']}_pop, "
            f"spread {p['param']}_sd on the {'log ' if p['log_scale'] else ''}scale"
        )
    sens = "prior_sensitivity" in next(iter(params.values()))
    yield (
        f"{'param':<{width}} {'mean':>10} {'median':>10} {'sd':>10} {pct + ' lower':>11} {pct + ' upper':>11} "
        f"{'ess_bulk':>9} {'r_hat':>6} {'reference':>10}" + (f" {'prior_sens':>10} {'contract':>8}" if sens else "")
    )
    for name, p in params.items():
        yield (
            f"{name:<{width}} {fmt(p['mean']):>10} {fmt(p['median']):>10} {fmt(p['sd']):>10} "
            f"{fmt(p['lower']):>11} {fmt(p['upper']):>11} {fmt(p['ess_bulk'], '.0f'):>9} "
            f"{fmt(p['r_hat'], '.3f'):>6} {fmt(p['reference']):>10}"
            + (f" {fmt(p['prior_sensitivity'], '.3f'):>10} {fmt(p['contraction'], '.3f'):>8}" if sens else "")
        )
    if result.get("sensitivity_legend"):
        yield wrap(result["sensitivity_legend"])
    if result["discrepancy"]:
        yield result["discrepancy"]
    if result.get("discrepancy_skipped"):
        yield wrap(result["discrepancy_skipped"])
    for name, b in result["breaks"].items():
        yield (
            f"break {name} along {b['input']}: median {fmt(b['median'])} ({pct} {fmt(b['lower'])}"
            f"-{fmt(b['upper'])}); largest observed {fmt(b['observed_max'])}; "
            f"P(break beyond the data) = {b['p_beyond_data']:.2f}"
        )
    d = result["diagnostics"]
    yield (
        f"diagnostics: {d['divergences']} divergences, max R-hat {d['rhat_max']:.3f}, "
        f"min ESS bulk {d['ess_bulk_min']:.0f}, min ESS tail {d['ess_tail_min']:.0f} ({d['n_draws']} draws)"
    )
    if result.get("saved"):
        yield f"saved {result['saved']}"


def _warn_problems(result: dict) -> None:
    for problem in result["diagnostics"]["problems"]:
        click.echo(f"warning: {problem}", err=True)


@cloup.command("fit")
@file_argument()
@input_group()
@law_group(law_option(), *fit_model_options())
@sampling_group(extend=True)
@output_group(
    cloup.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to save the fit (.nc).")
)
def fit_command(
    runs,
    columns,
    where,
    law_spec,
    inputs,
    priors,
    pool,
    likelihood,
    extrapolation,
    param_count,
    noise_trend,
    extend,
    quiet,
    out,
    ci_prob,
    as_json,
    **sampling,
):
    """Fit a law to a table of runs (CSV or Parquet) and save the posterior."""

    if not str(out).endswith(".nc"):
        raise BayescaleError(f"--out: fit files are netCDF, give a path ending in .nc (got {out!r})")
    fitted = bs.fit(
        runs,
        law_spec,
        columns=pairs(columns, "--columns"),
        where=where,
        inputs=pairs(inputs, "--input"),
        priors=pairs(priors, "--prior"),
        pool=pairs(pool, "--pool"),
        likelihood=likelihood,
        extrapolation=extrapolation,
        params=param_count,
        extend=extend,
        noise_trend=noise_trend,
        progressbar=not (quiet or as_json),
        **sampling_settings(sampling),
    )
    result = {**summary_result(fitted, ci_prob), "saved": fitted.save(out)}
    emit(result, as_json, summary_text)  # the fit already warned of any sampler trouble


@cloup.command("summary")
@file_argument("fit_path")
@output_group(sensitivity_option())
def summary_command(fit_path, sensitivity, ci_prob, as_json):
    """Parameter table of a saved fit: credible intervals, diagnostics, and how much the priors carry each parameter."""

    result = summary_result(bs.Fit.load(fit_path), ci_prob, sensitivity=sensitivity)
    _warn_problems(result)
    emit(result, as_json, summary_text)


# -- predict ----------------------------------------------------------------------------------------
def _predict_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    if result.get("weights"):
        title = "stacked (" + ", ".join(f"{name} {w:.2f}" for name, w in result["weights"].items()) + ")"
    else:
        title = result["law"]
    yield f"{title}: median loss, {pct} credible interval of the law, {pct} predictive interval of a run"
    if "band_includes" in result:
        includes = result["band_includes"]
        yield wrap(bands_line(result["ci_prob"], [("law", includes["credible"]), ("run", includes["predictive"])]))
    for row in result["predictions"]:
        where = ", ".join(f"{k}={row[k]:.3g}" for k in result["inputs"])
        reach = [k for k in row if k.endswith("_vs_max")]
        beyond = (
            f"  ({', '.join(f'{k[: -len("_vs_max")]} {row[k]:.2g}x' for k in reach)} the largest run's; "
            f"{row['extrapolation']:.2f} e-folds outside the data)"
            if (row.get("extrapolation") or 0) > 0
            else ""
        )
        yield (
            f"{where}: {row['median']:.4f}  law [{row['lower']:.4f}, {row['upper']:.4f}]  "
            f"run [{row['pred_lower']:.4f}, {row['pred_upper']:.4f}]{beyond}"
        )
        if row.get("prior_note"):
            yield wrap("  warning: " + row["prior_note"])


@cloup.command("predict")
@fits_argument()
@cloup.option_group(
    "Points",
    cloup.option("--at", "at", multiple=True, help="A point: N=7e10,D=1.4e12 (repeat for more points)."),
    cloup.option("--points", type=click.Path(dir_okay=False), help="A CSV of points (one column per input)."),
)
@output_group(sensitivity_option())
def predict_command(fit_paths, at, points, sensitivity, ci_prob, as_json):
    """Forecast the loss at unseen scales: credible and predictive intervals.

    Each forecast also gives its power-scaling prior sensitivity and, where it is prior-driven, a
    warning naming the priors that carry it and the runs that would determine them. With several
    fits (of different laws to the same runs) the forecast mixes their posteriors by LOO stacking
    weights, so the intervals also carry the uncertainty about the law's form; its sensitivity is
    the mixture's, and the warning names the fits whose priors carry it.
    """
    fits = {name: bs.Fit.load(path) for name, path in fit_names(fit_paths).items()}
    table = forecast_points(at, points, fits.values())
    fit = next(iter(fits.values()))
    inputs = list(dict.fromkeys(i for f in fits.values() for i in f.law.inputs))
    result = {"ci_prob": ci_prob, "inputs": inputs}
    if len(fits) > 1:
        forecast = bs.predict_stacked(fits, table, ci_prob=ci_prob)
        columns = [*inputs, "median", "lower", "upper", "pred_lower", "pred_upper"]
        if sensitivity:  # of the mixture, each fit's prior scaled on its share of the draws
            sens = bs.stacked_sensitivity(fits, table, forecast.attrs["weights"])
            forecast = forecast.assign(
                prior_sensitivity=sens["prior_sensitivity"], prior_driven=sens["prior_driven"], prior_note=sens["note"]
            )
            columns += ["prior_sensitivity", "prior_driven", "prior_note"]
        result["weights"] = forecast.attrs["weights"]
        result["band_includes"] = forecast.attrs["band_includes"]
    else:
        forecast = bs.predict(fit, table, ci_prob=ci_prob)
        reach = [c for c in forecast.columns if c.endswith("_vs_max")]  # N, D and, in N and D, C and D/N
        columns = [*inputs, "median", "lower", "upper", "pred_lower", "pred_upper", *reach, "extrapolation"]
        if sensitivity:
            sens = bs.forecast_sensitivity(fit, table)
            forecast = forecast.assign(
                prior_sensitivity=sens["prior_sensitivity"], prior_driven=sens["prior_driven"], prior_note=sens["note"]
            )
            columns += ["prior_sensitivity", "prior_driven", "prior_note"]
        result["law"] = fit.law.name
        result["band_includes"] = forecast.attrs["band_includes"]
    extra = [c for c in table.columns if c not in columns]
    result["predictions"] = records(forecast, [*extra, *columns])
    emit(result, as_json, _predict_text)


# -- plan -------------------------------------------------------------------------------------------
_PLAN_ROWS = (
    ("N_opt", "parameters N*"),
    ("D_opt", "tokens D*"),
    ("tokens_per_param", "tokens per parameter"),
    ("loss_opt", "loss at the optimum"),
)
_MARGINAL_ROWS = (
    ("drop_double_N", "loss drop from 2x N"),
    ("drop_double_D", "loss drop from 2x D"),
    ("drop_10x_compute", "drop from 10x compute (frontier)"),
    ("drop_next_10x_compute", "drop from the next 10x"),
    ("diminishing_ratio", "next / first 10x drop"),
)


def _plan_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    flops = result["flops"]
    yield f"compute-optimal allocation at C = {flops:.3g} FLOPs (median, {pct} interval):"
    for key, label in _PLAN_ROWS:
        yield f"  {label:<22} {band(result[key], '.4g')}"
    tuned = [name for name in ("lr", "batch") if f"{name}_opt" in result]
    for name in tuned:
        yield f"  {'best ' + name + ' there':<22} {band(result[f'{name}_opt'], '.4g')}  (the loss assumes it: a tuned run)"
    run = result["run_at_plan"]
    at_tuned = "".join(f", {name} {run[name]:.3g}" for name in tuned)
    yield (
        f"  a run at N* {run['N']:.3g}, D* {run['D']:.3g}{at_tuned}: loss {run['median']:.4f}, {pct} predictive "
        f"[{run['pred_lower']:.4f}, {run['pred_upper']:.4f}] (as predict gives it)"
    )
    includes = result["band_includes"]
    allocation = ", ".join(["N*, D*, tokens per parameter", *(f"best {name}" for name in tuned)])
    yield wrap(
        "  "
        + bands_line(
            result["ci_prob"],
            [(allocation, includes["allocation"]), ("loss", includes["credible"]), ("a run", includes["predictive"])],
        )
    )
    calibration = result["allocation_calibration"]
    if result["flops_vs_largest_run"] > 1:
        widened = (
            "widens with the allocation's own discrepancy"
            if calibration["source"] != "none"
            else "carries the parameters only (this fit has no sweep discrepancy), so it is narrower than the doubt"
        )
        yield wrap(
            f"  note: the budget is {result['flops_vs_largest_run']:.3g}x the compute of the largest run fitted "
            f"({run['extrapolation']:.2f} e-folds beyond the data); the band of N*, D* there {widened}"
        )
    yield from ("  " + line for line in decision_calibration_lines(calibration, "N* (and D* with it)"))
    if "p_data_limited" in result:
        yield f"  data-limited ({result['data_constraint']}) in {result['p_data_limited']:.0%} of draws"
    yield from prior_driven_lines(result.get("sensitivity", {}))
    if "candidates" in result:
        yield (
            f"candidates (loss median, {pct} band of the law / of a run, P(best), expected regret vs best / "
            "vs compute-optimal):"
        )
        for row in result["candidates"]:
            flag = f"  OVER BUDGET (C = {row['C']:.3g} > {flops:.3g})" if row.get("over_budget") else ""
            at_tuned = "".join(f" {name}*={row[name + '_opt']:.3g}" for name in tuned)
            yield (
                f"  N={row['N']:.3g} D={row['D']:.3g}{at_tuned}: {row['loss_median']:.4f} law "
                f"[{row['loss_lower']:.4f}, {row['loss_upper']:.4f}] run [{row['pred_lower']:.4f}, "
                f"{row['pred_upper']:.4f}]  P(best) {row['p_best']:.2f}  regret {row['regret_vs_best']:.4f} / "
                f"{row['regret_vs_optimum']:.4f}{flag}"
            )
    if "marginal" in result:
        m = result["marginal"]
        for key, label in _MARGINAL_ROWS:
            yield f"  {label:<34} {band(m[key], '.4g')}"
        yield f"  P(doubling N beats doubling D) = {m['p_double_N_better']:.2f}"
    if "frontier" in result:
        yield f"frontier (median [{pct}]):"
        for row in result["frontier"]:
            yield (
                f"  C={row['flops']:.3g}: N* {row['N_opt_median']:.3g} [{row['N_opt_lower']:.3g}, "
                f"{row['N_opt_upper']:.3g}]  D* {row['D_opt_median']:.3g}  L* {row['loss_opt_median']:.4f} "
                f"[{row['loss_opt_lower']:.4f}, {row['loss_opt_upper']:.4f}]"
            )


@cloup.command("plan")
@file_argument("fit_path")
@cloup.option_group(
    "Budget",
    cloup.option("--flops", type=float, required=True, help="Training compute budget in FLOPs (C = 6 N D)."),
    cloup.option("--cost", default=None, help="Cost formula in N and D instead of 6*N*D, e.g. '6*N*D + 2*N*1e12'."),
    cloup.option(
        "--unique-tokens", type=float, default=None, help="Cap on unique training tokens (data-limited planning)."
    ),
)
@cloup.option_group(
    "Questions",
    cloup.option(
        "--candidate", "candidate_points", multiple=True, help="Score an option: N=7e10,D=1.4e12 (repeatable)."
    ),
    cloup.option("--marginal", default=None, help="Marginal value at N=...,D=...: 2x N vs 2x D, 10x compute."),
    cloup.option("--frontier", default=None, help="Budgets for the frontier table, comma-separated: 1e21,1e22,1e23."),
)
@output_group()
def plan_command(fit_path, flops, cost, unique_tokens, candidate_points, marginal, frontier, ci_prob, as_json):
    """Compute-optimal model size and tokens for a FLOP budget, with intervals."""

    fit = bs.Fit.load(fit_path)
    result = bs.plan(fit, flops, ci_prob, cost=cost, unique_tokens=unique_tokens)
    budget = bs.Budget.make(cost, unique_tokens)
    result["sensitivity"] = bs.plan_sensitivity(fit, flops, budget)
    if candidate_points:
        result["candidates"] = bs.candidates(fit, at_points(candidate_points), ci_prob, budget, flops)
    if marginal:
        point = at_points([marginal])[0]
        if set(point) != {"N", "D"}:
            raise BayescaleError(f"--marginal {marginal!r}: give exactly N=...,D=...")
        result["marginal"] = bs.marginal_value(fit, point["N"], point["D"], ci_prob, budget)
    if frontier:
        try:
            budgets = [float(x) for x in frontier.split(",")]
        except ValueError:
            raise BayescaleError(f"--frontier {frontier!r}: give budgets in FLOPs separated by commas") from None
        result["frontier"] = bs.frontier(fit, budgets, ci_prob, budget)
    emit(result, as_json, _plan_text)


# -- check, compare ---------------------------------------------------------------------------------
def _check_text(result: dict):
    for line in result["findings"]:
        yield wrap(line)
    if result.get("figure"):
        yield f"figure: {result['figure']}"


@cloup.command("check")
@file_argument("fit_path")
@cloup.option_group(
    "Checks",
    cloup.option("--prior-draws", type=int, default=500, show_default=True, help="Draws from the priors."),
    cloup.option("--seed", type=int, default=None, help="Seed of the predictive draws (default: the fit's)."),
)
@output_group(
    plot_option("the three checks"),
    ci=False,
)
def check_command(fit_path, prior_draws, seed, plot_path, as_json):
    """Check a fit: do the priors allow the data, does the posterior reproduce it, are left-out runs forecast calibrated."""

    fit = bs.Fit.load(fit_path)
    result = bs.check(fit, prior_draws=prior_draws, seed=seed)
    if plot_path:
        result["figure"] = bs.plots.save_figure(bs.plots.model_checks(fit, result), plot_path)
    emit(result, as_json, _check_text)


# -- report, demo -----------------------------------------------------------------------------------
def _saved_text(result: dict):
    yield f"saved {result['saved']}"


@cloup.command("report")
@fits_argument()
@cloup.option(
    "--backtest", "backtest_path", type=click.Path(dir_okay=False), help="A backtest result (from backtest --out)."
)
@cloup.option(
    "--at", "at", multiple=True, help="Forecast at N=7e10,D=1.4e12 (repeatable; default 10x and 100x the largest run)."
)
@cloup.option(
    "--design", "design_path", type=click.Path(dir_okay=False), help="A design (what design --json or --replay writes)."
)
@output_group(
    cloup.option("--format", "fmt", type=click.Choice(["html", "markdown"]), default="html", show_default=True),
    cloup.option("--out", required=True, type=click.Path(dir_okay=False), help="The report file to write."),
)
def report_command(fit_paths, backtest_path, at, design_path, fmt, out, ci_prob, as_json):
    """One self-contained report (HTML or Markdown, images inline) for one or more fits."""

    fits = {Path(p).stem: bs.Fit.load(p) for p in fit_paths}
    if len(fits) != len(fit_paths):
        raise BayescaleError("report: give each fit file once (names come from the file names)")
    backtest = bs.BacktestResult.load(backtest_path) if backtest_path else None
    design = read_design(design_path) if design_path else None
    text = bs.build_report(
        fits,
        backtest=backtest,
        points=at_points(at) or None,
        ci_prob=ci_prob,
        fmt=fmt,
        progress=lambda step: click.echo(f"report: {step}", err=True),
        design=design,
    )
    emit({"saved": bs.write_report(out, text)}, as_json, _saved_text)


def _demo_text(result: dict):
    yield f"demo runs: {result['runs']} (synthetic IsoFLOP sweep, truth {result['truth']})"
    yield from summary_text(result["summary"])
    for row in result["forecasts"]:
        yield (
            f"forecast at N={row['N']:.3g}, D={row['D']:.3g}: loss {row['median']:.3f}; "
            f"{result['summary']['ci_prob']:.0%} of new runs would land between {row['pred_lower']:.3f} and "
            f"{row['pred_upper']:.3f}"
        )
    yield (
        f"saved {result['fit']} and {result['figure']}; try: .venv/bin/bayescale predict {result['fit']} "
        "--at N=1e10,D=2e11"
    )


@cloup.command("demo")
@sampling_group(chains=False)
@output_group(
    cloup.option(
        "--out",
        "out_dir",
        default="out",
        show_default=True,
        type=click.Path(file_okay=False),
        help="Folder for the demo fit.",
    ),
    ci=False,
)
def demo_command(quiet, out_dir, as_json, **sampling):
    """The main job on the embedded demo sweep: fit Chinchilla, summarise, forecast larger models."""

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if not as_json:
        click.echo(f"fitting the demo runs {bs.datasets.demo_runs_path()} ...", err=True)
    fitted = bs.fit(
        bs.datasets.demo_runs_path(),
        "chinchilla",
        progressbar=not (quiet or as_json),
        **sampling_settings(sampling, with_chains=False),
    )
    path = fitted.save(Path(out_dir) / "demo_fit.nc")
    forecast = bs.predict(fitted, N=[7e10, 1.75e11], D=[1.4e12, 3.5e12])
    figure = bs.plots.save_figure(bs.plots.forecast_fan(fitted), Path(out_dir) / "demo_forecast.png")
    result = {
        "runs": bs.datasets.demo_runs_path(),
        "truth": bs.datasets.CHINCHILLA_TRUTH,
        "summary": summary_result(fitted, defaults.CI_PROB),
        "forecasts": records(forecast, ["N", "D", "median", "lower", "upper", "pred_lower", "pred_upper"]),
        "fit": path,
        "figure": figure,
    }
    emit(result, as_json, _demo_text)
