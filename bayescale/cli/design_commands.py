"""The ``design`` command: which runs to train next, within a budget, to sharpen the forecasts that matter."""

from __future__ import annotations

from pathlib import Path

import click
import cloup

import bayescale as bs
from bayescale.cli.options import (
    input_group,
    law_group,
    law_option,
    output_group,
    plot_option,
    sampling_group,
    sampling_settings,
)
from bayescale.cli.parsing import pairs
from bayescale.cli.render import emit, fmt, wrap
from bayescale.errors import BayescaleError

#: bayescale.evaluation.design_replay.STRATEGIES, named here so that --help does not import the fitting stack
#: (tests/test_design_strategies.py holds the two equal)
REPLAY_STRATEGIES = ("bayes", "random", "cheapest", "inverse-cost", "d-optimal")


def grid_axes(text: str) -> dict:
    """``N=1e8:1e10:5,D=2e9:2e11:5`` -> log-spaced values per input (``lo:hi:count``; one number is one value)."""
    import numpy as np

    axes = {}
    for name, spec in pairs([text], "--grid").items():
        parts = spec.split(":")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        count = numbers[2] if len(numbers) == 3 else 1.0
        if len(numbers) not in (1, 3) or not all(x > 0 for x in numbers) or count != int(count):
            raise BayescaleError(
                f"--grid {name}={spec!r}: give one positive value or low:high:count (log-spaced), e.g. {name}=1e8:1e10:5"
            )
        axes[name] = [numbers[0]] if len(numbers) == 1 else np.geomspace(numbers[0], numbers[1], int(count))
    return axes


def _candidates(path: str | None, grid: str | None, columns: dict):
    """The candidate table from ``--candidates`` (columns mapped as the runs' are) or ``--grid``."""
    if bool(path) == bool(grid):
        raise BayescaleError("give the candidate runs with --candidates POOL.csv or --grid N=lo:hi:count,D=lo:hi:count")
    if grid:
        return bs.grid(**grid_axes(grid))
    assert path is not None
    if not Path(path).exists():
        raise BayescaleError(f"--candidates: file {path!r} does not exist")
    table, _ = bs.read_table(path)
    return table.rename(columns={theirs: ours for ours, theirs in columns.items() if theirs in table.columns})


