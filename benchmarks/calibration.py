"""Calibration of forecasts on every real dataset: many leave-future-out splits, three methods.

Each split fits on the "past" and forecasts the "future" with default settings (no per-dataset flag):
  default     bayescale's default (the calibrated extrapolation discrepancy)
  plain       the same fit's plain posterior (the discrepancy left out)
  bootstrap   the reference point fit (Huber loss on log-loss, BFGS, Besiroglu et al. 2024) with a
              400-resample bootstrap plus its residual noise: the scipy-plus-bootstrap habit
              (Chinchilla-law splits only)
and scores every held-out point: coverage of the 50/80/90% predictive bands, the interval score of
Gneiting and Raftery (2007) for the 90% band (relative to the loss, lower is better), and the
median |relative error|. Every split is one task of bayescale's executor (local worker processes,
or a Dask cluster with --scheduler). Results merge into results/calibration.json, so subsets can
be run separately; results/calibration.png is the reliability plot.

    .venv/bin/python benchmarks/calibration.py [--only epoch gadre ...] [--scheduler tcp://host:8786]
"""

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("BAYESCALE_SHARED_DATA", HERE.parents[0].parent / "shared" / "data"))
OUT = HERE / "results" / "calibration.json"
LEVELS = (0.5, 0.8, 0.9)
#: BNSL paper, 4-digit addition (fit the first 14 points, forecast the last 3)
BNSL_X = [160, 192, 256, 320, 384, 448, 480, 512, 544, 576, 608, 640, 672, 736, 800, 864, 928]
BNSL_Y = [
    2.1381,
    2.1181,
    2.0896,
    2.0699,
    2.0540,
    2.0384,
    2.0281,
    2.0050,
    1.9558,
    1.8631,
    1.7089,
    1.5064,
    1.2975,
    0.9656,
    0.7586,
    0.6477,
    0.5570,
]
#: the Revisiting benchmark's image-classification tasks (error rates; each its own fit, as in the paper)
VISION_TASKS = [f"{data}_{shots}" for data in ("bird", "c", "cal", "inet") for shots in (5, 10, 25)]
#: the README's many-sizes learning-curve recipe on misfitting
CURVE_POOL = {"L0": "model", "alpha": "model", "C": "model", "A": "run"}
#: the issue's per-split targets: 50% and 90% bands' coverage on a split with >= 10 held-out points
TARGETS = {0.5: (0.35, 0.65), 0.9: (0.80, 0.97)}


@dataclass
class Split:
    name: str
    dataset: str
    kind: str  # "static" (a holdout rule) or "curve" (cut each run at a share of its steps)
    law: str
    rule: str = ""
    options: dict = field(default_factory=dict)
    cut: float = 0.0


def splits() -> list[Split]:
    out = [
        Split(f"epoch top {p}% {c}", "epoch", "static", "chinchilla", f"top {p}% {c}")
        for c in ("N", "C")
        for p in (10, 20, 30)
    ]
    out += [
        Split(f"gadre {corpus} N >= 1e9", f"gadre:{corpus}", "static", "chinchilla", "N >= 1e9")
        for corpus in ("c4_original", "rpj", "rw_original")
    ]
    out += [
        Split("misfitting finals, two largest sizes", "misfitting_final", "static", "chinchilla", "N >= 5e8"),
        Split("datablations top 20% N", "datablations", "static", "data_constrained", "top 20% N"),
        Split("bnsl 4-digit addition, last 3", "bnsl", "static", "bnsl_1", "N > 750", {"inputs": {"X": "N"}}),
    ]
    out += [
        Split(
            f"misfitting curves cut at {int(cut * 100)}%",
            "misfitting_curves",
            "curve",
            "schedule_aware",
            options={"pool": CURVE_POOL},
            cut=cut,
        )
        for cut in (0.25, 0.5, 0.75)
    ]
    out += [Split(f"revisiting {domain}", f"revisiting:{domain}", "curve", "curve_power") for domain in ("LM", "NMT")]
    out += [
        Split(f"revisiting vision {task}", f"revisiting_vision:{task}", "curve", "curve_power") for task in VISION_TASKS
    ]
    out += [Split("opt trajectories cut at 50%", "opt", "curve", "curve_power", cut=0.5)]
    return out


