"""The cross-dataset prior of the extrapolation discrepancy kappa, fitted on the calibration benchmark.

Reads a results file of ``calibration.py``, which records per split every held-out point's
distance beyond the data (and its run), the plain posterior's bands, and the fit's internal
leave-future-out errors. Per kind of extrapolation ("sweep": beyond the box of observed runs;
"curve": further along a run) it fits a hierarchical model on a grid:

    log kappa_split ~ Normal(mu, tau),   mu ~ Normal(log 0.02, 1.5),   tau ~ HalfNormal(1),

where each split's kappa is first updated by the fit's own internal splits (exactly as
``bayescale.inference.discrepancy.calibrate`` does) and the held-out errors are the likelihood, one
discrepancy shared by the points that share it (all runs of a sweep; the checkpoints of one
curve). Datasets count equally: a split's likelihood is raised to 1 / the number of splits of its
dataset, so the 12 vision tasks do not outvote the rest. The shipped prior is the LogNormal with
the posterior predictive's mean and sd of log kappa for a new dataset.

Also reported: leave-one-dataset-out coverage (each dataset scored with the prior fitted on the
others only). The plain posterior's predictive is taken as Normal in log-loss (centre and scale
from its bands), so these coverages are approximations that guide the choice; the benchmark's
full rerun is the measurement.

    .venv/bin/python benchmarks/discrepancy_prior.py results/calibration.json [--out results/discrepancy_prior.json]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from bayescale.inference.discrepancy import KAPPA_GRID, kappa_log_likelihood

LEVELS = (0.5, 0.8, 0.9)
Z80 = stats.norm.ppf(0.9)
MU = np.linspace(np.log(1e-4), np.log(0.5), 86)
TAU = np.linspace(0.05, 3.0, 60)
HYPER_PRIOR = stats.norm.logpdf(MU, np.log(0.02), 1.5)[:, None] + stats.halfnorm.logpdf(TAU, scale=1.0)[None, :]


def dataset_of(name: str) -> str:
    """'epoch top 10% N' -> 'epoch'; 'revisiting vision c_5' -> 'revisiting vision'."""
    words = name.split(" ")
    return " ".join(words[:2]) if words[0] in ("misfitting", "revisiting") else words[0]


def load(path: Path) -> list[dict]:
    """Per split: held-out log errors of the plain posterior, its log-scale sd, distances, internal table."""
    out = []
    for name, r in json.loads(path.read_text())["splits"].items():
        record = r.get("discrepancy") or {}
        if "methods" not in r or record.get("distance") is None:
            continue
        plain = {k: np.asarray(v, float) for k, v in r["methods"]["plain"].items()}
        keep = np.isfinite(plain["median"]) & (plain["lo0.8"] > 0)
        sd = (np.log(plain["hi0.8"]) - np.log(plain["lo0.8"])) / (2 * Z80)
        t = record["internal"]
        inside = np.asarray(t["distance"], float) > 0
        internal_shared = [f"{a}/{b}" for a, b in zip(t["split"], t["shares_with"])]
        error = np.log(plain["actual"][keep]) - np.log(plain["median"][keep])
        distance = np.asarray(record["distance"], float)[keep]
        out.append(
            {
                "name": name,
                "dataset": dataset_of(name),
                "kind": record["kind"],
                "error": error,
                "sd": sd[keep],
                "distance": distance,
                "ll_internal": kappa_log_likelihood(
                    np.asarray(t["error"])[inside],
                    np.asarray(t["scale"])[inside],
                    np.asarray(t["distance"])[inside],
                    np.asarray(internal_shared)[inside],
                ),
                "ll_heldout": kappa_log_likelihood(error, sd[keep], distance, np.asarray(record["shares_with"])[keep]),
            }
        )
    return out


def log_prior_grid(mu: float, tau: float) -> np.ndarray:
    """log LogNormal(mu, tau) density of kappa on the grid (per unit of log kappa: the grid is log-spaced)."""
    return stats.norm.logpdf(np.log(KAPPA_GRID), mu, tau)


def normalise(log_w: np.ndarray) -> np.ndarray:
    w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
    return w / w.sum(axis=-1, keepdims=True)


def predictive_log_density(split: dict, log_prior: np.ndarray) -> np.ndarray:
    """log p(held-out errors | internal errors) for log priors of kappa stacked on the leading axes."""
    post = normalise(log_prior + split["ll_internal"])
    top = split["ll_heldout"].max()
    with np.errstate(divide="ignore"):  # a prior far from every plausible kappa: log 0, left out by the posterior
        return np.log(np.sum(post * np.exp(split["ll_heldout"] - top), axis=-1)) + top


def fit_prior(splits: list[dict], kind: str) -> tuple[float, float]:
    """Posterior over (mu, tau) on the grid, summarised as the predictive LogNormal(mean, sd) of log kappa."""
    chosen = [s for s in splits if s["kind"] == kind]
    counts = {}
    for s in chosen:
        counts[s["dataset"]] = counts.get(s["dataset"], 0) + 1
    log_priors = stats.norm.logpdf(np.log(KAPPA_GRID)[None, None, :], MU[:, None, None], TAU[None, :, None])
    log_post = HYPER_PRIOR + sum(predictive_log_density(s, log_priors) / counts[s["dataset"]] for s in chosen)
    w = normalise(log_post.ravel()).reshape(log_post.shape)
    mean = float(np.sum(w * MU[:, None]))
    var = float(np.sum(w * (TAU[None, :] ** 2 + (MU[:, None] - mean) ** 2)))
    return mean, float(np.sqrt(var))


def coverage(split: dict, weights: np.ndarray) -> dict:
    """Share of held-out points inside the central bands of the kappa mixture (per-point marginal)."""
    sd = np.sqrt(split["sd"][None, :] ** 2 + (KAPPA_GRID[:, None] * split["distance"][None, :]) ** 2)
    out = {}
    for level in LEVELS:
        lo, hi = np.zeros(sd.shape[1]), 8 * sd.max(axis=0)
        for _ in range(50):  # bisection for the half-width holding ``level`` of the mixture
            mid = (lo + hi) / 2
            inside = np.sum(weights[:, None] * (2 * stats.norm.cdf(mid[None, :] / sd) - 1), axis=0)
            lo, hi = np.where(inside < level, mid, lo), np.where(inside < level, hi, mid)
        out[level] = float(np.mean(np.abs(split["error"]) <= hi))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    splits = load(args.results)
    kinds = sorted({s["kind"] for s in splits})
    fitted = {kind: fit_prior(splits, kind) for kind in kinds}
    print(
        "shipped prior of log kappa per kind (all datasets):",
        {
            k: {"mu": round(m, 3), "sigma": round(t, 3), "median": round(float(np.exp(m)), 4)}
            for k, (m, t) in fitted.items()
        },
    )
    rows = []
    for dataset in sorted({s["dataset"] for s in splits}):
        others = [s for s in splits if s["dataset"] != dataset]
        for kind in sorted({s["kind"] for s in splits if s["dataset"] == dataset}):
            mu, tau = fit_prior(others, kind)
            for s in [s for s in splits if s["dataset"] == dataset and s["kind"] == kind]:
                w = normalise(log_prior_grid(mu, tau) + s["ll_internal"])
                cov = coverage(s, w)
                kappa = float(np.exp(np.sum(w * np.log(KAPPA_GRID))))
                rows.append(
                    {
                        "split": s["name"],
                        "n": len(s["error"]),
                        "lodo_mu": round(mu, 3),
                        "lodo_sigma": round(tau, 3),
                        "kappa_geomean": round(kappa, 5),
                        **{f"coverage_{lv}": round(c, 3) for lv, c in cov.items()},
                    }
                )
                print(
                    f"{s['name']:38s} n={len(s['error']):5d} prior mu={mu:6.2f} sigma={tau:4.2f} kappa={kappa:.4f} "
                    + " ".join(f"{lv}:{c:.2f}" for lv, c in cov.items())
                )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "source": args.results.name,
                    "prior": {k: {"mu": m, "sigma": t} for k, (m, t) in fitted.items()},
                    "leave_one_dataset_out": rows,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