def read_design(path: str) -> dict:
    """A saved design or replay (what ``design --json`` or ``design --replay --json`` printed), for ``report --design``."""
    import json

    try:
        result = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BayescaleError(f"--design: file {path!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BayescaleError(f"--design: {path!r} is not JSON ({exc}); save it with design --json > FILE") from None
    if not isinstance(result, dict) or not ({"chosen", "target"} <= set(result) or "strategies" in result):
        raise BayescaleError(
            f"--design: {path!r} is not what 'bayescale design --json' or 'design --replay --json' writes"
        )
    return result


def _design_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    yield (
        f"{result['law']} fit to {result['n_runs']} runs: chose {result['n_chosen']} of {result['n_candidates']} "
        f"candidates; budget {result['budget']:.3g}, spent {result['spent']:.3g} (cost {result['cost_formula']})"
    )
    yield wrap(f"value: {result['measure']}")
    inputs, groups = result["inputs"], result.get("groups", [])
    yield (
        f"{'rank':>4} {'row':>6} "
        + " ".join(f"{name:>10}" for name in [*inputs, *groups])
        + f" {'cost':>10} {'gain':>10} {'value':>10} {'share':>6} {'ESS':>6}"
    )
    for run in result["chosen"]:
        yield (
            f"{run['rank']:>4} {run['row']:>6} "
            + " ".join([*(f"{fmt(run[name], '.3g'):>10}" for name in inputs), *(f"{run[g]!s:>10}" for g in groups)])
            + f" {run['cost']:>10.3g} {run['gain']:>10.3g} {run['value']:>10.3g} {run['share']:>6.1%} "
            f"{run['ess']:>6.0f}"
        )
    yield (
        "gain: expected drop of that variance given the runs ranked above; share: of the variance now; ESS: median "
        "effective draws behind it"
    )
    observed = "log-loss" if result.get("scale", "log") == "log" else "loss"
    for target in result["target"]:
        yield _target_line(target, inputs, pct, observed, groups, result["cost_formula"])


def _target_line(
    target: dict, inputs: list[str], pct: str, observed: str = "log-loss", groups=(), cost: str = "6*N*D"
) -> str:
    """One target quantity: its value, its band now and as expected after the chosen runs, the sd of its log.

    ``groups`` are a pooled fit's group columns, ``cost`` the design's cost formula (an optimum says its own).
    """
    low, high = target["band_now"]
    new_low, new_high = target["band_expected"]
    group = "".join(f", {g}={target[g]}" for g in groups if g in target)
    if target["kind"] == "loss":
        where = ", ".join(f"{name}={target[name]:.3g}" for name in inputs) + group
        return (
            f"target {where}: loss {target['median']:.4f}, {pct} band now [{low:.4f}, {high:.4f}], expected after "
            f"these runs [{new_low:.4f}, {new_high:.4f}]; sd of the law's {observed} {target['sd_now']:.3g} -> "
            f"{target['sd_expected']:.3g}{_beyond(target)}"
        )
    name = target["quantity"].removesuffix("_opt")
    if target["kind"] == "optimum":
        used = target.get("cost_formula", "6*N*D")
        why = "" if used == cost else ", the design's cost not being one in N and D that grows with D"
        where = f"C={target['C']:.3g} (its compute-optimal {name}* under cost {used}{why})"
    else:
        given = ", ".join(f"{n}={target[n]:.3g}" for n in inputs if target.get(n) is not None)
        where = given + group + f", {name}=best"
    return (
        f"target {where}: {name}* {target['median']:.3g}, {pct} band now [{low:.3g}, {high:.3g}], expected after "
        f"these runs [{new_low:.3g}, {new_high:.3g}]; sd of log {name}* {target['sd_now']:.3g} -> "
        f"{target['sd_expected']:.3g}"
    )


def design_targets(items, groups=()) -> list[dict]:
    """``--target`` values: ``N=7e10,D=1.4e12`` (a point), ``C=1e23`` (a budget), ``N=1e9,D=2e10,lr=best``.

    Keys in ``groups`` (a pooled fit's group columns: ``dataset=c4``) keep their text.
    """
    targets = []
    for item in items:
        target: dict = {}
        for key, value in pairs([item], "--target").items():
            if key in groups:
                target[key] = value.strip()
            elif value.strip().lower() == "best":
                target[key] = "best"
            else:
                try:
                    target[key] = float(value)
                except ValueError:
                    named = f"; the fit's group column is {', '.join(groups)}" if groups else ""
                    raise BayescaleError(
                        f"--target {item!r}: {key}={value!r} is not a number (or best, for a tunable input such as "
                        f"lr){named}"
                    ) from None
        targets.append(target)
    return targets


def _beyond(target: dict) -> str:
    """How far the target lies beyond the runs, now and with the chosen ones (the discrepancy's part of the band)."""
    now, after = target.get("extrapolation_now") or 0.0, target.get("extrapolation_expected") or 0.0
    if now <= 0:
        return ""
    return (
        f"; {now:.2f} -> {after:.2f} e-folds beyond the runs (the band's extrapolation discrepancy shrinks only "
        "with that distance)"
    )


def _replay_text(result: dict):
    pct = f"{result['ci_prob']:.0%}"
    yield (
        f"replay of {result['pool_runs']} pool runs against {result['target_runs']} target runs ({result['law']}, cost "
        f"{result['cost_formula']}, from the {result['start_runs']} cheapest runs, {result['repeats']} repeat(s))"
    )
    whole = result["all_of_pool"]
    yield (
        f"all of the pool: R2 {whole['r2']:.3f}, {pct} coverage {whole['coverage'][str(result['ci_prob'])]:.2f}, "
        f"median |rel err| {whole['median_abs_rel_error']:.2%}, mean half-width {whole['mean_halfwidth']:.4f}"
    )
    yield f"{'strategy':<12} {'share':>6} {'spent':>7} {'runs':>5} {'R2':>7} {'cover':>6} {'|rel err|':>9} {'half-width':>10}"
    for strategy in result["strategies"]:
        for b in strategy["budgets"]:
            yield (
                f"{strategy['strategy']:<12} {b['share']:>6.1%} {b['spent']:>7.2%} {b['runs']:>5.0f} {b['r2']:>7.3f} "
                f"{b['coverage'][str(result['ci_prob'])]:>6.2f} {b['median_abs_rel_error']:>9.2%} "
                f"{b['mean_halfwidth']:>10.4f}"
            )
    yield (
        f"R2 of the median as ScaleBench computes it; cover: share of target runs inside the {pct} predictive band; "
        "half-width of that band, in loss"
    )
    if result.get("figure"):
        yield f"figure: {result['figure']}"


def _replay(runs, columns, where, options: dict, law_spec, batch, cost, ci_prob, quiet, as_json, sampling) -> None:
    """``design --replay``: check the options, replay, print."""
    if runs is not None:
        raise BayescaleError("--replay replays a finished sweep from its pool: give no RUNS (the pool is the runs)")
    misplaced = [name for name, given in options["design"].items() if given]
    if misplaced:
        raise BayescaleError(f"--replay chooses from the pool against --target-runs: drop {', '.join(misplaced)}")
    if not options["target_runs"]:
        raise BayescaleError("--replay needs the target runs: --target-runs TARGET.csv")
    try:
        shares = [float(s) for s in options["budget_share"].split(",")]
    except ValueError:
        raise BayescaleError(f"--budget-share {options['budget_share']!r}: give shares separated by commas") from None
    seed = sampling.pop("seed", None)
    result = bs.design_replay(
        options["replay"],
        options["target_runs"],
        law_spec,
        shares=shares,
        strategies=options["strategies"] or REPLAY_STRATEGIES,
        start=options["start"],
        repeats=options["repeats"],
        batch=batch,
        cost=cost,
        ci_prob=ci_prob,
        seed=0 if seed is None else seed,
        fit_options=sampling_settings(sampling),
        progress=None if (quiet or as_json) else (lambda line: click.echo(f"replay: {line}", err=True)),
        columns=pairs(columns, "--columns"),
        where=where,
    )
    result = {"law": law_spec, "ci_prob": ci_prob, "repeats": options["repeats"], **result}
    if options["plot"]:  # the law's first two inputs on the plane
        result["figure"] = str(bs.plots.save_figure(bs.plots.design_replay(result), options["plot"]))
    emit(result, as_json, _replay_text)


@cloup.command("design")
@cloup.argument("runs", required=False, type=click.Path(dir_okay=False))
@input_group()
@cloup.option_group(
    "Design",
    cloup.option(
        "--candidates", "candidates_path", type=click.Path(dir_okay=False), help="The runs one could train: a table."
    ),
    cloup.option("--grid", default=None, help="Or a log-spaced grid of candidates: N=1e8:1e10:5,D=2e9:2e11:5."),
    cloup.option(
        "--target",
        "targets",
        multiple=True,
        help="What to know better (repeatable): a point's loss N=7e10,D=1.4e12; a budget's N*, D* C=1e23 "
        "(under --cost when it is in N and D, else 6*N*D); a best learning rate N=1e9,D=2e10,lr=best. A pooled "
        "fit's target names its group: N=7e10,D=1.4e12,dataset=c4.",
    ),
    cloup.option("--budget", type=float, default=None, help="The most the chosen runs may cost together."),
    cloup.option(
        "--cost", default="6*N*D", show_default=True, help="Cost of a run: a formula in the candidates' columns."
    ),
    cloup.option(
        "--batch", type=int, default=4, show_default=True, help="The most runs to choose (per round in a replay)."
    ),
    cloup.option(
        "--outcomes", type=int, default=32, show_default=True, help="Simulated outcomes per candidate (more: steadier)."
    ),
)
@cloup.option_group(
    "Replay",
    cloup.option(
        "--replay",
        "replay_path",
        type=click.Path(dir_okay=False),
        help="Judge the choice on a finished sweep instead: the pool's runs with their losses.",
    ),
    cloup.option("--target-runs", type=click.Path(dir_okay=False), help="The runs to forecast, with their losses."),
    cloup.option(
        "--budget-share", default="0.01,0.05,0.1", show_default=True, help="Shares of the pool's cost to score at."
    ),
    cloup.option(
        "--start", type=int, default=None, help="Start from this many cheapest runs (default: the fewest a fit takes)."
    ),
    cloup.option("--repeats", type=int, default=1, show_default=True, help="Replays per strategy (averaged)."),
    cloup.option(
        "--strategy",
        "strategies",
        multiple=True,
        type=click.Choice(REPLAY_STRATEGIES),
        help="Which ways of choosing to replay (repeatable; default: all, bayes first).",
    ),
)
@law_group(law_option())
@sampling_group()
@output_group(plot_option("the runs chosen in order and the band against money spent (with --replay)"))
def design_command(
    runs,
    columns,
    where,
    candidates_path,
    grid,
    targets,
    budget,
    cost,
    batch,
    outcomes,
    replay_path,
    target_runs,
    budget_share,
    start,
    repeats,
    strategies,
    law_spec,
    quiet,
    ci_prob,
    as_json,
    plot_path,
    **sampling,
):
    """Which runs to train next: the most expected reduction of the targets' uncertainty per unit cost.

    RUNS is a runs table (fitted here) or a saved fit (.nc). The chosen runs are ranked; each target's
    band is shown now and as expected once the chosen runs' losses are known. With --replay, judge the
    choice on a finished sweep instead: choose from the pool a batch at a time, reveal each chosen run's
    loss, refit, and score the forecast of --target-runs at each share of the pool's cost.
    """
    if replay_path:
        options = {
            "replay": replay_path,
            "target_runs": target_runs,
            "budget_share": budget_share,
            "start": start,
            "repeats": repeats,
            "strategies": strategies,
            "plot": plot_path,
            "design": {"--candidates": candidates_path, "--grid": grid, "--target": targets, "--budget": budget},
        }
        _replay(runs, columns, where, options, law_spec, batch, cost, ci_prob, quiet, as_json, sampling)
        return
    if plot_path:
        raise BayescaleError("--plot draws a replay: give it with --replay POOL.csv --target-runs TARGET.csv")
    if runs is None or not targets or budget is None:
        raise BayescaleError(
            "give RUNS (a runs table or a saved fit), --target N=...,D=... (or C=..., or lr=best) and --budget "
            "(or --replay POOL.csv)"
        )
    mapping = pairs(columns, "--columns")
    pool = _candidates(candidates_path, grid, mapping)
    if str(runs).endswith(".nc"):
        if where:
            raise BayescaleError("--where filters a runs table; a saved fit (.nc) keeps the runs it was fitted on")
        fitted = bs.Fit.load(runs)
    else:
        fitted = bs.fit(
            runs,
            law_spec,
            columns=mapping,
            where=where,
            progressbar=not (quiet or as_json),
            **sampling_settings(sampling),
        )
    groups = list(dict.fromkeys(p.column for p in fitted.spec.pooled.values()))
    chosen = bs.design(
        fitted,
        pool,
        design_targets(targets, groups),
        budget,
        cost,
        batch,
        ci_prob=ci_prob,
        outcomes=outcomes,
        seed=sampling.get("seed"),
    )
    result = {
        "law": fitted.law.name,
        "scale": fitted.law.scale,
        "n_runs": fitted.n_obs,
        "inputs": list(fitted.law.inputs),
        "groups": groups,
        **chosen.to_dict(),
    }
    emit(result, as_json, _design_text)
