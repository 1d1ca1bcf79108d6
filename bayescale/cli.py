"""The ``bayescale`` command line: a thin layer over the Python API (click).

Errors a user can cause print one line on stderr and exit with status 2; ``--json`` prints exactly
one JSON object on stdout.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sys
import textwrap
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from . import defaults
from .errors import BayescaleError


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def _pairs(items, what: str) -> dict[str, str]:
    """Parse repeated ``name=value`` options (commas separate several in one option)."""
    from .data import parse_column_mapping

    try:
        return parse_column_mapping(items)
    except BayescaleError as exc:
        raise BayescaleError(f"{what}: {exc}") from None


def _at_points(items, labels=()) -> list[dict[str, float | str]]:
    """Parse ``--at N=...,D=...`` points; keys in ``labels`` (group columns) keep their text."""
    points = []
    for item in items:
        point = {}
        for key, value in _pairs([item], "--at").items():
            try:
                point[key] = value if key in labels else float(value)
            except ValueError:
                raise BayescaleError(f"--at {item!r}: {key}={value!r} is not a number") from None
        points.append(point)
    return points


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


def _ci_option(function):
    return click.option("--ci-prob", type=float, default=defaults.CI_PROB, show_default=True,
                        help="Probability of the credible and predictive intervals.")(function)


def _json_option(function):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(function)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bayescale")
def cli():
    """Bayesian inference of neural scaling laws: fit, summarise, forecast."""
    warnings.showwarning = _show_warning
    logging.basicConfig(level=logging.INFO, format="note: %(message)s", stream=sys.stderr)
    for noisy in ("pymc", "pytensor", "arviz"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command("laws")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
def laws_command(as_json):
    """List the law catalog."""
    from .laws import catalog

    laws = [{"name": law.name, "kind": law.kind, "inputs": list(law.inputs), "params": list(law.param_names),
             "formula": f"{'L' if law.kind == 'loss' else 'accuracy'}({', '.join(law.inputs)}) = {law.formula.text}",
             "title": law.title} for law in catalog().values()]
    if as_json:
        click.echo(json.dumps({"laws": laws}))
        return
    width = max(len(law["name"]) for law in laws)
    for law in laws:
        click.echo(f"{law['name']:<{width}}  {law['formula']}")
        click.echo(f"{'':<{width}}  {law['title']}")


@cli.command("fit")
@click.argument("runs", type=click.Path(dir_okay=False))
@click.option("--law", "law_spec", default="chinchilla", show_default=True,
              help="A catalog name (see `bayescale laws`) or the path of a .toml law card.")
@click.option("--columns", multiple=True, help="Map canonical names to yours: N='Model Size',C='Training FLOP'.")
@click.option("--input", "inputs", multiple=True, help="Bind a law's generic input to a column: X=D.")
@click.option("--prior", "priors", multiple=True, help="Override a prior: alpha='LogNormal(mu=log(0.3), sigma=0.3)'.")
@click.option("--pool", "pool", multiple=True,
              help="Let a parameter vary by a group column under a population prior: alpha=family (repeatable).")
@click.option("--likelihood", default=defaults.LIKELIHOOD, show_default=True,
              type=click.Choice(["studentt", "normal", "laplace"]), help="Noise model on log-loss.")
@click.option("--extrapolation", default=defaults.EXTRAPOLATION, show_default=True,
              type=click.Choice(["calibrated", "none"]),
              help="Widen forecasts beyond the observed runs by a discrepancy calibrated on internal backtests.")
@click.option("--params", "param_count", default="total", show_default=True,
              type=click.Choice(["total", "non-embedding", "non_embedding"]),
              help="What N counts: as given (total), or non-embedding parameters (column N_no_embed, or "
                   "12*n_layers*d_model^2).")
@click.option("--draws", type=int, default=defaults.DRAWS, show_default=True)
@click.option("--tune", type=int, default=defaults.TUNE, show_default=True)
@click.option("--chains", type=int, default=defaults.CHAINS, show_default=True)
@click.option("--cores", type=int, default=defaults.CORES, show_default=True)
@click.option("--seed", type=int, default=defaults.SEED, show_default=True)
@click.option("--sampler", default=defaults.SAMPLER, show_default=True, type=click.Choice(["pymc", "nutpie", "numpyro"]))
@click.option("--target-accept", type=float, default=defaults.TARGET_ACCEPT, show_default=True)
@click.option("--extend/--no-extend", default=True, show_default=True,
              help="When R-hat or ESS fall short (no divergences), sample once more with twice the draws, whitened "
                   "by the first run's draws.")
@click.option("--noise-trend", is_flag=True,
              help="Let the noise scale grow or shrink along N (sigma_slope per e-fold), for sweeps whose scatter "
                   "changes with size.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to save the fit (.nc).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fit_command(runs, law_spec, columns, inputs, priors, pool, likelihood, extrapolation, param_count, draws, tune, chains,
                cores, seed, sampler, target_accept, extend, noise_trend, out, quiet):
    """Fit a law to a table of runs (CSV or Parquet) and save the posterior."""
    from .fitting import fit

    if not str(out).endswith(".nc"):
        raise BayescaleError(f"--out: fit files are netCDF, give a path ending in .nc (got {out!r})")
    result = fit(runs, law_spec, columns=_pairs(columns, "--columns"), inputs=_pairs(inputs, "--input"),
                 priors=_pairs(priors, "--prior"), pool=_pairs(pool, "--pool"), likelihood=likelihood,
                 extrapolation=extrapolation, params=param_count, draws=draws, tune=tune, chains=chains,
                 cores=cores, seed=seed, sampler=sampler, target_accept=target_accept, extend=extend,
                 noise_trend=noise_trend, progressbar=not quiet)
    path = result.save(out)
    _print_summary(result, defaults.CI_PROB, show_problems=False)
    click.echo(f"saved {path}")


def _print_summary(fit, ci_prob: float, show_problems: bool = True) -> None:
    """The parameter table and diagnostics; ``show_problems=False`` right after a fit, which already warned."""
    table = fit.summary(ci_prob)
    pct = f"{ci_prob:.0%}"
    width = max(8, *(len(str(n)) for n in table.index))
    click.echo(f"{fit.law}  ({fit.likelihood.name} likelihood on log-loss, {fit.n_obs} runs)")
    if fit.settings.get("params") == "non_embedding":
        click.echo("N counts non-embedding parameters: give forecasts N in the same convention")
    for param, pooled in fit.spec.pooled.items():
        click.echo(f"{param} varies by {pooled.column} ({', '.join(pooled.levels)}): population value {param}_pop, "
                   f"spread {param}_sd on the {'log ' if fit.spec.priors[param].support.kind == 'positive' else ''}scale")
    click.echo(f"{'param':<{width}} {'mean':>10} {'median':>10} {pct + ' lower':>11} {pct + ' upper':>11} "
               f"{'ess_bulk':>9} {'r_hat':>6} {'reference':>10}")
    for name, row in table.iterrows():
        click.echo(f"{name:<{width}} {_fmt(row['mean']):>10} {_fmt(row['median']):>10} {_fmt(row['lower']):>11} "
                   f"{_fmt(row['upper']):>11} {row['ess_bulk']:>9.0f} {row['r_hat']:>6.3f} "
                   f"{_fmt(row['reference']):>10}")
    if fit.discrepancy is not None:
        click.echo(fit.discrepancy.describe())
    if fit.law.breaks:
        from .derived import break_table

        for name, row in break_table(fit, ci_prob).iterrows():
            click.echo(f"break {name} along {row['input']}: median {_fmt(row['median'])} ({pct} {_fmt(row['lower'])}"
                       f"-{_fmt(row['upper'])}); largest observed {_fmt(row['observed_max'])}; "
                       f"P(break beyond the data) = {row['p_beyond_data']:.2f}")
    d = fit.diagnostics
    click.echo(f"diagnostics: {d.divergences} divergences, max R-hat {d.rhat_max:.3f}, "
               f"min ESS bulk {d.ess_bulk_min:.0f}, min ESS tail {d.ess_tail_min:.0f} ({d.n_draws} draws)")
    for problem in d.problems if show_problems else ():
        click.echo(f"warning: {problem}", err=True)


@cli.command("summary")
@click.argument("fit_path", type=click.Path(dir_okay=False))
@_ci_option
@_json_option
def summary_command(fit_path, ci_prob, as_json):
    """Parameter table of a saved fit, with credible intervals and diagnostics."""
    from .fitting import Fit

    fit = Fit.load(fit_path)
    if not as_json:
        _print_summary(fit, ci_prob)
        return
    from .derived import break_table

    table = fit.summary(ci_prob)
    d = fit.diagnostics
    breaks = break_table(fit, ci_prob)
    click.echo(json.dumps({
        "law": fit.law.name, "ci_prob": ci_prob, "n_obs": fit.n_obs,
        "params": {name: {k: float(row[k]) for k in ("mean", "median", "lower", "upper")}
                   for name, row in table.iterrows()},
        "breaks": {name: {"input": row["input"], **{k: float(row[k]) for k in ("median", "lower", "upper",
                                                                            "observed_max", "p_beyond_data")}}
                   for name, row in breaks.iterrows()},
        "diagnostics": {"divergences": d.divergences, "rhat_max": d.rhat_max, "ess_bulk_min": d.ess_bulk_min},
    }))


@cli.command("predict")
@click.argument("fit_paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--at", "at", multiple=True, help="A point: N=7e10,D=1.4e12 (repeat for more points).")
@click.option("--points", type=click.Path(dir_okay=False), help="A CSV of points (one column per input).")
@_ci_option
@_json_option
def predict_command(fit_paths, at, points, ci_prob, as_json):
    """Forecast the loss at unseen scales: credible and predictive intervals.

    With several fits (of different laws to the same runs) the forecast mixes their posteriors by
    LOO stacking weights, so the intervals also carry the uncertainty about the law's form.
    """
    import pandas as pd

    from .comparison import predict_stacked
    from .fitting import Fit

    if bool(at) == bool(points):
        raise BayescaleError("give the points with --at N=...,D=... (repeatable) or with --points FILE.csv")
    fits = {Path(p).stem: Fit.load(p) for p in fit_paths}
    if len(fits) != len(fit_paths):
        fits = {str(p): Fit.load(p) for p in fit_paths}
    if points:
        if not Path(points).exists():
            raise BayescaleError(f"--points: file {points!r} does not exist")
        table = pd.read_csv(points)
    else:
        table = pd.DataFrame(_at_points(at))
    fit = next(iter(fits.values()))
    inputs = list(dict.fromkeys(i for f in fits.values() for i in f.law.inputs))
    if len(fits) > 1:
        result = predict_stacked(fits, table, ci_prob=ci_prob)
        columns, reach = [*inputs, "median", "lower", "upper", "pred_lower", "pred_upper"], []
        title = "stacked (" + ", ".join(f"{name} {w:.2f}" for name, w in result.attrs["weights"].items()) + ")"
    else:
        result = fit.predict(table, ci_prob=ci_prob)
        reach = [c for c in result.columns if c.endswith("_vs_max")]  # N, D and, for a law in N and D, C and D/N
        columns = [*inputs, "median", "lower", "upper", "pred_lower", "pred_upper", *reach, "extrapolation"]
        title = fit.law.name
    extra = [c for c in table.columns if c not in columns]
    if as_json:
        records = [{k: v if isinstance(v, str) else float(v) for k, v in row.items()}
                   for row in result[[*extra, *columns]].to_dict("records")]
        weights = {"weights": result.attrs["weights"]} if len(fits) > 1 else {}
        click.echo(json.dumps({"ci_prob": ci_prob, **weights, "predictions": records}))
        return
    pct = f"{ci_prob:.0%}"
    click.echo(f"{title}: median loss, {pct} credible interval of the law, {pct} predictive interval of a run")
    for _, row in result.iterrows():
        where = ", ".join(f"{k}={row[k]:.3g}" for k in inputs)
        beyond = (f"  ({', '.join(f'{k[:-len('_vs_max')]} {row[k]:.2g}x' for k in reach)} the largest run's; "
                  f"{row['extrapolation']:.2f} e-folds outside the data)" if row.get("extrapolation", 0) > 0 else "")
        click.echo(f"{where}: {row['median']:.4f}  law [{row['lower']:.4f}, {row['upper']:.4f}]  "
                   f"run [{row['pred_lower']:.4f}, {row['pred_upper']:.4f}]{beyond}")


@cli.command("plan")
@click.argument("fit_path", type=click.Path(dir_okay=False))
@click.option("--flops", type=float, required=True, help="Training compute budget in FLOPs (C = 6 N D).")
@click.option("--cost", default=None, help="Cost formula in N and D instead of 6*N*D, e.g. '6*N*D + 2*N*1e12'.")
@click.option("--unique-tokens", type=float, default=None, help="Cap on unique training tokens (data-limited planning).")
@click.option("--candidate", "candidate_points", multiple=True, help="Score an option: N=7e10,D=1.4e12 (repeatable).")
@click.option("--marginal", default=None, help="Marginal value at N=...,D=...: 2x N vs 2x D, 10x compute.")
@click.option("--frontier", default=None, help="Budgets for the frontier table, comma-separated: 1e21,1e22,1e23.")
@_ci_option
@_json_option
def plan_command(fit_path, flops, cost, unique_tokens, candidate_points, marginal, frontier, ci_prob, as_json):
    """Compute-optimal model size and tokens for a FLOP budget, with intervals."""
    import pandas as pd

    from . import plan as planning
    from .fitting import Fit

    fit = Fit.load(fit_path)
    result = fit.plan(flops, ci_prob=ci_prob, cost=cost, unique_tokens=unique_tokens)
    budget = planning.Budget.make(cost, unique_tokens)
    extra = {}
    if candidate_points:
        extra["candidates"] = planning.candidates(fit, _at_points(candidate_points), ci_prob, budget, flops)
    if marginal:
        point = _at_points([marginal])[0]
        if set(point) != {"N", "D"}:
            raise BayescaleError(f"--marginal {marginal!r}: give exactly N=...,D=...")
        extra["marginal"] = planning.marginal_value(fit, point["N"], point["D"], ci_prob, budget)
    if frontier:
        try:
            budgets = [float(x) for x in frontier.split(",")]
        except ValueError:
            raise BayescaleError(f"--frontier {frontier!r}: give budgets in FLOPs separated by commas") from None
        extra["frontier"] = planning.frontier(fit, budgets, ci_prob, budget)
    if as_json:
        tables = {k: json.loads(v.to_json(orient="records")) for k, v in extra.items() if isinstance(v, pd.DataFrame)}
        click.echo(json.dumps({**result, **{k: v for k, v in extra.items() if isinstance(v, dict)}, **tables}))
        return
    pct = f"{ci_prob:.0%}"
    click.echo(f"compute-optimal allocation at C = {flops:.3g} FLOPs (median, {pct} interval):")
    for key, label in (("N_opt", "parameters N*"), ("D_opt", "tokens D*"), ("tokens_per_param", "tokens per parameter"),
                       ("loss_opt", "loss at the optimum")):
        r = result[key]
        click.echo(f"  {label:<22} {r['median']:.4g}  [{r['lower']:.4g}, {r['upper']:.4g}]")
    tuned = [name for name in ("lr", "batch") if f"{name}_opt" in result]
    for name in tuned:
        r = result[f"{name}_opt"]
        click.echo(f"  {'best ' + name + ' there':<22} {r['median']:.4g}  [{r['lower']:.4g}, {r['upper']:.4g}]  "
                   "(the loss assumes it: a tuned run)")
    run = result["run_at_plan"]
    at_tuned = "".join(f", {name} {run[name]:.3g}" for name in tuned)
    click.echo(f"  a run at N* {run['N']:.3g}, D* {run['D']:.3g}{at_tuned}: loss {run['median']:.4f}, {pct} predictive "
               f"[{run['pred_lower']:.4f}, {run['pred_upper']:.4f}] (as predict gives it)")
    if result["flops_vs_largest_run"] > 1:
        click.echo(f"  note: the budget is {result['flops_vs_largest_run']:.3g}x the compute of the largest run fitted "
                   f"({run['extrapolation']:.2f} e-folds beyond the data): the predictive band includes the "
                   "extrapolation discrepancy")
    if "p_data_limited" in result:
        click.echo(f"  data-limited ({result['data_constraint']}) in {result['p_data_limited']:.0%} of draws")
    if "candidates" in extra:
        click.echo(f"candidates (loss median, {pct} band of the law / of a run, P(best), expected regret vs best / "
                   "vs compute-optimal):")
        for _, row in extra["candidates"].iterrows():
            flag = f"  OVER BUDGET (C = {row['C']:.3g} > {flops:.3g})" if row.get("over_budget") else ""
            at_tuned = "".join(f" {name}*={row[name + '_opt']:.3g}" for name in tuned)
            click.echo(f"  N={row['N']:.3g} D={row['D']:.3g}{at_tuned}: {row['loss_median']:.4f} law [{row['loss_lower']:.4f}, "
                       f"{row['loss_upper']:.4f}] run [{row['pred_lower']:.4f}, {row['pred_upper']:.4f}]  "
                       f"P(best) {row['p_best']:.2f}  regret {row['regret_vs_best']:.4f} / "
                       f"{row['regret_vs_optimum']:.4f}{flag}")
    if "marginal" in extra:
        m = extra["marginal"]
        for key, label in (("drop_double_N", "loss drop from 2x N"), ("drop_double_D", "loss drop from 2x D"),
                           ("drop_10x_compute", "drop from 10x compute (frontier)"),
                           ("drop_next_10x_compute", "drop from the next 10x"),
                           ("diminishing_ratio", "next / first 10x drop")):
            r = m[key]
            click.echo(f"  {label:<34} {r['median']:.4g}  [{r['lower']:.4g}, {r['upper']:.4g}]")
        click.echo(f"  P(doubling N beats doubling D) = {m['p_double_N_better']:.2f}")
    if "frontier" in extra:
        click.echo(f"frontier (median [{pct}]):")
        for _, row in extra["frontier"].iterrows():
            click.echo(f"  C={row['flops']:.3g}: N* {row['N_opt_median']:.3g} [{row['N_opt_lower']:.3g}, "
                       f"{row['N_opt_upper']:.3g}]  D* {row['D_opt_median']:.3g}  L* {row['loss_opt_median']:.4f} "
                       f"[{row['loss_opt_lower']:.4f}, {row['loss_opt_upper']:.4f}]")


@cli.command("check")
@click.argument("fit_path", type=click.Path(dir_okay=False))
@click.option("--prior-draws", type=int, default=500, show_default=True, help="Draws from the priors.")
@click.option("--seed", type=int, default=None, help="Seed of the predictive draws (default: the fit's).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save the three checks as a PNG figure.")
@_json_option
def check_command(fit_path, prior_draws, seed, plot_path, as_json):
    """Check a fit: do the priors allow the data, does the posterior reproduce it, are left-out runs forecast calibrated."""
    from .fitting import Fit

    fit = Fit.load(fit_path)
    result = fit.check(prior_draws=prior_draws, seed=seed)
    if plot_path:
        from .plots import model_checks, save_figure

        save_figure(model_checks(fit, result), plot_path)
    if as_json:
        click.echo(json.dumps(result))
        return
    for line in result["findings"]:
        click.echo(textwrap.fill(line, 100, subsequent_indent="  "))
    if plot_path:
        click.echo(f"figure: {plot_path}")


@cli.command("compare")
@click.argument("fit_paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--backtest", "backtest_path", type=click.Path(dir_okay=False), default=None,
              help="A backtest of the same laws (from backtest --out): say where it and LOO disagree.")
@_json_option
def compare_command(fit_paths, backtest_path, as_json):
    """Rank fits of different laws on the same runs by PSIS-LOO (elpd, differences, stacking weights)."""
    from .backtesting import BacktestResult
    from .comparison import LEGEND, against_backtest, compare, verdict
    from .fitting import Fit

    fits = {Path(p).stem: Fit.load(p) for p in fit_paths}
    if len(fits) != len(fit_paths):
        fits = {str(p): Fit.load(p) for p in fit_paths}
    table = compare(fits)
    versus = against_backtest(table, fits, BacktestResult.load(backtest_path)) if backtest_path else []
    if as_json:
        click.echo(json.dumps({"fits": [
            {"fit": name, "law": fits[name].law.name, **{k: float(row[k]) for k in ("elpd", "se", "elpd_diff", "dse", "p", "weight")},
             "rank": int(row["rank"]), "high_pareto_k_rows": [int(i) for i in table.attrs["high_k"][name].index]}
            for name, row in table.iterrows()], "verdict": verdict(table),
            **({"against_backtest": versus} if backtest_path else {})}))
        return
    click.echo(f"{'fit':<24} {'rank':>4} {'elpd':>9} {'se':>7} {'elpd_diff':>9} {'dse':>7} {'p_loo':>6} {'weight':>6} {'k>thr':>5}")
    for name, row in table.iterrows():
        click.echo(f"{name:<24} {row['rank']:>4.0f} {row['elpd']:>9.1f} {row['se']:>7.1f} {row['elpd_diff']:>9.1f} "
                   f"{row['dse']:>7.1f} {row['p']:>6.1f} {row['weight']:>6.2f} {row['n_high_k']:>5.0f}")
    click.echo(textwrap.fill(LEGEND, 100))
    click.echo("")
    for line in verdict(table):
        click.echo(textwrap.fill(line, 100))
    if versus:
        click.echo("")
        for line in versus:
            click.echo(textwrap.fill(line, 100))


def _candidate(text: str):
    """``chinchilla`` or ``"chinchilla likelihood=normal pool=E:dataset,alpha:dataset"`` -> Candidate."""
    import shlex

    from .backtesting import Candidate

    law, *options = shlex.split(text)
    parsed = {}
    for option in options:
        key, _, value = option.partition("=")
        if key in ("pool", "input"):
            parsed["pool" if key == "pool" else "inputs"] = dict(item.split(":", 1) for item in value.split(",")
                                                                 if ":" in item)
        elif key in ("likelihood", "sampler", "extrapolation", "params"):
            parsed[key] = value
        elif key == "noise_trend" and value in ("on", "off"):
            parsed[key] = value == "on"
        elif key == "prior":
            name, _, prior = value.partition(":")
            parsed.setdefault("priors", {})[name] = prior
        else:
            raise BayescaleError(f"--law {text!r}: unknown option {key!r}; use likelihood=..., pool=E:group,..., "
                                 "input=X:C, params=non_embedding, noise_trend=on|off or prior=alpha:'LogNormal(...)'")
    return Candidate(law, parsed)


def _fan_out_options(function):
    """Options of the commands that fit many models at once (see bayescale.executor)."""
    for option in reversed([
        click.option("--processes", type=int, default=None, help="Parallel local fits (default: one per core)."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Run the fits on a Dask cluster: its scheduler address, e.g. tcp://host:8786 "
                          "(needs pip install 'bayescale[dask]', and bayescale on the workers)."),
        click.option("--fail-fast", is_flag=True, help="Cancel the other fits when one fails (default: let them finish)."),
    ]):
        function = option(function)
    return function


def _sampling_options(function):
    for option in reversed([
        click.option("--draws", type=int, default=defaults.DRAWS, show_default=True),
        click.option("--tune", type=int, default=defaults.TUNE, show_default=True),
        click.option("--chains", type=int, default=defaults.CHAINS, show_default=True),
        click.option("--seed", type=int, default=defaults.SEED, show_default=True),
    ]):
        function = option(function)
    return function


def _check_fan_out(processes, scheduler) -> None:
    if processes is not None and scheduler is not None:
        raise BayescaleError("give --processes (local fits) or --scheduler (a Dask cluster), not both")
    if processes is not None and processes < 1:
        raise BayescaleError(f"--processes must be at least 1, got {processes}")


def _print_coverage_ranges(result) -> None:
    """Per candidate: the coverage its bands would show here if it were right, and where the actual one falls outside."""
    ranges = {label: r["coverage_if_right"] for label, r in result.results.items() if r.get("coverage_if_right")}
    if not ranges:
        return
    click.echo("if the forecast is right, its bands hold (5-95% range; held-out runs share their extrapolation error, "
               "so coverage varies from split to split):")
    for label, expected in ranges.items():
        actual = result.results[label]["coverage"]
        parts = []
        for level, (low, high) in expected.items():
            verdict = "" if low <= actual[level] <= high else (" (narrower than right)" if actual[level] < low
                                                               else " (wider than right)")
            parts.append(f"{float(level):.0%}: {low:.2f}-{high:.2f}, got {actual[level]:.2f}{verdict}")
        click.echo(f"  {label}: " + "; ".join(parts))


def _print_backtest(result) -> None:
    click.echo(f"holdout {result.holdout!r}: fitted on {result.n_train} runs, forecast {result.n_heldout}")
    click.echo(f"{'rank':>4} {'law':<40} {'cov50':>6} {'cov80':>6} {'cov90':>6} {'med|rel err|':>12} "
               f"{'IS90':>7} {'heldout lpd':>11}")
    for label, row in result.table.iterrows():
        click.echo(f"{row['rank']:>4.0f} {label:<40} {row['coverage_0.5']:>6.2f} {row['coverage_0.8']:>6.2f} "
                   f"{row['coverage_0.9']:>6.2f} {row['median_abs_rel_error']:>12.2%} {row['interval_score_90']:>7.2%} "
                   f"{row['heldout_lpd']:>11.1f}")
    click.echo("IS90: interval score of the 90% band relative to the loss (Gneiting and Raftery 2007; width plus "
               "20x any miss; lower is better)")
    _print_coverage_ranges(result)
    for label, r in result.results.items():
        for message in r.get("warnings", []):
            click.echo(f"warning: {label}: {message}", err=True)
    for label, message in result.errors.items():
        click.echo(f"error: {label} on {result.holdout!r} failed: {message}", err=True)


@cli.command("backtest")
@click.argument("runs", type=click.Path(dir_okay=False))
@click.option("--law", "laws", multiple=True, required=True,
              help="A law to backtest, optionally with fit options: \"chinchilla likelihood=normal pool=E:dataset\" (repeatable).")
@click.option("--holdout", "holdouts", multiple=True, required=True,
              help="Runs to forecast: 'N >= 2.9e9', 'C > 1e21 and D > 1e10' or 'top 10% C' (repeatable).")
@click.option("--columns", multiple=True, help="Map canonical names to yours: N='Model Size'.")
@_sampling_options
@_fan_out_options
@click.option("--out", type=click.Path(dir_okay=False), help="Save the result as JSON (for bayescale report).")
@_json_option
def backtest_command(runs, laws, holdouts, columns, draws, tune, chains, seed, processes, scheduler, fail_fast, out,
                     as_json):
    """Leave-future-out: fit each law on the runs outside --holdout, forecast the held-out runs, score them.

    Every (law, holdout) fit is an independent task: on local worker processes, or on a Dask
    cluster with --scheduler. A law whose fit fails is reported and the others finish (exit
    status 1), unless --fail-fast.
    """
    from .backtesting import backtest

    _check_fan_out(processes, scheduler)
    candidates = [_candidate(text) for text in laws]
    results = backtest(runs, candidates, list(holdouts), columns=_pairs(columns, "--columns"), draws=draws, tune=tune,
                       chains=chains, seed=seed, processes=processes, scheduler=scheduler, fail_fast=fail_fast,
                       progress=lambda msg: click.echo(msg, err=True))
    if out:
        if len(results) > 1:
            for result in results:
                click.echo(f"saved {result.save(_numbered(out, result.holdout, holdouts))}")
        else:
            results[0].save(out)
    if as_json:
        data = [r.to_dict() for r in results]
        click.echo(json.dumps(data[0] if len(data) == 1 else {"backtests": data}))
    else:
        for result in results:
            _print_backtest(result)
        if out and len(results) == 1:
            click.echo(f"saved {out}")
    if any(r.errors for r in results):
        raise click.exceptions.Exit(1)


def _numbered(out: str, rule: str, rules) -> Path:
    """``bt.json`` -> ``bt.1.json`` for the first of several holdout rules."""
    path = Path(out)
    return path.with_name(f"{path.stem}.{list(rules).index(rule) + 1}{path.suffix}")


def _band(row, prefix: str) -> dict[str, float]:
    return {k: float(row[f"{prefix}_{k}"]) for k in ("median", "lower", "upper")}


def _tune_records(table: pd.DataFrame) -> list[dict]:
    """``tuning.tune``'s flat table as one nested JSON record per point."""
    names = table.attrs["tunable"]
    records = []
    for _, row in table.iterrows():
        record = {k: float(row[k]) for k in table.columns if k in ("N", "D", "C", "U")}
        for name in names:
            record[f"{name}_opt"] = {**_band(row, f"{name}_opt"), "beyond_data": bool(row[f"{name}_opt_beyond_data"])}
            record[f"{name}_penalty_2x"] = {"high": _band(row, f"{name}_penalty_high"),
                                           "low": _band(row, f"{name}_penalty_low")}
        record["loss"] = {**_band(row, "loss"), **{k: float(row[k]) for k in ("pred_lower", "pred_upper",
                                                                             "extrapolation")}}
        if "given_penalty_median" in table.columns:
            given = [n for n in names if f"{n}_given" in table.columns]
            record["given"] = {**{n: float(row[f"{n}_given"]) for n in given},
                               "p_within_2x": {n: float(row[f"{n}_p_within_2x"]) for n in given},
                               "penalty": {**_band(row, "given_penalty"), "mean": float(row["given_penalty_mean"])},
                               "loss": {"median": float(row["given_loss_median"]),
                                        "pred_lower": float(row["given_pred_lower"]),
                                        "pred_upper": float(row["given_pred_upper"])}}
        records.append(record)
    return records


