"""One result, two renderings: a command builds one JSON-ready result and prints it as text or as JSON.

A command's text is a function of its result alone (``text(result) -> lines``), so whatever the
text shows the JSON carries (``tests/test_cli_render.py`` checks every command). Warnings and
progress go to stderr in both modes.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

WIDTH = 100


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays, DataFrames and paths as plain JSON types (NaN -> None).

    Duck-typed, so that ``bayescale laws`` and ``--help`` never import NumPy or pandas.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "columns") and hasattr(value, "to_dict"):  # a DataFrame: its rows
        return [jsonable(r) for r in value.to_dict("records")]
    if hasattr(value, "tolist"):  # a NumPy array or scalar
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def records(frame, columns: Iterable[str] | None = None) -> list[dict]:
    """Rows of ``frame`` (only ``columns``, in order, when given) as JSON-ready dicts."""
    return jsonable(frame if columns is None else frame[list(columns)])


def emit(result: dict, as_json: bool, text: Callable[[dict], Iterable[str]]) -> None:
    """Print ``result`` as one JSON object, or as the lines ``text(result)`` makes of it."""
    result = jsonable(result)
    if as_json:
        click.echo(json.dumps(result))
        return
    for line in text(result):
        click.echo(line)


def fmt(value: float | None, spec: str = ".4g") -> str:
    """A number as text; ``-`` where there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def wrap(line: str) -> str:
    return textwrap.fill(line, WIDTH, subsequent_indent="  ")


def band(record: dict, spec: str = ".4f", prefix: str = "") -> str:
    """``median [lower, upper]`` of a record's ``{prefix}median`` / ``lower`` / ``upper``."""
    return (
        f"{fmt(record[prefix + 'median'], spec)} [{fmt(record[prefix + 'lower'], spec)}, "
        f"{fmt(record[prefix + 'upper'], spec)}]"
    )


def bands_line(ci_prob: float, bands: Iterable[tuple[str, list[str]]]) -> str:
    """What each band includes, in one line: ``bands: 90% intervals; law: parameters + extrapolation discrepancy; ...``.

    ``bands`` are (label, words of a result's ``band_includes``); a band of the parameters alone says
    that it leaves out the extrapolation discrepancy.
    """
    parts = [
        f"{label}: "
        + ("parameters only, no extrapolation discrepancy" if words == ["parameters"] else " + ".join(words))
        for label, words in bands
    ]
    return f"bands: {ci_prob:.0%} intervals; " + "; ".join(parts)


def prior_driven_lines(sensitivity: dict) -> Iterable[str]:
    """The warning of the most prior-driven quantity (``bs.plan_sensitivity``, ``bs.tune_sensitivity``), naming the others."""
    driven = {name: entry for name, entry in sensitivity.items() if entry["note"]}
    if driven:
        largest = {name: max(e["prior"]) if isinstance(e["prior"], list) else e["prior"] for name, e in driven.items()}
        first = max(largest, key=lambda name: largest[name])
        others = [name for name in driven if name != first]
        also = f" Also prior-driven: {', '.join(others)}." if others else ""
        yield wrap("  warning: " + driven[first]["note"] + also)


def decision_calibration_lines(calibration: dict, what: str):
    """What widens a decision's band beyond the runs (``what``: "the best lr", "N*"): tau and where it was learned."""
    if calibration["source"] == "none":
        return
    where = (
        f"calibrated on {calibration['cells']} internal cells"
        if calibration["cells"]
        else f"from its prior alone (no internal cell tried {calibration['min_values']} or more values)"
    )
    yield wrap(
        f"beyond the runs {what} errs by tau {calibration['tau_median']:.3g} in log per e-fold "
        f"(90% {calibration['tau_lower']:.3g} to {calibration['tau_upper']:.3g}), {where}"
    )
