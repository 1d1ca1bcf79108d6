"""Batch fits: every group of a table x every law, fanned out, compared by PSIS-LOO within each group.

``fit_many(table, ["chinchilla", "kaplan_nd"], by="dataset")`` fits each law to each dataset's runs
as independent tasks on an executor (local worker processes or a Dask cluster, see
:mod:`bayescale.parallel.executor`). Workers send each fit back as the bytes of its netCDF file, so a cluster
needs no shared file system. Within each group the laws are ranked by PSIS-LOO with stacking
weights (:func:`bayescale.compare`); a fit that fails is reported with its error and the others
finish.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bayescale import defaults
from bayescale.data.runs import RunsSource, load_runs
from bayescale.errors import BayescaleError, SamplerWarning
from bayescale.evaluation.backtesting import Candidate, as_candidates, candidates_scale, fit_candidate
from bayescale.files import atomic_write
from bayescale.fitting.result import Fit

#: the group name when a sweep is not split by a column
ALL = "all"


def fit_to_netcdf(candidate: dict, settings: dict, frame: RunsSource) -> dict:
    """One sweep task (runs in a worker): fit the candidate, return the fit file's bytes and its sampler warnings."""
    result, caught = fit_candidate(candidate, settings, frame)
    with tempfile.TemporaryDirectory(prefix="bayescale-sweep-") as folder:
        path = result.save(Path(folder) / "fit.nc")
        data = path.read_bytes()
    return {"netcdf": data, "warnings": caught}


def collapse_warnings(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each distinct warning once, from ``(source, message)`` pairs: ``{"message", "count", "from"}``.

    ``count`` is how often the message came, ``from`` its distinct sources in order (a fit as
    ``"chinchilla on rpj"``; an empty source, a warning of the sweep itself, is left out of it).
    """
    seen: dict[str, list[str]] = {}
    for source, message in pairs:
        seen.setdefault(message, []).append(source)
    return [
        {"message": message, "count": len(sources), "from": [s for s in dict.fromkeys(sources) if s]}
        for message, sources in seen.items()
    ]


def _fit_from_netcdf(data: bytes) -> Fit:
    with tempfile.TemporaryDirectory(prefix="bayescale-sweep-") as folder:
        path = Path(folder) / "fit.nc"
        path.write_bytes(data)
        return Fit.load(path)


@dataclass
class Sweep:
    """The fits of a sweep, keyed by ``(group, law label)``, and the errors of those that failed."""

    by: str | None
    fits: dict[tuple[str, str], Fit] = field(default_factory=dict)
    warnings: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)

    def warning_summary(self, more: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The fits' sampler warnings and ``more`` (warnings of the sweep itself), each distinct message once.

        Each with the fits it came from (:func:`collapse_warnings`): identical warnings of many fits
        make one line, not one per fit.
        """
        pairs = [(f"{label} on {group}", m) for (group, label), messages in self.warnings.items() for m in messages]
        return collapse_warnings([*pairs, *(("", m) for m in more)])

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(group for group, _ in [*self.fits, *self.errors]))

    def comparison(self) -> pd.DataFrame:
        """One row per (group, law): LOO rank, elpd, its difference from the group's best, stacking weight, diagnostics."""
        from bayescale.evaluation.comparison import compare, loo

        rows = []
        for group in self.groups:
            fits = {label: fit for (g, label), fit in self.fits.items() if g == group}
            if len(fits) >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", SamplerWarning)  # high Pareto k is a column of the table
                    table = compare(fits)
                scores = {
                    label: {k: float(row[k]) for k in ("rank", "elpd", "se", "elpd_diff", "dse", "weight", "n_high_k")}
                    for label, row in table.iterrows()
                }
            else:
                scores = {}
                for label, fit in fits.items():
                    result = loo(fit)
                    scores[label] = {
                        "rank": 1.0,
                        "elpd": float(result.elpd),
                        "se": float(result.se),
                        "elpd_diff": 0.0,
                        "dse": 0.0,
                        "weight": 1.0,
                        "n_high_k": float((result.pareto_k > result.good_k).sum()),
                    }
            for label, score in scores.items():
                d = fits[label].diagnostics
                rows.append(
                    {
                        "group": group,
                        "law": label,
                        **score,
                        "n_runs": fits[label].n_obs,
                        "divergences": d.divergences,
                        "rhat_max": d.rhat_max,
                        "ess_bulk_min": d.ess_bulk_min,
                        "error": "",
                    }
                )
        rows += [{"group": g, "law": label, "error": message} for (g, label), message in self.errors.items()]
        table = pd.DataFrame(rows)
        if table.empty:
            return table
        for column in ("rank", "n_high_k", "n_runs", "divergences"):
            if column in table:
                table[column] = table[column].astype("Int64")
        return table.sort_values(["group", "rank"], na_position="last").reset_index(drop=True)

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``fits/<group>--<law>.nc`` and ``comparison.csv`` into ``folder`` (each file atomically)."""
        folder = Path(folder)
        (folder / "fits").mkdir(parents=True, exist_ok=True)
        written = {}
        for (group, label), fit in self.fits.items():
            written[f"{group}--{label}"] = fit.save(folder / "fits" / f"{file_name(group)}--{file_name(label)}.nc")
        comparison = self.comparison()
        written["comparison"] = atomic_write(folder / "comparison.csv", lambda tmp: comparison.to_csv(tmp, index=False))
        return written


def file_name(text: str) -> str:
    """``text`` as part of a file name: letters, digits, ``-``, ``_`` and ``.``, anything else as ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text)).strip("_") or "_"


