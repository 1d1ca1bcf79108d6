"""Commands that fit many models: leave-future-out backtests, sweeps over groups and laws, tuning."""

from __future__ import annotations

import warnings
from pathlib import Path

import click
import cloup

import bayescale as bs
from bayescale.cli.options import (
    fan_out_group,
    file_argument,
    input_group,
    law_group,
    law_option,
    output_group,
    sampling_group,
    sampling_settings,
)
from bayescale.cli.parsing import at_points, candidate, check_fan_out, numbered, pairs
from bayescale.cli.render import band, bands_line, decision_calibration_lines, emit, fmt, prior_driven_lines, wrap
from bayescale.errors import BayescaleError
from bayescale.files import staged_folder

_CANDIDATE_HELP = ', optionally with fit options: "chinchilla likelihood=normal pool=E:dataset" (repeatable).'


# -- backtest ---------------------------------------------------------------------------------------
def coverage_ranges_text(record: dict):
    """Per law: the coverage its bands would show if it were right, and where the actual one falls outside."""
    laws = [law for law in record["laws"] if law.get("coverage_if_right")]
    if not laws:
        return
    yield (
        "if the forecast is right, its bands hold (5-95% range; held-out runs share their extrapolation error, "
        "so coverage varies from split to split):"
    )
    for law in laws:
        parts = []
        for level, (low, high) in law["coverage_if_right"].items():
            got = law["coverage"][level]
            verdict = "" if low <= got <= high else (" (narrower than right)" if got < low else " (wider than right)")
            parts.append(f"{float(level):.0%}: {low:.2f}-{high:.2f}, got {got:.2f}{verdict}")
        yield f"  {law['law']}: " + "; ".join(parts)


def _backtest_text(result: dict):
    for record in result.get("groups") or result.get("backtests") or [result]:
        if "group" in record:
            yield f"{result['by']} = {record['group']}:"
            if "error" in record:
                yield f"  no backtest: {record['error']}"
                continue
        yield from _backtest_record_text(record)
    for path in result.get("saved", []):
        yield f"saved {path}"


def _backtest_record_text(record: dict):
    yield f"holdout {record['holdout']!r}: fitted on {record['n_train']} runs, forecast {record['n_heldout']}"
    yield (
        f"{'rank':>4} {'law':<40} {'cov50':>6} {'cov80':>6} {'cov90':>6} {'med|rel err|':>12} "
        f"{'IS90':>7} {'heldout lpd':>11}"
    )
    for law in sorted((law for law in record["laws"] if "error" not in law), key=lambda law: law["rank"]):
        cov = law["coverage"]
        yield (
            f"{law['rank']:>4.0f} {law['law']:<40} {cov['0.5']:>6.2f} {cov['0.8']:>6.2f} {cov['0.9']:>6.2f} "
            f"{law['median_abs_rel_error']:>12.2%} {fmt(law['interval_score_90'], '.2%'):>7} "
            f"{law['heldout_lpd']:>11.1f}"
        )
    yield (
        "IS90: interval score of the 90% band relative to the loss (Gneiting and Raftery 2007; width plus "
        "20x any miss; lower is better)"
    )
    yield from coverage_ranges_text(record)
    for law in record["laws"]:
        if "error" in law:
            yield f"failed: {law['law']}: {law['error']}"


