"""ScaleBench's sparsity laws (sl_1 to sl_4) fitted on the whole pool of each token budget, scored at the targets.

Each card (`models/scalebench_sparsity*.toml`) is fitted on every pool run of a group, as `benchmarks/design.py`'s
"all of the pool" row (`bs.fit` on the pool, then `bayescale.evaluation.design_replay.score` at the group's
targets): R2 of the median (ScaleBench's `metrics.r_squared`), coverage of the 90% band, median |relative error|,
the band's mean half-width (nats). Per group, the sampler's diagnostics (R-hat, divergences, bulk ESS) and PSIS-LOO
between the cards (`bs.compare`: elpd, its difference from the best with standard error, stacking weight). Then the
task's scores as ScaleBench's runner computes them (`runner._evaluate_global`): one R2 over the 18 targets of the
three groups, each group's forecast from its own fit; design.py's row is instead the mean of the groups' R2.
Usage: .venv/bin/python benchmarks/sparsity_laws.py [--card NAME ...] [--draws 1000] [--tune 1000] [--chains 4]
       [--seed 0] [--out F]
"""

import argparse
import json
import time
import warnings

import numpy as np
from design import GROUPS, SCALEBENCH
from provenance import stamp

import bayescale as bs
from bayescale import defaults
from bayescale.evaluation.design_replay import score, score_forecast, target_forecast

#: ScaleBench's sparsity laws (laws.py, commit e0a58ff) -> their cards
CARDS = {
    "sl_1": "scalebench_sparsity_sl1",
    "sl_2": "scalebench_sparsity",
    "sl_3": "scalebench_sparsity_sl3",
    "sl_4": "scalebench_sparsity_sl4",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", action="append", choices=list(CARDS.values()), default=None)
    parser.add_argument("--draws", type=int, default=defaults.DRAWS)
    parser.add_argument("--tune", type=int, default=defaults.TUNE)
    parser.add_argument("--chains", type=int, default=defaults.CHAINS)
    parser.add_argument(
        "--seed", type=int, default=0, help="design_replay's default, so that sl_2's fit is design.py's whole pool's"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    today, commit, out = stamp("sparsity_laws", args.out)
    cards = args.card or list(CARDS.values())
    options = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "seed": args.seed, "progressbar": False}
    record: dict = {"date": today, "commit": commit, "settings": options, "groups": {}, "task": {}}
    forecasts: dict[str, list[dict]] = {card: [] for card in cards}
    start = time.perf_counter()
    for group in GROUPS["sparsity"]:
        pool, targets = bs.datasets.load_scalebench(SCALEBENCH, "sparsity", group)
        fits, rows = {}, {}
        for card in cards:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the diagnostics are recorded below, not silenced
                fits[card] = bs.fit(pool, card, **options)
            d = fits[card].diagnostics
            forecasts[card].append(target_forecast(fits[card], targets.frame))
            rows[card] = {
                **score(fits[card], targets.frame),
                "rhat_max": float(d.rhat_max),
                "divergences": int(d.divergences),
                "ess_bulk_min": float(d.ess_bulk_min),
                "problems": list(d.problems),
                "seconds": time.perf_counter() - t0,
            }
            print(f"{time.perf_counter() - start:5.0f} s  {group} {card}: {_line(rows[card])}", flush=True)
        if len(fits) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # high Pareto k is kept in the table (n_high_k)
                table = bs.compare(fits)
            for card, loo in table.iterrows():
                rows[card]["loo"] = {k: float(loo[k]) for k in ("elpd", "se", "elpd_diff", "dse", "weight", "n_high_k")}
                rows[card]["loo"]["rank"] = int(loo["rank"])
            print(table[["rank", "elpd", "se", "elpd_diff", "dse", "weight", "n_high_k"]].round(2).to_string())
        record["groups"][group] = rows
        out.write_text(json.dumps(record, indent=1))
    for card in cards:
        pooled = {k: np.concatenate([f[k] for f in forecasts[card]]) for k in forecasts[card][0]}
        per_group = [record["groups"][g][card] for g in GROUPS["sparsity"]]
        record["task"][card] = {
            "scalebench": score_forecast(pooled),  # one R2 over every group's targets (ScaleBench's runner)
            "mean_over_groups": {  # design.py's _mean_over_groups
                "r2": float(np.mean([r["r2"] for r in per_group])),
                "coverage": float(np.mean([r["coverage"]["0.9"] for r in per_group])),
            },
        }
        print(
            f"{card}: task {_line(record['task'][card]['scalebench'])}; mean over groups R2 "
            f"{record['task'][card]['mean_over_groups']['r2']:.2f}"
        )
    record["seconds"] = time.perf_counter() - start
    out.write_text(json.dumps(record, indent=1))
    print(f"{record['seconds']:.0f} s -> {out}")


def _line(r: dict) -> str:
    text = (
        f"R2 {r['r2']:.2f}, coverage {r['coverage']['0.9']:.2f}, median |rel err| {r['median_abs_rel_error']:.2%}, "
        f"half-width {r['mean_halfwidth']:.3f}"
    )
    if "rhat_max" in r:
        text += f"; R-hat {r['rhat_max']:.3f}, divergences {r['divergences']}, ESS {r['ess_bulk_min']:.0f}"
    return text


if __name__ == "__main__":
    main()