def load_static(dataset: str) -> pd.DataFrame:
    import bayescale as bs

    name, _, part = dataset.partition(":")
    if name == "epoch":
        return bs.datasets.load_epoch_chinchilla(DATA / "epoch-chinchilla" / "svg_extracted_data.csv").frame
    if name == "gadre":
        frame = bs.datasets.load_gadre(DATA / "gadre-overtrain" / "DERIVED_flat_losses.csv").frame
        return frame[frame["dataset"] == part].drop(columns="dataset").reset_index(drop=True)
    if name == "misfitting_final":
        return bs.datasets.load_misfitting_final(DATA / "misfitting" / "scaling_results_last_ckpt_only.csv").frame
    if name == "datablations":
        return bs.datasets.load_datablations(DATA / "colpret-curves" / "datablations_contour_losses.csv").frame
    if name == "bnsl":  # N stands for the x axis (bnsl_1 binds its input X to it)
        return pd.DataFrame({"N": BNSL_X, "loss": BNSL_Y})
    raise ValueError(dataset)


def bands(frame: pd.DataFrame, actual, median, lower: dict, upper: dict) -> pd.DataFrame:
    rows = pd.DataFrame({"actual": np.asarray(actual, float), "median": np.asarray(median, float)})
    for level in LEVELS:
        rows[f"lo{level}"], rows[f"hi{level}"] = np.asarray(lower[level], float), np.asarray(upper[level], float)
    return rows


def discrepancy_record(fit, distance, runs=None) -> dict:
    """What the discrepancy saw and did: each held-out point's distance and run, kappa, the internal splits."""
    if fit.discrepancy is None:
        return {"distance": None, "kind": None, "kappa": None, "internal": None}
    kappa, bias, outliers = fit.discrepancy.kappa, fit.discrepancy.bias, fit.discrepancy.outliers
    curve = (
        {}
        if bias is None
        else {
            "bias_median": float(np.median(bias)),
            "bias_sd": float(np.std(bias)),
            **({} if outliers is None else {"outliers_mean": float(np.mean(outliers))}),  # a sweep's drift: none
        }
    )
    return {
        "distance": [float(x) for x in distance],
        "kind": fit.discrepancy.kind,
        "shares_with": ["all"] * len(distance) if runs is None else [str(r) for r in runs],
        "kappa": {"median": float(np.median(kappa)), "mean_square": float(np.mean(kappa**2)), **curve},
        "internal": fit.discrepancy.calibration.to_dict("list"),
        "checks": fit.discrepancy.checks,  # internal splits found outlying, checked against a sampled fit
    }


def if_right(shares: dict, rows: pd.DataFrame) -> dict:
    """The coverage the default's bands show on this split if its forecast is right, against the actual one.

    ``shares``: per level, the coverage of each joint predictive draw taken as the truth
    (``backtesting.replicate_coverage``); ``rows``: the default's bands and the actual losses. Gives
    the 5-95% range per level, the share of draws on which the split would meet :data:`TARGETS`,
    and per level the PIT of the actual coverage among the draws' (mid-rank for ties): uniform
    over splits if the default is calibrated on every dataset.
    """
    from bayescale.evaluation.backtesting import COVERAGE_RANGE

    actual = {lv: float(np.mean(inside(rows, lv))) for lv in LEVELS}
    meets = np.logical_and.reduce([(low <= shares[lv]) & (shares[lv] <= high) for lv, (low, high) in TARGETS.items()])
    return {
        "range": {str(lv): [round(float(q), 3) for q in np.quantile(shares[lv], COVERAGE_RANGE)] for lv in LEVELS},
        "p_meets_targets": round(float(meets.mean()), 3),
        "pit": {
            str(lv): round(
                float(np.mean(shares[lv] < actual[lv] - 1e-9) + 0.5 * np.mean(np.abs(shares[lv] - actual[lv]) <= 1e-9)),
                3,
            )
            for lv in LEVELS
        },
    }


