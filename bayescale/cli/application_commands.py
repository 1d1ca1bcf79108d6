"""Commands beyond the loss of a finished run: downstream accuracy, and learning curves along training."""

from __future__ import annotations

from collections.abc import Mapping

import click
import cloup

import bayescale as bs
from bayescale.cli.evaluation_commands import heldout_text
from bayescale.cli.options import (
    file_argument,
    input_group,
    law_group,
    law_option,
    output_group,
    plot_option,
    sampling_group,
    sampling_settings,
    sensitivity_option,
)
from bayescale.cli.parsing import at_points, pairs
from bayescale.cli.render import band, bands_line, emit, fmt, wrap
from bayescale.errors import BayescaleError


# -- downstream -------------------------------------------------------------------------------------
def _downstream_records(table, described: dict, group: str | None) -> list[dict]:
    """One JSON record per point: where, the loss (as predict gives it), the metric, chance, the observed range."""
    records = []
    for _, row in table.iterrows():
        source = described[row["loss_fit"] or None]
        record = {k: row[k] for k in table.columns if k in ("N", "D", "C") or (group and k == group)}
        record["loss"] = {
            **{k: row[f"loss_{k}"] for k in ("median", "lower", "upper", "pred_lower", "pred_upper", "extrapolation")},
            **{k: row[f"loss_{k}"] for k in ("prior_sensitivity", "prior_driven", "prior_note") if f"loss_{k}" in row},
            "band_includes": source["band_includes"],
            "run_band_includes": source["run_band_includes"],
        }
        record["metric"] = {
            **{k: row[k] for k in ("median", "lower", "upper", "pred_lower", "pred_upper")},
            "band_includes": source["metric_band_includes"],
            "run_band_includes": source["metric_run_band_includes"],
        }
        for key in ACCURACY_SENSITIVITY:
            if f"accuracy_{key}" in row:
                record[f"accuracy_{key}"] = row[f"accuracy_{key}"]
        record["chance"], record["chance_source"] = row["chance"], row["chance_source"]
        record["p_above_chance"] = row["p_above_chance"]
        record["metric_extrapolation"] = row["metric_extrapolation"]
        spread, width = row["observed_max"] - row["observed_min"], row["upper"] - row["lower"]
        record["observed"] = {
            "min": row["observed_min"],
            "max": row["observed_max"],
            "n_runs": int(row["observed_runs"]),
            "spread": spread,
            "band_width": width,
            "band_wider_than_spread": bool(width > spread),
        }
        records.append(record)
    return records


def _add_loss_sensitivity(forecast, loss) -> None:
    """Each point's loss forecast: its power-scaling prior sensitivity, as ``predict`` gives it on that fit."""
    for key, rows in forecast.groupby(forecast["loss_fit"].fillna(""), sort=False):
        fit = loss[key] if isinstance(loss, Mapping) else loss
        columns = [*fit.law.inputs, *(p.column for p in fit.spec.pooled.values())]
        found = bs.forecast_sensitivity(fit, rows[columns].reset_index(drop=True))
        for name in ("prior_sensitivity", "prior_driven", "note"):
            forecast.loc[rows.index, f"loss_{name.replace('note', 'prior_note')}"] = found[name].to_numpy()


#: the accuracy forecast's power-scaling sensitivity, per prediction as ``accuracy_<key>`` (bs.downstream.accuracy_sensitivity)
ACCURACY_SENSITIVITY = ("prior_sensitivity", "likelihood_sensitivity", "prior_driven", "step_sensitivity", "prior_note")


def _add_accuracy_sensitivity(forecast, loss, metric_fit, points, group) -> None:
    """Each point's accuracy forecast: the power-scaling sensitivity to both steps' priors, and which step carries it."""
    found = bs.downstream.accuracy_sensitivity(loss, metric_fit, points, by=group)
    for key in ACCURACY_SENSITIVITY:
        forecast[f"accuracy_{key}"] = found[key.replace("prior_note", "note")].to_numpy()