def _print_tune(table: pd.DataFrame, fit, ci_prob: float) -> None:
    pct = f"{ci_prob:.0%}"
    names = table.attrs["tunable"]
    click.echo(f"{fit.law.name}: best {', '.join(names)} (median, {pct} interval), the loss of a run there "
               f"(law and run bands), and the loss given up away from it")
    for _, row in table.iterrows():
        where = ", ".join(f"{k}={row[k]:.3g}" for k in ("N", "D") if k in table.columns)
        best = "; ".join(f"{n}* {row[f'{n}_opt_median']:.3g} [{row[f'{n}_opt_lower']:.3g}, {row[f'{n}_opt_upper']:.3g}]"
                         for n in names)
        click.echo(f"{where}: {best}; loss {row['loss_median']:.4f} law [{row['loss_lower']:.4f}, "
                   f"{row['loss_upper']:.4f}] run [{row['pred_lower']:.4f}, {row['pred_upper']:.4f}]")
        for n in names:
            click.echo(f"  {n} 2x too high costs {row[f'{n}_penalty_high_median']:.4f} "
                       f"[{row[f'{n}_penalty_high_lower']:.4f}, {row[f'{n}_penalty_high_upper']:.4f}] nats, "
                       f"2x too low {row[f'{n}_penalty_low_median']:.4f} [{row[f'{n}_penalty_low_lower']:.4f}, "
                       f"{row[f'{n}_penalty_low_upper']:.4f}]")
            if row[f"{n}_opt_beyond_data"]:
                tried = fit.runs[n]
                click.echo(f"  note: {n}* lies outside the values the runs tried ({tried.min():.3g} to "
                           f"{tried.max():.3g}): the basin is extrapolated there")
        if "given_penalty_median" in table.columns:
            given = ", ".join(f"{n} {row[f'{n}_given']:.3g}" for n in names if f"{n}_given" in table.columns)
            within = ", ".join(f"P({n} within 2x of the best) {row[f'{n}_p_within_2x']:.2f}"
                               for n in names if f"{n}_given" in table.columns)
            click.echo(f"  {given}: costs {row['given_penalty_mean']:.4f} nats expected, median "
                       f"{row['given_penalty_median']:.4f} [{row['given_penalty_lower']:.4f}, "
                       f"{row['given_penalty_upper']:.4f}] ({within}); a run there: "
                       f"{row['given_loss_median']:.4f} [{row['given_pred_lower']:.4f}, {row['given_pred_upper']:.4f}]")
    if (table["extrapolation"] > 0).any():
        click.echo("note: the run bands include the extrapolation discrepancy beyond the fitted runs")


