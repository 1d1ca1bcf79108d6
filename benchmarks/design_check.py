"""Is `bs.design`'s expected posterior right? Its predictions against real refits.

For a few candidate runs, each with a few simulated outcomes (a posterior draw's law plus the fit's
noise), the law is refitted with that run added and the target's posterior variance of log-loss
compared with two predictions made without refitting (`bayescale.evaluation.design_check`):
importance reweighting of the draws (what `design` uses) and a Gaussian linearised (Laplace-style)
update of the draws' covariance by the run's Fisher information. Scores per method: the share of the
target's variance the run removes (predicted against refitted) and the median |log(predicted / refitted
variance)|.
Usage: .venv/bin/python benchmarks/design_check.py [--data demo|epoch] [--outcomes 3]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.evaluation.design_check import check_design

ROOT = Path(__file__).resolve().parents[1]
EPOCH = ROOT.parent / "shared" / "data" / "epoch-chinchilla" / "svg_extracted_data.csv"

#: per data set: the runs, the target, and candidates from cheap and well inside the runs to near the target
SETUPS = {
    "demo": {
        "runs": lambda: bs.datasets.demo_runs_path(),
        "target": {"N": 7e10, "D": 1.4e12},
        "candidates": [
            {"N": 1.0e7, "D": 4.0e7},  # tiny and undertrained: design's first pick on a random pool of 1,000
            {"N": 1.0e9, "D": 1.7e10},  # inside the IsoFLOP grid (C = 1e20)
            {"N": 1.0e9, "D": 5.0e11},  # overtrained, beyond the runs' D
            {"N": 1.0e10, "D": 2.0e11},  # near the target, beyond the runs' compute
        ],
    },
    "epoch": {
        "runs": lambda: (lambda f: f[f["N"] < 2.9e9].reset_index(drop=True))(
            bs.datasets.load_epoch_chinchilla(EPOCH).frame
        ),
        "target": {"N": 1.0e10, "D": 2.0e11},
        "candidates": [
            {"N": 1.0e8, "D": 2.0e9},
            {"N": 1.0e9, "D": 2.0e10},
            {"N": 2.8e9, "D": 6.0e10},
            {"N": 5.0e9, "D": 1.0e11},
        ],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=list(SETUPS), default="demo")
    parser.add_argument("--outcomes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup = SETUPS[args.data]
    start = time.perf_counter()
    table = check_design(
        setup["runs"](), "chinchilla", setup["candidates"], [setup["target"]], outcomes=args.outcomes, seed=args.seed
    )
    seconds = time.perf_counter() - start
    table["var_laplace_scaled"] = table["var_now"] * table["var_laplace"] / table["var_laplace_now"]
    share = lambda after: 1 - after / table["var_now"]  # noqa: E731
    table["share_refit"] = share(table["var_refit"])
    table["share_reweighted"] = share(table["var_reweighted"])
    table["share_laplace"] = share(table["var_laplace_scaled"])
    per_candidate = table.groupby(["N", "D"], sort=False)[
        ["share_refit", "share_reweighted", "share_laplace", "ess"]
    ].mean()
    scores = {
        method: {
            "median_abs_log_ratio": float(np.median(np.abs(np.log(table[f"var_{key}"] / table["var_refit"])))),
            "mean_abs_share_error": float(np.mean(np.abs(table[f"share_{method}"] - table["share_refit"]))),
        }
        for method, key in (("reweighted", "reweighted"), ("laplace", "laplace_scaled"))
    }
    pd.set_option("display.width", 160)
    print(table[["N", "D", "outcome", "loss", "share_refit", "share_reweighted", "share_laplace", "ess"]].round(4))
    print(per_candidate.round(3))
    print(json.dumps(scores, indent=1), f"\n{seconds:.0f} s")
    out = ROOT / "benchmarks" / "results" / f"design_check_{args.data}.json"
    out.write_text(
        json.dumps(
            {"data": args.data, "seconds": seconds, "scores": scores, "rows": table.to_dict("records")}, indent=1
        )
    )
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