def static_task(split: Split, seed: int) -> dict:
    """Fit on the runs outside the holdout rule, forecast the held-out ones with every method."""
    import bayescale as bs
    from bayescale.evaluation.backtesting import holdout_mask, replicate_coverage

    warnings.simplefilter("ignore")
    frame = load_static(split.dataset)
    mask = holdout_mask(frame, split.rule)
    train, test = frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)
    start = time.time()
    fit = bs.fit(train, split.law, progressbar=False, seed=seed, **split.options)
    seconds = time.time() - start
    inputs = list(fit.law.inputs)
    methods = {}
    record = discrepancy_record(fit, fit.discrepancy.distance(test) if fit.discrepancy is not None else None)
    shares = replicate_coverage(fit, test[inputs], seed, LEVELS)
    for method in ("default", "plain"):
        if method == "plain":
            fit.discrepancy = None
        forecasts = {level: fit.predict(test[inputs], ci_prob=level, seed=seed) for level in LEVELS}
        methods[method] = bands(
            test,
            test["loss"],
            forecasts[0.9]["median"],
            {k: f["pred_lower"] for k, f in forecasts.items()},
            {k: f["pred_upper"] for k, f in forecasts.items()},
        )
    if split.law == "chinchilla":
        methods["bootstrap"] = bootstrap_baseline(train, test, seed)
    d = fit.diagnostics
    return {
        "n_train": len(train),
        "n_test": len(test),
        "fit_seconds": round(seconds, 1),
        "diagnostics": {
            "divergences": d.divergences,
            "rhat_max": round(d.rhat_max, 4),
            "ess_bulk_min": round(d.ess_bulk_min),
        },
        "methods": {m: rows.to_dict("list") for m, rows in methods.items()},
        "discrepancy": record,
        "if_right": if_right(shares, methods["default"]),
    }


def bootstrap_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int, resamples: int = 400) -> pd.DataFrame:
    sys.path.insert(0, str(HERE))
    import reference_fit

    n, d, loss = (train[c].to_numpy(float) for c in ("N", "D", "loss"))
    optimum = reference_fit.point_fit(n, d, loss)
    draws = reference_fit.bootstrap(n, d, loss, optimum, resamples=resamples, seed=seed)

    def law_mean(p, nn, dd):
        a, b, e, alpha, beta = p
        return np.logaddexp(np.logaddexp(a - alpha * np.log(nn), b - beta * np.log(dd)), e)

    resid_sd = float(np.std(np.log(loss) - law_mean(optimum, n, d)))
    mu = np.stack([law_mean(p, test["N"].to_numpy(float), test["D"].to_numpy(float)) for p in draws])
    rng = np.random.default_rng(seed)
    y = mu + resid_sd * rng.standard_normal(mu.shape)
    lower = {lv: np.exp(np.quantile(y, (1 - lv) / 2, axis=0)) for lv in LEVELS}
    upper = {lv: np.exp(np.quantile(y, (1 + lv) / 2, axis=0)) for lv in LEVELS}
    return bands(test, test["loss"], np.exp(law_mean(optimum, test["N"], test["D"])), lower, upper)