def _print_heldout(runs: list[dict], keys, observed: str, label: str | None = None) -> None:
    """One line per held-out run: where it is, what it scored, its forecast and 90% predictive band."""
    for run in runs:
        where = ", ".join(f"{k}={run[k]}" if isinstance(run[k], str) else f"{k}={run[k]:.3g}" for k in keys)
        flag = "" if run["inside_90"] else "  (outside the 90% band)"
        click.echo(f"  {where}: {label or observed} {run[observed]:.4f}, forecast {run['median']:.4f} "
                   f"[{run['pred_lower']:.4f}, {run['pred_upper']:.4f}]{flag}")


def _print_tune_backtest(result: dict) -> None:
    click.echo(f"{result['law']}, holdout {result['holdout']!r}: fitted on {result['n_train']} runs, "
               f"forecast {result['n_heldout']} at their own settings")
    names = [k for k in ("lr", "batch") if result["runs"] and k in result["runs"][0]]
    _print_heldout(result["runs"], ("N", "D", *names), "loss")
    cov = result["coverage"]
    click.echo(f"coverage of the predictive bands: 50% {cov['0.5']:.2f}, 80% {cov['0.8']:.2f}, 90% {cov['0.9']:.2f}; "
               f"median |relative error| {result['median_abs_rel_error']:.2%}")
    for cell in result["cells"]:
        where = ", ".join(f"{k}={cell[k]:.3g}" for k in ("N", "D") if k in cell)
        mark = "ranked first" if cell["ranked_first"] else f"forecast prefers {cell['forecast_best']:.3g}"
        low, high = cell["observed_best_bracket"]
        bracket = f"{'0' if low is None else f'{low:.3g}'} to {'inf' if high is None else f'{high:.3g}'}"
        opt = cell["opt_forecast"]
        click.echo(f"  {where}: observed best {cell['tunable']} {cell['observed_best']:.3g} of "
                   f"{', '.join(f'{v:.3g}' for v in cell['values'])} (best between {bracket}): {mark}, "
                   f"P(best) {cell['p_observed_best']:.2f}; forecast {cell['tunable']}* {opt['median']:.3g} "
                   f"[{opt['lower']:.3g}, {opt['upper']:.3g}]")
    click.echo(f"the forecast ranks the observed best value first in {result['cells_ranked_first']} of "
               f"{result['n_cells']} held-out cells")


