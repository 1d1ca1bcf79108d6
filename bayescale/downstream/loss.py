"""Where a downstream forecast's loss comes from: one loss fit, one per group, or a sweep's fits.

A downstream forecast takes its loss from the user's own fits when given, so that its loss at a point
is :func:`bayescale.predict`'s at that point on the same fit: the same function, draws and seed
(:func:`fits_for_points` says which fit serves each point, :func:`loss_points` which of the point's
columns it sees). :func:`load_loss_fits` reads them from the command line's forms (a file, ``GROUP=FILE``,
or the folder ``bayescale sweep --out`` wrote) and :func:`describe_loss` says in words and fields
which law, pooling and runs a loss forecast came from and what its bands include.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale.errors import BayescaleError, DataError
from bayescale.forecast.predict import DISCREPANCY, NOISE, PARAMETERS
from bayescale.forecast.predict import band_includes as loss_bands

if TYPE_CHECKING:
    from bayescale.fitting.result import Fit


def band_includes(fit: Fit) -> list[str]:
    """What a loss fit's credible band (the law's value) includes; the band of a run adds ``"noise"``."""
    return loss_bands(fit)["credible"]


def pooled_columns(fit: Fit) -> dict[str, str]:
    """The fit's pooled parameters and the column each varies by."""
    return {name: pooled.column for name, pooled in fit.spec.pooled.items()}


def describe_loss(fit: Fit, source: str | None = None, note: str = "") -> dict[str, Any]:
    """Which law, pooling and runs a loss forecast came from, JSON-ready.

    ``source`` is the fit's file (None: fitted here); ``note`` adds why this fit (a sweep's best law).
    """
    return {
        "source": source or "fitted here",
        "law": fit.law.name,
        "pooled": pooled_columns(fit),
        "n_runs": fit.n_obs,
        "runs": str(fit.runs.source),
        "extrapolation": "calibrated" if fit.discrepancy is not None else "none",
        "note": note,
        "band_includes": band_includes(fit),
        "run_band_includes": [*band_includes(fit), NOISE],
        **metric_band_includes(fit),
    }


def metric_band_includes(fit: Fit) -> dict[str, list[str]]:
    """What a chained metric band includes with ``fit`` as its loss: each law's parameters and discrepancy; a run's, noise."""
    loss = [f"loss {item}" for item in band_includes(fit)]
    metric = [f"metric {PARAMETERS}", f"metric {DISCREPANCY}"]
    return {
        "metric_band_includes": [*loss, *metric],
        "metric_run_band_includes": [*loss, f"loss {NOISE}", *metric, f"metric {NOISE}"],
    }


def describe_text(described: Mapping[str, Any], group: str | None = None, key: str | None = None) -> str:
    """One line: ``loss: chinchilla fitted here on 104 runs, E pooled by dataset`` or ``loss for dataset rpj: from f.nc ...``."""
    pooled = ", ".join(f"{p} pooled by {c}" for p, c in described["pooled"].items()) or "nothing pooled"
    where = f" for {group} {key}" if key is not None and group else ""
    origin = (
        f"{described['law']} fitted here on {described['n_runs']} runs"
        if described["source"] == "fitted here"
        else f"from {described['source']} ({described['law']} on {described['n_runs']} runs)"
    )
    note = f"; {described['note']}" if described.get("note") else ""
    return f"loss{where}: {origin}, {pooled}{note}"


def fits_for_points(
    loss: Fit | Mapping[str, Fit], table: pd.DataFrame, by: str | None
) -> list[tuple[str | None, Fit, np.ndarray]]:
    """Which fit forecasts which points: ``(key, fit, positions)``, key None for one fit for every point.

    A mapping is keyed by the values of column ``by``, which every point must give; a point whose
    group has no fit is refused, naming the groups that have one.
    """
    if not isinstance(loss, Mapping):
        return [(None, loss, np.arange(len(table)))]
    if not loss:
        raise BayescaleError("no loss fits given: a mapping of loss fits needs at least one group")
    if by is None:
        raise BayescaleError(
            f"loss fits per group ({', '.join(map(str, loss))}) need the group column their names are values of "
            "(the metric fit's group, or by=...; CLI: --group COLUMN)"
        )
    if by not in table.columns:
        raise DataError(
            f"the loss fits are per {by} ({', '.join(map(str, loss))}): give a {by!r} for every point "
            f"(--at N=...,D=...,{by}=...)"
        )
    labels = table[by].astype(str).to_numpy()
    missing = sorted(set(labels) - {str(k) for k in loss})
    if missing:
        raise BayescaleError(
            f"no loss fit for {by} {', '.join(repr(m) for m in missing)}: loss fits are given for "
            f"{', '.join(map(str, loss))} (CLI: --loss-fit {missing[0]}=FIT.nc)"
        )
    keyed = {str(k): (k, fit) for k, fit in loss.items()}
    return [
        (str(key), fit, np.flatnonzero(labels == label))
        for label, (key, fit) in keyed.items()
        if (labels == label).any()
    ]


