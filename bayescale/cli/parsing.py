"""Parsing the command line's small languages: ``name=value`` pairs, ``--at`` points, ``--law`` candidates."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bayescale.errors import BayescaleError

if TYPE_CHECKING:
    import pandas as pd

    from bayescale import Candidate


def parse_column_mapping(items: Iterable[str]) -> dict[str, str]:
    """Turn CLI items like ``N='Model Size'`` or ``C=Training FLOP`` into a mapping."""
    mapping = {}
    for item in items:
        for part in _split_top_level(item):
            if "=" not in part:
                raise BayescaleError(f"{part!r} should look like name=value (N='Model Size')")
            key, value = part.split("=", 1)
            mapping[key.strip()] = value.strip().strip("'\"")
    return mapping


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside quotes: ``N='a, b',C=c`` -> ["N='a, b'", "C=c"]."""
    parts, current, quote = [], "", None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [p for p in (p.strip() for p in parts) if p]


def pairs(items, what: str) -> dict[str, str]:
    """Parse repeated ``name=value`` options (commas separate several in one option)."""
    try:
        return parse_column_mapping(items)
    except BayescaleError as exc:
        raise BayescaleError(f"{what}: {exc}") from None


def at_points(items, labels=(), option: str = "--at") -> list[dict[str, float | str]]:
    """Parse ``--at N=...,D=...`` points (or another ``option``'s); keys in ``labels`` (group columns) keep their text."""
    points = []
    for item in items:
        point = {}
        for key, value in pairs([item], option).items():
            try:
                point[key] = value if key in labels else float(value)
            except ValueError:
                raise BayescaleError(f"{option} {item!r}: {key}={value!r} is not a number") from None
        points.append(point)
    return points


def candidate(text: str) -> Candidate:
    """``chinchilla`` or ``"chinchilla likelihood=normal pool=E:dataset,alpha:dataset"`` -> Candidate."""
    import bayescale as bs

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
    return bs.Candidate(law, parsed)


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


def forecast_points(at, points, fits) -> pd.DataFrame:
    """The points of ``--at`` (repeated) or ``--points FILE.csv``, exactly one of them; a pooled fit's group columns keep their text."""
    import pandas as pd

    if bool(at) == bool(points):
        raise BayescaleError("give the points with --at N=...,D=... (repeatable) or with --points FILE.csv")
    if points:
        if not Path(points).exists():
            raise BayescaleError(f"--points: file {points!r} does not exist")
        return pd.read_csv(points)
    groups = {pooled.column for f in fits for pooled in f.spec.pooled.values()}
    return pd.DataFrame(at_points(at, labels=groups))