@cli.command("tune")
@click.argument("runs", type=click.Path(dir_okay=False))
@click.option("--at", "at", multiple=True, help="A point: N=3e9,D=6e10 (repeat for more points).")
@click.option("--law", "law_spec", default="chinchilla_lr_asym", show_default=True,
              help="A law with a learning-rate (lr) or batch-size (batch) input: catalog name or .toml card.")
@click.option("--columns", multiple=True, help="Map canonical names to yours: lr=peak_lr,batch='Batch tokens'.")
@click.option("--lr", type=float, default=None, help="A peak learning rate to price against the best one.")
@click.option("--batch", type=float, default=None, help="A batch size (tokens) to price against the best one.")
@click.option("--holdout", default=None,
              help="Backtest instead: fit without these runs ('N >= 5e8'), forecast them and rank each cell's rates.")
@_sampling_options
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also save the fit (.nc).")
@_ci_option
@_json_option
def tune_command(runs, at, law_spec, columns, lr, batch, holdout, draws, tune, chains, seed, out, ci_prob, as_json):
    """The best peak learning rate (and batch size) at unseen N and D, with intervals and the cost of missing it.

    RUNS is a runs table (fitted here) or a saved fit (.nc) of a law with an lr or batch input.
    """
    import pandas as pd

    from . import tuning
    from .fitting import Fit, fit

    given = {k: v for k, v in (("lr", lr), ("batch", batch)) if v is not None}
    options = dict(columns=_pairs(columns, "--columns"), draws=draws, tune=tune, chains=chains, seed=seed,
                   progressbar=False)
    if holdout:
        if str(runs).endswith(".nc"):
            raise BayescaleError("--holdout refits on part of the runs: give the runs table, not a saved fit")
        result = tuning.backtest(runs, law_spec, holdout, **options)
        fitted = result.pop("fit")
        if out:
            click.echo(f"saved {fitted.save(out)}", err=as_json)
        if as_json:
            click.echo(json.dumps(result))
        else:
            _print_tune_backtest(result)
        return
    if not at:
        raise BayescaleError("give the points to tune at with --at N=...,D=... (repeatable), or --holdout RULE")
    fitted = Fit.load(runs) if str(runs).endswith(".nc") else fit(runs, law_spec, **options)
    if out:
        click.echo(f"saved {fitted.save(out)}", err=as_json)
    table = tuning.tune(fitted, pd.DataFrame(_at_points(at)), given=given, ci_prob=ci_prob)
    if as_json:
        click.echo(json.dumps({"law": fitted.law.name, "ci_prob": ci_prob, "predictions": _tune_records(table)}))
    else:
        _print_tune(table, fitted, ci_prob)


