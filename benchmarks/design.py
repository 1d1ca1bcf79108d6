"""Which run next on ScaleBench (Li et al. 2026): replay every strategy on the parallel, moe, sparsity and vocab tasks.

Per task (and per group, which ScaleBench fits on its own: parallel's stack and pile, sparsity's three token
budgets), `bs.design_replay` starts from the cheapest runs of the pool (train split), chooses runs a batch at a
time by each strategy (bayes, random, cheapest, inverse-cost, d-optimal) until the paper's budget shares of the
pool's cost (1/5/10%; 20/35/50% for sparsity) and scores the targets (test split): R2 of the median as ScaleBench
computes it, coverage of the 90% predictive band, median |relative error|. The replay starts from the cheapest
runs a fit takes (one more than the parameters, noise included): on parallel those 7 of a group's 18 runs cost 14%
of its pool, more than every share, so there every strategy is the same fit and the record's `spent` says so. A task's score is
ScaleBench's: each group fitted alone, one R2 (and coverage, error) over all the task's targets together
(`runner._evaluate_global`; per repeat, then averaged over repeats: `scalebench`); the mean over its groups is kept
beside it (`mean_over_groups`). The paper's rows (Table 2, R2 averaged over ~10 law families; from ../shared/data/scalebench/SOURCE.txt)
are written alongside; ours use one law per task (models/scalebench_*.toml), so the comparison is indicative.
The paper chooses one run at a time; we choose --batch runs (4) between fits on a pool of up to 200 runs (parallel's
18 a group, sparsity's ~23, moe's 193) and a batch grown with the pool beyond that, round(batch * runs / 200), so
that a replay takes about as many refits: vocab's 1080 runs are chosen 22 at a time (its 1% share alone buys ~520
of them cheapest first: ~130 refits a strategy at 4). The record's per-task `batch` says which was used.
The vocab task's target (unigram-normalised loss) is negative: its card is fitted on the raw scale, without the
extrapolation discrepancy (calibrated in log-loss). Each strategy's replay is written as soon as it ends.
Usage: .venv/bin/python benchmarks/design.py [--repeats 5] [--task NAME ...] [--strategy NAME ...]
       [--draws 300] [--tune 300] [--batch 4] [--out F]
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from provenance import stamp

import bayescale as bs
from bayescale.evaluation.design_replay import STRATEGIES, design_replay, score_forecast

ROOT = Path(__file__).resolve().parents[1]
SCALEBENCH = ROOT.parent / "shared" / "data" / "scalebench"
LAWS = {
    "parallel": "scalebench_parallel",
    "moe": "scalebench_moe",
    "sparsity": "scalebench_sparsity",
    "vocab": "scalebench_vocab",
}
GROUPS = {
    "parallel": ["stack", "pile"],
    "moe": [None],
    "sparsity": ["D1=2.31_D2=1.15", "D1=2.31_D2=2.31", "D1=2.31_D2=4.61"],
    "vocab": [None],
}
#: Li et al. 2026, Table 2 (target R2, mean over law families), as copied in SOURCE.txt: per method, the
#: three budget shares of the task, then the whole pool's point fit
PAPER = {
    "parallel": {
        "Random": [-1.00, 0.27, 0.19],
        "V-optimal": [-1.00, 0.69, 0.99],
        "MSPE": [-1.00, 0.77, 0.99],
        "all": 0.99,
    },
    "moe": {"Random": [-0.47, 0.01, 0.26], "V-optimal": [0.67, 0.80, 0.80], "MSPE": [0.59, 0.65, 0.83], "all": 0.81},
    "sparsity": {
        "Random": [-0.25, 0.37, 0.38],
        "V-optimal": [0.12, 0.39, 0.51],
        "MSPE": [0.31, 0.44, 0.53],
        "all": 0.37,
    },
    "vocab": {"Random": [0.54, 0.53, 0.59], "V-optimal": [0.96, 0.97, 0.98], "MSPE": [0.96, 0.98, 0.98], "all": 0.93},
}
SCORES = ("r2", "median_abs_rel_error", "mean_rel_halfwidth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--task", action="append", choices=sorted(LAWS), default=None)
    parser.add_argument("--strategy", action="append", choices=STRATEGIES, default=None)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--start", type=int, default=None, help="cheapest runs to start from (default: the fewest a fit takes)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    today, commit, out = stamp("design_scalebench", args.out)
    record = {
        "date": today,
        "commit": commit,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "paper_r2": PAPER,
        "tasks": {},
    }
    start = time.perf_counter()
    for task in args.task or list(LAWS):
        shares = bs.datasets.SCALEBENCH_TASKS[task]["shares"]
        loaded = {group: bs.datasets.load_scalebench(SCALEBENCH, task, group) for group in GROUPS[task]}
        batch = _batch(args.batch, max(len(pool.frame) for pool, _ in loaded.values()))
        groups: dict = {}
        for strategy in args.strategy or STRATEGIES:
            for group, (pool, targets) in loaded.items():
                with warnings.catch_warnings():
                    warnings.simplefilter(
                        "ignore"
                    )  # fits on a handful of runs warn of their sampler and data, as they should
                    result = design_replay(
                        pool,
                        targets,
                        LAWS[task],
                        shares=shares,
                        strategies=[strategy],
                        repeats=args.repeats,
                        batch=batch,
                        start=args.start,
                        cost=bs.datasets.SCALEBENCH_TASKS[task]["cost"],
                        fit_options={"draws": args.draws, "tune": args.tune, "chains": 2},
                        progress=lambda line, t=task, g=group: print(
                            f"{time.perf_counter() - start:6.0f} s  {t} {g or ''}: {line}", flush=True
                        ),
                    )
                if (group or "all") in groups:  # the same seeds: the whole pool's fit is the one already there
                    groups[group or "all"]["strategies"] += result["strategies"]
                else:
                    groups[group or "all"] = result
            record["tasks"][task] = {
                "batch": batch,
                "groups": groups,
                "scalebench": _pooled_over_groups(groups),
                "mean_over_groups": _mean_over_groups(groups),
            }
            record["seconds"] = time.perf_counter() - start
            out.write_text(json.dumps(record, indent=1))  # after every strategy, so that a long run leaves what it did
        _print(task, record["tasks"][task]["scalebench"])
    print(f"{record['seconds']:.0f} s -> {out}")


def _batch(batch: int, pool_runs: int) -> int:
    """Runs chosen between fits: ``batch`` on a pool of up to 200 runs, grown with a larger pool (module doc)."""
    return max(batch, round(batch * pool_runs / 200))


def _mean_over_groups(groups: dict) -> dict:
    """Per strategy and share (and for the whole pool): each score averaged over the task's groups."""
    first = next(iter(groups.values()))
    mean = {"all_of_pool": _mean([g["all_of_pool"] for g in groups.values()])}
    for i, strategy in enumerate(first["strategies"]):
        mean[strategy["strategy"]] = [
            {"share": b["share"], **_mean([g["strategies"][i]["budgets"][j] for g in groups.values()])}
            for j, b in enumerate(strategy["budgets"])
        ]
    return mean


