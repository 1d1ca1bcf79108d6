"""Hierarchical fits at a realistic size: every Chinchilla parameter pooled across groups, against separate fits.

Two sweeps, each fitted twice in one process with ``bs.fit``'s defaults: once with all five
parameters (E, A, alpha, B, beta) pooled by the group column, once as one fit per group.

- ``gadre``: Gadre et al. 2024's over-training grid, three training corpora (104 runs);
- ``synthetic``: six groups of an IsoFLOP sweep (7 budgets x 13 sizes, about 90 runs each), each
  group's parameters drawn once from a known population around Chinchilla's
  (:func:`synthetic_groups`), with the noise and outlying runs of :func:`bayescale.data.datasets.synthetic_sweep`.

Reported per sweep: R-hat, minimum bulk ESS, divergences and wall time of the pooled fit; the
time of the separate fits; the pooled / separate time ratio; and, for the synthetic sweep,
which known group parameters fall outside the pooled fit's 90% intervals.
Targets (issue "One model", point 5): R-hat <= 1.01, bulk ESS >= 400, 0 divergences, ratio <= 2.

    .venv/bin/python benchmarks/hierarchical.py [--sweep gadre --sweep synthetic] [--out results/hierarchical.json]
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PARAMS = ("E", "A", "alpha", "B", "beta")
GROUP = "group"
#: spread of the synthetic groups around Chinchilla, on each parameter's log scale
GROUP_SPREAD = {"E": 0.05, "A": 0.3, "alpha": 0.1, "B": 0.3, "beta": 0.1}


def synthetic_groups(n_groups: int = 6, seed: int = 7) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Six IsoFLOP sweeps (about 90 runs each) whose Chinchilla parameters are drawn around Chinchilla's own."""
    import bayescale as bs

    rng = np.random.default_rng(seed)
    truths, frames = {}, []
    for g in range(n_groups):
        name = f"g{g}"
        truth = {p: float(bs.datasets.CHINCHILLA_TRUTH[p] * np.exp(rng.normal(0, GROUP_SPREAD[p]))) for p in PARAMS}
        truths[name] = truth
        frames.append(
            bs.datasets.synthetic_sweep(seed=seed * 100 + g, sizes_per_budget=13, truth=truth).assign(**{GROUP: name})
        )
    return pd.concat(frames, ignore_index=True), truths


def gadre() -> pd.DataFrame:
    import bayescale as bs

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "gadre-overtrain" / "DERIVED_flat_losses.csv"
    return bs.datasets.load_gadre(path).frame.rename(columns={"dataset": GROUP})


def timed_fit(table: pd.DataFrame, **options):
    import bayescale as bs

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bs.fit(table, "chinchilla", progressbar=False, extrapolation="none", **options)
    return fit, time.perf_counter() - start


def diagnostics(fit) -> dict:
    d = fit.diagnostics
    return {
        "rhat_max": round(float(d.rhat_max), 4),
        "ess_bulk_min": round(float(d.ess_bulk_min)),
        "divergences": int(d.divergences),
    }


def outside_intervals(fit, truths: dict[str, dict[str, float]], ci_prob: float = 0.9) -> list[str]:
    """The known group parameters ``name[group]`` outside the pooled fit's equal-tailed interval."""
    outside = []
    tail = (1 - ci_prob) / 2
    for group, truth in truths.items():
        for name, value in truth.items():
            draws = fit.posterior[name].sel({GROUP: group}).to_numpy().ravel()
            low, high = np.quantile(draws, [tail, 1 - tail])
            if not low <= value <= high:
                outside.append(f"{name}[{group}] = {value:.4g} outside [{low:.4g}, {high:.4g}]")
    return outside


def run_sweep(name: str) -> dict:
    table, truths = synthetic_groups() if name == "synthetic" else (gadre(), None)
    pooled, pooled_seconds = timed_fit(table, pool={p: GROUP for p in PARAMS})
    separate = {}
    for group, part in table.groupby(GROUP):
        fit, seconds = timed_fit(part.drop(columns=GROUP).reset_index(drop=True))
        separate[str(group)] = {**diagnostics(fit), "seconds": round(seconds, 1)}
    separate_seconds = sum(s["seconds"] for s in separate.values())
    result = {
        "runs": len(table),
        "groups": int(table[GROUP].nunique()),
        "pooled": {
            **diagnostics(pooled),
            "seconds": round(pooled_seconds, 1),
            "stages": {k: round(v, 1) for k, v in pooled.settings["timings"].items()},
        },
        "separate": separate,
        "separate_seconds": round(separate_seconds, 1),
        "time_ratio": round(pooled_seconds / separate_seconds, 2),
    }
    if truths is not None:
        result["truth_outside_90"] = outside_intervals(pooled, truths)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep", action="append", choices=["gadre", "synthetic"], default=[])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "hierarchical.json")
    args = parser.parse_args()
    results = {name: run_sweep(name) for name in args.sweep or ["gadre", "synthetic"]}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
