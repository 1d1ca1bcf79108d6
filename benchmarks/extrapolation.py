"""Honest intervals beyond the data: the default (calibrated discrepancy) against plain posteriors.

Leave-future-out backtests on three real data sets and an in-sample calibration check on synthetic
data drawn from the law itself. Writes results/extrapolation.json and prints the tables.

    .venv/bin/python benchmarks/extrapolation.py
"""

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale import Candidate, backtest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "extrapolation.json"

CANDIDATES = [
    Candidate("chinchilla", label="default (Student-t + calibrated discrepancy)"),
    Candidate("chinchilla", {"extrapolation": "none"}, label="Student-t, plain posterior"),
    Candidate("chinchilla", {"likelihood": "normal", "extrapolation": "none"}, label="Normal, plain posterior"),
]


def per_model(result, group_column):
    rows = []
    for label, r in result.results.items():
        runs = r["runs"].copy()
        runs["rel_error"] = runs["median"] / runs["loss"] - 1
        for key, part in runs.groupby(group_column):
            rows.append(
                {
                    "method": label,
                    group_column: key,
                    "runs": len(part),
                    "coverage_0.9": float(part["inside_90"].mean()),
                    "median_abs_rel_error": float(part["rel_error"].abs().median()),
                }
            )
    return pd.DataFrame(rows)


def in_sample_calibration(seeds=(0, 1, 2)):
    """Fit synthetic sweeps drawn from the law; new draws at the same inputs should land in 90% intervals 90% of the time."""
    coverage = []
    for seed in seeds:
        sweep = bs.datasets.synthetic_sweep(seed, outlier_fraction=0.0)
        fit = bs.fit(sweep, "chinchilla", progressbar=False, seed=seed)
        truth = bs.datasets.CHINCHILLA_TRUTH
        law = truth["E"] + truth["A"] / sweep["N"] ** truth["alpha"] + truth["B"] / sweep["D"] ** truth["beta"]
        fresh = law * np.exp(np.random.default_rng(1000 + seed).normal(0, 0.01, len(sweep)))  # new runs, same N, D
        forecast = fit.predict(sweep[["N", "D"]], ci_prob=0.9)
        inside = (forecast["pred_lower"] <= fresh) & (fresh <= forecast["pred_upper"])
        coverage.append(
            {
                "seed": seed,
                "coverage_0.9": float(inside.mean()),
                "max_extrapolation": float(forecast["extrapolation"].max()),
            }
        )
    return coverage


def main():
    warnings.simplefilter("ignore")
    results = {}
    epoch = bs.datasets.load_epoch_chinchilla(DATA / "epoch-chinchilla" / "svg_extracted_data.csv")
    gadre = bs.datasets.load_gadre(DATA / "gadre-overtrain" / "DERIVED_flat_losses.csv")
    misfit = bs.datasets.load_misfitting_final(DATA / "misfitting" / "scaling_results_last_ckpt_only.csv")
    for name, runs, holdout, column in (
        ("epoch", epoch, "N >= 2.9e9", None),
        ("gadre", gadre, "N >= 1e9", "N"),
        ("misfitting", misfit, "N >= 5e8", "N"),
    ):
        start = time.time()
        result = backtest(runs, CANDIDATES, holdout, progress=lambda m: print(m, file=sys.stderr))
        print(
            f"\n{name}: holdout {holdout!r}, {result.n_train} fitted, {result.n_heldout} held out "
            f"({time.time() - start:.0f} s)"
        )
        print(result.table.round(4).to_string())
        entry = {"holdout": holdout, "table": json.loads(result.table.to_json(orient="index"))}
        if column:
            models = per_model(result, column)
            print(models.round(4).to_string(index=False))
            entry["per_model"] = json.loads(models.to_json(orient="records"))
        results[name] = entry
    results["in_sample"] = in_sample_calibration()
    print("\nin-sample calibration (synthetic, law-generated):", results["in_sample"])
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