def _includes(items: list[str]) -> str:
    return ", ".join(items) if items else "nothing"


def _downstream_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    metric, group = result["metric"], result["group"]
    for source in result["loss_fits"]:
        yield bs.downstream.describe_text(source, group, source["for"])
    m = result["metric_fit"]
    shifted = f"; each {group} reaches it at its own loss shift (partially pooled)" if group else ""
    yield f"{metric}: {m['law']} fitted here on {m['n_runs']} runs{shifted}"
    yield f"median, {pct} band of the laws, {pct} band of a run; every loss draw goes through a draw of the metric law"
    for row in result["predictions"]:
        where = ", ".join(
            f"{k}={row[k]}" if isinstance(row[k], str) else f"{k}={row[k]:.3g}"
            for k in ("N", "D", group)
            if k and k in row
        )
        loss, value, seen = row["loss"], row["metric"], row["observed"]
        beyond = f" ({loss['extrapolation']:.2f} e-folds beyond its runs)" if (loss["extrapolation"] or 0) > 0 else ""
        yield (
            f"{where}: loss {band(loss)} run [{loss['pred_lower']:.4f}, {loss['pred_upper']:.4f}]{beyond}; {metric} "
            f"{band(value)} run [{value['pred_lower']:.4f}, {value['pred_upper']:.4f}]; "
            f"P(above chance {row['chance']:.3g}) {row['p_above_chance']:.2f}"
        )
        of = f" of {group} {row[group]}" if group and row.get(group) is not None else ""
        wider = (
            f"; the band of the law (width {seen['band_width']:.3f}) is wider than that whole spread "
            f"({seen['spread']:.3f}): the forecast says little more than the runs' range"
            if seen["band_wider_than_spread"]
            else ""
        )
        yield f"  observed {metric} of the {seen['n_runs']} runs{of}: {seen['min']:.4f} to {seen['max']:.4f}{wider}"
        if loss.get("prior_note"):
            yield wrap("  warning: " + loss["prior_note"])
        if "accuracy_prior_sensitivity" in row:
            steps = row["accuracy_step_sensitivity"]
            yield (
                f"  prior sensitivity of {metric}: {fmt(row['accuracy_prior_sensitivity'], '.3f')} against the "
                f"likelihood's {fmt(row['accuracy_likelihood_sensitivity'], '.3f')}; each step's priors alone: "
                + ", ".join(f"{step} {fmt(value, '.3f')}" for step, value in steps.items())
            )
        if row.get("accuracy_prior_note"):
            yield wrap("  warning: " + row["accuracy_prior_note"])
        if row["p_above_chance"] < 0.9:
            yield (
                f"  not predictable yet: in {1 - row['p_above_chance']:.0%} of draws the law stays within "
                f"2 points of chance ({row['chance']:.3g}) there"
            )
    includes = dict.fromkeys(
        (
            f"bands include: loss: {_includes(row['loss']['band_includes'])}; {metric}: "
            f"{_includes(row['metric']['band_includes'])}; a run's band adds noise (of both steps for {metric})"
        )
        for row in result["predictions"]
    )
    yield from includes
    margin = result["above_chance_margin"]
    for text in dict.fromkeys(f"{row['chance']:.3g} ({row['chance_source']})" for row in result["predictions"]):
        yield f"chance level {text}; P(above chance): the law's {metric} beats it by more than {margin:g}"
    yield from (f"saved {path}" for path in result.get("saved", []))


def _downstream_backtest_text(result: dict):
    metric = result["metric"]
    pooled = ", ".join(f"{p} pooled by {c}" for p, c in result["loss_pooled"].items()) or "nothing pooled"
    yield (
        f"holdout {result['holdout']!r}: both steps fitted on {result['n_train']} runs ({result['loss_law']}, "
        f"{pooled}; then {result['metric_law']}); {metric} of the {result['n_heldout']} held-out runs:"
    )
    yield from heldout_text(result["runs"], [k for k in ("N", "D", result["group"]) if k], "metric", metric)
    cov = result["coverage"]
    yield (
        f"coverage 50% {cov['0.5']:.2f}, 80% {cov['0.8']:.2f}, 90% {cov['0.9']:.2f}; median |error| "
        f"{result['median_abs_error']:.4f} ({result['median_abs_error'] * 100:.2f} points)"
    )
    yield from (f"saved {path}" for path in result.get("saved", []))


