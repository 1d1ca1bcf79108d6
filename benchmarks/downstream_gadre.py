"""Downstream accuracy at unseen scales, Gadre et al. 2024's protocol (issue #15).

Both steps are fitted on the 95 models below 1e9 parameters and forecast the 9 models of 1.44B and
6.89B on the three corpora (C4, RedPajama, RefinedWeb):

1. the average accuracy over the 46 tasks, with each metric card, next to the point-fit two-step
   baseline (Epoch's Huber/BFGS Chinchilla fit per corpus, then scipy ``curve_fit`` of Gadre's
   exponential from loss to accuracy, as the paper does);
2. the average over the tasks judged forecastable: those where enough of the small models score
   clearly above chance (the rule of ``downstream.fit_metric``);
3. every task on its own (``metric_sigmoid`` with the task's chance floor, beta-binomial noise
   from its number of questions): coverage over tasks and models, and the tasks flagged as not
   forecastable.

Usage: .venv/bin/python benchmarks/downstream_gadre.py [--skip-tasks]  (about 12 minutes on 2 cores)
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

import bayescale as bs
from bayescale import downstream
from bayescale.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_fit import point_fit, to_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT.parent / "shared" / "data" / "gadre-overtrain"
HOLDOUT = 1e9
LEVELS = (0.5, 0.8, 0.9)


def score(observed, forecast) -> dict:
    observed = np.asarray(observed, float)
    out = {"median_abs_error_points": float(np.median(np.abs(forecast["median"].to_numpy() - observed)) * 100)}
    if "pred_lower" in forecast:
        out["inside_90"] = int(np.sum((forecast["pred_lower"] <= observed) & (observed <= forecast["pred_upper"])))
    return out


def coverage(observed, forecasts) -> dict[str, float]:
    observed = np.asarray(observed, float)
    return {
        str(level): float(np.mean((f["pred_lower"] <= observed) & (observed <= f["pred_upper"])))
        for level, f in forecasts.items()
    }


def baseline(train: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
    """Point fits: Chinchilla per corpus (Huber/BFGS), Gadre's exponential by least squares; no bands."""
    forecasts = []
    exp_law = lambda loss, e, k, gamma: 1 - e + k * np.exp(-gamma * loss)  # noqa: E731
    (e, k, gamma), _ = curve_fit(exp_law, train["loss"], train["accuracy"], p0=[0.76, 1.4, 0.9], maxfev=20000)
    for corpus, part in held.groupby("dataset"):
        fit_rows = train[train["dataset"] == corpus]
        p = to_params(point_fit(fit_rows["N"].to_numpy(), fit_rows["D"].to_numpy(), fit_rows["loss"].to_numpy()))
        loss = p["E"] + p["A"] / part["N"] ** p["alpha"] + p["B"] / part["D"] ** p["beta"]
        forecasts.append(pd.DataFrame({"median": exp_law(loss, e, k, gamma)}, index=part.index))
    return pd.concat(forecasts).loc[held.index]