@cloup.command("backtest")
@file_argument()
@input_group(
    "N='Model Size'",
    cloup.option(
        "--by",
        default=None,
        help="Backtest each group of this column on its own (e.g. dataset): its runs, the holdout applied within it.",
    ),
)
@law_group(
    law_option(multiple=True, help="A law to backtest" + _CANDIDATE_HELP),
    cloup.option(
        "--holdout",
        "holdouts",
        multiple=True,
        required=True,
        help="Runs to forecast: 'N >= 2.9e9', 'C > 1e21 and D > 1e10', \"data == 'rpj' and N >= 1e9\" (a filter, "
        "as --where) or 'top 10% C' (repeatable).",
    ),
)
@sampling_group(fan_out=True)
@fan_out_group()
@output_group(
    cloup.option("--out", type=click.Path(dir_okay=False), help="Save the result as JSON (for bayescale report)."),
    ci=False,
)
def backtest_command(
    runs, columns, where, by, laws, holdouts, quiet, processes, scheduler, fail_fast, out, as_json, **sampling
):
    """Leave-future-out: fit each law on the runs outside --holdout, forecast the held-out runs, score them.

    Every (law, holdout) fit, per group with --by, is an independent task: on local worker processes,
    or on a Dask cluster with --scheduler. A law whose fit fails, or a group the holdout selects none
    or all of, is reported and the others finish (exit status 1), unless --fail-fast.
    """

    from bayescale.evaluation.sweep import file_name

    check_fan_out(processes, scheduler)
    outcome = bs.backtest(
        runs,
        [candidate(text) for text in laws],
        list(holdouts),
        columns=pairs(columns, "--columns"),
        where=where,
        by=by,
        processes=processes,
        scheduler=scheduler,
        fail_fast=fail_fast,
        progress=None if quiet else (lambda msg: click.echo(msg, err=True)),
        **sampling_settings(sampling),
    )
    if by is None:
        results = {(None, r.holdout): r for r in outcome}
        output = outcome[0].to_dict() if len(outcome) == 1 else {"backtests": [r.to_dict() for r in outcome]}
    else:
        results, output = outcome.results, outcome.to_dict()
    saved = []
    for (group, rule), result in results.items() if out else ():
        path = numbered(out, rule, holdouts) if len(holdouts) > 1 else Path(out)
        saved.append(
            result.save(path if group is None else path.with_name(f"{path.stem}.{file_name(group)}{path.suffix}"))
        )
    if saved:
        output["saved"] = saved
    for (group, rule), result in results.items():
        context = f" on {rule!r}" + ("" if group is None else f" in {by} = {group}")
        for label, r in result.results.items():
            for message in r.get("warnings", []):
                click.echo(f"warning: {label}{context}: {message}", err=True)
        for label, message in result.errors.items():
            click.echo(f"error: {label}{context} failed: {message}", err=True)
    failed = {} if by is None else outcome.errors
    for (group, _), message in failed.items():
        click.echo(f"error: {by} = {group}: {message}", err=True)
    emit(output, as_json, _backtest_text)
    if failed or any(r.errors for r in results.values()):
        raise click.exceptions.Exit(1)


# -- sweep ------------------------------------------------------------------------------------------
def _sweep_text(result: dict):
    yield (
        f"{'group':<16} {'law':<28} {'rank':>4} {'elpd':>9} {'elpd_diff':>9} {'dse':>6} {'weight':>6} "
        f"{'div':>4} {'r_hat':>6} {'ess':>6}"
    )
    for row in result["comparison"]:
        if row["error"]:
            yield f"{row['group']:<16} {row['law']:<28} failed: {row['error']}"
            continue
        yield (
            f"{row['group']:<16} {row['law']:<28} {row['rank']:>4} {row['elpd']:>9.1f} "
            f"{row['elpd_diff']:>9.1f} {row['dse']:>6.1f} {row['weight']:>6.2f} {row['divergences']:>4} "
            f"{row['rhat_max']:>6.3f} {row['ess_bulk_min']:>6.0f}"
        )
    files = result["files"]
    yield (
        f"saved {', '.join(p for p in files.values() if not p.endswith('.nc'))} and "
        f"{sum(p.endswith('.nc') for p in files.values())} fits in {result['fits_folder']}"
    )