def curve_task(split: Split, seed: int) -> dict:
    """Fit learning curves on each run's early part (or the benchmark's own split), forecast the rest."""
    from bayescale.curves.learning_curves import fit_curves, forecast_curves, load_checkpoints, run_points
    from bayescale.data.datasets import load_misfitting_curves, load_opt_trajectories, load_revisiting
    from bayescale.evaluation.backtesting import replicate_coverage

    warnings.simplefilter("ignore")
    name, _, domain = split.dataset.partition(":")
    start = time.time()
    methods = {}
    if name == "misfitting_curves":
        table = load_misfitting_curves(DATA / "misfitting" / "scaling_results.csv")
        runs = load_checkpoints(table, keep=["model"], upto=split.cut)
        final = runs.frame.loc[runs.frame.groupby("run")["step"].idxmax()].set_index("run")
        fit = fit_curves(runs, split.law, upto=split.cut, pool=split.options.get("pool"), progressbar=False, seed=seed)
        seconds = time.time() - start
        finals = pd.concat(
            [run_points(fit, runs, run, [final.loc[run, "step"]]) for run in final.index], ignore_index=True
        )
        shares = replicate_coverage(fit, finals, seed, LEVELS)
        for method in ("default", "plain"):
            if method == "plain":
                fit.discrepancy = None
            forecasts = {
                lv: forecast_curves(fit, runs, upto=split.cut, ci_prob=lv, seed=seed).set_index("run") for lv in LEVELS
            }
            index = forecasts[0.9].index
            if method == "default":
                record = discrepancy_record(fit, forecasts[0.9]["distance"], index)
                record["n_seen"] = [int(n) for n in forecasts[0.9]["n_seen"]]  # checkpoints the fit saw, per run
            methods[method] = bands(
                None,
                final.loc[index, "loss"],
                forecasts[0.9]["final_median"],
                {lv: f.loc[index, "final_pred_lower"] for lv, f in forecasts.items()},
                {lv: f.loc[index, "final_pred_upper"] for lv, f in forecasts.items()},
            )
    else:
        if name == "opt":  # each run fitted up to a share of its recorded steps, every later checkpoint forecast
            table = load_opt_trajectories(DATA / "colpret-curves" / "opt_trajectories.csv")
            table["training"] = (table["step"] <= split.cut * table.groupby("run")["step"].transform("max")).astype(int)
        elif name == "revisiting_vision":
            table = load_revisiting(DATA / "colpret-curves" / "revisiting_vision.csv", "IC", domain)
        else:
            table = load_revisiting(DATA / "colpret-curves" / "revisiting_lang.csv", domain)
        train = load_checkpoints(table[table["training"] == 1].drop(columns="training"))
        target = table[table["training"] == 0].drop(columns="training").reset_index(drop=True)
        fit = fit_curves(train, split.law, progressbar=False, seed=seed)
        seconds = time.time() - start
        record = discrepancy_record(
            fit, fit.discrepancy.distance(target) if fit.discrepancy is not None else None, target["run"]
        )
        shares = replicate_coverage(fit, target.drop(columns="loss"), seed, LEVELS)
        for method in ("default", "plain"):
            if method == "plain":
                fit.discrepancy = None
            forecasts = {lv: fit.predict(target.drop(columns="loss"), ci_prob=lv, seed=seed) for lv in LEVELS}
            methods[method] = bands(
                None,
                target["loss"],
                forecasts[0.9]["median"],
                {lv: f["pred_lower"] for lv, f in forecasts.items()},
                {lv: f["pred_upper"] for lv, f in forecasts.items()},
            )
    d = fit.diagnostics
    return {
        "n_train": int(fit.n_obs),
        "n_test": len(methods["default"]),
        "fit_seconds": round(seconds, 1),
        "diagnostics": {
            "divergences": d.divergences,
            "rhat_max": round(d.rhat_max, 4),
            "ess_bulk_min": round(d.ess_bulk_min),
        },
        "methods": {m: rows.to_dict("list") for m, rows in methods.items()},
        "discrepancy": record,
        "if_right": if_right(shares, methods["default"]),
    }


def run_split(split: Split, seed: int) -> dict:
    return (static_task if split.kind == "static" else curve_task)(split, seed)


def inside(rows: pd.DataFrame, level: float) -> np.ndarray:
    """Which actual losses fall inside their band at ``level``."""
    y = rows["actual"].to_numpy()
    return (rows[f"lo{level}"].to_numpy() <= y) & (y <= rows[f"hi{level}"].to_numpy())