def _pooled_over_groups(groups: dict) -> dict:
    """Per strategy and share (and for the whole pool): ScaleBench's scores, every group's targets together, per repeat.

    The groups' forecasts of one repeat are concatenated and scored as one (``score_forecast``), then
    averaged over the repeats; ``spent`` and ``runs`` are the groups' mean.
    """

    def together(records: list[dict]) -> dict:
        forecast = {k: np.concatenate([r["forecast"][k] for r in records]) for k in records[0]["forecast"]}
        return score_forecast(forecast)

    first = next(iter(groups.values()))
    pooled = {"all_of_pool": _flat(together([g["all_of_pool"] for g in groups.values()]))}
    for i, strategy in enumerate(first["strategies"]):
        pooled[strategy["strategy"]] = []
        for j, b in enumerate(strategy["budgets"]):
            per_repeat = [
                _flat(together([g["strategies"][i]["repeats"][r][j] for g in groups.values()]))
                for r in range(len(strategy["repeats"]))
            ]
            groups_mean = _mean([g["strategies"][i]["budgets"][j] for g in groups.values()])
            pooled[strategy["strategy"]].append(
                {
                    "share": b["share"],
                    **{k: float(np.mean([r[k] for r in per_repeat])) for k in per_repeat[0]},
                    "spent": groups_mean["spent"],
                    "runs": groups_mean["runs"],
                }
            )
    return pooled


def _flat(scores: dict) -> dict:
    """A score with its coverage as a number (the 90% band's), as the tables print it."""
    return {**{k: v for k, v in scores.items() if k != "coverage"}, "coverage": scores["coverage"]["0.9"]}


def _mean(records: list[dict]) -> dict:
    out = {k: float(np.mean([r[k] for r in records])) for k in (*SCORES, "runs")}
    out["coverage"] = float(np.mean([r["coverage"]["0.9"] for r in records]))
    if "spent" in records[0]:
        out["spent"] = float(np.mean([r["spent"] for r in records]))
    return out


def _print(task: str, mean: dict) -> None:
    whole = mean["all_of_pool"]
    print(f"{task}: all of the pool R2 {whole['r2']:.2f}, coverage {whole['coverage']:.2f}")
    for strategy, budgets in mean.items():
        if strategy == "all_of_pool":
            continue
        for b in budgets:
            print(
                f"  {strategy:<12} {b['share']:.0%}: spent {b['spent']:.1%} on {b['runs']:.1f} runs, R2 {b['r2']:.2f}, "
                f"coverage {b['coverage']:.2f}, median |rel err| {b['median_abs_rel_error']:.2%}"
            )


if __name__ == "__main__":
    main()
