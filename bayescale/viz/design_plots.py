"""A design's figures and tables: which runs :func:`bayescale.design` chose and what they do to the targets,
and a replay's (:func:`bayescale.design_replay`): the runs each strategy chose, and its band against money spent.
:func:`report_parts` turns either result (as ``bayescale design --json`` writes it) into a report section.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bayescale.errors import BayescaleError


def _frame(runs) -> pd.DataFrame:
    return (runs.frame if hasattr(runs, "frame") else pd.DataFrame(runs)).reset_index(drop=True)


def _axes(result: dict, x: str | None, y: str | None) -> tuple[str, str]:
    """The plane's inputs: those given, else the result's first two inputs (N and D by default)."""
    inputs = list(result.get("inputs") or ["N", "D"])
    return x or inputs[0], y or inputs[1 if len(inputs) > 1 else 0]


def design_replay(
    result: dict, pool=None, targets=None, x: str | None = None, y: str | None = None, strategy: str | None = None
):
    """Two panels: the pool, the runs chosen in order and the targets in the (x, y) plane; band width vs money spent.

    Parameters
    ----------
    result : dict
        What :func:`bayescale.design_replay` returned.
    pool, targets : pandas.DataFrame or Runs, optional
        The pool and targets the replay was given (the chosen rows index the pool from 0); default the
        result's ``points``.
    x, y : str, optional
        The inputs on the plane's axes (both log-scaled); default the law's first two inputs.
    strategy : str, optional
        The strategy whose choices (first repeat) are numbered on the plane; default the first replayed.

    Returns
    -------
    matplotlib.figure.Figure
        Left: pool runs (grey), the chosen runs numbered in the order taken (the starting runs unnumbered),
        the targets (stars). Right: per strategy, the mean relative half-width of the targets' band at each
        budget share against the share of the pool's cost spent; dashed, the whole pool's.
    """
    x, y = _axes(result, x, y)
    points = result.get("points", {})
    if pool is None or targets is None:
        if not points:
            raise BayescaleError(
                "the replay's figure needs the pool and the targets (or a result that holds their points)"
            )
        pool, targets = points["pool"], points["targets"]
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


def _where(target: dict, inputs, groups=()) -> str:
    """A target quantity in words: ``N=7e+10, D=1.4e+12``, ``C=1e+23: N*`` or ``N=1e+09, D=2e+10: lr*``.

    A pooled fit's target adds its group (``groups``, the group columns): ``N=7e+10, D=1.4e+12, dataset=c4``.
    """
    if target["kind"] == "optimum":
        names = ["C"]
    else:
        names = [n for n in inputs if target.get(n) is not None]
    where = ", ".join([*(f"{n}={target[n]:.3g}" for n in names), *(f"{g}={target[g]}" for g in groups if g in target)])
    return where if target["kind"] == "loss" else f"{where}: {target['quantity'].removesuffix('_opt')}*"


def design_choice(result: dict, runs=None, x: str | None = None, y: str | None = None):
    """Two panels: the runs chosen in order and the targets in the (x, y) plane; each target's band now and after.

    Parameters
    ----------
    result : dict
        A design as JSON-ready data (:meth:`bayescale.forecast.design.Design.to_dict`, or what
        ``bayescale design --json`` prints).
    runs : pandas.DataFrame or Runs, optional
        The runs the fit saw, drawn in grey.
    x, y : str, optional
        The inputs on the plane's axes (both log-scaled); default the result's first two ``inputs``, else N and D.

    Returns
    -------
    matplotlib.figure.Figure
        Left: the fit's runs (grey), the chosen runs numbered by rank, point targets (stars) and a budget
        target's iso-cost line (under the cost its optimum was taken under, ``cost_formula``; 6ND in a design
        saved without one) with its median N*, D* (diamond). Right: per target quantity, its band
        around its median in per cent, now (grey) and as expected after the chosen runs (red).
    """
    x, y = _axes(result, x, y)
    inputs = list(result.get("inputs") or [x, y])
    fig, (plane, bands) = plt.subplots(1, 2, figsize=(11, 4.5))
    if runs is not None:
        seen = _frame(runs)
        plane.scatter(seen[x], seen[y], s=14, color="0.75", label="runs fitted")
    chosen = pd.DataFrame(result["chosen"])
    if len(chosen):
        plane.scatter(chosen[x], chosen[y], s=30, color="C3", label="chosen")
        for _, run in chosen.iterrows():
            plane.annotate(
                str(int(run["rank"])), (run[x], run[y]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    targets = result["target"]
    points = [t for t in targets if t["kind"] != "optimum" and t.get(x) is not None and t.get(y) is not None]
    if points:
        plane.scatter([t[x] for t in points], [t[y] for t in points], marker="*", s=90, color="k", label="targets")
    if (x, y) == ("N", "D"):
        from bayescale.forecast.plan import Budget

        for budget in {t["C"] for t in targets if t["kind"] == "optimum"}:
            both = {t["quantity"]: t["median"] for t in targets if t["kind"] == "optimum" and t["C"] == budget}
            cost = next(t.get("cost_formula") for t in targets if t["kind"] == "optimum" and t["C"] == budget)
            n = np.geomspace(both["N_opt"] / 30, both["N_opt"] * 30, 50)
            plane.plot(n, Budget.make(cost).tokens_for(n, budget), color="k", lw=1, ls=":")
            plane.scatter([both["N_opt"]], [both["D_opt"]], marker="D", s=40, color="k")
            plane.annotate(
                f"C={budget:.3g}",
                (both["N_opt"], both["D_opt"]),
                fontsize=7,
                xytext=(4, -9),
                textcoords="offset points",
            )
    plane.set(xscale="log", yscale="log", xlabel=x, ylabel=y, title="runs chosen, by rank")
    plane.legend(fontsize=8)
    labels = [_where(t, inputs) for t in targets]
    for i, target in enumerate(targets):
        for offset, band, colour in ((-0.15, "band_now", "0.6"), (0.15, "band_expected", "C3")):
            low, high = (100 * (v / target["median"] - 1) for v in target[band])
            bands.plot([low, high], [i + offset] * 2, color=colour, lw=5, solid_capstyle="butt")
    bands.axvline(0.0, color="k", lw=0.8)
    bands.set_yticks(range(len(targets)), labels, fontsize=8)
    bands.set(xlabel="band, % from the median: now (grey), expected after the runs (red)", title="targets' bands")
    bands.invert_yaxis()
    fig.tight_layout()
    return fig


def report_parts(result: dict, runs=None) -> list[tuple[str, Any]]:
    """A design's or a replay's section of a report: ``(kind, payload)`` with kind ``para``, ``table`` or ``figure``.

    ``result`` is what ``bayescale design --json`` (a design) or ``design --replay --json`` (a replay) writes;
    ``runs`` (a design's fitted runs) are drawn in grey. A figure's payload is ``(figure, caption)``.
    """
    if "strategies" in result:
        pct = f"{result['ci_prob']:.0%}" if "ci_prob" in result else "the"
        rows = [
            {
                "strategy": s["strategy"],
                "share": b["share"],
                "spent": b["spent"],
                "runs": b["runs"],
                "R2": b["r2"],
                "coverage": next(iter(b["coverage"].values())),
                "median |rel err|": b["median_abs_rel_error"],
                "mean half-width": b["mean_halfwidth"],
            }
            for s in result["strategies"]
            for b in s["budgets"]
        ]
        whole = result["all_of_pool"]
        rows.append(
            {
                "strategy": "all of the pool",
                "share": 1.0,
                "spent": 1.0,
                "runs": whole["runs"],
                "R2": whole["r2"],
                "coverage": next(iter(whole["coverage"].values())),
                "median |rel err|": whole["median_abs_rel_error"],
                "mean half-width": whole["mean_halfwidth"],
            }
        )
        return [
            (
                "para",
                f"Replay of {result['pool_runs']} pool runs against {result['target_runs']} target runs (cost "
                f"{result['cost_formula']}, from the {result['start_runs']} cheapest runs): at each share of the pool's "
                f"cost, R2 of the median, coverage of the {pct} predictive band, median relative error and the band's "
                "mean half-width at the target runs.",
            ),
            ("table", pd.DataFrame(rows)),
            (
                "figure",
                (design_replay(result), "the runs chosen in order and the targets' band width against money spent"),
            ),
        ]
    if not {"chosen", "target"} <= set(result):
        raise BayescaleError(
            "a design section needs what 'bayescale design --json' or 'design --replay --json' writes; this has "
            f"{', '.join(sorted(result)[:8]) or 'nothing'}"
        )
    inputs = list(result.get("inputs") or [k for k in ("N", "D") if any(k in r for r in result["chosen"])])
    chosen = pd.DataFrame(result["chosen"])
    groups = list(result.get("groups") or [])
    columns = ["rank", *inputs, *groups, "cost", "gain", "value", "share"]
    targets = pd.DataFrame(
        [
            {
                "target": _where(t, inputs, groups),
                "median": t["median"],
                "now lower": t["band_now"][0],
                "now upper": t["band_now"][1],
                "expected lower": t["band_expected"][0],
                "expected upper": t["band_expected"][1],
                "sd of log now": t["sd_now"],
                "sd of log expected": t["sd_expected"],
            }
            for t in result["target"]
        ]
    )
    return [
        (
            "para",
            f"Chose {result['n_chosen']} of {result['n_candidates']} candidates; budget {result['budget']:.3g}, spent "
            f"{result['spent']:.3g} (cost {result['cost_formula']}). Value: {result['measure']}.",
        ),
        ("table", chosen[[c for c in columns if c in chosen.columns]] if len(chosen) else chosen),
        ("table", targets),
        (
            "figure",
            (
                design_choice(result, runs),
                "the runs chosen, by rank, and each target's band now and as expected after them",
            ),
        ),
    ]
