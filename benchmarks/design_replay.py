"""Replay choosing runs on Epoch's sweep: the 208 runs below N = 2.9e9 are the pool, the 32 above the target.

Strategies `bayes` (`bs.design` on the fit so far, the 32 targets' points as its targets) and `random`,
starting from the 8 cheapest runs (the fewest a fit of the 7 parameters takes), choosing 4 runs between fits and
scoring the target runs at 1%, 5% and 10% of the pool's cost (6ND), and a fit on all of the pool: R2 of the
median (ScaleBench's), coverage of the 90% predictive band, median |relative error|, mean half-width.
Goal (issue 37): at 10% the band within 1.25x of the whole pool's and coverage >= 0.8.
Usage: .venv/bin/python benchmarks/design_replay.py [--repeats 1] [--shares 0.01,0.05,0.1] [--strategy NAME ...] [--out F]
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import bayescale as bs
from bayescale.evaluation.design_replay import design_replay

ROOT = Path(__file__).resolve().parents[1]
EPOCH = ROOT.parent / "shared" / "data" / "epoch-chinchilla" / "svg_extracted_data.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--shares", default="0.01,0.05,0.1")
    parser.add_argument("--strategy", action="append", default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "design_replay_epoch.json"))
    args = parser.parse_args()
    frame = bs.datasets.load_epoch_chinchilla(EPOCH).frame
    pool = frame[frame["N"] < 2.9e9].reset_index(drop=True)
    targets = frame[frame["N"] >= 2.9e9].reset_index(drop=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fits on a handful of runs warn of their sampler and data, as they should
        result = design_replay(
            pool,
            targets,
            shares=[float(s) for s in args.shares.split(",")],
            strategies=args.strategy or ["bayes", "random"],
            repeats=args.repeats,
            progress=lambda line: print(f"{time.perf_counter() - start:6.0f} s  {line}", flush=True),
        )
    result["seconds"] = time.perf_counter() - start
    whole = result["all_of_pool"]
    print(
        f"all of the pool ({whole['runs']} runs): R2 {whole['r2']:.3f}, coverage {whole['coverage']['0.9']:.2f}, "
        f"median |rel err| {whole['median_abs_rel_error']:.2%}, half-width {whole['mean_halfwidth']:.4f}"
    )
    for strategy in result["strategies"]:
        for b in strategy["budgets"]:
            print(
                f"{strategy['strategy']:>6} {b['share']:.0%}: spent {b['spent']:.2%} on {b['runs']:.0f} runs, R2 {b['r2']:.3f}, "
                f"coverage {b['coverage']['0.9']:.2f}, median |rel err| {b['median_abs_rel_error']:.2%}, half-width "
                f"{b['mean_halfwidth']:.4f} ({b['mean_halfwidth'] / whole['mean_halfwidth']:.2f}x the whole pool's)"
            )
    print(f"{result['seconds']:.0f} s")
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
