"""Forecast quality at held-out larger scales: Epoch data, fit on N < 2.9e9, forecast N >= 2.9e9.

Prints, for bayescale's default fit and the Normal likelihood, on Epoch's 240 points (its 5
highest losses dropped, as Epoch and ``bs.datasets.load_epoch_chinchilla`` do: 32 held-out runs) and
on the raw CSV (245 points, 34 held out): the coverage of the 50/80/90% predictive intervals, the
median absolute relative error of the posterior median, and how often a right forecast would meet
the issue's must-show (50% coverage in 0.35-0.65 and 90% >= 0.85): each joint predictive draw taken
as the truth (``backtesting.replicate_coverage``).
Usage: .venv/bin/python benchmarks/heldout_epoch.py [--epoch PATH]
"""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

import bayescale as bs
from bayescale.evaluation.backtesting import replicate_coverage

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (0.5, 0.8, 0.9)


def evaluate(small, large, likelihood):
    fit = bs.fit(small, "chinchilla", likelihood=likelihood, progressbar=False)
    loss = large["loss"].to_numpy()
    out = {"likelihood": likelihood, "divergences": fit.diagnostics.divergences, "coverage": {}}
    for prob in LEVELS:
        pred = fit.predict(large[["N", "D"]], ci_prob=prob)
        out["coverage"][str(prob)] = float(np.mean((loss >= pred["pred_lower"]) & (loss <= pred["pred_upper"])))
    out["median_abs_rel_error"] = float(np.median(np.abs(pred["median"].to_numpy() / loss - 1)))
    shares = replicate_coverage(fit, large[["N", "D"]], fit.settings["seed"], LEVELS)
    meets = (shares[0.5] >= 0.35) & (shares[0.5] <= 0.65) & (shares[0.9] >= 0.85)
    out["p_meets_if_right"] = round(float(meets.mean()), 3)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epoch", default=str(ROOT.parent / "shared/data/epoch-chinchilla/svg_extracted_data.csv"))
    args = parser.parse_args()
    results = {}
    for label, drop in (("epoch_240", 5), ("raw_245", 0)):
        frame = bs.datasets.load_epoch_chinchilla(args.epoch, drop_highest=drop).frame
        small, large = frame[frame["N"] < 2.9e9], frame[frame["N"] >= 2.9e9]
        results[label] = {"fit_runs": len(small), "heldout_runs": len(large), "methods": []}
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            for likelihood in ("studentt", "normal"):
                results[label]["methods"].append(evaluate(small, large, likelihood))
    print(json.dumps(results, indent=1))
    (ROOT / "benchmarks" / "results" / "heldout_epoch.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