def _downstream_files(plot_path, report_path, loss_fit, metric_fit, forecast, backtest, heldout, ci_prob) -> list:
    saved = []
    if plot_path:
        saved.append(
            bs.plots.save_figure(
                bs.plots.downstream_fan(loss_fit, metric_fit, heldout=heldout, ci_prob=ci_prob), plot_path
            )
        )
    if report_path:
        fmt = "markdown" if str(report_path).endswith(".md") else "html"
        text = bs.build_downstream_report(
            loss_fit, metric_fit, forecast, backtest=backtest, heldout=heldout, ci_prob=ci_prob, fmt=fmt
        )
        saved.append(bs.write_report(report_path, text))
    return saved


def _loss_pool(items, group: str | None) -> tuple[dict[str, str] | None, str]:
    """The loss law's pooling (``--loss-pool``, default E by ``--group``) and, for the output, where it came from."""
    if list(items) == ["none"]:
        return None, "--loss-pool none"
    if items:
        return pairs(items, "--loss-pool"), "--loss-pool"
    if group:
        return {"E": group}, "E pooled by --group is downstream's default; --loss-pool changes it"
    return None, "nothing pooled without --group"


def _fit_command(runs, law: str, columns: dict, pool: dict | None, where: str | None = None) -> str:
    """The ``bayescale fit`` command that makes the same loss fit (same options as downstream's sampling ones)."""
    parts = [f"bayescale fit {runs} --law {law}"]
    parts += [f"--columns {k}={v!r}" for k, v in columns.items()]
    parts += [f'--where "{where}"'] if where else []
    parts += [f"--pool {k}={v}" for k, v in (pool or {}).items()]
    return " ".join(parts)