def fit_many(
    runs: RunsSource,
    laws: Sequence[Candidate | str],
    *,
    by: str | None = None,
    columns: Mapping[str, str] | None = None,
    where: str | None = None,
    draws: int = defaults.DRAWS,
    tune: int = defaults.TUNE,
    chains: int = defaults.CHAINS,
    seed: int = defaults.SEED,
    cores: int | None = None,
    sampler: str = defaults.SAMPLER,
    target_accept: float = defaults.TARGET_ACCEPT,
    executor: Any = None,
    scheduler: str | None = None,
    processes: int | None = None,
    fail_fast: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Sweep:
    """Fit every law to the runs of every group of column ``by`` (or to all runs), as parallel tasks.

    ``laws`` are catalog names, card paths or :class:`Candidate` (a law with fit options such as
    ``{"likelihood": "normal"}`` or ``{"pool": {"E": "model"}}``). ``executor``, ``scheduler``,
    ``processes``, ``fail_fast`` and the sampling settings are as in :func:`bayescale.backtest`.

    Parameters
    ----------
    runs : str, pathlib.Path, pandas.DataFrame or Runs
        The runs table: a ``.csv``, ``.tsv`` or ``.parquet`` file, a DataFrame, or
        :class:`~bayescale.data.runs.Runs`.
    laws : sequence of Candidate or str
        The laws to fit, at least one, with distinct labels.
    by : str, optional
        Column whose values split the runs into groups (``str(value)`` names each, sorted); default one
        group of all runs, named ``"all"``.
    columns : dict of str to str, optional
        Maps canonical names to the table's column names, such as ``{"N": "Model Size"}``.
    where : str, optional
        Fit only the runs this row filter keeps (``"data != 'c4'"``; see :func:`bayescale.load_runs`).
    draws : int, default 1000
        Posterior draws per chain in each fit.
    tune : int, default 1000
        Tuning (warm-up) steps per chain in each fit.
    chains : int, default 4
        Chains per fit.
    seed : int, default 20240417
        Seed of every fit.
    cores : int, optional
        Sampler cores per fit; default the machine's CPUs divided by the worker processes (at least 1).
    sampler : {"nutpie", "pymc", "numpyro"}, default "nutpie"
        The NUTS implementation used by each fit.
    target_accept : float, default 0.95
        NUTS target acceptance rate, in [0.5, 1).
    executor : concurrent.futures.Executor or distributed.Client, optional
        Where the fits run; default local worker processes. Not together with ``scheduler``.
    scheduler : str, optional
        Address of a Dask scheduler to run the fits on, such as ``"tcp://host:8786"``.
    processes : int, optional
        Local worker processes; default one per CPU, at most one per fit.
    fail_fast : bool, default False
        Cancel the remaining fits at the first failure (they are reported as errors).
    progress : callable, optional
        Called with one line of text (the law, the group, and done or the error) as each fit ends.

    Returns
    -------
    Sweep
        ``fits``, ``warnings`` (the sampler warnings of each fit) and ``errors`` (of the fits that
        failed), each keyed by ``(group, law label)``; :meth:`Sweep.comparison` ranks the laws within
        each group by PSIS-LOO and :meth:`Sweep.save` writes the fits and that table.

    Raises
    ------
    BayescaleError
        If no law is given, labels repeat, or every fit fails.
    DataError
        If the runs table cannot be read or lacks the column ``by`` or a column a mapping or pooling names.
    """
    from bayescale.parallel.executor import Task, describe, fan_out, plan_workers

    candidates, keep = as_candidates(laws, "sweep")
    loaded = load_runs(
        runs,
        columns,
        keep=sorted({*keep, *([by] if by else [])}),
        where=where,
        scale=candidates_scale(candidates, "sweep"),
    )
    groups = {ALL: loaded} if by is None else loaded.split(by)  # each keeps the file's row numbers
    workers, planned_cores = plan_workers(len(groups) * len(candidates), processes)
    settings = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seed": seed,
        "progressbar": False,
        "cores": cores or planned_cores,
        "sampler": sampler,
        "target_accept": target_accept,
    }
    tasks: dict[tuple[str, str], Task] = {
        (group, c.label): (fit_to_netcdf, (asdict(c), settings, frame), {})
        for group, frame in groups.items()
        for c in candidates
    }

    def report(outcome, done: int, total: int) -> None:
        if progress is not None:
            group, label = outcome.key
            state = "done" if outcome.ok else f"failed: {describe(outcome.error)}"
            progress(f"[{done}/{total}] {label} on {by or 'all runs'}={group}: {state}")

    outcomes = fan_out(
        tasks, executor=executor, scheduler=scheduler, max_workers=workers, fail_fast=fail_fast, progress=report
    )
    sweep = Sweep(by)
    for key, outcome in outcomes.items():
        if outcome.error is None:
            sweep.fits[key] = _fit_from_netcdf(outcome.result["netcdf"])
            sweep.warnings[key] = outcome.result["warnings"]
        else:
            sweep.errors[key] = describe(outcome.error)
    if not sweep.fits:
        raise BayescaleError(
            "every fit of the sweep failed: "
            + "; ".join(f"{label} on {group}: {e}" for (group, label), e in sweep.errors.items())
        )
    return sweep
