"""Where the time of a fit goes, stage by stage, each case in a fresh process (issue "Answers in seconds").

Stages: import (bayescale with PyMC, nutpie and ArviZ), then the ones ``bs.fit`` records in
``fit.settings["timings"]`` (read and validate, mode search, build model, compile and set-up,
sampling, log-likelihood, diagnostics, calibration), then save. Cases, default sampler settings:
  epoch       Chinchilla on Epoch's 240 runs
  gadre       Chinchilla on Gadre N < 1e9, E, alpha and beta pooled by corpus
  misfitting  the README's many-sizes learning-curve recipe (schedule_aware, 240 runs, upto 0.5)
Each case runs twice: "first" (whatever the compile cache holds) and "again" (same law, cache warm).
Each process then fits the same law to new numbers (every 7th run left out; curves cut at 45%):
"same_process_new_numbers" shows what reusing the compiled sampler saves (backtests, sweeps, notebooks).
Results: benchmarks/results/stages.json and a table on stdout.

    .venv/bin/python benchmarks/stages.py [epoch gadre misfitting]
"""

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("BAYESCALE_SHARED_DATA", HERE.parents[0].parent / "shared" / "data"))
OUT = HERE / "results" / "stages.json"
CASES = ("epoch", "gadre", "misfitting")


def fit_case(case: str, variant: int):
    """The case's fit; ``variant`` 1 is the same law on new numbers (every 7th run or checkpoint left out)."""
    import bayescale as bs
    from bayescale.curves.learning_curves import fit_curves, load_checkpoints

    def subset(frame):
        return frame if variant == 0 else frame[frame.index % 7 != 3].reset_index(drop=True)

    if case == "epoch":
        runs = bs.datasets.load_epoch_chinchilla(DATA / "epoch-chinchilla" / "svg_extracted_data.csv")
        return bs.fit(subset(runs.frame), "chinchilla", progressbar=False)
    if case == "gadre":
        runs = bs.datasets.load_gadre(DATA / "gadre-overtrain" / "DERIVED_flat_losses.csv")
        small = runs.frame[runs.frame["N"] < 1e9].reset_index(drop=True)
        return bs.fit(
            subset(small), "chinchilla", pool={"E": "dataset", "alpha": "dataset", "beta": "dataset"}, progressbar=False
        )
    table = bs.datasets.load_misfitting_curves(DATA / "misfitting" / "scaling_results.csv")
    runs = load_checkpoints(table, keep=["model"])
    return fit_curves(
        runs,
        "schedule_aware",
        upto=0.5 - 0.05 * variant,
        progressbar=False,
        pool={"L0": "model", "alpha": "model", "C": "model", "A": "run"},
    )


def child(case: str) -> dict:
    """Import, the case's fit and its save, then a second fit of the same law on new numbers in this process."""
    start = time.perf_counter()
    for heavy in ("pymc", "nutpie", "arviz"):
        importlib.import_module(heavy)
    import bayescale as bs

    bs.fit  # noqa: B018 - load the fitting module
    timings = {"import": time.perf_counter() - start}
    fit = fit_case(case, 0)
    timings.update(fit.settings["timings"])
    start = time.perf_counter()
    fit.save(Path(os.environ.get("TMPDIR", "/tmp")) / f"bayescale-stages-{case}.nc")
    timings["save"] = time.perf_counter() - start
    start = time.perf_counter()
    again = fit_case(case, 1)
    in_process = {**again.settings["timings"], "fit": time.perf_counter() - start}
    d = fit.diagnostics
    return {
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "diagnostics": {
            "divergences": d.divergences,
            "rhat_max": round(d.rhat_max, 4),
            "ess_bulk_min": round(d.ess_bulk_min),
        },
        "same_process_new_numbers": {k: round(v, 2) for k, v in in_process.items()},
    }


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2])))
        return
    cases = sys.argv[1:] or list(CASES)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for case in cases:
        results[case] = {}
        for run in ("first", "again"):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--child", case], capture_output=True, text=True, check=True
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["process_seconds"] = round(time.perf_counter() - start, 1)
            results[case][run] = result
            print(case, run, json.dumps(result), file=sys.stderr)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    stages = list(dict.fromkeys(s for case in results.values() for r in case.values() for s in r["timings"]))
    print("| stage | " + " | ".join(f"{c} {r}" for c in results for r in results[c]) + " |")
    print("|---|" + "---|" * sum(len(v) for v in results.values()))
    for stage in [*stages, "process_seconds"]:
        cells = [
            str(r["timings"].get(stage, "")) if stage != "process_seconds" else str(r["process_seconds"])
            for c in results
            for r in results[c].values()
        ]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("\nsame process, new numbers (seconds):")
    for case in results:
        print(case, json.dumps(results[case]["again"].get("same_process_new_numbers", {})))


if __name__ == "__main__":
    main()