def scores(rows: dict) -> dict:
    """Coverage per level, the relative 90% interval score and the median |relative error|.

    A point without a forecast (NaN: every draw of the law was an impossible, non-positive loss)
    counts as a miss in coverage and is counted in ``no_forecast``; the other scores are over the
    points that have one.
    """
    from bayescale.evaluation.backtesting import interval_score

    frame = pd.DataFrame(rows)
    y = frame["actual"].to_numpy()
    out = {f"coverage_{lv}": round(float(np.mean(inside(frame, lv))), 3) for lv in LEVELS}
    out["interval_score_90"] = round(float(np.nanmean(interval_score(y, frame["lo0.9"], frame["hi0.9"], 0.9))), 5)
    out["median_abs_rel_error"] = round(float(np.nanmedian(np.abs(frame["median"].to_numpy() / y - 1))), 5)
    out["no_forecast"] = int(frame["median"].isna().sum())
    return out


def table(results: dict) -> pd.DataFrame:
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append({"split": name, "method": "-", "n_test": None, "error": r["error"]})
            continue
        for method, s in r["scores"].items():
            rows.append(
                {
                    "split": name,
                    "method": method,
                    "n_test": r["n_test"],
                    **s,
                    **(verdict(s, r["if_right"]) if method == "default" and "if_right" in r else {}),
                }
            )
    return pd.DataFrame(rows)


def verdict(scores: dict, expected: dict) -> dict:
    """The default's coverage against the issue's targets and against the range a right forecast shows here.

    "meets": inside :data:`TARGETS`; "as if right": outside them but inside the 5-95% range of a
    right forecast at every level (the held-out points err together); "narrow" / "wide": outside
    that range (the bands are wrong for this dataset).
    """
    out = {f"if_right_{lv}": "{:.2f}-{:.2f}".format(*expected["range"][str(lv)]) for lv in (0.5, 0.9)}
    out["p_meets_if_right"] = expected["p_meets_targets"]
    actual = {lv: scores[f"coverage_{lv}"] for lv in LEVELS}
    if all(low <= actual[lv] <= high for lv, (low, high) in TARGETS.items()):
        out["verdict"] = "meets"
    elif any(actual[lv] < expected["range"][str(lv)][0] for lv in LEVELS):
        out["verdict"] = "narrow"
    elif any(actual[lv] > expected["range"][str(lv)][1] for lv in LEVELS):
        out["verdict"] = "wide"
    else:
        out["verdict"] = "as if right"
    return out


def pooled(results: dict) -> dict:
    """Coverage over every held-out point of every split, per method."""
    out = {}
    for method in ("default", "plain", "bootstrap"):
        frames = [pd.DataFrame(r["methods"][method]) for r in results.values() if method in r.get("methods", {})]
        if frames:
            out[method] = {"splits": len(frames), **scores(pd.concat(frames).to_dict("list"))}
    return out


def against_right(results: dict, min_points: int = 10) -> dict:
    """Over the splits with >= ``min_points`` held-out points: how many meet the targets, how many a right forecast
    would meet on average, and whether the actual coverages sit where a right forecast's would (PITs uniform:
    Kolmogorov-Smirnov p-value per level; mean PIT above 0.5 means bands too wide, below too narrow).

    ``all_meet_if_right_at_most`` bounds the chance that a right forecast meets the targets on every one of these
    splits: per dataset, its splits all meet at most as often as the least likely one does, and datasets are
    independent, so the product over datasets of that smallest chance.
    """
    from discrepancy_prior import dataset_of  # beside this script: on the path when it runs, and in the tests
    from scipy import stats

    chosen = {n: r for n, r in results.items() if "if_right" in r and r["n_test"] >= min_points}
    if not chosen:
        return {}
    verdicts = [verdict(r["scores"]["default"], r["if_right"])["verdict"] for r in chosen.values()]
    least = {}
    for name, r in chosen.items():
        dataset = dataset_of(name)
        least[dataset] = min(least.get(dataset, 1.0), r["if_right"]["p_meets_targets"])
    out = {
        "splits": len(chosen),
        "meet_targets": verdicts.count("meets"),
        "meet_targets_if_right": round(sum(r["if_right"]["p_meets_targets"] for r in chosen.values()), 1),
        "all_meet_if_right_at_most": float(f"{np.prod(list(least.values())):.2g}"),
        "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
    }
    for lv in LEVELS:
        pits = np.array([r["if_right"]["pit"][str(lv)] for r in chosen.values()])
        out[f"pit_{lv}"] = {
            "mean": round(float(pits.mean()), 3),
            "ks_p": round(float(stats.kstest(pits, "uniform").pvalue), 3),
        }
    return out


