"""Speed of `bayescale fit` (Chinchilla, Epoch data, defaults) against the reference bootstrap.

Measured side by side in one run on this machine:
  reference  4000-resample bootstrap of the Huber/BFGS fit (started from the optimum), in-process
  warm       `bayescale fit` as a whole new process, compile cache already filled
  cold       `bayescale fit` as a whole new process with an empty PyTensor/Numba compile cache
  curve      the README's many-sizes learning-curve recipe as a whole process (`bayescale curve` on the
             misfitting checkpoints, schedule_aware, --upto 0.5, pooled by model size and run), cache warm
  new numbers  the same law on other numbers (every 7th run left out) as a whole new process, cache warm
Targets (issue "Answers in seconds"): warm <= 0.2 x reference, cold <= 0.6 x reference, curve <= 2 x
reference, min ESS_bulk >= 1000; the cold and warm posteriors must be identical (same seed).
``--sampler numpyro`` measures the JAX path the same way (its cold run also empties JAX's cache)
and writes results/fit_speed_numpyro.json.
Usage: .venv/bin/python benchmarks/fit_speed.py [--epoch PATH] [--repeats 2] [--no-curve] [--sampler nutpie|numpyro]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BAYESCALE = Path(sys.executable).parent / "bayescale"


def run_fit(csv: Path, out: Path, env: dict, sampler: str = "nutpie") -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(BAYESCALE), "fit", str(csv), "--law", "chinchilla", "--out", str(out), "--quiet", "--sampler", sampler],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start


def run_curve(csv: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            str(BAYESCALE),
            "curve",
            str(csv),
            "--law",
            "schedule_aware",
            "--upto",
            "0.5",
            "--pool",
            "L0=model",
            "--pool",
            "alpha=model",
            "--pool",
            "C=model",
            "--pool",
            "A=run",
            "--json",
            "--quiet",
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start


def same_posterior(a: Path, b: Path) -> bool:
    import xarray as xr

    first, second = (xr.open_datatree(p)["posterior"].to_dataset() for p in (a, b))
    return bool(first.equals(second))


def diagnostics(path: Path) -> dict:
    done = subprocess.run([str(BAYESCALE), "summary", str(path), "--json"], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)["diagnostics"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epoch", default=str(ROOT.parent / "shared/data/epoch-chinchilla/svg_extracted_data.csv"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--misfitting", default=str(ROOT.parent / "shared/data/misfitting/scaling_results.csv"))
    parser.add_argument("--no-curve", action="store_true", help="skip the learning-curve recipe")
    parser.add_argument("--sampler", default="nutpie", choices=["nutpie", "numpyro"])
    args = parser.parse_args()
    import bayescale as bs

    runs = bs.datasets.load_epoch_chinchilla(args.epoch)
    n, d, loss = runs["N"], runs["D"], runs["loss"]
    work = Path(tempfile.mkdtemp(prefix="bayescale-bench-"))
    csv = work / "epoch240.csv"
    runs.frame[["N", "D", "loss"]].to_csv(csv, index=False)
    other = work / "epoch-other-numbers.csv"
    runs.frame[["N", "D", "loss"]][runs.frame.index % 7 != 0].to_csv(other, index=False)

    optimum = reference_fit.point_fit(n, d, loss)
    start = time.perf_counter()
    boot = reference_fit.bootstrap(n, d, loss, optimum)
    reference = time.perf_counter() - start
    ci = {
        k: np.percentile([reference_fit.to_params(p)[k] for p in boot], [2.5, 97.5]).round(4).tolist()
        for k in ("E", "A", "alpha", "B", "beta")
    }

    env = dict(os.environ)
    warm = []
    for i in range(args.repeats + 1):  # the first run fills the cache if it was empty
        warm.append(run_fit(csv, work / f"warm{i}.nc", env, args.sampler))
    new_numbers = run_fit(other, work / "other.nc", env, args.sampler)
    cold_env = {
        **env,
        "PYTENSOR_FLAGS": f"base_compiledir={work / 'empty-cache'}",
        "BAYESCALE_CACHE": str(work / "empty-bayescale-cache"),
    }
    cold = run_fit(csv, work / "cold.nc", cold_env, args.sampler)
    diag = [
        diagnostics(work / f"{name}.nc") for name in (*(f"warm{i}" for i in range(args.repeats + 1)), "other", "cold")
    ]

    curve = None
    if not args.no_curve:
        checkpoints = work / "misfitting_checkpoints.csv"
        bs.datasets.load_misfitting_curves(args.misfitting).to_csv(checkpoints, index=False)
        run_curve(checkpoints, env)  # fills the compile cache for this law
        curve = run_curve(checkpoints, env)

    warm_time = float(np.median(warm[1:]))
    result = {
        "machine": f"{os.cpu_count()} cpus",
        "sampler": args.sampler,
        "reference_bootstrap_s": round(reference, 1),
        "reference_95ci": ci,
        "warm_fit_s": [round(t, 1) for t in warm[1:]],
        "first_fit_s": round(warm[0], 1),
        "cold_fit_s": round(cold, 1),
        "warm_over_reference": round(warm_time / reference, 3),
        "cold_over_reference": round(cold / reference, 3),
        "new_numbers_fit_s": round(new_numbers, 1),
        "new_numbers_over_reference": round(new_numbers / reference, 3),
        "diagnostics": diag,
        "min_ess_bulk": round(min(x["ess_bulk_min"] for x in diag)),
        "divergences": [x["divergences"] for x in diag],
        "cold_and_warm_posteriors_identical": same_posterior(work / "cold.nc", work / "warm1.nc"),
        "curve_fit_s": None if curve is None else round(curve, 1),
        "curve_over_reference": None if curve is None else round(curve / reference, 3),
    }
    print(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    name = "fit_speed.json" if args.sampler == "nutpie" else f"fit_speed_{args.sampler}.json"
    (ROOT / "benchmarks" / "results" / name).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