def _print_downstream(table: pd.DataFrame, metric: str, ci_prob: float) -> None:
    pct = f"{ci_prob:.0%}"
    click.echo(f"loss, then {metric} (median, {pct} band of the laws, {pct} band of a run; both steps' "
               "uncertainty chained)")
    for _, row in table.iterrows():
        where = ", ".join(f"{k}={row[k]:.3g}" if not isinstance(row[k], str) else f"{k}={row[k]}"
                          for k in table.columns if k in ("N", "D", "group") or k == table.attrs.get("group"))
        click.echo(f"{where}: loss {row['loss_median']:.4f} [{row['loss_lower']:.4f}, {row['loss_upper']:.4f}] run "
                   f"[{row['loss_pred_lower']:.4f}, {row['loss_pred_upper']:.4f}]; {metric} {row['median']:.4f} "
                   f"[{row['lower']:.4f}, {row['upper']:.4f}] run [{row['pred_lower']:.4f}, {row['pred_upper']:.4f}]; "
                   f"P(above chance) {row['p_above_chance']:.2f}")
        if row["p_above_chance"] < 0.9:
            click.echo(f"  not predictable yet: in {1 - row['p_above_chance']:.0%} of draws the law stays within "
                       "2 points of chance there")


def _save_downstream_plot(path, loss_fit, metric_fit, heldout, ci_prob: float, quiet: bool) -> None:
    from .plots import downstream_fan, save_figure

    saved = save_figure(downstream_fan(loss_fit, metric_fit, heldout=heldout, ci_prob=ci_prob), path)
    click.echo(f"saved {saved}", err=quiet)