@cloup.command("sweep")
@file_argument()
@input_group(
    "N='Model Size'",
    cloup.option(
        "--by", default=None, help="Fit each group of this column separately (e.g. dataset); default: all runs."
    ),
)
@law_group(law_option(multiple=True, help="A law to fit" + _CANDIDATE_HELP))
@sampling_group(fan_out=True)
@fan_out_group()
@output_group(
    cloup.option(
        "--out",
        "out_dir",
        required=True,
        type=click.Path(file_okay=False),
        help="Folder for fits/*.nc, comparison.csv and report.html.",
    ),
    cloup.option("--no-report", is_flag=True, help="Skip the HTML report."),
    ci=False,
)
def sweep_command(
    runs, columns, where, by, laws, quiet, processes, scheduler, fail_fast, out_dir, no_report, as_json, **sampling
):
    """Fit every law to every group of a table at once, and compare the laws within each group by PSIS-LOO.

    Writes one fit file per group and law, one comparison table and one report. A fit that fails
    is reported and the others finish (exit status 1), unless --fail-fast.
    """

    check_fan_out(processes, scheduler)
    sweep = bs.fit_many(
        runs,
        [candidate(text) for text in laws],
        by=by,
        columns=pairs(columns, "--columns"),
        where=where,
        processes=processes,
        scheduler=scheduler,
        fail_fast=fail_fast,
        progress=None if quiet else (lambda msg: click.echo(msg, err=True)),
        **sampling_settings(sampling),
    )
    with warnings.catch_warnings(record=True) as caught, staged_folder(out_dir) as staging:
        written = sweep.save(staging)  # Ctrl-C or an error before the end leaves no file in out_dir
        if not no_report:
            text = bs.build_sweep_report(sweep, progress=lambda step: click.echo(f"report: {step}", err=True))
            written["report"] = bs.write_report(staging / "report.html", text)
        comparison = sweep.comparison()
    summary = sweep.warning_summary(str(w.message) for w in caught)
    for item in summary:
        sources = ", ".join(item["from"])
        if item["count"] == 1:
            click.echo(f"warning: {sources + ': ' if sources else ''}{item['message']}", err=True)
        else:
            click.echo(
                f"warning: {item['message']} ({item['count']} times{': ' + sources if sources else ''})", err=True
            )
    for (group, label), message in sweep.errors.items():
        click.echo(f"error: {label} on {group} failed: {message}", err=True)
    result = {
        "by": by,
        "comparison": comparison,
        "files": {k: str(Path(out_dir) / Path(v).relative_to(staging)) for k, v in written.items()},
        "fits_folder": Path(out_dir) / "fits",
        "warnings": summary,
    }
    emit(result, as_json, _sweep_text)
    if sweep.errors:
        raise click.exceptions.Exit(1)


# -- tune -------------------------------------------------------------------------------------------
def _band_of(row, prefix: str) -> dict[str, float]:
    return {k: row[f"{prefix}_{k}"] for k in ("median", "lower", "upper")}


def tune_records(table) -> list[dict]:
    """``tune``'s flat table as one nested record per point."""
    names = table.attrs["tunable"]
    records = []
    for _, row in table.iterrows():
        record = {k: row[k] for k in table.columns if k in ("N", "D", "C", "U")}
        for name in names:
            record[f"{name}_opt"] = {
                **_band_of(row, f"{name}_opt"),
                "beyond_data": bool(row[f"{name}_opt_beyond_data"]),
            }
            record[f"{name}_penalty_2x"] = {
                "high": _band_of(row, f"{name}_penalty_high"),
                "low": _band_of(row, f"{name}_penalty_low"),
            }
        record["loss"] = {**_band_of(row, "loss"), **{k: row[k] for k in ("pred_lower", "pred_upper", "extrapolation")}}
        if "given_penalty_median" in table.columns:
            given = [n for n in names if f"{n}_given" in table.columns]
            record["given"] = {
                **{n: row[f"{n}_given"] for n in given},
                "p_within_2x": {n: row[f"{n}_p_within_2x"] for n in given},
                "penalty": {**_band_of(row, "given_penalty"), "mean": row["given_penalty_mean"]},
                "loss": {
                    "median": row["given_loss_median"],
                    "pred_lower": row["given_pred_lower"],
                    "pred_upper": row["given_pred_upper"],
                },
            }
        records.append(record)
    return records