def loss_points(fit: Fit, table: pd.DataFrame, name: str = "the loss fit") -> pd.DataFrame:
    """The columns of the points that ``fit`` sees, in the points' order: its inputs (N, D, C) and pooled columns.

    So its forecast is ``bayescale predict``'s at the same inputs (a point's noise stream is keyed by the
    columns it is given). A fit whose law needs an input the points lack is refused, naming the fit.
    """
    if fit.law.kind != "loss":
        raise BayescaleError(f"{name} is of {fit.law.name!r}, a {fit.law.kind} law; the loss needs a law in N and D")
    fit.law.require_log_scale(f"a downstream forecast through {name}", "metric laws take the loss in nats")
    keep = {*fit.law.inputs, *pooled_columns(fit).values(), "N", "D", "C"}
    missing = [
        i for i in fit.law.inputs if i not in table.columns and not (i == "D" and {"N", "C"} <= set(table.columns))
    ]
    if missing:
        raise BayescaleError(
            f"{name} ({fit.law.name}) needs input(s) {', '.join(missing)} that the points do not give "
            f"(they have {', '.join(map(str, table.columns))}): add {missing[0]}=... to --at, or use a loss fit of a "
            "law in the points' inputs"
        )
    return table[[c for c in table.columns if c in keep]].reset_index(drop=True)


def loss_mismatch(fit: Fit, runs: pd.DataFrame, name: str = "the loss fit") -> str | None:
    """Where ``fit``'s runs and ``runs`` share (N, D) but not the loss: a message, else None.

    The metric law maps the loss column of ``runs``; a loss fit to another loss (another validation
    set) would chain two different losses. An (N, D) that several runs share on either side is left out.
    """
    frame = fit.runs.frame
    if not {"N", "D", "loss"} <= set(runs.columns) or not {"N", "D", "loss"} <= set(frame.columns):
        return None
    keys = [
        np.round(np.log(pd.to_numeric(t[c], errors="coerce").to_numpy(dtype=float)), 9)
        for t in (frame, runs)
        for c in ("N", "D")
    ]
    left = pd.DataFrame({"N": keys[0], "D": keys[1], "fitted": frame["loss"].to_numpy(dtype=float)})
    right = pd.DataFrame({"N": keys[2], "D": keys[3], "given": pd.to_numeric(runs["loss"], errors="coerce").to_numpy()})
    unique = [t.drop_duplicates(["N", "D"], keep=False) for t in (left, right)]  # a (N, D) of several groups: unmatched
    both = unique[0].merge(unique[1], on=["N", "D"])
    if not len(both):
        return None
    gap = float(np.median(np.abs(both["fitted"] / both["given"] - 1)))
    if gap <= 0.01:
        return None
    return (
        f"{name} was fitted to another loss than the runs' loss column: at the {len(both)} runs with the same N and D "
        f"they differ by {gap:.1%} (median); the metric law maps the runs' loss, so the forecast would chain two "
        "different losses (another validation set?). Use the loss fit of the same loss column"
    )


def _fit_load(path: str | Path) -> Fit:
    from bayescale.fitting.result import Fit

    if not Path(path).is_file():
        raise BayescaleError(f"--loss-fit: no fit file {str(path)!r}")
    return Fit.load(path)


def sweep_loss_fits(
    folder: str | Path, law: str | None = None
) -> tuple[dict[str, Fit], dict[str, str], dict[str, str]]:
    """The fits of a sweep folder (``fits/<group>--<law>.nc``, ``comparison.csv``), one per group.

    Per group: the law ``law`` names (a label of the sweep or a law's name), else the sweep's best by
    PSIS-LOO (rank 1 in ``comparison.csv``). Returns the fits, their files and why each was picked.
    """
    from bayescale.evaluation.sweep import file_name

    folder = Path(folder)
    table_path, fits_folder = folder / "comparison.csv", folder / "fits"
    has_fits = fits_folder.is_dir() and any(fits_folder.glob("*.nc"))
    if not has_fits or not table_path.is_file():
        lacks = f"no fits in {fits_folder}" if not has_fits else f"no {table_path}"
        raise BayescaleError(
            f"--loss-fit {str(folder)!r}: a folder of loss fits is what `bayescale sweep --out DIR` writes "
            f"(DIR/fits/<group>--<law>.nc and DIR/comparison.csv); {lacks}"
        )
    table = pd.read_csv(table_path, dtype={"group": str, "law": str})
    if "error" in table.columns:
        table = table[table["error"].isna() | (table["error"].astype(str) == "")]
    fits, files, notes = {}, {}, {}
    for group, rows in table.groupby("group", sort=False):
        labels = list(rows["law"])
        if law is not None:
            chosen = [label for label in labels if label == law] or [
                label for label in labels if label.split(" (")[0] == Path(law).stem
            ]
            if len(chosen) != 1:
                raise BayescaleError(
                    f"--law {law!r}: the sweep in {folder} has {'no' if not chosen else 'several'} such fit(s) for "
                    f"group {group!r} (its laws: {', '.join(labels)}); name one of them"
                )
            label, note = chosen[0], f"--law {law}"
        else:
            best = rows.sort_values("rank").iloc[0]
            label = str(best["law"])
            note = (
                f"the sweep's best by LOO on {group}, of {len(labels)} laws"
                if len(labels) > 1
                else "the sweep's only law"
            )
        path = fits_folder / f"{file_name(group)}--{file_name(label)}.nc"
        fits[str(group)], files[str(group)], notes[str(group)] = _fit_load(path), str(path), note
    if not fits:
        raise BayescaleError(f"--loss-fit {str(folder)!r}: every fit of that sweep failed (see its comparison.csv)")
    return fits, files, notes


