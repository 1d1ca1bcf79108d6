"""The best value of a tunable input per posterior draw: a numerical search in log space, vectorised over draws and points.

For every draw and point the bottom of the law's basin in a tunable input (``lr``, ``batch``) is
found by a coarse grid, then golden-section search; coordinate-wise for two tunables, so an
asymmetric basin or a user's own card works the same way. :mod:`bayescale.forecast.tuning` reports
these optima; :mod:`bayescale.inference.decision_discrepancy` calibrates their extrapolation error
on the fit's internal splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from bayescale.data.runs import Runs
from bayescale.data.tunable import tunable_inputs

if TYPE_CHECKING:
    from bayescale.laws.card import Law

#: the search for the best value reaches this factor beyond the observed values on each side
SEARCH_FACTOR = 100.0
_GRID = 13
_ITERATIONS = 20
_ROUNDS = 3  # coordinate-wise rounds when a law has two tunable inputs
_GOLDEN = (np.sqrt(5) - 1) / 2


def search_range(runs: Runs, name: str) -> tuple[float, float]:
    """The log-space interval searched for the best value: the observed values, widened by :data:`SEARCH_FACTOR`."""
    values = runs[name]
    return float(np.log(values.min() / SEARCH_FACTOR)), float(np.log(values.max() * SEARCH_FACTOR))


def evaluate(
    law: Law, params: Mapping[str, np.ndarray], env: Mapping[str, np.ndarray], log_values: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The law's mean loss at the log tunable ``log_values`` (inf where it is not finite)."""
    with np.errstate(all="ignore"):
        loss = law.formula.numpy({**env, **{n: np.exp(v) for n, v in log_values.items()}, **params})
    return np.where(np.isfinite(loss), loss, np.inf)


def minimise(objective, low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
    """argmin of ``objective(log_value)`` in [low, high], element-wise: a grid, then golden section.

    ``objective`` takes an array with extra leading axes (the candidates) before ``shape``, so each
    stage is one vectorised call: all grid values at once, then both golden points per iteration.
    """
    grid = np.linspace(low, high, _GRID)
    losses = objective(np.broadcast_to(grid.reshape(-1, *[1] * len(shape)), (_GRID, *shape)))
    best = np.argmin(losses, axis=0)
    a = grid[np.clip(best - 1, 0, _GRID - 1)]
    b = grid[np.clip(best + 1, 0, _GRID - 1)]
    for _ in range(_ITERATIONS):
        c = b - _GOLDEN * (b - a)
        d = a + _GOLDEN * (b - a)
        at_c, at_d = objective(np.stack([c, d]))
        left = at_c < at_d
        b = np.where(left, d, b)
        a = np.where(left, a, c)
    return (a + b) / 2


def best_values(
    law: Law,
    params: Mapping[str, np.ndarray],
    env: Mapping[str, np.ndarray],
    ranges: Mapping[str, tuple[float, float]],
    shape: tuple[int, int],
    names: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Log of the best value of each tunable input (or of ``names``; others fixed in ``env``) per draw (rows) and point (columns)."""
    names = tunable_inputs(law) if names is None else names
    current = {n: np.full(shape, np.mean(ranges[n])) for n in names}
    for _ in range(1 if len(names) == 1 else _ROUNDS):
        for name in names:
            current[name] = minimise(
                lambda v, name=name: evaluate(law, params, env, {**current, name: v}), *ranges[name], shape
            )
    return current