def _tune_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    names = result["tunable"]
    yield (
        f"{result['law']}: best {', '.join(names)} (median, {pct} interval), the loss of a run there "
        f"(law and run bands), and the loss given up away from it"
    )
    includes = result["band_includes"]
    yield wrap(
        bands_line(
            result["ci_prob"],
            [
                (f"best {', '.join(names)}", includes["best"]),
                ("loss and the loss given up", includes["credible"]),
                ("run", includes["predictive"]),
            ],
        )
    )
    yield from decision_calibration_lines(result["best_calibration"], f"the best {', '.join(names)}")
    for row in result["predictions"]:
        where = ", ".join(f"{k}={row[k]:.3g}" for k in ("N", "D") if k in row)
        best = "; ".join(f"{n}* {band(row[f'{n}_opt'], '.3g')}" for n in names)
        loss = row["loss"]
        yield f"{where}: {best}; loss {band(loss)} run [{loss['pred_lower']:.4f}, {loss['pred_upper']:.4f}]"
        for n in names:
            penalty = row[f"{n}_penalty_2x"]
            yield f"  {n} 2x too high costs {band(penalty['high'])} nats, 2x too low {band(penalty['low'])}"
            if row[f"{n}_opt"]["beyond_data"]:
                low, high = result["tried"][n]
                yield (
                    f"  note: {n}* lies outside the values the runs tried ({low:.3g} to {high:.3g}): the basin "
                    "is extrapolated there"
                )
        if "given" in row:
            g = row["given"]
            given = ", ".join(f"{n} {g[n]:.3g}" for n in names if n in g)
            within = ", ".join(f"P({n} within 2x of the best) {g['p_within_2x'][n]:.2f}" for n in names if n in g)
            yield (
                f"  {given}: costs {g['penalty']['mean']:.4f} nats expected, median {band(g['penalty'])} "
                f"({within}); a run there: {g['loss']['median']:.4f} [{g['loss']['pred_lower']:.4f}, "
                f"{g['loss']['pred_upper']:.4f}]"
            )
    yield from prior_driven_lines(result.get("sensitivity", {}))
    if result.get("saved"):
        yield f"saved {result['saved']}"


def heldout_text(runs: list[dict], keys, observed: str, label: str | None = None):
    """One line per held-out run: where it is, what it scored, its forecast and 90% predictive band."""
    for run in runs:
        where = ", ".join(f"{k}={run[k]}" if isinstance(run[k], str) else f"{k}={run[k]:.3g}" for k in keys)
        flag = "" if run["inside_90"] else "  (outside the 90% band)"
        yield (
            f"  {where}: {label or observed} {run[observed]:.4f}, forecast {run['median']:.4f} "
            f"[{run['pred_lower']:.4f}, {run['pred_upper']:.4f}]{flag}"
        )


def _tune_backtest_text(result: dict):
    yield (
        f"{result['law']}, holdout {result['holdout']!r}: fitted on {result['n_train']} runs, "
        f"forecast {result['n_heldout']} at their own settings"
    )
    names = [k for k in ("lr", "batch") if result["runs"] and k in result["runs"][0]]
    yield from heldout_text(result["runs"], ("N", "D", *names), "loss")
    cov = result["coverage"]
    yield (
        f"coverage of the predictive bands: 50%: {cov['0.5']:.2f}, 80%: {cov['0.8']:.2f}, 90%: {cov['0.9']:.2f}; "
        f"median |relative error| {result['median_abs_rel_error']:.2%}"
    )
    for cell in result["cells"]:
        where = ", ".join(f"{k}={cell[k]:.3g}" for k in ("N", "D") if k in cell)
        mark = "ranked first" if cell["ranked_first"] else f"forecast prefers {cell['forecast_best']:.3g}"
        low, high = cell["observed_best_bracket"]
        bracket = f"{'0' if low is None else f'{low:.3g}'} to {'inf' if high is None else f'{high:.3g}'}"
        yield (
            f"  {where}: observed best {cell['tunable']} {cell['observed_best']:.3g} of "
            f"{', '.join(f'{v:.3g}' for v in cell['values'])} (best between {bracket}): {mark}, "
            f"P(best) {cell['p_observed_best']:.2f}; forecast {cell['tunable']}* {band(cell['opt_forecast'], '.3g')}"
        )
    yield (
        f"the forecast ranks the observed best value first in {result['cells_ranked_first']} of "
        f"{result['n_cells']} held-out cells; the 90% band of the best value holds it in "
        f"{result['cells_best_inside']}"
    )
    names = sorted({cell["tunable"] for cell in result["cells"]})
    yield from decision_calibration_lines(result["best_calibration"], f"the best {', '.join(names)}")
    if result.get("saved"):
        yield f"saved {result['saved']}"


