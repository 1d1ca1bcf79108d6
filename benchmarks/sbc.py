"""Simulation-based calibration (Talts et al. 2018) of bayescale's own inference.

If the sampler, the whitening, the anchored floor and the mode search are right, then for data
simulated from the prior (parameters drawn from the priors, losses from the law and the noise
model of ``fit.model``), the rank of each true parameter among its posterior draws is uniform.
Each simulation is fitted by ``bs.fit`` with its default path and settings (mode search, whitening, nutpie,
4 x 1000 draws, a second sampling where R-hat or ESS fall short),
so this checks the inference a user gets, not PyMC's plain sampler on the generative model. The
design is the demo's (an IsoFLOP sweep of 63 runs); every fit is one task of bayescale's executor.

Reported per parameter: a chi-square test of the rank histogram (about five simulations per bin),
its p-value adjusted for testing every parameter of the law (Holm), and the largest gap between
the ranks' ECDF and the uniform; results/sbc.json and results/sbc.png.

    .venv/bin/python benchmarks/sbc.py [--law chinchilla] [--simulations 100] [--draws 1000]
    .venv/bin/python benchmarks/sbc.py --pool E --out benchmarks/results/sbc_pooled.json   # E pooled over 3 groups
    .venv/bin/python benchmarks/sbc.py --prior 'sigma=HalfNormal(sigma=0.02)'   # the noise real sweeps have
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: posterior draws kept per fit, evenly thinned, so ranks run from 0 to THIN
THIN = 99


def n_bins(n: int) -> int:
    """Rank-histogram bins: about five simulations per bin, 4 to 20 bins."""
    return max(4, min(20, n // 5))


#: the group column of the pooled design: the demo's runs dealt round-robin into three groups
GROUP = "group"
GROUPS = ("a", "b", "c")


def design_table(pool: dict):
    """The demo's IsoFLOP design (63 runs); with pooling, a group column dealing the runs into three groups."""
    import bayescale as bs

    design = bs.load_runs(bs.datasets.demo_runs_path()).frame[["N", "D", "C"]].assign(loss=1.0)
    if pool:
        design[GROUP] = [GROUPS[i % len(GROUPS)] for i in range(len(design))]
    return design


def simulate(law: str, simulations: int, seed: int, pool: dict, priors: dict | None = None):
    """Draws from the prior predictive of the generative model on the demo design: (truth per simulation, losses).

    A pooled parameter's truth is its population value ``<p>_pop``, its spread ``<p>_sd`` and its
    value in each group (``<p>[a]``, ...), the quantities ``bs.fit`` reports.
    """
    import pymc as pm

    import bayescale as bs

    design = design_table(pool)
    model = bs.build_model(design, law, pool=pool, priors=priors)
    drawn = pm.sample_prior_predictive(simulations, model=model, random_seed=seed)
    prior = drawn["prior"].to_dataset()
    names = [rv.name for rv in model.free_RVs if not rv.name.endswith("_offset")] + list(pool)
    truths = []
    for i in range(simulations):
        truth = {}
        for name in names:
            values = prior[name].to_numpy().reshape(simulations, -1)[i]
            if name in pool:
                truth.update({f"{name}[{g}]": float(v) for g, v in zip(prior[name].coords[GROUP].values, values)})
            else:
                truth[name] = float(values[0])
        truths.append(truth)
    losses = np.exp(drawn["prior_predictive"]["log_loss"].to_numpy().reshape(simulations, -1))
    return design, truths, losses


def _draws_of(fit, key: str) -> np.ndarray:
    """Flat posterior draws of ``key``: a variable, or one group of a pooled one (``E[a]``)."""
    name, _, group = key.partition("[")
    values = fit.posterior[name]
    if group:
        values = values.sel({GROUP: group.rstrip("]")})
    return values.to_numpy().reshape(-1)


def rank_task(
    law: str, design, truth: dict, loss: np.ndarray, seed: int, draws: int, pool: dict, priors: dict | None = None
) -> dict:
    """Fit one simulated sweep; the rank of each true parameter among THIN evenly thinned draws."""
    import bayescale as bs

    warnings.simplefilter("ignore")
    fit = bs.fit(
        design.assign(loss=loss),
        law,
        pool=pool,
        priors=priors,
        draws=draws,
        tune=draws,
        seed=seed,
        progressbar=False,
        extrapolation="none",
    )
    flat = {key: _draws_of(fit, key) for key in truth}
    keep = np.linspace(0, len(next(iter(flat.values()))) - 1, THIN).astype(int)
    d = fit.diagnostics
    return {
        "ranks": {n: int(np.sum(values[keep] < truth[n])) for n, values in flat.items()},
        "divergences": d.divergences,
        "rhat_max": d.rhat_max,
        "ess_bulk_min": d.ess_bulk_min,
    }


