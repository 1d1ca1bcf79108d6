"""The newest law forms against their baselines (issue #36, point 4), each alone and stacked by LOO weights.

1. ``farseer`` (Li et al. 2025) against ``chinchilla`` on Epoch (holdout N >= 2.9e9), Gadre's RedPajama
   corpus (N >= 1e9) and the misfitting finals (N >= 5e8), the holdouts of ``calibration.py``.
2. ``multi_power`` (Luo et al. 2025) against ``schedule_aware`` (Tissue et al. 2024) on the misfitting curves,
   the README recipe: every run fitted on its checkpoints up to 50% of its steps (the law per model size, the
   scale A by run), its final loss forecast.

Per dataset both laws are fitted at default settings on the runs they may see; PSIS-LOO on those runs gives
the elpd difference and the stacking weights; then each law's forecast of the held-out runs (finals) and the
forecast stacked by those weights (``bs.predict_stacked``) are scored: median absolute relative error and
the share inside the 50% and 90% predictive bands. Also each fit's sampler diagnostics and wall time.
Writes results/new_laws.json.

    .venv/bin/python benchmarks/new_laws.py [farseer|mpl]
"""

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.curves.learning_curves import fit_curves, forecast_curves, load_checkpoints, run_points
from bayescale.data.datasets import load_epoch_chinchilla, load_gadre, load_misfitting_curves, load_misfitting_final

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "new_laws.json"
LEVELS = (0.5, 0.9)
#: the README recipe's pooling for schedule_aware (calibration.CURVE_POOL); for multi_power the same with its
#: decay rate K in the place of schedule_aware's C
CURVE_POOLS = {
    "schedule_aware": {"L0": "model", "alpha": "model", "C": "model", "A": "run"},
    "multi_power": {"L0": "model", "alpha": "model", "K": "model", "A": "run"},
}


def scores(actual, median, lower: dict, upper: dict) -> dict:
    actual, median = np.asarray(actual, float), np.asarray(median, float)
    out = {"n": len(actual), "median_abs_rel_error": round(float(np.median(np.abs(median / actual - 1))), 5)}
    for level in LEVELS:
        inside = (np.asarray(lower[level]) <= actual) & (actual <= np.asarray(upper[level]))
        out[f"coverage_{level}"] = round(float(inside.mean()), 3)
    return out


def fit_record(fit, seconds: float) -> dict:
    d = fit.diagnostics
    return {
        "seconds": round(seconds, 1),
        "divergences": d.divergences,
        "rhat_max": round(d.rhat_max, 4),
        "ess_bulk_min": round(d.ess_bulk_min),
        "extended": "sampling again" in fit.settings.get("timings", {}),
    }


def loo_record(fits: dict) -> tuple[dict, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.SamplerWarning)
        table = bs.compare(fits)
    record = {
        name: {k: round(float(row[k]), 3) for k in ("elpd", "se", "elpd_diff", "dse", "weight", "n_high_k")}
        for name, row in table.iterrows()
    }
    return record, table["weight"].to_dict()


def static(name: str, frame: pd.DataFrame, heldout: pd.Series, laws=("chinchilla", "farseer")) -> dict:
    train, test = frame[~heldout].reset_index(drop=True), frame[heldout].reset_index(drop=True)
    fits, record = {}, {"n_train": len(train), "n_heldout": len(test), "fits": {}, "forecast": {}}
    for law in laws:
        start = time.time()
        fits[law] = bs.fit(train, law, progressbar=False)
        record["fits"][law] = fit_record(fits[law], time.time() - start)
    record["loo"], weights = loo_record(fits)
    points = test[["N", "D"]]
    for law, fit in fits.items():
        bands = {lv: bs.predict(fit, points, ci_prob=lv) for lv in LEVELS}
        record["forecast"][law] = scores(
            test["loss"],
            bands[0.9]["median"],
            {lv: b["pred_lower"] for lv, b in bands.items()},
            {lv: b["pred_upper"] for lv, b in bands.items()},
        )
    bands = {lv: bs.predict_stacked(fits, points, weights=weights, ci_prob=lv) for lv in LEVELS}
    record["forecast"]["stacked"] = scores(
        test["loss"],
        bands[0.9]["median"],
        {lv: b["pred_lower"] for lv, b in bands.items()},
        {lv: b["pred_upper"] for lv, b in bands.items()},
    )
    print(name, json.dumps(record), flush=True)
    return record


def farseer() -> dict:
    epoch = load_epoch_chinchilla(DATA / "epoch-chinchilla" / "svg_extracted_data.csv").frame
    gadre = load_gadre(DATA / "gadre-overtrain" / "DERIVED_flat_losses.csv").frame
    rpj = gadre[gadre["dataset"] == "rpj"].drop(columns="dataset")
    finals = load_misfitting_final(DATA / "misfitting" / "scaling_results_last_ckpt_only.csv").frame
    return {
        "epoch N >= 2.9e9": static("epoch", epoch, epoch["N"] >= 2.9e9),
        "gadre rpj N >= 1e9": static("gadre rpj", rpj, rpj["N"] >= 1e9),
        "misfitting finals N >= 5e8": static("misfitting finals", finals[["N", "D", "loss"]], finals["N"] >= 5e8),
    }


def mpl(cut: float = 0.5) -> dict:
    table = load_misfitting_curves(DATA / "misfitting" / "scaling_results.csv")
    runs = load_checkpoints(table, keep=["model"], upto=cut)
    final = runs.frame.loc[runs.frame.groupby("run")["step"].idxmax()].set_index("run")
    fits, record = {}, {"n_runs": len(final), "fits": {}, "forecast": {}}
    for law, pool in CURVE_POOLS.items():
        start = time.time()
        fits[law] = fit_curves(runs, law, upto=cut, pool=pool, progressbar=False)
        record["fits"][law] = fit_record(fits[law], time.time() - start)
        record["n_train"] = int(fits[law].n_obs)
    record["loo"], weights = loo_record(fits)
    for law, fit in fits.items():
        bands = {lv: forecast_curves(fit, runs, upto=cut, ci_prob=lv).set_index("run") for lv in LEVELS}
        index = bands[0.9].index
        record["forecast"][law] = scores(
            final.loc[index, "loss"],
            bands[0.9]["final_median"],
            {lv: b.loc[index, "final_pred_lower"] for lv, b in bands.items()},
            {lv: b.loc[index, "final_pred_upper"] for lv, b in bands.items()},
        )
    points = pd.concat(
        [run_points(fits["multi_power"], runs, run, [final.loc[run, "step"]]) for run in final.index],
        ignore_index=True,
    )
    bands = {lv: bs.predict_stacked(fits, points, weights=weights, ci_prob=lv) for lv in LEVELS}
    record["forecast"]["stacked"] = scores(
        final["loss"].to_numpy(),
        bands[0.9]["median"],
        {lv: b["pred_lower"] for lv, b in bands.items()},
        {lv: b["pred_upper"] for lv, b in bands.items()},
    )
    print("misfitting curves", json.dumps(record), flush=True)
    return {f"misfitting curves cut at {int(cut * 100)}%": record}


if __name__ == "__main__":
    parts = sys.argv[1:] or ["farseer", "mpl"]
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for part in parts:
        results[part] = {"farseer": farseer, "mpl": mpl}[part]()
        OUT.write_text(json.dumps(results, indent=1))