@cloup.command("tune")
@file_argument()
@input_group("lr=peak_lr,batch='Batch tokens'")
@law_group(
    law_option(
        "chinchilla_lr_asym",
        help="A law with a learning-rate (lr) or batch-size (batch) input: catalog name or .toml card.",
    )
)
@cloup.option_group(
    "Questions",
    cloup.option("--at", "at", multiple=True, help="A point: N=3e9,D=6e10 (repeat for more points)."),
    cloup.option("--lr", type=float, default=None, help="A peak learning rate to price against the best one."),
    cloup.option("--batch", type=float, default=None, help="A batch size (tokens) to price against the best one."),
    cloup.option(
        "--holdout",
        default=None,
        help="Backtest instead: fit without these runs ('N >= 5e8'), forecast them and rank each cell's rates.",
    ),
)
@sampling_group()
@output_group(cloup.option("--out", type=click.Path(dir_okay=False), default=None, help="Also save the fit (.nc)."))
def tune_command(runs, columns, where, law_spec, at, lr, batch, holdout, quiet, out, ci_prob, as_json, **sampling):
    """The best peak learning rate (and batch size) at unseen N and D, with intervals and the cost of missing it.

    RUNS is a runs table (fitted here) or a saved fit (.nc) of a law with an lr or batch input.
    """
    import pandas as pd

    given = {k: v for k, v in (("lr", lr), ("batch", batch)) if v is not None}
    options = dict(
        columns=pairs(columns, "--columns"),
        where=where,
        progressbar=not (quiet or as_json),
        **sampling_settings(sampling),
    )
    if holdout:
        if str(runs).endswith(".nc"):
            raise BayescaleError("--holdout refits on part of the runs: give the runs table, not a saved fit")
        result = bs.backtest_tuning(runs, law_spec, holdout, **options)
        fitted = result.pop("fit")
        if out:
            result["saved"] = fitted.save(out)
        emit(result, as_json, _tune_backtest_text)
        return
    if not at:
        raise BayescaleError("give the points to tune at with --at N=...,D=... (repeatable), or --holdout RULE")
    if where and str(runs).endswith(".nc"):
        raise BayescaleError("--where picks rows of a runs table: give the table, not a saved fit")
    fitted = bs.Fit.load(runs) if str(runs).endswith(".nc") else bs.fit(runs, law_spec, **options)
    table = bs.tune(fitted, pd.DataFrame(at_points(at)), given=given, ci_prob=ci_prob)
    names = table.attrs["tunable"]
    result = {
        "law": fitted.law.name,
        "ci_prob": ci_prob,
        "tunable": names,
        "predictions": tune_records(table),
        "tried": {n: [fitted.runs[n].min(), fitted.runs[n].max()] for n in names},
        "band_includes": table.attrs["band_includes"],
        "best_calibration": table.attrs["best_calibration"],
        "sensitivity": bs.tune_sensitivity(fitted, pd.DataFrame(at_points(at))),
    }
    if out:
        result["saved"] = fitted.save(out)
    emit(result, as_json, _tune_text)
