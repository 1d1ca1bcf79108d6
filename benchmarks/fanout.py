"""Fan-out of a backtest: one worker, a local pool and a Dask LocalCluster, side by side.

`bayescale backtest` on Epoch with three laws and `--holdout "N >= 2.9e9"` (default sampler
settings), run as a whole new process three ways:
  serial   --processes 1 (one worker process, fits one after another)
  pool     --processes 2 (one worker process per core)
  dask     --scheduler ADDRESS of a 2-worker dask.distributed.LocalCluster on 127.0.0.1 started here
It first runs the serial backtest once to fill the compile cache (freshly compiled code differs from
cached code at 1e-14, which sampling amplifies), then checks that the three JSON outputs carry
identical numbers. Results: benchmarks/results/fanout.json.
Usage: .venv/bin/python benchmarks/fanout.py [--epoch PATH]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAYESCALE = Path(sys.executable).parent / "bayescale"
LAWS = ["chinchilla", "chinchilla likelihood=normal", "kaplan_nd"]


def backtest(epoch: str, out: Path, *extra: str) -> float:
    command = [
        str(BAYESCALE),
        "backtest",
        epoch,
        "--columns",
        "N=Model Size,C=Training FLOP",
        "--holdout",
        "N >= 2.9e9",
        "--out",
        str(out),
        *extra,
    ]
    for law in LAWS:
        command += ["--law", law]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def numbers(path: Path) -> dict:
    data = json.loads(path.read_text())
    return {
        law["law"]: {k: law[k] for k in ("coverage", "median_abs_rel_error", "heldout_lpd", "runs")}
        for law in data["laws"]
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epoch", default=str(ROOT.parent / "shared/data/epoch-chinchilla/svg_extracted_data.csv"))
    args = parser.parse_args()
    from distributed import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="bayescale-fanout-"))
    backtest(args.epoch, work / "warmup.json", "--processes", "1")
    times = {
        "serial": backtest(args.epoch, work / "serial.json", "--processes", "1"),
        "pool": backtest(args.epoch, work / "pool.json", "--processes", "2"),
    }
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        times["dask"] = backtest(args.epoch, work / "dask.json", "--scheduler", cluster.scheduler_address)
    results = {mode: numbers(work / f"{mode}.json") for mode in times}
    identical = results["serial"] == results["pool"] == results["dask"]
    summary = {
        "laws": LAWS,
        "holdout": "N >= 2.9e9",
        "wall_seconds": {mode: round(t, 1) for mode, t in times.items()},
        "ratio_to_serial": {mode: round(t / times["serial"], 2) for mode, t in times.items()},
        "identical_numbers": identical,
        "scores": {
            law: {k: r[k] for k in ("coverage", "median_abs_rel_error", "heldout_lpd")}
            for law, r in results["serial"].items()
        },
    }
    out = ROOT / "benchmarks" / "results" / "fanout.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    if not identical:
        sys.exit("the three ways gave different numbers")


if __name__ == "__main__":
    main()
