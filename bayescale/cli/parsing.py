"""Parsing the command line's small languages: ``name=value`` pairs, ``--at`` points, ``--law`` candidates."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bayescale.errors import BayescaleError

if TYPE_CHECKING:
    from bayescale.evaluation.backtesting import Candidate


def pairs(items, what: str) -> dict[str, str]:
    """Parse repeated ``name=value`` options (commas separate several in one option)."""
    from bayescale.data.runs import parse_column_mapping

    try:
        return parse_column_mapping(items)
    except BayescaleError as exc:
        raise BayescaleError(f"{what}: {exc}") from None


def at_points(items, labels=()) -> list[dict[str, float | str]]:
    """Parse ``--at N=...,D=...`` points; keys in ``labels`` (group columns) keep their text."""
    points = []
    for item in items:
        point = {}
        for key, value in pairs([item], "--at").items():
            try:
                point[key] = value if key in labels else float(value)
            except ValueError:
                raise BayescaleError(f"--at {item!r}: {key}={value!r} is not a number") from None
        points.append(point)
    return points


def candidate(text: str) -> Candidate:
    """``chinchilla`` or ``"chinchilla likelihood=normal pool=E:dataset,alpha:dataset"`` -> Candidate."""
    from bayescale.evaluation.backtesting import Candidate

    law, *options = shlex.split(text)
    parsed: dict[str, Any] = {}
    for option in options:
        key, _, value = option.partition("=")
        if key in ("pool", "input"):
            parsed["pool" if key == "pool" else "inputs"] = dict(
                item.split(":", 1) for item in value.split(",") if ":" in item
            )
        elif key in ("likelihood", "sampler", "extrapolation", "params"):
            parsed[key] = value
        elif key == "noise_trend" and value in ("on", "off"):
            parsed[key] = value == "on"
        elif key == "prior":
            name, _, prior = value.partition(":")
            parsed.setdefault("priors", {})[name] = prior
        else:
            raise BayescaleError(
                f"--law {text!r}: unknown option {key!r}; use likelihood=..., pool=E:group,..., "
                "input=X:C, params=non_embedding, noise_trend=on|off or prior=alpha:'LogNormal(...)'"
            )
    return Candidate(law, parsed)


def check_fan_out(processes, scheduler) -> None:
    if processes is not None and scheduler is not None:
        raise BayescaleError("give --processes (local fits) or --scheduler (a Dask cluster), not both")
    if processes is not None and processes < 1:
        raise BayescaleError(f"--processes must be at least 1, got {processes}")


def numbered(out: str, rule: str, rules) -> Path:
    """``bt.json`` -> ``bt.1.json`` for the first of several holdout rules."""
    path = Path(out)
    return path.with_name(f"{path.stem}.{list(rules).index(rule) + 1}{path.suffix}")


def fit_names(fit_paths) -> dict[str, str]:
    """A name per fit file: its stem, or its whole path where stems repeat."""
    stems = {Path(p).stem: str(p) for p in fit_paths}
    return stems if len(stems) == len(fit_paths) else {str(p): str(p) for p in fit_paths}