def _write_downstream_report(path, loss_fit, metric_fit, forecast, backtest, heldout, ci_prob: float,
                             quiet: bool) -> None:
    from .report import build_downstream_report, write_report

    fmt = "markdown" if str(path).endswith(".md") else "html"
    text = build_downstream_report(loss_fit, metric_fit, forecast, backtest=backtest, heldout=heldout,
                                   ci_prob=ci_prob, fmt=fmt)
    click.echo(f"saved {write_report(path, text)}", err=quiet)


def _downstream_records(table: pd.DataFrame) -> list[dict]:
    records = []
    for _, row in table.iterrows():
        record = {k: (row[k] if isinstance(row[k], str) else float(row[k]))
                  for k in table.columns if k in ("N", "D", "C", "chance") or k == table.attrs.get("group")}
        record["loss"] = {k: float(row[f"loss_{k}"]) for k in ("median", "lower", "upper", "pred_lower", "pred_upper")}
        record["metric"] = {k: float(row[k]) for k in ("median", "lower", "upper", "pred_lower", "pred_upper")}
        record["p_above_chance"] = float(row["p_above_chance"])
        record["metric_extrapolation"] = float(row["metric_extrapolation"])
        records.append(record)
    return records


@cli.command("downstream")
@click.argument("runs", type=click.Path(dir_okay=False))
@click.option("--metric", required=True, help="The accuracy column (fractions in [0, 1]).")
@click.option("--group", default=None, help="Training-corpus column: the loss each group needs for an accuracy differs "
                                            "(partially pooled shift); the loss law's E is pooled by it too.")
@click.option("--metric-law", default="metric_exp", show_default=True,
              help="Loss -> metric card: metric_exp (Gadre et al.), metric_sigmoid (chance floor), or a .toml card.")
