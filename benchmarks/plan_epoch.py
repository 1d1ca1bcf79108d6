"""The compute-optimal size at budgets nobody trained: Epoch's Chinchilla runs, leave-future-out (issue #36, point 3).

Fits Chinchilla's law on Epoch's digitised runs (Hoffmann et al. 2022, Figure 3) below a compute cut,
then asks ``plan`` for N* at each held-out IsoFLOP budget (``budget_cells``: the runs of one budget,
3 or more sizes) and scores its 90% band of N* against that budget's observed optimum, the vertex
of a parabola in log N through the budget's runs (Approach 2; ``isoflop_optimum``, with its standard
error). Two bands per budget: the parameters only (the fit without its discrepancy: what ``plan``
gave before 2026-12-07) and with the allocation's discrepancy (allocation_omega, learned from the
fit's IsoFLOP cells inside its runs, and allocation_tau per e-fold beyond them, from its internal
splits' held-out cells). Reports per budget the distance beyond the runs
(e-folds), the observed log N* and the two bands, and pooled coverage and mean log width.
Usage: .venv/bin/python benchmarks/plan_epoch.py  (about 2 minutes on 2 shared cores)
"""

import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.data.datasets import load_epoch_chinchilla
from bayescale.inference.decision_discrepancy import budget_cells, isoflop_optimum

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "epoch-chinchilla" / "svg_extracted_data.csv"
CUTS = (5e19, 1.5e20)  # fit on the runs below each compute cut, score the budgets above it


def main() -> None:
    runs = load_epoch_chinchilla(DATA)
    frame = runs.frame
    rows, started = [], time.time()
    for cut in CUTS:
        train, held = frame[frame["C"] < cut].reset_index(drop=True), frame[frame["C"] >= cut].reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bs.fit(train, "chinchilla", progressbar=False)
        cells = pd.DataFrame(fit.discrepancy.decision["cells"])
        plain = copy.copy(fit)
        plain.discrepancy = None  # the parameters alone
        for positions in budget_cells(held):
            cell = held.iloc[positions]
            by_size = cell.groupby("N")["loss"].mean()
            observed = isoflop_optimum(by_size.index.to_numpy(), by_size.to_numpy())
            if observed["censored"] != "none":
                continue
            flops = float(np.exp(np.log(cell["C"]).mean()))
            row = {"cut": cut, "flops": flops, "runs": len(cell), "observed": observed["observed"]}
            row["observed_sd"] = observed["observed_sd"]
            for name, f in (("parameters", plain), ("with_discrepancy", fit)):
                band = f.plan(flops)
                low, high = np.log(band["N_opt"]["lower"]), np.log(band["N_opt"]["upper"])
                row[f"{name}_median"] = float(np.log(band["N_opt"]["median"]))
                row[f"{name}_band"] = [float(low), float(high)]
                row[f"{name}_covers"] = bool(low <= observed["observed"] <= high)
                if name == "with_discrepancy":
                    row["distance"] = band["allocation_calibration"]["distance"]
                    row["tau_median"] = band["allocation_calibration"]["tau_median"]
            row["internal_cells"] = int((cells["tunable"] == "N").sum())
            rows.append(row)
            print(
                f"cut {cut:.2g}: C {flops:.2e} ({len(cell)} runs) {row['distance']:.2f} e-folds beyond; observed log N* "
                f"{observed['observed']:.2f} (sd {observed['observed_sd']:.2f}); parameters {row['parameters_median']:.2f} "
                f"[{row['parameters_band'][0]:.2f}, {row['parameters_band'][1]:.2f}] {row['parameters_covers']}; "
                f"+ discrepancy (tau {row['tau_median']:.3f}) [{row['with_discrepancy_band'][0]:.2f}, "
                f"{row['with_discrepancy_band'][1]:.2f}] {row['with_discrepancy_covers']}"
            )
    table = pd.DataFrame(rows)
    summary = {
        name: {
            "coverage_90": float(table[f"{name}_covers"].mean()),
            "mean_log_width": float(np.mean([b[1] - b[0] for b in table[f"{name}_band"]])),
            "median_abs_log_error": float(np.median(np.abs(table[f"{name}_median"] - table["observed"]))),
        }
        for name in ("parameters", "with_discrepancy")
    }
    print(json.dumps(summary, indent=1), f"\n{len(table)} budgets, {time.time() - started:.0f} s")
    out = ROOT / "benchmarks" / "results" / "plan_epoch.json"
    out.write_text(json.dumps({"summary": summary, "budgets": rows}, indent=1))


if __name__ == "__main__":
    main()