def reliability_plot(results: dict, path: Path) -> None:
    """Observed against nominal coverage: one thin line per split, the pooled coverage thick, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ("default", "plain", "bootstrap")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), sharey=True)
    pooled_scores = pooled(results)
    for ax, method in zip(axes, methods):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        ax.axhspan(0.80, 0.97, xmin=0.80, xmax=0.867, color="tab:green", alpha=0.2)  # at x = 0.9 of 0.4..1
        for r in results.values():
            if method in r.get("scores", {}):
                ax.plot(
                    LEVELS,
                    [r["scores"][method][f"coverage_{lv}"] for lv in LEVELS],
                    color="tab:blue",
                    alpha=0.35,
                    lw=1,
                    marker="o",
                    ms=2,
                )
        if method in pooled_scores:
            ax.plot(
                LEVELS,
                [pooled_scores[method][f"coverage_{lv}"] for lv in LEVELS],
                color="black",
                lw=2.5,
                marker="o",
                label="all held-out points",
            )
        ax.set(title=method, xlabel="nominal probability of the predictive band", xlim=(0.4, 1), ylim=(0, 1.02))
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("share of held-out points inside")
    fig.suptitle("Calibration on every split (thin: one split; shaded: the 90% target 0.80-0.97)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    from bayescale.parallel.executor import describe, fan_out

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--only",
        nargs="*",
        help="datasets to run (epoch gadre misfitting_final datablations bnsl "
        "misfitting_curves revisiting revisiting_vision opt); default all",
    )
    parser.add_argument("--split", default=None, help="only the splits whose name contains this text")
    parser.add_argument("--scheduler", default=None, help="a Dask scheduler address")
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20240417)
    parser.add_argument("--plot-only", action="store_true", help="redraw the reliability plot from the saved results")
    parser.add_argument("--out", type=Path, default=OUT, help="results file (merged into if it exists)")
    parser.add_argument(
        "--sweep-prior",
        action="append",
        default=[],
        metavar="NAME=TEXT",
        help="a prior for every sweep (static) split's fit, e.g. sigma_slope='Normal(mu=0, sigma=0.1)' "
        "(a noise trend along N on every sweep); repeatable",
    )
    args = parser.parse_args()
    out = args.out
    if args.plot_only:
        reliability_plot(json.loads(out.read_text())["splits"], out.with_suffix(".png"))
        return
    chosen = [
        s
        for s in splits()
        if (not args.only or s.dataset.partition(":")[0] in args.only) and (args.split is None or args.split in s.name)
    ]
    priors = dict(text.split("=", 1) for text in args.sweep_prior)
    if priors:
        chosen = [replace(s, options={**s.options, "priors": priors}) if s.kind == "static" else s for s in chosen]
    tasks = {s.name: (run_split, (s, args.seed), {}) for s in chosen}
    start = time.time()
    outcomes = fan_out(
        tasks,
        scheduler=args.scheduler,
        max_workers=args.processes,
        progress=lambda o, done, total: print(
            f"[{done}/{total}] {o.key}: {'done' if o.ok else describe(o.error)}", file=sys.stderr
        ),
    )
    results = json.loads(out.read_text())["splits"] if out.exists() else {}
    for name, outcome in outcomes.items():
        results[name] = outcome.result if outcome.ok else {"error": describe(outcome.error)}
    for r in results.values():
        if "methods" in r:
            r["scores"] = {m: scores(rows) for m, rows in r["methods"].items()}
    import bayescale as bs

    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"bayescale_version": bs.__version__, "pooled": pooled(results), "splits": results}) + "\n"
    )
    reliability_plot(results, out.with_suffix(".png"))
    print(table(results).to_string(index=False))
    print(json.dumps(pooled(results), indent=1))
    print(json.dumps(against_right(results), indent=1))
    print(f"{time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