@click.option("--law", "law_spec", default="chinchilla", show_default=True, help="The loss law in N and D.")
@click.option("--columns", multiple=True, help="Map canonical names to yours: N='params',loss='c4_loss'.")
@click.option("--chance", type=float, default=None, help="The random baseline (fraction) when there is no chance column.")
@click.option("--at", "at", multiple=True, help="A point: N=7e9,D=1.4e11[,dataset=rpj] (repeatable).")
@click.option("--holdout", default=None, help="Backtest both steps: fit without these runs ('N >= 1e9'), forecast them.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save the two-step fan chart (accuracy against loss, then against compute) as a PNG.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write an HTML report (.html) or Markdown (.md): both laws, the forecast, the fan chart.")
@_sampling_options
@_ci_option
@_json_option
def downstream_command(runs, metric, group, metric_law, law_spec, columns, chance, at, holdout, plot_path, report_path,
                       draws, tune, chains, seed, ci_prob, as_json):
    """Forecast a downstream accuracy at unseen N and D: the loss law, then a law from loss to accuracy.

    RUNS has N, D, loss, the metric column (and the group column; optionally chance and n, the
    number of questions). Both laws are fitted here; the forecast carries both uncertainties.
    """
    import pandas as pd

    from . import downstream
    from .backtesting import holdout_mask
    from .data import read_table
    from .fitting import fit

    table, _ = read_table(runs)
    mapping = _pairs(columns, "--columns")
    missing = [theirs for theirs in mapping.values() if theirs not in table.columns]
    if missing:
        raise BayescaleError(f"--columns: no column(s) {', '.join(missing)} in {runs}")
    table = table.rename(columns={theirs: ours for ours, theirs in mapping.items()})
    downstream.check_metric(table, metric)
    pool = {"E": group} if group else None
    options = dict(draws=draws, tune=tune, chains=chains, progressbar=False)
    if holdout:
        result = downstream.backtest(table, metric, holdout, loss_law=law_spec, metric_law=metric_law, group=group,
                                     pool=pool, chance=chance, seed=seed, **options)
        loss_fit, metric_fit = result.pop("fits")
        heldout = table[holdout_mask(table, holdout)]
        if plot_path:
            _save_downstream_plot(plot_path, loss_fit, metric_fit, heldout, ci_prob, as_json)
        if report_path:
            forecast = downstream.chained(loss_fit, metric_fit, heldout, ci_prob=ci_prob, seed=seed)
            _write_downstream_report(report_path, loss_fit, metric_fit, forecast, result, heldout, ci_prob, as_json)
        if as_json:
            click.echo(json.dumps(result))
            return
        click.echo(f"holdout {holdout!r}: both steps fitted on {result['n_train']} runs ({result['loss_law']}, then "
                   f"{result['metric_law']}); {metric} of the {result['n_heldout']} held-out runs:")
        _print_heldout(result["runs"], [k for k in ("N", "D", group) if k], "metric", metric)
        cov = result["coverage"]
        click.echo(f"coverage 50% {cov['0.5']:.2f}, 80% {cov['0.8']:.2f}, 90% {cov['0.9']:.2f}; median |error| "
                   f"{result['median_abs_error']:.4f} ({result['median_abs_error'] * 100:.2f} points)")
        return
    if not at:
        raise BayescaleError("give the points with --at N=...,D=...[,group=...] (repeatable), or --holdout RULE")
    points = _at_points(at, labels=[group] if group else ())
    loss_fit = fit(table, law_spec, pool=pool, seed=seed, **options)
    metric_fit = downstream.fit_metric(table, metric, metric_law, group=group, chance=chance, seed=seed,
                                       draws=draws, tune=tune, chains=chains)
    result = downstream.chained(loss_fit, metric_fit, pd.DataFrame(points), ci_prob=ci_prob, seed=seed)
    result.attrs["group"] = group
    if plot_path:
        _save_downstream_plot(plot_path, loss_fit, metric_fit, None, ci_prob, as_json)
    if report_path:
        _write_downstream_report(report_path, loss_fit, metric_fit, result, None, None, ci_prob, as_json)
    if as_json:
        click.echo(json.dumps({"ci_prob": ci_prob, "loss_law": loss_fit.law.name, "metric_law": metric_fit.law.name,
                               "predictions": _downstream_records(result)}))
    else:
        _print_downstream(result, metric, ci_prob)


@cli.command("sweep")
@click.argument("runs", type=click.Path(dir_okay=False))
@click.option("--law", "laws", multiple=True, required=True,
              help="A law to fit, optionally with fit options: \"chinchilla likelihood=normal\" (repeatable).")
