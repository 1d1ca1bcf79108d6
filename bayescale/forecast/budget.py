"""A compute budget's constraint on (N, D): the cost formula (default C = 6ND) and a cap on unique tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayescale.errors import BayescaleError
from bayescale.laws.formula import Formula


@dataclass(frozen=True)
class Budget:
    """How a compute budget constrains (N, D): a cost formula (default 6ND) and an optional unique-token cap.

    Build it from text with :meth:`Budget.make`, which checks both fields.

    Parameters
    ----------
    cost : Formula, optional
        The training cost in FLOPs as a :class:`~bayescale.laws.formula.Formula` in ``N`` (parameters)
        and ``D`` (tokens), positive and growing with D. None (default): C = 6 N D.
    unique_tokens : float, optional
        The number of unique tokens available. For a law with a ``U`` input it enters the law as
        U = min(unique_tokens, D); for any other law it is the hard constraint D <= unique_tokens.
        None (default): no cap.
    """

    cost: Formula | None = None
    unique_tokens: float | None = None

    @classmethod
    def make(cls, cost: str | None = None, unique_tokens: float | None = None) -> Budget:
        formula = None
        if cost is not None and cost.replace(" ", "") not in ("6*N*D", "6*D*N"):
            formula = Formula(cost)
            formula.check_names({"N", "D"}, "cost function")
            n, d = np.array([1e9, 1e9]), np.array([1e10, 2e10])
            with np.errstate(all="ignore"):
                values = np.broadcast_to(formula.numpy({"N": n, "D": d}), (2,))
            if not (np.all(np.isfinite(values)) and values[1] > values[0] > 0):
                raise BayescaleError(
                    f"cost function {cost!r} must be positive and grow with D (tokens); "
                    f"at N=1e9 it gives {values[0]:g} for D=1e10 and {values[1]:g} for D=2e10"
                )
        if unique_tokens is not None and not (np.isfinite(unique_tokens) and unique_tokens > 0):
            raise BayescaleError(f"unique_tokens must be a positive, finite number of tokens, got {unique_tokens!r}")
        return cls(formula, None if unique_tokens is None else float(unique_tokens))

    @property
    def cost_text(self) -> str:
        return self.cost.text if self.cost is not None else "6*N*D"

    def cost_of(self, n, d):
        if self.cost is None:
            return 6.0 * n * d
        with np.errstate(all="ignore"):
            return self.cost.numpy({"N": n, "D": d})

    def tokens_for(self, n: np.ndarray, flops: float) -> np.ndarray:
        """D with cost(N, D) = flops for each N (NaN where no D in [1e3, 1e17] does it)."""
        if self.cost is None:
            return flops / (6.0 * n)
        lo, hi = np.full(np.shape(n), 3.0), np.full(np.shape(n), 17.0)
        reachable = (self.cost_of(n, 10.0**lo) <= flops) & (self.cost_of(n, 10.0**hi) >= flops)
        for _ in range(60):  # bisection on log10 D, all N at once (cost grows with D)
            mid = (lo + hi) / 2
            below = self.cost_of(n, 10.0**mid) < flops
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return np.where(reachable, 10.0 ** ((lo + hi) / 2), np.nan)

    def size_for_tokens(self, d: float, flops: float) -> float:
        """log10 N with cost(N, d) = flops (cost grows with N); NaN when no N in [1e3, 1e16] does it."""
        if self.cost is None:
            return float(np.log10(flops / (6.0 * d)))
        lo, hi = 3.0, 16.0
        if not self.cost_of(10.0**lo, d) <= flops <= self.cost_of(10.0**hi, d):
            return float("nan")
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.cost_of(10.0**mid, d) < flops else (lo, mid)
        return (lo + hi) / 2
