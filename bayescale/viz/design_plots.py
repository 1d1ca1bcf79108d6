"""The replay's figure (:func:`bayescale.design_replay`): the runs each strategy chose, and its band against money spent."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from bayescale.errors import BayescaleError


def _frame(runs) -> pd.DataFrame:
    return (runs.frame if hasattr(runs, "frame") else pd.DataFrame(runs)).reset_index(drop=True)


def design_replay(result: dict, pool, targets, x: str = "N", y: str = "D", strategy: str | None = None):
    """Two panels: the pool, the runs chosen in order and the targets in the (x, y) plane; band width vs money spent.

    Parameters
    ----------
    result : dict
        What :func:`bayescale.design_replay` returned.
    pool, targets : pandas.DataFrame or Runs
        The pool and targets the replay was given (the chosen rows index the pool from 0).
    x, y : str, default "N" and "D"
        The inputs on the plane's axes (both log-scaled).
    strategy : str, optional
        The strategy whose choices (first repeat) are numbered on the plane; default the first replayed.

    Returns
    -------
    matplotlib.figure.Figure
        Left: pool runs (grey), the chosen runs numbered in the order taken (the starting runs unnumbered),
        the targets (stars). Right: per strategy, the mean relative half-width of the targets' band at each
        budget share against the share of the pool's cost spent; dashed, the whole pool's.
    """
    pool, targets = _frame(pool), _frame(targets)
    missing = [c for c in (x, y) if c not in pool.columns or c not in targets.columns]
    if missing:
        raise BayescaleError(f"the replay's figure needs column(s) {', '.join(missing)} in the pool and the targets")
    records = {s["strategy"]: s for s in result["strategies"]}
    strategy = strategy or next(iter(records))
    if strategy not in records:
        raise BayescaleError(f"strategy {strategy!r} was not replayed; replayed: {', '.join(records)}")
    fig, (plane, bands) = plt.subplots(1, 2, figsize=(11, 4.5))
    plane.scatter(pool[x], pool[y], s=14, color="0.75", label="pool")
    chosen = records[strategy]["chosen"][0]
    start = result["start_runs"]
    plane.scatter(pool[x].iloc[chosen[:start]], pool[y].iloc[chosen[:start]], s=22, color="C0", label="start")
    later = chosen[start:]
    plane.scatter(pool[x].iloc[later], pool[y].iloc[later], s=30, color="C3", label=f"{strategy}'s choices")
    for order, row in enumerate(later, 1):
        plane.annotate(
            str(order), (pool[x].iloc[row], pool[y].iloc[row]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    plane.scatter(targets[x], targets[y], marker="*", s=90, color="k", label="targets")
    plane.set(xscale="log", yscale="log", xlabel=x, ylabel=y, title=f"runs chosen in order ({strategy}, repeat 1)")
    plane.legend(fontsize=8)
    for i, (name, record) in enumerate(records.items()):
        spent = [b["spent"] for b in record["budgets"]]
        width = [b["mean_rel_halfwidth"] for b in record["budgets"]]
        bands.plot(spent, width, "o-", color=f"C{i}", label=name)
    bands.axhline(result["all_of_pool"]["mean_rel_halfwidth"], color="k", ls="--", lw=1, label="all of the pool")
    bands.set(
        xscale="log",
        xlabel="share of the pool's cost spent",
        ylabel="targets' band half-width / median",
        title="band width vs money spent",
    )
    bands.set_ylim(bottom=0)
    bands.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}" if v >= 0.01 else f"{v:.1%}"))
    bands.legend(fontsize=8)
    fig.tight_layout()
    return fig