@click.option("--by", default=None, help="Fit each group of this column separately (e.g. dataset); default: all runs.")
@click.option("--columns", multiple=True, help="Map canonical names to yours: N='Model Size'.")
@_sampling_options
@_fan_out_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for fits/*.nc, comparison.csv and report.html.")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@_json_option
def sweep_command(runs, laws, by, columns, draws, tune, chains, seed, processes, scheduler, fail_fast, out_dir,
                  no_report, as_json):
    """Fit every law to every group of a table at once, and compare the laws within each group by PSIS-LOO.

    Writes one fit file per group and law, one comparison table and one report. A fit that fails
    is reported and the others finish (exit status 1), unless --fail-fast.
    """
    from .sweep import fit_many

    _check_fan_out(processes, scheduler)
    candidates = [_candidate(text) for text in laws]
    sweep = fit_many(runs, candidates, by=by, columns=_pairs(columns, "--columns"), draws=draws, tune=tune,
                     chains=chains, seed=seed, processes=processes, scheduler=scheduler, fail_fast=fail_fast,
                     progress=lambda msg: click.echo(msg, err=True))
    written = sweep.save(out_dir)
    if not no_report:
        from .report import build_sweep_report, write_report

        text = build_sweep_report(sweep, progress=lambda step: click.echo(f"report: {step}", err=True))
        written["report"] = write_report(Path(out_dir) / "report.html", text)
    table = sweep.comparison()
    if as_json:
        records = json.loads(table.to_json(orient="records"))
        click.echo(json.dumps({"by": by, "comparison": records, "files": {k: str(v) for k, v in written.items()}}))
    else:
        click.echo(f"{'group':<16} {'law':<28} {'rank':>4} {'elpd':>9} {'elpd_diff':>9} {'dse':>6} {'weight':>6} "
                   f"{'div':>4} {'r_hat':>6} {'ess':>6}")
        for row in table.to_dict("records"):
            if row["error"]:
                continue
            click.echo(f"{row['group']:<16} {row['law']:<28} {row['rank']:>4} {row['elpd']:>9.1f} "
                       f"{row['elpd_diff']:>9.1f} {row['dse']:>6.1f} {row['weight']:>6.2f} {row['divergences']:>4} "
                       f"{row['rhat_max']:>6.3f} {row['ess_bulk_min']:>6.0f}")
        click.echo(f"saved {', '.join(str(p) for p in written.values() if p.suffix != '.nc')} and "
                   f"{len(sweep.fits)} fits in {Path(out_dir) / 'fits'}")
    for (group, label), messages in sweep.warnings.items():
        for message in messages:
            click.echo(f"warning: {label} on {group}: {message}", err=True)
    for (group, label), message in sweep.errors.items():
        click.echo(f"error: {label} on {group} failed: {message}", err=True)
    if sweep.errors:
        raise click.exceptions.Exit(1)


@cli.command("report")
@click.argument("fit_paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--backtest", "backtest_path", type=click.Path(dir_okay=False), help="A backtest result (from backtest --out).")
@click.option("--at", "at", multiple=True, help="Forecast at N=7e10,D=1.4e12 (repeatable; default 10x and 100x the largest run).")
@click.option("--format", "fmt", type=click.Choice(["html", "markdown"]), default="html", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The report file to write.")
@_ci_option
def report_command(fit_paths, backtest_path, at, fmt, out, ci_prob):
    """One self-contained report (HTML or Markdown, images inline) for one or more fits."""
    from .backtesting import BacktestResult
    from .fitting import Fit
    from .report import build_report, write_report

    fits = {Path(p).stem: Fit.load(p) for p in fit_paths}
    if len(fits) != len(fit_paths):
        raise BayescaleError("report: give each fit file once (names come from the file names)")
    backtest = BacktestResult.load(backtest_path) if backtest_path else None
    text = build_report(fits, backtest=backtest, points=_at_points(at) or None, ci_prob=ci_prob, fmt=fmt,
                        progress=lambda step: click.echo(f"report: {step}", err=True))
    click.echo(f"saved {write_report(out, text)}")


@cli.command("curve")
@click.argument("runs", type=click.Path(dir_okay=False))
@click.option("--law", "law_spec", default="curve_power", show_default=True, help="A learning-curve law (input step).")
@click.option("--run", "run_id", default=None, help="Forecast only this run (default: all runs).")
@click.option("--upto", type=float, required=True, help="Fit on checkpoints up to this step, or this fraction (<= 1) of each run.")
@click.option("--horizon", type=float, default=None, help="Forecast to this step (default: each run's last recorded step).")
@click.option("--delta", type=float, default=0.01, show_default=True,
              help="Loss drop that counts as an improvement; saturation is a gain below it per 1,000 steps.")
@click.option("--columns", multiple=True, help="Map canonical names to yours: run=name,step=iteration.")
@click.option("--warmup", type=float, default=None,
              help="Exclude the early phase: a fraction of each run's planned steps, or a step number (>= 1); 0 keeps "
                   "all. Default: 20% of a run's total_steps (at most half of what --upto lets the fit see), 5% of "
                   "the last recorded step for a run without total_steps.")
@click.option("--pool", "pool_items", multiple=True, metavar="PARAM=COLUMN",
              help="Let a parameter vary by a group column (e.g. L0=model); each run then gets an additive "
                   "run_offset. Default: the card's run_effect parameters vary by run.")
@click.option("--schedule", "schedules", multiple=True, metavar="NAME=SCHEDULE",
              help="What if --run had followed this schedule (schedule-aware laws), e.g. "
                   "long='cosine(peak=1e-3, total=32000, warmup=50, final=0.1)'; repeat to compare several.")
@click.option("--peak-lr", "peaks", multiple=True, type=float,
              help="What if --run had this peak learning rate, its schedule otherwise as planned (repeatable); "
                   "compared with the run as planned.")
@click.option("--draws", type=int, default=defaults.DRAWS, show_default=True)
@click.option("--tune", type=int, default=defaults.TUNE, show_default=True)
@click.option("--seed", type=int, default=defaults.SEED, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_ci_option
@_json_option
def curve_command(runs, law_spec, run_id, upto, horizon, delta, columns, warmup, pool_items, schedules, peaks, draws,
                  tune, seed, quiet, ci_prob, as_json):
    """Forecast the rest of training runs from their checkpoints so far (joint fit with a run effect)."""
    from .curves import compare_schedules, fit_curves, forecast_curves, load_checkpoints, peak_rate_variants

    if (schedules or peaks) and run_id is None:
        raise click.UsageError(f"{'--schedule' if schedules else '--peak-lr'} needs --run: the run whose schedule is "
                               "changed")
    from .pooling import parse_pool

    pool = parse_pool(pool_items) or None
    table = load_checkpoints(runs, _pairs(columns, "--columns"), warmup=warmup, upto=upto,
                             keep=sorted(set(pool.values()) - {"run"}) if pool else ())
    fit = fit_curves(table, law_spec, upto=upto, pool=pool, draws=draws, tune=tune, seed=seed, progressbar=not (as_json or quiet))
    if schedules or peaks:
        named = peak_rate_variants(table, run_id, peaks) if peaks else {}
        for item in schedules:
            name, eq, text = item.partition("=")
            if not eq or not name.strip():
                raise BayescaleError(f"--schedule {item!r} should look like NAME='cosine(peak=1e-3, total=16000)'")
            named[name.strip()] = text
        result = compare_schedules(fit, table, named, run=run_id, ci_prob=ci_prob)
        if as_json:
            click.echo(json.dumps({"ci_prob": ci_prob, "run": run_id, "schedules": result.to_dict("records")}))
            return
        pct = f"{ci_prob:.0%}"
        click.echo(f"run {run_id}: final loss under each schedule ({pct} intervals: the law, then new runs)")
        for r in result.to_dict("records"):
            flag = "  [peak outside the fitted runs]" if r["peak_outside_fitted"] else ""
            click.echo(f"{r['schedule']}: {r['spec']}: {r['final_median']:.4f} [{r['final_lower']:.4f}, "
                       f"{r['final_upper']:.4f}], new run [{r['final_pred_lower']:.4f}, {r['final_pred_upper']:.4f}]; "
                       f"P(best) = {r['p_best']:.2f}{flag}")
        return
    result = forecast_curves(fit, table, upto=upto, horizon=horizon, delta=delta, ci_prob=ci_prob, run=run_id)
    if as_json:
        click.echo(json.dumps({"ci_prob": ci_prob, "runs": [
            {"run": r["run"], "upto_step": r["upto_step"], "horizon_step": r["horizon_step"],
             "final": {"median": r["final_median"], "pred_lower": r["final_pred_lower"], "pred_upper": r["final_pred_upper"]},
             "p_improve": r["p_improve"],
             "saturation_step": None if np.isnan(r["saturation_step"]) else r["saturation_step"]}
            for r in result.to_dict("records")]}))
        return
    pct = f"{ci_prob:.0%}"
    for r in result.to_dict("records"):
        saturated = ("not within the forecast range (100x the horizon, or the schedule's end)"
                     if np.isnan(r["saturation_step"]) else f"from step {r['saturation_step']:.0f}")
        click.echo(f"{r['run']}: seen to step {r['upto_step']:.0f}; final loss at step {r['horizon_step']:.0f}: "
                   f"{r['final_median']:.4f} ({pct} of runs [{r['final_pred_lower']:.4f}, {r['final_pred_upper']:.4f}]); "
                   f"P(loss falls by more than {delta:g} between steps {r['upto_step']:.0f} and "
                   f"{r['horizon_step']:.0f}) = {r['p_improve']:.2f}; each further 1,000 steps gains less than "
                   f"{delta:g} {saturated}")


@cli.command("demo")
@click.option("--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo fit.")
@click.option("--draws", type=int, default=defaults.DRAWS, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo_command(out_dir, draws, quiet):
    """The main job on the embedded demo sweep: fit Chinchilla, summarise, forecast larger models."""
    from .datasets import CHINCHILLA_TRUTH, demo_runs_path
    from .fitting import fit

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    click.echo(f"demo runs: {demo_runs_path()} (synthetic IsoFLOP sweep, truth {CHINCHILLA_TRUTH})")
    result = fit(demo_runs_path(), "chinchilla", draws=draws, progressbar=not quiet)
    path = result.save(Path(out_dir) / "demo_fit.nc")
    _print_summary(result, defaults.CI_PROB, show_problems=False)
    forecast = result.predict(N=[7e10, 1.75e11], D=[1.4e12, 3.5e12])
    for _, row in forecast.iterrows():
        click.echo(f"forecast at N={row['N']:.3g}, D={row['D']:.3g}: loss {row['median']:.3f}; 90% of new runs "
                   f"would land between {row['pred_lower']:.3f} and {row['pred_upper']:.3f}")
    from .plots import forecast_fan, save_figure

    figure = save_figure(forecast_fan(result), Path(out_dir) / "demo_forecast.png")
    click.echo(f"saved {path} and {figure}; try: .venv/bin/bayescale predict {path} --at N=1e10,D=2e11")


def main(argv=None) -> int:
    """Run the command line; returns the exit status (2 for a user error, 130 after Ctrl-C)."""
    try:
        result = cli.main(args=argv, standalone_mode=False)
    except BayescaleError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort as exc:
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        click.echo("interrupted: every running fit was cancelled" if interrupted else "aborted", err=True)
        return 130 if interrupted else 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return result if isinstance(result, int) else 0


def run() -> None:
    """The ``bayescale`` program: :func:`main`, then exit without a last pass of the garbage collector.

    Python's shutdown collects every object graph PyMC, PyTensor and Numba built (hundreds of
    thousands of objects): about 1 s of a 6 s fit. Freezing them first skips that pass; objects are
    still released by reference counting, files are already closed and ``atexit`` handlers still run.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    run()