def run_average(name: str, train: pd.DataFrame, held: pd.DataFrame, loss_fit) -> dict:
    points = held[["N", "D", "dataset", "chance"]]
    out = {"metric": name}
    for law in ("metric_exp", "metric_sigmoid"):
        metric_fit = downstream.fit_metric(train, "accuracy", law, group="dataset")
        forecasts = downstream.chained_levels(loss_fit, metric_fit, points, LEVELS)
        out[law] = {
            **score(held["accuracy"], forecasts[0.9]),
            "coverage": coverage(held["accuracy"], forecasts),
            "forecasts": json.loads(
                forecasts[0.9][["median", "pred_lower", "pred_upper"]]
                .assign(observed=held["accuracy"].to_numpy())
                .to_json(orient="records")
            ),
            "diagnostics": metric_fit.diagnostics.to_dict(),
        }
        print(
            f"{name}, {law}: {out[law]['inside_90']}/9 inside the 90% band, median |error| "
            f"{out[law]['median_abs_error_points']:.2f} points, coverage {out[law]['coverage']}"
        )
    base = baseline(train, held)
    out["point_fit_baseline"] = score(held["accuracy"], base)
    print(
        f"{name}, point-fit baseline: median |error| {out['point_fit_baseline']['median_abs_error_points']:.2f} points"
    )
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-tasks", action="store_true", help="only the averages, not every task")
    args = parser.parse_args()
    warnings.simplefilter("ignore", bs.errors.SamplerWarning)
    tasks = bs.datasets.load_gadre_downstream(FOLDER, per_task=True)
    models = bs.datasets.load_gadre_downstream(FOLDER)
    train_models, held_models = models[models["N"] < HOLDOUT], models[models["N"] >= HOLDOUT]
    loss_fit = bs.fit(train_models, "chinchilla", pool={"E": "dataset"}, progressbar=False)
    results = {
        "holdout": f"N >= {HOLDOUT:g}",
        "n_train": len(train_models),
        "n_heldout": len(held_models),
        "loss_fit": loss_fit.diagnostics.to_dict(),
    }
    results["all_46_tasks"] = run_average("average of 46 tasks", train_models, held_models, loss_fit)

    train_tasks = tasks[tasks["N"] < HOLDOUT]
    forecastable, flagged = [], {}
    for task, part in train_tasks.groupby("task"):
        clear = downstream.above_chance(part["accuracy"].to_numpy(), part["chance"].to_numpy(), part["n"].to_numpy())
        (forecastable if clear.sum() >= 4 else flagged.setdefault("average_rule", [])).append(task)
    results["forecastable_tasks"] = forecastable
    subset = tasks[tasks["task"].isin(forecastable)].groupby("name")[["accuracy", "chance"]].mean()
    sub_models = models.drop(columns=["accuracy", "chance"]).merge(subset, left_on="name", right_index=True)
    results["forecastable_average"] = run_average(
        f"average of {len(forecastable)} forecastable tasks",
        sub_models[sub_models["N"] < HOLDOUT],
        sub_models[sub_models["N"] >= HOLDOUT],
        loss_fit,
    )

    if not args.skip_tasks:
        per_task, inside, total, errors = {}, 0, 0, []
        for task, part in tasks.groupby("task"):
            train, held = part[part["N"] < HOLDOUT], part[part["N"] >= HOLDOUT]
            try:
                metric_fit = downstream.fit_metric(train, "accuracy", "metric_sigmoid", group="dataset")
            except DataError as exc:
                per_task[task] = {"forecastable": False, "reason": str(exc)}
                print(f"{task}: not forecastable ({exc})")
                continue
            forecast = downstream.chained(loss_fit, metric_fit, held[["N", "D", "dataset", "chance"]], ci_prob=0.9)
            observed = held["accuracy"].to_numpy()
            hits = (forecast["pred_lower"].to_numpy() <= observed) & (observed <= forecast["pred_upper"].to_numpy())
            inside, total = inside + int(hits.sum()), total + len(hits)
            errors.extend(np.abs(forecast["median"].to_numpy() - observed))
            per_task[task] = {
                "forecastable": True,
                "inside_90": int(hits.sum()),
                "n": len(hits),
                "p_above_chance": forecast["p_above_chance"].round(3).tolist(),
                "median_abs_error_points": float(np.median(np.abs(forecast["median"] - observed)) * 100),
                "diagnostics": metric_fit.diagnostics.to_dict(),
            }
            print(
                f"{task}: {hits.sum()}/{len(hits)} inside, P(above chance) "
                f"{forecast['p_above_chance'].min():.2f}-{forecast['p_above_chance'].max():.2f}"
            )
        results["per_task"] = {
            "coverage_90": inside / max(total, 1),
            "forecasts": total,
            "median_abs_error_points": float(np.median(errors) * 100) if errors else None,
            "not_forecastable": sorted(t for t, r in per_task.items() if not r["forecastable"]),
            "tasks": per_task,
        }
        print(
            f"per task: {inside}/{total} inside the 90% band; not forecastable: "
            f"{', '.join(results['per_task']['not_forecastable'])}"
        )
    out = ROOT / "benchmarks" / "results" / "downstream_gadre.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
