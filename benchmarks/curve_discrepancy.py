"""Which settings of the learning-curve discrepancy forecast real held-out checkpoints best.

Reads a results file of ``calibration.py``. Every learning-curve split records the fit's internal
leave-future-out errors (split, run, distance, error, scale) and, for each held-out checkpoint,
the plain posterior's band (no discrepancy), its distance and its run. For each candidate setting
of ``bayescale.inference.discrepancy``'s curve discrepancy,

    log L(run, step) = log f + d * (bias + m * kappa * z_run),  m = outlier scale for a share of runs,

the script computes, per split, the log predictive density of the real held-out errors given the
internal ones: the grid posterior of (bias, kappa, share) from the internal splits, then the
held-out errors' joint density under it (the plain posterior's predictive taken as Normal in
log-loss, centre and scale from its 80% band, as ``discrepancy_prior.py`` does). Higher is better.
Datasets count equally: a split's score is divided by the number of splits of its dataset (the 12
vision tasks are one dataset, the three misfitting cuts another).

Candidates: the bias prior's scale (0 = no bias term) and the outlier scale (1 = no outliers).

    .venv/bin/python benchmarks/curve_discrepancy.py results/calibration.json [--out results/curve_discrepancy.json]
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from discrepancy_prior import Z80, dataset_of
from scipy.special import logsumexp

from bayescale.inference.discrepancy import (
    BIAS_GRID,
    CURVE_KAPPA_GRID,
    OUTLIER_SHARES,
    curve_log_likelihood,
    curve_log_prior,
)
from bayescale.laws.priors import Prior

BIAS_SCALES = (0.0, 0.005, 0.01, 0.02, 0.05)
OUTLIER_SCALES = (1.0, 3.0, 5.0, 10.0)


def load(path: Path) -> list[dict]:
    """Per learning-curve split: internal errors and the plain posterior's held-out errors, as arrays."""
    out = []
    for name, r in json.loads(path.read_text())["splits"].items():
        record = r.get("discrepancy") or {}
        if record.get("kind") != "curve":
            continue
        plain = {k: np.asarray(v, float) for k, v in r["methods"]["plain"].items()}
        keep = np.isfinite(plain["median"]) & (plain["lo0.8"] > 0) & (np.asarray(record["distance"], float) > 0)
        t = {k: np.asarray(v) for k, v in record["internal"].items()}
        inside = (t["distance"].astype(float) > 0) & np.isfinite(t["error"].astype(float))
        out.append(
            {
                "name": name,
                "dataset": dataset_of(name),
                "internal": (
                    t["error"][inside].astype(float),
                    t["scale"][inside].astype(float),
                    t["distance"][inside].astype(float),
                    np.char.add(np.char.add(t["split"][inside].astype(str), "/"), t["shares_with"][inside].astype(str)),
                ),
                "heldout": (
                    np.log(plain["actual"][keep] / plain["median"][keep]),
                    ((np.log(plain["hi0.8"]) - np.log(plain["lo0.8"])) / (2 * Z80))[keep],
                    np.asarray(record["distance"], float)[keep],
                    np.asarray(record["shares_with"])[keep],
                ),
            }
        )
    return out


def score(split: dict, bias_scale: float, outlier_scale: float) -> tuple[float, float]:
    """(log evidence of the internal errors, log predictive density of the held-out errors) under one setting."""
    bias = BIAS_GRID if bias_scale > 0 else np.zeros(1)
    shares = OUTLIER_SHARES if outlier_scale > 1 else np.zeros(1)
    prior = curve_log_prior(Prior("Normal", mu=0.0, sigma=bias_scale) if bias_scale > 0 else None, len(shares))
    prior -= logsumexp(prior)
    grids = dict(bias=bias, kappa=CURVE_KAPPA_GRID, shares=shares, outlier_scale=outlier_scale)
    posterior = prior + curve_log_likelihood(*split["internal"], **grids)
    evidence = logsumexp(posterior)
    predictive = logsumexp(posterior - evidence + curve_log_likelihood(*split["heldout"], **grids))
    return float(evidence), float(predictive)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results file of calibration.py")
    parser.add_argument("--out", type=Path, default=None, help="write every setting's scores here (JSON)")
    args = parser.parse_args()
    splits = load(args.results)
    counts = Counter(s["dataset"] for s in splits)
    rows = []
    for bias_scale in BIAS_SCALES:
        for outlier_scale in OUTLIER_SCALES:
            per_split = {s["name"]: score(s, bias_scale, outlier_scale) for s in splits}
            total = sum(per_split[s["name"]][1] / counts[s["dataset"]] for s in splits)
            rows.append(
                {
                    "bias_scale": bias_scale,
                    "outlier_scale": outlier_scale,
                    "heldout_score": round(total, 1),
                    "splits": {
                        k: {"internal_evidence": round(e, 1), "heldout": round(h, 1)} for k, (e, h) in per_split.items()
                    },
                }
            )
            by_dataset = {}
            for s in splits:
                by_dataset[s["dataset"]] = (
                    by_dataset.get(s["dataset"], 0.0) + per_split[s["name"]][1] / counts[s["dataset"]]
                )
            print(
                f"bias sd {bias_scale:5.3f}  outlier scale {outlier_scale:4.1f}  held-out score {total:9.1f}  "
                + "  ".join(f"{d}: {v:8.1f}" for d, v in by_dataset.items()),
                flush=True,
            )
    best = max(rows, key=lambda r: r["heldout_score"])
    print(f"best: bias sd {best['bias_scale']}, outlier scale {best['outlier_scale']}")
    if args.out:
        args.out.write_text(json.dumps({"source": str(args.results), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
