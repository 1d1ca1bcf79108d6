"""Speed of `bs.design`: choosing a batch of 4 runs from 1,000 candidates after a fit (target: <= 10 s on 2 cores).

The fit is the default Chinchilla fit of the embedded demo sweep (4 chains x 1000 draws); the candidates
are 1,000 random (N, D) with N from 1e7 to 3e10 and 3 to 300 tokens per parameter; two targets. Only
the `design` call is timed, three times (the first includes importing nothing new: the fit already loaded
NumPy, SciPy and the package).
Usage: .venv/bin/python benchmarks/design_speed.py [--candidates 1000] [--batch 4] [--repeats 3]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    fit = bs.fit(bs.datasets.demo_runs_path(), "chinchilla", progressbar=False)
    rng = np.random.default_rng(0)
    n = 10 ** rng.uniform(7, np.log10(3e10), args.candidates)
    pool = pd.DataFrame({"N": n, "D": n * 10 ** rng.uniform(0.5, 2.5, args.candidates)})
    targets = [{"N": 7e10, "D": 1.4e12}, {"N": 1e10, "D": 2e11}]
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        chosen = bs.design(fit, pool, targets, budget=1e22, batch=args.batch)
        seconds.append(time.perf_counter() - start)
    result = {
        "candidates": args.candidates,
        "batch": args.batch,
        "draws_in_fit": int(fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]),
        "seconds": seconds,
        "chosen_rows": chosen.chosen["row"].tolist(),
        "target_seconds": 10.0,
    }
    print(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "results" / "design_speed.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
