"""Data for demos and tests: a seeded synthetic sweep with known truth, and public-data loaders.

bayescale ships no third-party data. :func:`load_epoch_chinchilla` reads Epoch AI's digitised
Chinchilla points from a local path or downloads them once from their public URL into a cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale import defaults
from bayescale.data.runs import Runs, load_runs
from bayescale.errors import BayescaleError, DataError

#: Hoffmann et al. 2022 fit (approach 3): the ground truth of the synthetic sweep
CHINCHILLA_TRUTH = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}

EPOCH_URL = (
    "https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/"
    "92258837425e1b5f2851d624287f0120583a3d0e/data/svg_extracted_data.csv"
)
EPOCH_COLUMNS = {"N": "Model Size", "C": "Training FLOP"}


def synthetic_sweep(
    seed: int = 0,
    *,
    budgets=(1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21),
    sizes_per_budget: int = 9,
    noise: float = 0.01,
    outlier_fraction: float = 0.03,
    truth: dict | None = None,
) -> pd.DataFrame:
    """An IsoFLOP-style sweep with known Chinchilla truth.

    For each compute budget C, model sizes are spread log-uniformly from 1/8 to 8 times the
    compute-optimal size, D = C / (6N), and the loss is the law times log-normal noise (sd
    ``noise`` on log-loss), with a few under-tuned runs whose loss is 3-10% too high.
    """
    truth = dict(CHINCHILLA_TRUTH if truth is None else truth)
    rng = np.random.default_rng(seed)
    a, b = truth["alpha"], truth["beta"]
    g = (a * truth["A"] / (b * truth["B"])) ** (1 / (a + b))
    rows = []
    for c in budgets:
        n_opt = g * (c / 6) ** (b / (a + b))
        for n in n_opt * np.logspace(-np.log10(8), np.log10(8), sizes_per_budget):
            n = float(np.round(n * rng.uniform(0.95, 1.05), -3))
            d = c / (6 * n)
            loss = truth["E"] + truth["A"] / n**a + truth["B"] / d**b
            loss *= np.exp(rng.normal(0, noise))
            if rng.uniform() < outlier_fraction:
                loss *= rng.uniform(1.03, 1.10)
            rows.append({"N": n, "D": d, "C": c, "loss": loss})
    return pd.DataFrame(rows)


#: ground truth of :func:`synthetic_tuning_sweep` (card ``chinchilla_lr_batch``): best rate
#: 1e-3 (N/1e9)^-0.5 (D/2e10)^0.2, best batch 5e5 (D/2e10)^0.5 tokens
TUNING_TRUTH = {
    **CHINCHILLA_TRUTH,
    "l0": float(np.log(1e-3)),
    "a": -0.5,
    "b": 0.2,
    "c": 0.08,
    "g0": float(np.log(5e5)),
    "g": 0.5,
    "cb": 0.03,
}


def simulate_runs(
    law, truth: dict, design: pd.DataFrame, *, noise: float = 0.01, noise_slope: float = 0.0, seed: int = 0
) -> pd.DataFrame:
    """Runs at the ``design`` points (one column per input of ``law``) with losses from the law at ``truth``,
    times log-normal noise: sd ``noise`` on log-loss at the design's mean log of the first input,
    times ``exp(noise_slope * (log x - mean log x))`` elsewhere (the model's ``sigma_slope``)."""
    from bayescale.laws.card import get_law

    law = get_law(law)
    missing = sorted(set(law.param_names) - set(truth))
    if missing:
        raise BayescaleError(f"simulating law {law.name!r} needs a value for {', '.join(missing)}")
    env = {**{name: design[name].to_numpy(dtype=float) for name in law.inputs}, **truth}
    log_size = np.log(design[law.inputs[0]].to_numpy(dtype=float))
    sd = noise * np.exp(noise_slope * (log_size - log_size.mean()))
    loss = law.formula.numpy(env) * np.exp(np.random.default_rng(seed).normal(0.0, 1.0, len(design)) * sd)
    return design.assign(loss=loss)


def synthetic_tuning_sweep(seed: int = 0, *, noise: float = 0.01, truth: dict | None = None) -> pd.DataFrame:
    """A learning-rate and batch-size sweep with known optima (:data:`TUNING_TRUTH`, card ``chinchilla_lr_batch``).

    Five sizes from 2e7 to 5e8 parameters, 10 to 40 tokens per parameter, and at each (N, D) the
    fixed grids practitioners sweep: peak rates 3e-4 to 1e-2 and batches of 1.3e5 to 2.1e6 tokens.
    """
    sizes, ratios = (2e7, 5e7, 1e8, 2e8, 5e8), (10, 20, 40)
    rates, batches = (3e-4, 1e-3, 3e-3, 1e-2), (131072, 524288, 2097152)
    design = pd.DataFrame(
        [
            {"N": n, "D": n * r, "lr": lr, "batch": float(b)}
            for n in sizes
            for r in ratios
            for lr in rates
            for b in batches
        ]
    )
    return simulate_runs(
        "chinchilla_lr_batch", dict(TUNING_TRUTH if truth is None else truth), design, noise=noise, seed=seed
    )


def demo_runs_path() -> Path:
    """The embedded demo table (``synthetic_sweep(seed=0)`` written as CSV)."""
    return Path(__file__).resolve().parent / "demo" / "demo_runs.csv"


def _download(url: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        os.replace(tmp, target)
    except OSError as exc:
        raise BayescaleError(f"could not download {url}: {exc}; pass path= to a local copy instead") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def load_epoch_chinchilla(
    path: str | Path | None = None, *, url: str = EPOCH_URL, drop_highest: int = 5, cache_dir: str | Path | None = None
) -> Runs:
    """Epoch AI's digitised Chinchilla points (Besiroglu et al. 2024) as a runs table.

    D is derived as C / (6N). Epoch dropped the 5 highest-loss points before fitting (240 remain);
    ``drop_highest`` does the same. Without ``path`` the CSV is downloaded once from ``url`` and
    cached in ``cache_dir`` (default ``~/.cache/bayescale``, or ``$BAYESCALE_CACHE``).
    """
    if path is None:
        cached = Path(cache_dir or defaults.cache_dir()) / "epoch_svg_extracted_data.csv"
        path = cached if cached.exists() else _download(url, cached)
    frame = pd.read_csv(path)
    if drop_highest:
        frame = frame.drop(frame["loss"].nlargest(drop_highest).index).reset_index(drop=True)
    runs = load_runs(frame, EPOCH_COLUMNS)
    runs.source = str(path)
    return runs


#: the validation losses of the Gadre et al. over-training grid (one column each in the flat CSV)
GADRE_LOSSES = (
    "loss_c4_val",
    "loss_openlm",
    "loss_paloma_c4_en",
    "loss_paloma_falcon-refinedweb",
    "loss_paloma_redpajama",
    "loss_paloma_ptb",
    "loss_paloma_dolma_100_programing_languages",
    "loss_de-en",
)


def load_gadre(path: str | Path, *, loss: str = "loss_c4_val") -> Runs:
    """Gadre et al. 2024 over-training grid (``DERIVED_flat_losses.csv``): N, D, loss, ``dataset``.

    ``loss`` picks the evaluation (default C4 validation loss, the one the paper fits); N counts
    embeddings (as the paper does); C is recomputed as 6ND (the file's C column overflowed).
    """
    if loss not in GADRE_LOSSES:
        raise BayescaleError(f"unknown Gadre loss {loss!r}; choose one of {', '.join(GADRE_LOSSES)}")
    frame = pd.read_csv(path)[["N", "D", loss, "dataset", "N_no_embed"]].rename(columns={loss: "loss"})
    runs = load_runs(frame, keep=["dataset"])
    runs.source = f"{path} ({loss})"
    return runs


def load_gadre_downstream(folder: str | Path, *, per_task: bool = False, loss: str = "loss_c4_val") -> pd.DataFrame:
    """Gadre et al. 2024 models with their 46 downstream accuracies (``evals/*.json``, ``eval_metadata.csv``).

    One row per model: ``name``, ``dataset`` (training corpus), N, D, ``loss`` (C4 validation by
    default), ``accuracy`` (the mean over the tasks) and ``chance`` (the mean random baseline, as a
    fraction). With ``per_task``: one row per (model, task) with that task's ``accuracy``,
    ``chance`` and ``n`` (its number of questions) and a ``task`` column.
    """
    import json

    folder = Path(folder)
    models = pd.read_csv(folder / "DERIVED_flat_losses.csv")[["name", "dataset", "N", "D", loss]]
    meta = pd.read_csv(folder / "eval_metadata.csv").set_index("Eval Task")
    rows = []
    for path in sorted((folder / "evals").glob("evaluation_*_heavy.json")):
        name = path.name.removeprefix("evaluation_").removesuffix("_heavy.json")
        for task, value in json.loads(path.read_text())["eval_metrics"]["icl"].items():
            rows.append({"name": name, "task": task, "accuracy": float(value)})
    scores = pd.DataFrame(rows)
    unknown = sorted(set(scores["task"]) - set(meta.index))
    if unknown:
        raise DataError(f"{folder / 'eval_metadata.csv'} lacks task(s) {', '.join(unknown)}")
    scores["chance"] = meta.loc[scores["task"], "Random baseline"].to_numpy() / 100.0
    scores["n"] = meta.loc[scores["task"], "#datapoints"].to_numpy().astype(float)
    table = models.rename(columns={loss: "loss"}).merge(scores, on="name", validate="one_to_many")
    if per_task:
        return table.reset_index(drop=True)
    mean = table.groupby("name")[["accuracy", "chance"]].mean()
    return models.rename(columns={loss: "loss"}).merge(mean, left_on="name", right_index=True).reset_index(drop=True)


def load_datablations(path: str | Path) -> Runs:
    """Muennighoff et al. 2023 data-constrained runs: N, D, U (unique tokens = tokens / epochs), loss."""
    raw = pd.read_csv(path)
    frame = pd.DataFrame(
        {
            "N": raw["num_params"],
            "D": raw["token_num"],
            "U": raw["token_num"] / raw["epochs"],
            "loss": raw["openLM_loss"],
            "epochs": raw["epochs"],
        }
    )
    runs = load_runs(frame, keep=["epochs"])
    runs.source = str(path)
    return runs


def load_misfitting_final(path: str | Path) -> Runs:
    """Li, Kudugunta, Zettlemoyer 2025 final checkpoints (``scaling_results_last_ckpt_only.csv``).

    One run per (model, D) cell with the best peak learning rate (the static fit's convention);
    C is recomputed as 6ND (the file's C columns overflowed). N counts all parameters and
    ``N_no_embed`` the non-embedding ones (the file's ``N_no_emb``). Keeps ``model`` and ``peak_lr``.
    """
    raw = pd.read_csv(path).rename(columns={"N_no_emb": "N_no_embed"})
    best = raw.loc[raw.groupby(["model", "D"])["loss"].idxmin()]
    frame = best[["N", "N_no_embed", "D", "loss", "model", "peak_lr"]].reset_index(drop=True)
    runs = load_runs(frame, keep=["model", "peak_lr"])
    runs.source = str(path)
    return runs


#: the misfitting sweeps' schedule (open_lm defaults and the sweep settings in the paper's repository,
#: hadasah/scaling_laws open_lm/constants/slurm_constants.py): 50 warm-up steps, cosine to 10% of the peak
MISFITTING_SCHEDULE = {"warmup_steps": 50, "decay": "cosine", "final_lr_ratio": 0.1}


def load_misfitting_curves(path: str | Path) -> pd.DataFrame:
    """Li, Kudugunta, Zettlemoyer 2025 checkpoints (``scaling_results.csv``) as a checkpoint table.

    A run is one (model, total_steps, peak_lr); columns run, step, loss, N, model and the schedule
    columns peak_lr, total_steps, warmup_steps, decay, final_lr_ratio (:data:`MISFITTING_SCHEDULE`).
    The file has a few checkpoints past a run's planned length and repeated (run, step) rows from
    resumed sweeps; those are dropped (the last copy kept) and each run is sorted by step.
    Pass the result to :func:`bayescale.curves.learning_curves.load_checkpoints`.
    """
    raw = pd.read_csv(path)
    run = raw["model"] + "|T=" + raw["total_steps"].astype(str) + "|lr=" + raw["peak_lr"].astype(str)
    table = pd.DataFrame(
        {
            "run": run,
            "step": raw["current_steps"],
            "loss": raw["loss"],
            "N": raw["N"],
            "total_steps": raw["total_steps"],
            "model": raw["model"],
            "peak_lr": raw["peak_lr"],
            **MISFITTING_SCHEDULE,
        }
    )
    table = table[table["step"] <= table["total_steps"]]
    table = table.drop_duplicates(["run", "step"], keep="last").sort_values(["run", "step"], kind="stable")
    return table.reset_index(drop=True)


def synthetic_curves(seed: int = 0, *, n_runs: int = 4, points: int = 20, noise: float = 0.005) -> pd.DataFrame:
    """Learning curves with known truth: L = E_r + A_r step^(-alpha), runs differing in E and A."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_runs):
        total = int(rng.choice([4000, 8000, 16000]))
        e, a = 2.0 + 0.1 * rng.standard_normal(), 30.0 * np.exp(0.2 * rng.standard_normal())
        for step in np.unique(np.geomspace(50, total, points).round()):
            loss = (e + a * step**-0.45) * np.exp(rng.normal(0, noise))
            rows.append({"run": f"run{r}", "step": step, "loss": loss, "total_steps": total})
    return pd.DataFrame(rows)


#: the law behind :func:`synthetic_schedule_curves`
SCHEDULE_TRUTH = {"L0": 2.5, "A": 0.6, "alpha": 0.5, "C": 0.4}


def synthetic_schedule_curves(seed: int = 0, *, noise: float = 0.003, every: int = 250) -> pd.DataFrame:
    """Runs of one model under cosine and WSD schedules of several lengths and peaks, from the schedule-aware law.

    L = L0 + A * S1^(-alpha) - C * S2 with :data:`SCHEDULE_TRUTH`; a checkpoint every ``every`` steps;
    schedule columns peak_lr, total_steps, warmup_steps, decay, final_lr_ratio.
    """
    from bayescale.data.schedules import Schedule, schedule_areas

    rng = np.random.default_rng(seed)
    rows = []
    plans = [("cosine", 4000, 1e-3), ("cosine", 8000, 1e-3), ("wsd", 8000, 2e-3), ("cosine", 6000, 2e-3)]
    for decay, total, peak in plans:
        schedule = Schedule(peak, total, warmup_steps=100, decay=decay, final_lr_ratio=0.1)
        steps = np.arange(every, total + 1, every, dtype=float)
        areas = schedule_areas(schedule, steps)
        t = SCHEDULE_TRUTH
        law = t["L0"] + t["A"] * areas["S1"] ** -t["alpha"] - t["C"] * areas["S2"]
        for step, value in zip(steps, law):
            rows.append(
                {
                    "run": f"{decay}-{total}-{peak:g}",
                    "step": step,
                    "loss": value * np.exp(rng.normal(0, noise)),
                    "peak_lr": peak,
                    "total_steps": total,
                    "warmup_steps": 100,
                    "decay": decay,
                    "final_lr_ratio": 0.1,
                }
            )
    return pd.DataFrame(rows)


def load_revisiting(path: str | Path, domain: str, task: str | None = None) -> pd.DataFrame:
    """One domain (``LM``, ``NMT``, ``IC``, ...) of the Revisiting benchmark (Alabdulmohsin et al. 2022) as a checkpoint table.

    Columns run (the ``Model`` column), step (``Seen Examples``), loss and ``training``: 1 for the
    part to fit, 0 for the part to forecast (the benchmark's own split). The vision file holds
    several tasks per domain (``bird_5``, ``inet_10``, ...; error rates, not losses): pass ``task``.
    The language files repeat each (model, examples) row several times; one copy is kept.
    """
    raw = pd.read_csv(path)
    if domain not in set(raw["Domain"]):
        raise DataError(f"no domain {domain!r} in {path}; it has {', '.join(sorted(set(raw['Domain'])))}")
    raw = raw[raw["Domain"] == domain]
    if task is not None:
        if "Task" not in raw.columns or task not in set(raw["Task"]):
            found = ", ".join(sorted(set(raw["Task"]))) if "Task" in raw.columns else "no Task column"
            raise DataError(f"no task {task!r} in domain {domain!r} of {path}; it has {found}")
        raw = raw[raw["Task"] == task]
    table = pd.DataFrame(
        {
            "run": raw["Model"].astype(str),
            "step": raw["Seen Examples"],
            "loss": raw["Loss"],
            "training": raw["Training"].astype(int),
        }
    )
    table = table.drop_duplicates(["run", "step"]).sort_values(["run", "step"], kind="stable")
    return table.reset_index(drop=True)


_SIZE_SUFFIX = {"m": 1e6, "b": 1e9}


def load_opt_trajectories(path: str | Path) -> pd.DataFrame:
    """OPT (Zhang et al. 2022) validation perplexity along training, as a checkpoint table.

    One run per model size (125m ... 175b); columns run, step, loss (the log of the perplexity),
    N (the size in parameters) and tokens (the file stores log10 of the token count).
    """
    raw = pd.read_csv(path)
    size = raw["model_size"].astype(str).str.lower()
    bad = size[~size.str.fullmatch(r"[0-9.]+[mb]")]
    if len(bad):
        raise DataError(
            f"column 'model_size': expected sizes like 125m or 6.7b, got {bad.iloc[0]!r} in row {bad.index[0] + 1}"
        )
    n = size.str[:-1].astype(float) * size.str[-1].map(_SIZE_SUFFIX)
    table = pd.DataFrame(
        {
            "run": raw["model_size"].astype(str),
            "step": raw["steps"],
            "loss": np.log(raw["ppl"]),
            "N": n,
            "tokens": 10.0 ** raw["num_token"],
        }
    )
    table = table.drop_duplicates(["run", "step"]).sort_values(["run", "step"], kind="stable")
    return table.reset_index(drop=True)


#: ScaleBench (Li et al. 2026, arXiv 2604.22753; github.com/PlanarG/active-sl): per task, the inputs as the data
#: names them, the loss column, the cost proxy of the benchmark's registry (as a formula in the columns) and the
#: budget shares of the paper's protocol. The vocab task's target (unigram-normalised loss) is negative, so its
#: card (``scalebench_vocab``) is fitted on the raw scale (``scale = "raw"``) and the runs are read for it.
SCALEBENCH_TASKS: dict[str, dict[str, Any]] = {
    "parallel": {
        "folder": "parallel_scaling_law",
        "inputs": ("num_params", "parallel_size"),
        "loss": "loss",
        "cost": "num_params",
        "shares": (0.01, 0.05, 0.1),
    },
    "moe": {
        "folder": "moe_scaling_law",
        "inputs": ("dense_parameter_count", "num_experts"),
        "loss": "loss_validation",
        "cost": "dense_parameter_count * num_experts",
        "shares": (0.01, 0.05, 0.1),
    },
    "sparsity": {
        "folder": "sparsity_scaling_law",
        "inputs": ("P", "N_active", "N_dense", "D1", "D2"),
        "loss": "loss",
        "cost": "6 * N_dense * D1 + 6 * N_active * D2",
        "shares": (0.2, 0.35, 0.5),
    },
    "vocab": {
        "folder": "vocab_scaling_law",
        "inputs": ("non_vocab_parameters", "vocab_size", "num_characters"),
        "loss": "unigram_normalized_loss",
        "cost": "non_vocab_parameters * num_characters",
        "shares": (0.01, 0.05, 0.1),
        "scale": "raw",
    },
}


def load_scalebench(folder: str | Path, task: str, group: str | None = None) -> tuple[Runs, Runs]:
    """A ScaleBench task as (pool, targets): its train split (the runs one could pay for) and test split.

    Parameters
    ----------
    folder : str or pathlib.Path
        The benchmark's data folder, holding ``<task>_scaling_law/{train,test}-00000-of-00001.parquet``.
    task : str
        One of :data:`SCALEBENCH_TASKS`: ``parallel``, ``moe``, ``sparsity`` or ``vocab`` (whose ``loss``, the
        unigram-normalised loss, is negative: its card is on the raw scale).
    group : str, optional
        Keep only this value of the ``group`` column (the benchmark fits each group on its own: parallel has
        ``stack`` and ``pile``, sparsity one group per D2).

    Returns
    -------
    tuple of Runs
        Pool and targets with the task's inputs (named as in the data), ``loss`` and ``group``; the cost
        formula is ``SCALEBENCH_TASKS[task]["cost"]``.

    Raises
    ------
    DataError
        If the task is unknown, a split is missing, or the group is not in the data.
    """
    if task not in SCALEBENCH_TASKS:
        raise DataError(f"unknown ScaleBench task {task!r}; choose from {', '.join(SCALEBENCH_TASKS)}")
    info = SCALEBENCH_TASKS[task]
    splits = []
    for split in ("train", "test"):
        path = Path(folder) / str(info["folder"]) / f"{split}-00000-of-00001.parquet"
        if not path.exists():
            raise DataError(f"ScaleBench task {task!r}: no {split} split at {path}")
        frame = pd.read_parquet(path)
        if group is not None:
            if group not in set(frame["group"]):
                raise DataError(
                    f"ScaleBench task {task!r}: column 'group' has no {group!r}; "
                    f"groups are {', '.join(sorted(set(frame['group'])))}"
                )
            frame = frame[frame["group"] == group]
        runs = load_runs(
            frame.reset_index(drop=True),
            {"loss": str(info["loss"])},
            extra_inputs=info["inputs"],
            keep=["group"],
            scale=info.get("scale", "log"),
        )
        runs.source = f"ScaleBench {task} ({split}{', ' + group if group else ''}) from {path}"
        splits.append(runs)
    return splits[0], splits[1]
