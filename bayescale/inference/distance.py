"""How far a point lies beyond the runs a fit saw: the observed box and the log-distance outside it (e-folds)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayescale.data.runs import NONNEGATIVE, Runs
from bayescale.data.schedules import MPL_INPUTS
from bayescale.data.tunable import TUNABLE

#: the axis of tokens per parameter, D / N, for a law in N and D
TOKENS_PER_PARAMETER = "D_per_N"


def distance_axes(inputs) -> list[str]:
    """The axes extrapolation is measured along: the law's inputs, plus compute C = 6ND and tokens per parameter D/N
    for a law in N and D.

    A run at more compute than any seen can lie inside the observed ranges of N and of D (an
    IsoFLOP grid covers both at lower compute), yet it is beyond the data where it matters most. So
    can a run trained on more tokens per parameter than any seen (a small model on the most tokens):
    over-training is its own direction of extrapolation.
    """
    axes = [name for name in inputs if name not in MPL_INPUTS]  # the Multi-Power Law's quadrature nodes are no axis
    if {"N", "D"} <= set(axes):
        axes += [name for name in ("C", TOKENS_PER_PARAMETER) if name not in axes]
    return axes


def axis_values(table: pd.DataFrame, name: str) -> np.ndarray:
    if name == "C" and "C" not in table.columns:
        return 6.0 * table["N"].to_numpy(dtype=float) * table["D"].to_numpy(dtype=float)
    if name == TOKENS_PER_PARAMETER:
        return table["D"].to_numpy(dtype=float) / table["N"].to_numpy(dtype=float)
    return table[name].to_numpy(dtype=float)


def observed_ranges(runs: Runs, inputs) -> dict[str, tuple[float, float]]:
    frame = runs.frame if isinstance(runs, Runs) else runs
    return {
        name: (float(np.min(values)), float(np.max(values)))
        for name in distance_axes(inputs)
        for values in [axis_values(frame, name)]
    }


def decision_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """The box without the tunable inputs' axes: the distance of a best value (it must not move its own distance)."""
    return {k: v for k, v in ranges.items() if k not in TUNABLE}


def log_scale(name: str, x):
    """Natural log; log(1 + x) for an input that may be zero (S2)."""
    return np.log1p(x) if name in NONNEGATIVE else np.log(x)


def distance(table: pd.DataFrame, ranges: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """Euclidean distance in natural-log units outside the box of observed inputs (0 inside it).

    ``ranges`` come from :func:`observed_ranges`: for a law in N and D they include compute C = 6ND and D/N.
    """
    total = np.zeros(len(table))
    for name, (low, high) in ranges.items():
        x = log_scale(name, axis_values(table, name))
        total += np.maximum(0.0, x - log_scale(name, high)) ** 2 + np.maximum(0.0, log_scale(name, low) - x) ** 2
    return np.sqrt(total)


def last_seen_steps(frame: pd.DataFrame) -> dict[str, float]:
    return {str(k): float(v) for k, v in frame.groupby("run")["step"].max().items()}


def run_distance(table: pd.DataFrame, last_seen: Mapping[str, float], ranges) -> np.ndarray:
    """log(step / the run's last seen step), 0 before it; the box distance for a run never seen."""
    last = table["run"].astype(str).map(last_seen).to_numpy(dtype=float)
    along = np.maximum(0.0, np.log(table["step"].to_numpy(dtype=float) / last))
    return np.where(np.isnan(last), distance(table, ranges), along)