@cloup.command("downstream")
@file_argument()
@input_group(
    "N='params',loss='c4_loss'",
    cloup.option("--metric", required=True, help="The accuracy column (fractions in [0, 1])."),
    cloup.option(
        "--group",
        default=None,
        help="Training-corpus column: the loss each group needs for an accuracy differs "
        "(partially pooled shift); a loss fitted here pools E by it unless --loss-pool says otherwise, and "
        "--loss-fit GROUP=FILE names its values.",
    ),
    cloup.option(
        "--chance",
        type=float,
        default=None,
        help="The random baseline (fraction) when the runs have no chance column; the points may give chance=.",
    ),
)
@law_group(
    law_option(
        None,
        help="The loss law in N and D when fitted here (default chinchilla); with a sweep folder as --loss-fit, "
        "the law to take from it (default: each group's best by LOO).",
    ),
    cloup.option(
        "--loss-fit",
        "loss_fits",
        multiple=True,
        metavar="FIT.nc|GROUP=FIT.nc|SWEEP_DIR",
        help="Take the loss from your fit instead of fitting one here: one fit for every point, GROUP=FIT.nc per "
        "value of --group (repeatable), or the folder `bayescale sweep --by COL --out DIR` wrote. Its loss at a "
        "point is `bayescale predict FIT.nc`'s there (same draws and seed).",
    ),
    cloup.option(
        "--loss-pool",
        "loss_pool",
        multiple=True,
        metavar="PARAM=COLUMN",
        help="Pooling of the loss law fitted here, as fit --pool (repeatable); default E=GROUP with --group, "
        "'none' for no pooling.",
    ),
    cloup.option(
        "--metric-law",
        default="metric_exp",
        show_default=True,
        help="Loss -> metric card: metric_exp (Gadre et al.), metric_sigmoid (chance floor), or a .toml card.",
    ),
)
@cloup.option_group(
    "Questions",
    cloup.option("--at", "at", multiple=True, help="A point: N=7e9,D=1.4e11[,dataset=rpj][,chance=0.25] (repeatable)."),
    cloup.option(
        "--holdout", default=None, help="Backtest both steps: fit without these runs ('N >= 1e9'), forecast them."
    ),
)
@sampling_group()
@output_group(
    plot_option("the fan chart (accuracy against each group's loss, then all against compute)"),
    cloup.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write an HTML report (.html) or Markdown (.md): both laws, the forecast, the fan chart.",
    ),
    sensitivity_option(default=False),
)
def downstream_command(
    runs,
    columns,
    where,
    metric,
    group,
    chance,
    law_spec,
    loss_fits,
    loss_pool,
    metric_law,
    at,
    holdout,
    quiet,
    plot_path,
    report_path,
    sensitivity,
    ci_prob,
    as_json,
    **sampling,
):
    """Forecast a downstream accuracy at unseen N and D: the loss law, then a law from loss to accuracy.

    RUNS has N, D, loss, the metric column (and the group column; optionally chance and n, the
    number of questions). The metric law is fitted here; the loss law too, unless --loss-fit gives
    your fits. The forecast carries both uncertainties. --seed seeds the fits made here; a loss
    forecast uses its fit's seed, as predict does.
    """
    import pandas as pd

    table, origin = bs.read_table(runs)
    mapping = pairs(columns, "--columns")
    missing = [theirs for theirs in mapping.values() if theirs not in table.columns]
    if missing:
        raise BayescaleError(f"--columns: no column(s) {', '.join(missing)} in {runs}")
    table = table.rename(columns={theirs: ours for ours, theirs in mapping.items()})
    if where:
        table, _ = bs.filter_table(table, where, origin, {theirs: ours for ours, theirs in mapping.items()})
    bs.downstream.check_metric(table, metric)
    if loss_fits and loss_pool:
        raise BayescaleError("--loss-pool shapes a loss fit made here; a --loss-fit brings its own pooling (drop one)")
    pool, pool_origin = _loss_pool(loss_pool, group)
    settings = sampling_settings(sampling)
    seed = settings.pop("seed")
    if holdout:
        if loss_fits:
            raise BayescaleError(
                "--holdout backtests both steps fitted here on the runs the rule leaves; it takes no --loss-fit"
            )
        result = bs.downstream.backtest(
            table,
            metric,
            holdout,
            loss_law=law_spec or "chinchilla",
            metric_law=metric_law,
            group=group,
            pool=pool,
            chance=chance,
            seed=seed,
            progressbar=False,
            **settings,
        )
        loss_fit, metric_fit = result.pop("fits")
        heldout = table[bs.holdout_mask(table, holdout)]
        forecast = (
            bs.downstream.chained(loss_fit, metric_fit, heldout, ci_prob=ci_prob, seed=seed) if report_path else None
        )
        result.update(
            metric=metric,
            group=group,
            saved=_downstream_files(plot_path, report_path, loss_fit, metric_fit, forecast, result, heldout, ci_prob),
        )
        emit(result, as_json, _downstream_backtest_text)
        return
    if not at:
        raise BayescaleError("give the points with --at N=...,D=...[,group=...] (repeatable), or --holdout RULE")
    if loss_fits:
        loss, described = bs.downstream.load_loss_fits(loss_fits, group=group, law=law_spec)
        for key, source in described.items():
            rows = table if key is None else table[table[group].astype(str) == key]
            fit = loss if key is None else loss[key]
            problem = bs.downstream.loss_mismatch(fit, rows, f"the loss fit {source['source']}")
            if problem:
                click.echo(f"warning: {problem}", err=True)
    else:
        law = law_spec or "chinchilla"
        loss = bs.fit(runs, law, columns=mapping, where=where, pool=pool, seed=seed, progressbar=False, **settings)
        note = f"as `{_fit_command(runs, law, mapping, pool, where)}`" + (f"; {pool_origin}" if pool or group else "")
        described = {None: bs.downstream.describe_loss(loss, None, note)}
    pooled_by = {c for source in described.values() for c in source["pooled"].values()}
    points = at_points(at, labels=sorted({*pooled_by, *([group] if group else [])}))
    metric_fit = bs.downstream.fit_metric(table, metric, metric_law, group=group, chance=chance, seed=seed, **settings)
    forecast = bs.downstream.chained(loss, metric_fit, pd.DataFrame(points), ci_prob=ci_prob, by=group)
    if sensitivity:
        _add_loss_sensitivity(forecast, loss)
        _add_accuracy_sensitivity(forecast, loss, metric_fit, pd.DataFrame(points), group)
    loss_laws = list(dict.fromkeys(source["law"] for source in described.values()))
    result = {
        "ci_prob": ci_prob,
        "metric": metric,
        "group": group,
        "loss_law": ", ".join(loss_laws),
        "loss_fits": [{"for": key, **source} for key, source in described.items()],
        "metric_law": metric_fit.law.name,
        "metric_fit": {"law": metric_fit.law.name, "n_runs": len(metric_fit.table), "group": group},
        "above_chance_margin": bs.downstream.ABOVE_CHANCE,
        "predictions": _downstream_records(forecast, described, group),
        "saved": _downstream_files(plot_path, report_path, loss, metric_fit, forecast, None, None, ci_prob),
    }
    emit(result, as_json, _downstream_text)


