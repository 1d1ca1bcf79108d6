"""``compare``: several laws on the same runs, ranked by PSIS-LOO, weighted by stacking, forecast together."""

from __future__ import annotations

import warnings
from pathlib import Path

import click
import cloup

import bayescale as bs
from bayescale.cli.fit_commands import _predict_text
from bayescale.cli.options import fan_out_group, input_group, law_group, output_group, sampling_group, sampling_settings
from bayescale.cli.parsing import candidate, check_fan_out, fit_names, forecast_points, pairs
from bayescale.cli.render import band, bands_line, emit, records, wrap
from bayescale.errors import BayescaleError

#: what each column of the comparison table means
LOO_LEGEND = (
    "elpd: expected log predictive density of a left-out run (PSIS-LOO; higher is better), se its standard "
    "error; elpd_diff: how far below the best, dse the standard error of that difference; p_loo: effective "
    "number of parameters; weight: stacking weight (the mix of laws that predicts left-out runs best, not "
    "the probability that a law is right); k>thr: runs whose LOO value is unreliable (Pareto k)"
)


def _compare_text(result: dict):
    yield (
        f"{'fit':<24} {'rank':>4} {'elpd':>9} {'se':>7} {'elpd_diff':>9} {'dse':>7} {'p_loo':>6} {'weight':>6} "
        f"{'k>thr':>5}"
    )
    for row in result["fits"]:
        yield (
            f"{row['fit']:<24} {row['rank']:>4.0f} {row['elpd']:>9.1f} {row['se']:>7.1f} {row['elpd_diff']:>9.1f} "
            f"{row['dse']:>7.1f} {row['p']:>6.1f} {row['weight']:>6.2f} {len(row['high_pareto_k_rows']):>5.0f}"
        )
    yield wrap(
        "sampler: "
        + "; ".join(
            f"{row['fit']} {row['sampler']['divergences']} divergences, R-hat {row['sampler']['rhat_max']:.3f}, "
            f"min bulk ESS {row['sampler']['ess_bulk_min']:.0f}"
            for row in result["fits"]
        )
    )
    yield wrap(result["legend"])
    yield ""
    yield from map(wrap, result["verdict"])
    if result.get("against_backtest"):
        yield ""
        yield from map(wrap, result["against_backtest"])
    if result.get("forecast"):
        yield ""
        yield from _predict_text(result["forecast"])
    if result.get("plan"):
        yield ""
        yield from _plan_stacked_text(result["plan"])
    for path in result.get("saved", []):
        yield f"saved {path}"


def _plan_stacked_text(plan: dict):
    """The stacked allocation: the mixture's N*, D*, D/N, each law's own N*, and what the band includes."""
    pct = f"{plan['ci_prob']:.0%}"
    yield f"compute-optimal allocation at C = {plan['flops']:.3g} FLOPs, the laws stacked (median, {pct} interval):"
    for key, label in (
        ("N_opt", "parameters N*"),
        ("D_opt", "tokens D*"),
        ("tokens_per_param", "tokens per parameter"),
    ):
        yield f"  {label:<22} {band(plan[key], '.4g')}"
    for name, law in plan["laws"].items():
        yield f"  {name} alone: N* {band(law['N_opt'], '.4g')} (weight {plan['weights'][name]:.2f})"
    yield wrap(
        "  " + bands_line(plan["ci_prob"], [("N*, D*, tokens per parameter", plan["band_includes"]["allocation"])])
    )


def _fit_laws(runs: str, laws, columns, where, quiet: bool, fan_out: dict, sampling: dict) -> dict:
    """Fit each ``--law`` to the runs table (in parallel, as ``sweep`` does); report the fits that failed."""
    sweep = bs.fit_many(
        runs,
        [candidate(text) for text in laws],
        columns=pairs(columns, "--columns"),
        where=where,
        progress=None if quiet else (lambda msg: click.echo(msg, err=True)),
        **fan_out,
        **sampling,
    )
    for item in sweep.warning_summary():
        click.echo(f"warning: {', '.join(item['from'])}: {item['message']}", err=True)
    for (_, label), message in sweep.errors.items():
        click.echo(f"error: {label} failed: {message}", err=True)
    return {label: fit for (_, label), fit in sweep.fits.items()}