def uniformity(ranks: np.ndarray) -> dict:
    from scipy import stats

    counts = np.histogram(ranks, bins=n_bins(len(ranks)), range=(-0.5, THIN + 0.5))[0]
    chi2 = stats.chisquare(counts)
    ecdf = np.sort(ranks) / THIN
    gap = float(np.max(np.abs(ecdf - np.arange(1, len(ranks) + 1) / len(ranks))))
    return {"chi2_p_value": float(chi2.pvalue), "max_ecdf_gap": gap, "counts": counts.tolist()}


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (one family: the parameters of one law)."""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p_values[name]))
        adjusted[name] = running
    return adjusted


def add_corrected(results: dict) -> dict:
    """Each parameter's chi-square p-value adjusted for testing every parameter of the law (Holm)."""
    for part in (results["parameters"], (results.get("clean_fits") or {}).get("parameters") or {}):
        adjusted = holm({name: u["chi2_p_value"] for name, u in part.items()})
        for name, u in part.items():
            u["holm_p_value"] = adjusted[name]
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["parameters"])
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.6), sharey=True)
    n = results["simulations_fitted"]
    for ax, name in zip(np.atleast_1d(axes), names):
        counts = results["parameters"][name]["counts"]
        bins = len(counts)
        ax.bar(range(bins), counts, width=1.0, color="tab:blue", alpha=0.7)
        expected = n / bins
        band = 2 * np.sqrt(expected * (1 - 1 / bins))
        ax.axhspan(expected - band, expected + band, color="0.85", zorder=0)
        ax.set(title=f"{name} (p = {results['parameters'][name]['chi2_p_value']:.2f})", xticks=[])
    np.atleast_1d(axes)[0].set_ylabel("simulations per rank bin")
    pooled = f", {', '.join(results.get('pool') or {})} pooled by group" if results.get("pool") else ""
    fig.suptitle(f"SBC of bs.fit, law {results['law']}{pooled}: {n} simulated sweeps (grey: +-2 sd of a uniform)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    from bayescale import defaults
    from bayescale.parallel.executor import describe, fan_out

    parser = argparse.ArgumentParser()
    parser.add_argument("--law", default="chinchilla")
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="PARAM",
        help="pool this parameter by a three-level group column (repeatable), e.g. --pool E",
    )
    parser.add_argument("--simulations", type=int, default=100)
    parser.add_argument(
        "--draws",
        type=int,
        default=defaults.DRAWS,
        help="draws and tuning steps per chain of each fit (default: bs.fit's)",
    )
    parser.add_argument(
        "--prior",
        action="append",
        default=[],
        metavar="NAME=PRIOR",
        help="a prior for simulation and fits alike, e.g. --prior 'sigma=HalfNormal(sigma=0.03)'",
    )
    parser.add_argument("--seed", type=int, default=20240417)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sbc.json")
    args = parser.parse_args()
    start = time.time()
    pool = {name: GROUP for name in args.pool}
    priors = dict(item.split("=", 1) for item in args.prior)
    design, truths, losses = simulate(args.law, args.simulations, args.seed, pool, priors)
    seeds = np.random.SeedSequence(args.seed).generate_state(args.simulations)
    tasks = {
        i: (rank_task, (args.law, design, truths[i], losses[i], int(seeds[i]), args.draws, pool, priors), {})
        for i in range(args.simulations)
    }
    outcomes = fan_out(
        tasks,
        max_workers=args.processes,
        progress=lambda o, done, total: print(
            f"[{done}/{total}] {o.key}: {'done' if o.ok else describe(o.error)}", file=sys.stderr
        ),
    )
    fitted = [o.result for o in outcomes.values() if o.ok]
    names = list(truths[0])
    results = {
        "law": args.law,
        "pool": pool,
        "priors": priors,
        "simulations": args.simulations,
        "simulations_fitted": len(fitted),
        "draws_per_chain": args.draws,
        "thinned_to": THIN,
        "failed": {str(k): describe(o.error) for k, o in outcomes.items() if not o.ok},
        "fits_with_divergences": sum(r["divergences"] > 0 for r in fitted),
        "fits_with_rhat_over_1.01": sum(r["rhat_max"] > 1.01 for r in fitted),
        "parameters": {n: uniformity(np.array([r["ranks"][n] for r in fitted])) for n in names},
        "clean_fits": {
            "n": len(clean := [r for r in fitted if r["divergences"] == 0 and r["rhat_max"] <= 1.01]),
            "parameters": {n: uniformity(np.array([r["ranks"][n] for r in clean])) for n in names}
            if len(clean) >= 20
            else None,
        },
        "fits": [{"truth": truths[k], **o.result} for k, o in outcomes.items() if o.ok],
        "seconds": round(time.time() - start),
    }
    add_corrected(results)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in results.items() if k not in ("parameters", "fits", "clean_fits")}, indent=1))
    for name, u in results["parameters"].items():
        print(
            f"{name:8s} chi2 p = {u['chi2_p_value']:.3f}  Holm-adjusted {u['holm_p_value']:.3f}  "
            f"max ECDF gap = {u['max_ecdf_gap']:.3f}"
        )
    if results["clean_fits"]["parameters"]:
        print(f"only the {results['clean_fits']['n']} fits without divergences and with R-hat <= 1.01:")
        for name, u in results["clean_fits"]["parameters"].items():
            print(f"{name:8s} chi2 p = {u['chi2_p_value']:.3f}  max ECDF gap = {u['max_ecdf_gap']:.3f}")


if __name__ == "__main__":
    main()