# -- curve ------------------------------------------------------------------------------------------
def _schedules_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    yield f"run {result['run']}: final loss under each schedule ({pct} intervals: the law, then new runs)"
    yield wrap(_curve_bands(result))
    for r in result["schedules"]:
        flag = "  [peak outside the fitted runs]" if r["peak_outside_fitted"] else ""
        yield (
            f"{r['schedule']}: {r['spec']}: {r['final_median']:.4f} [{r['final_lower']:.4f}, "
            f"{r['final_upper']:.4f}], new run [{r['final_pred_lower']:.4f}, {r['final_pred_upper']:.4f}]; "
            f"P(best) = {r['p_best']:.2f}{flag}"
        )


def _curve_bands(result: dict) -> str:
    includes = result["band_includes"]
    return bands_line(result["ci_prob"], [("law", includes["credible"]), ("run", includes["predictive"])])


def _curves_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    delta = result["delta"]
    yield wrap(_curve_bands(result))
    for r in result["runs"]:
        saturated = (
            "not within the forecast range (100x the horizon, or the schedule's end)"
            if r["saturation_step"] is None
            else f"from step {r['saturation_step']:.0f}"
        )
        final = r["final"]
        yield (
            f"{r['run']}: seen to step {r['upto_step']:.0f}; final loss at step {r['horizon_step']:.0f}: "
            f"{final['median']:.4f} ({pct} of runs [{final['pred_lower']:.4f}, {final['pred_upper']:.4f}]); "
            f"P(loss falls by more than {delta:g} between steps {r['upto_step']:.0f} and "
            f"{r['horizon_step']:.0f}) = {r['p_improve']:.2f}; each further 1,000 steps gains less than "
            f"{delta:g} {saturated}"
        )
        if final.get("prior_note"):
            yield wrap("  warning: " + final["prior_note"])