@cloup.command("compare")
@cloup.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@input_group("N='Model Size'")
@law_group(
    cloup.option(
        "--law",
        "laws",
        multiple=True,
        help="With a runs table: a law to fit and compare, optionally with fit options: "
        '"chinchilla likelihood=normal" (repeatable).',
    )
)
@cloup.option_group(
    "Points",
    cloup.option(
        "--at", "at", multiple=True, help="Forecast here with the laws stacked: N=7e10,D=1.4e12 (repeatable)."
    ),
    cloup.option(
        "--points", type=click.Path(dir_okay=False), help="A CSV of points to forecast (one column per input)."
    ),
    cloup.option(
        "--plan",
        "plan_flops",
        type=float,
        default=None,
        help="Compute-optimal N*, D* for this FLOP budget with the laws stacked (laws in N and D).",
    ),
)
@sampling_group(fan_out=True)
@fan_out_group()
@output_group(
    cloup.option(
        "--backtest",
        "backtest_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="A backtest of the same laws (from backtest --out): say where it and LOO disagree.",
    ),
    cloup.option(
        "--out", "out_dir", type=click.Path(file_okay=False), default=None, help="With --law: save each fit here."
    ),
)
def compare_command(
    files,
    columns,
    where,
    laws,
    at,
    points,
    plan_flops,
    quiet,
    processes,
    scheduler,
    fail_fast,
    backtest_path,
    out_dir,
    ci_prob,
    as_json,
    **sampling,
):
    """Rank laws on the same runs by PSIS-LOO (elpd, differences, stacking weights); forecast with them stacked.

    Give saved fits (FIT.nc ...), or one runs table and a --law per law to fit (fitted in parallel,
    as sweep does). With --at or --points the laws forecast together: each contributes its stacking
    weight's share of the draws, so where they disagree the bands span the disagreement.
    """
    if at and points:  # said before any fitting
        raise BayescaleError("give the points with --at N=...,D=... (repeatable) or with --points FILE.csv, not both")
    if laws:
        if len(files) != 1:
            raise BayescaleError(f"with --law give one runs table, got {len(files)} files: {', '.join(files)}")
        check_fan_out(processes, scheduler)
        fan_out = {"processes": processes, "scheduler": scheduler, "fail_fast": fail_fast}
        fits = _fit_laws(files[0], laws, columns, where, quiet, fan_out, sampling_settings(sampling))
    else:
        if columns or where or out_dir:
            raise BayescaleError("--columns, --where and --out apply to a runs table with --law; these are fit files")
        fits = {name: bs.Fit.load(path) for name, path in fit_names(files).items()}
    table = bs.compare(fits)
    result = {
        "fits": [
            {
                "fit": name,
                "law": fits[name].law.name,
                **{k: row[k] for k in ("elpd", "se", "elpd_diff", "dse", "p", "weight")},
                "rank": int(row["rank"]),
                "high_pareto_k_rows": list(table.attrs["high_k"][name].index),
                "sampler": {
                    "divergences": fits[name].diagnostics.divergences,
                    "rhat_max": fits[name].diagnostics.rhat_max,
                    "ess_bulk_min": fits[name].diagnostics.ess_bulk_min,
                },
            }
            for name, row in table.iterrows()
        ],
        "verdict": bs.verdict(table),
        "legend": LOO_LEGEND,
    }
    if backtest_path:
        result["against_backtest"] = bs.against_backtest(table, fits, bs.BacktestResult.load(backtest_path))
    if at or points:
        wanted = forecast_points(at, points, fits.values())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bs.SamplerWarning)  # compare has said it
            forecast = bs.predict_stacked(fits, wanted, weights=table["weight"].to_dict(), ci_prob=ci_prob)
        inputs = list(dict.fromkeys(i for f in fits.values() for i in f.law.inputs))
        columns_out = [*inputs, "median", "lower", "upper", "pred_lower", "pred_upper"]
        extra = [c for c in wanted.columns if c not in columns_out]
        result["forecast"] = {
            "ci_prob": ci_prob,
            "inputs": inputs,
            "weights": forecast.attrs["weights"],
            "band_includes": forecast.attrs["band_includes"],
            "predictions": records(forecast, [*extra, *columns_out]),
        }
    if plan_flops is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bs.SamplerWarning)  # compare has said it
            result["plan"] = bs.plan_stacked(fits, plan_flops, weights=table["weight"].to_dict(), ci_prob=ci_prob)
    if out_dir and laws:
        from bayescale.evaluation.sweep import file_name

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        result["saved"] = [fit.save(Path(out_dir) / f"{file_name(name)}.nc") for name, fit in fits.items()]
    emit(result, as_json, _compare_text)
    if laws and len(fits) < len(laws):
        raise click.exceptions.Exit(1)