def load_loss_fits(
    items: Sequence[str], *, group: str | None = None, law: str | None = None
) -> tuple[Fit | dict[str, Fit], dict[str | None, dict[str, Any]]]:
    """Loss fits for :func:`bayescale.chained`: one file, one per group, or a sweep folder's; with their descriptions.

    Parameters
    ----------
    items : sequence of str
        One fit file (``fit.nc``, for every point); ``GROUP=FILE`` items (one fit per value of column
        ``group``); or the folder ``bayescale sweep --out DIR`` wrote (one fit per group; a sweep of all
        runs serves every point).
    group : str, optional
        The column whose values name the groups (``--group``); needed for fits per group.
    law : str, optional
        From a sweep folder: the law to take (a label of the sweep, or a law's name); None (default):
        each group's best by PSIS-LOO (rank 1 of ``comparison.csv``). With fit files it must be their law.

    Returns
    -------
    tuple
        The fit, or a dict of fits by group, for :func:`bayescale.chained`; and each one's description
        (:func:`describe_loss`: file, law, pooling, runs, why it was picked, what its bands include) by group
        (None for one fit).

    Raises
    ------
    BayescaleError
        For a missing file, a folder without fits or ``comparison.csv``, fits per group without ``group``,
        a group given twice, or a ``law`` that the fits are not of.
    """
    from bayescale.evaluation.sweep import ALL

    items = [str(item) for item in items]
    if len(items) == 1 and Path(items[0]).is_dir():
        swept, files, notes = sweep_loss_fits(items[0], law)
        if len(swept) == 1 and (group is None or ALL in swept):  # a sweep of all runs: one fit for every point
            ((key, fit),) = swept.items()
            return fit, {None: describe_loss(fit, files[key], notes[key])}
        if group is None:
            raise BayescaleError(
                f"--loss-fit {items[0]!r} holds a fit per group ({', '.join(swept)}): give --group COLUMN, the column "
                "the sweep was split by (sweep --by)"
            )
        per_group: dict[str | None, dict[str, Any]] = {
            key: describe_loss(fit, files[key], notes[key]) for key, fit in swept.items()
        }
        return swept, per_group
    named = [item.partition("=") for item in items]
    if len(items) == 1 and not named[0][1]:
        fit = _fit_load(items[0])
        _check_law(fit, items[0], law)
        return fit, {None: describe_loss(fit, items[0])}
    plain = [item for item, (_, eq, _) in zip(items, named) if not eq]
    if plain:
        raise BayescaleError(
            f"--loss-fit {plain[0]!r}: with several loss fits, name each one's group: --loss-fit GROUP=FILE.nc "
            "(repeatable), or give one file or one sweep folder"
        )
    if group is None:
        raise BayescaleError(
            f"--loss-fit {items[0]!r}: loss fits per group need --group COLUMN, the column whose values name them"
        )
    fits: dict[str, Fit] = {}
    described: dict[str | None, dict[str, Any]] = {}
    for key, _, path in named:
        key, path = key.strip(), path.strip()
        if key in fits:
            raise BayescaleError(f"--loss-fit: group {key!r} is given twice")
        fits[key] = _fit_load(path)
        _check_law(fits[key], path, law)
        described[key] = describe_loss(fits[key], path)
    return fits, described


def _check_law(fit: Fit, path: str, law: str | None) -> None:
    if law is not None and Path(law).stem != fit.law.name:
        raise BayescaleError(
            f"--law {law!r}: the loss fit {path} is of {fit.law.name}; with fit files --law only picks a law from a "
            "sweep folder (drop --law, or give that law's fit)"
        )