@cloup.command("curve")
@file_argument()
@input_group(
    "run=name,step=iteration",
    cloup.option(
        "--warmup",
        type=float,
        default=None,
        help="Exclude the early phase: a fraction of each run's planned steps, or a step number "
        "(>= 1); 0 keeps all. Default: 20% of a run's total_steps (at most half of what "
        "--upto lets the fit see), 5% of the last recorded step for a run without "
        "total_steps.",
    ),
    cloup.option(
        "--upto",
        type=float,
        required=True,
        help="Fit on checkpoints up to this step, or this fraction (<= 1) of each run.",
    ),
)
@law_group(
    law_option("curve_power", help="A learning-curve law (input step)."),
    cloup.option(
        "--pool",
        "pool_items",
        multiple=True,
        metavar="PARAM=COLUMN",
        help="Let a parameter vary by a group column (e.g. L0=model); each run then gets an additive "
        "run_offset. Default: the card's run_effect parameters vary by run.",
    ),
)
@cloup.option_group(
    "Questions",
    cloup.option("--run", "run_id", default=None, help="Forecast only this run (default: all runs)."),
    cloup.option(
        "--horizon", type=float, default=None, help="Forecast to this step (default: each run's last recorded step)."
    ),
    cloup.option(
        "--delta",
        type=float,
        default=0.01,
        show_default=True,
        help="Loss drop that counts as an improvement; saturation is a gain below it per 1,000 steps.",
    ),
    cloup.option(
        "--schedule",
        "schedules",
        multiple=True,
        metavar="NAME=SCHEDULE",
        help="What if --run had followed this schedule (schedule-aware laws), e.g. "
        "long='cosine(peak=1e-3, total=32000, warmup=50, final=0.1)'; repeat to compare several.",
    ),
    cloup.option(
        "--peak-lr",
        "peaks",
        multiple=True,
        type=float,
        help="What if --run had this peak learning rate, its schedule otherwise as planned (repeatable); "
        "compared with the run as planned.",
    ),
)
@sampling_group()
@output_group(sensitivity_option(default=False))
def curve_command(
    runs,
    columns,
    where,
    warmup,
    upto,
    law_spec,
    pool_items,
    run_id,
    horizon,
    delta,
    schedules,
    peaks,
    quiet,
    sensitivity,
    ci_prob,
    as_json,
    **sampling,
):
    """Forecast the rest of training runs from their checkpoints so far (joint fit with a run effect)."""

    if (schedules or peaks) and run_id is None:
        raise click.UsageError(
            f"{'--schedule' if schedules else '--peak-lr'} needs --run: the run whose schedule is changed"
        )
    pool = pairs(pool_items, "--pool") or None
    table = bs.load_checkpoints(
        runs,
        pairs(columns, "--columns"),
        warmup=warmup,
        upto=upto,
        keep=sorted(set(pool.values()) - {"run"}) if pool else (),
        where=where,
    )
    fit = bs.fit_curves(
        table, law_spec, upto=upto, pool=pool, progressbar=not (as_json or quiet), **sampling_settings(sampling)
    )
    if schedules or peaks:
        named = bs.peak_rate_variants(table, run_id, peaks) if peaks else {}
        for item in schedules:
            name, eq, text = item.partition("=")
            if not eq or not name.strip():
                raise BayescaleError(f"--schedule {item!r} should look like NAME='cosine(peak=1e-3, total=16000)'")
            named[name.strip()] = text
        result = bs.compare_schedules(fit, table, named, run=run_id, ci_prob=ci_prob)
        emit(
            {"ci_prob": ci_prob, "run": run_id, "schedules": result, "band_includes": result.attrs["band_includes"]},
            as_json,
            _schedules_text,
        )
        return
    forecast = bs.forecast_curves(fit, table, upto=upto, horizon=horizon, delta=delta, ci_prob=ci_prob, run=run_id)
    runs_out = [
        {
            "run": r["run"],
            "upto_step": r["upto_step"],
            "horizon_step": r["horizon_step"],
            "final": {
                "median": r["final_median"],
                "pred_lower": r["final_pred_lower"],
                "pred_upper": r["final_pred_upper"],
            },
            "p_improve": r["p_improve"],
            "saturation_step": r["saturation_step"],
        }
        for r in forecast.to_dict("records")
    ]
    if sensitivity:  # of the law's final loss, as predict's of a forecast
        found = bs.forecast_sensitivity(fit, forecast.attrs["final_points"])
        for record, (_, row) in zip(runs_out, found.iterrows()):
            record["final"].update(
                prior_sensitivity=row["prior_sensitivity"], prior_driven=row["prior_driven"], prior_note=row["note"]
            )
    result = {"ci_prob": ci_prob, "delta": delta, "runs": runs_out, "band_includes": forecast.attrs["band_includes"]}
    emit(result, as_json, _curves_text)
