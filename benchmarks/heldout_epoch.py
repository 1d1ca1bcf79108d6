"""Forecast quality at held-out larger scales: Epoch data, fit on N < 2.9e9, forecast N >= 2.9e9.

Prints the coverage of the 50/80/90% predictive intervals and the median absolute relative error
of the posterior median, for bayescale's default fit and, for comparison, the Normal likelihood.
Usage: .venv/bin/python benchmarks/heldout_epoch.py [--epoch PATH]
"""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

import bayescale as bs

ROOT = Path(__file__).resolve().parents[1]


def evaluate(small, large, likelihood):
    fit = bs.fit(small, "chinchilla", likelihood=likelihood, progressbar=False)
    loss = large["loss"].to_numpy()
    out = {"likelihood": likelihood, "divergences": fit.diagnostics.divergences, "coverage": {}}
    for prob in (0.5, 0.8, 0.9):
        pred = fit.predict(large[["N", "D"]], ci_prob=prob)
        out["coverage"][str(prob)] = float(np.mean((loss >= pred["pred_lower"]) & (loss <= pred["pred_upper"])))
    out["median_abs_rel_error"] = float(np.median(np.abs(pred["median"].to_numpy() / loss - 1)))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epoch", default=str(ROOT.parent / "shared/data/epoch-chinchilla/svg_extracted_data.csv"))
    args = parser.parse_args()
    frame = bs.datasets.load_epoch_chinchilla(args.epoch).frame
    small, large = frame[frame["N"] < 2.9e9], frame[frame["N"] >= 2.9e9]
    results = {"fit_runs": len(small), "heldout_runs": len(large), "methods": []}
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        for likelihood in ("studentt", "normal"):
            results["methods"].append(evaluate(small, large, likelihood))
    print(json.dumps(results, indent=1))
    (ROOT / "benchmarks" / "results" / "heldout_epoch.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
