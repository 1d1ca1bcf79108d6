"""Learning-rate schedules and the inputs a schedule-aware law needs (Tissue et al. 2024).

The schedule-aware law ``L = L0 + A * S1**(-alpha) - C * S2`` reads a run through two areas under
its learning-rate curve, step by step:

- ``S1`` (forward area): the sum of the learning rates so far, ``S1(s) = sum_{i<=s} eta_i``;
- ``S2`` (annealing area): ``S2(s) = sum_{i<=s} m_i`` with ``m_i = lam * m_{i-1} + (eta_{i-1} - eta_i)``,
  the momentum-smoothed drop of the learning rate; ``lam`` is the decay constant, 0.999 as in the
  paper (:data:`ANNEAL_DECAY`).

Warm-up steps count in ``S1``; the rise of the learning rate during warm-up is not an annealing,
so ``S2`` starts from zero at the end of warm-up (the paper's convention).

A run's schedule is given either by learning-rate values along the run (an ``lr`` column at its
checkpoints, interpolated linearly between them; steps before the first one take its value) or by
schedule columns: ``peak_lr``, ``total_steps`` and optionally ``warmup_steps`` (0),
``decay`` (``cosine``, ``linear``, ``constant`` or ``wsd``; default cosine), ``final_lr_ratio`` (0)
and, for ``wsd`` (warm-up, stable, decay), ``decay_fraction`` (the last 20% of steps by default).
A schedule can also be written as text: ``"cosine(peak=1e-3, total=16000, warmup=50, final=0.1)"``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.runs import row_numbers
from bayescale.errors import BayescaleError, DataError

#: lam in m_i = lam * m_{i-1} + (eta_{i-1} - eta_i), from Tissue et al. 2024
ANNEAL_DECAY = 0.999
#: The Multi-Power Law (Luo et al. 2025) subtracts LD(t) = B sum_k (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)), with
#: G(x) = 1 - (C x + 1)^-beta and S_k(t) = eta_k + ... + eta_t: a sum over every past drop of the learning rate,
#: which a formula cannot write. It is an integral over the drop so far, taken here by Gauss-Legendre quadrature
#: in the share of that drop: node j is the step k_j where the cumulative drop passes share u_j of it, with inputs
#: ``mpl_eta<j>`` = eta_{k_j} and ``mpl_area<j>`` = S_{k_j}(t), and ``mpl_drop`` is the drop so far, so
#: LD = B mpl_drop sum_j w_j G(mpl_eta<j>^-gamma mpl_area<j>) (:func:`mpl_formula`). Against the exact sum on
#: cosine (to 10% and to 0) and WSD schedules of 2,000-16,000 steps it erred by at most 0.2% of LD
#: (tests/test_schedules.py checks 0.3%). Eight nodes, not more: with 16 (34 inputs) the sampler's cached callback takes more
#: arguments than Numba compiles (CPython 3.12 passes a call of over 30 arguments as a list), and a fit took >15 min.
MPL_NODES = 8
MPL_INPUTS = ("mpl_drop", *(f"mpl_eta{j}" for j in range(MPL_NODES)), *(f"mpl_area{j}" for j in range(MPL_NODES)))
DECAYS = ("cosine", "linear", "constant", "wsd")
#: schedule columns of a checkpoint table, and their defaults (None: required)
SCHEDULE_COLUMNS = {
    "peak_lr": None,
    "total_steps": None,
    "warmup_steps": 0.0,
    "decay": "cosine",
    "final_lr_ratio": 0.0,
    "decay_fraction": 0.2,
}
_TEXT_KEYS = {
    "peak": "peak_lr",
    "total": "total_steps",
    "warmup": "warmup_steps",
    "final": "final_lr_ratio",
    "decay_fraction": "decay_fraction",
}


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule by its parameters: warm-up, then a decay of the given kind to the end."""

    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    decay: str = "cosine"
    final_lr_ratio: float = 0.0
    decay_fraction: float = 0.2

    def __post_init__(self):
        if self.decay not in DECAYS:
            raise BayescaleError(f"schedule decay {self.decay!r} is not known; use one of {', '.join(DECAYS)}")
        checks = {
            "peak_lr": self.peak_lr > 0,
            "total_steps": self.total_steps >= 1,
            "warmup_steps": 0 <= self.warmup_steps < self.total_steps,
            "final_lr_ratio": 0 <= self.final_lr_ratio <= 1,
            "decay_fraction": 0 < self.decay_fraction <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise BayescaleError(
                    f"schedule {name} = {getattr(self, name)!r} is not allowed "
                    "(peak_lr > 0, total_steps >= 1, 0 <= warmup_steps < total_steps, "
                    "final_lr_ratio in [0, 1], decay_fraction in (0, 1])"
                )

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """``"cosine(peak=1e-3, total=16000, warmup=50, final=0.1)"`` (parsed, never evaluated)."""
        try:
            call = ast.parse(text.strip(), mode="eval").body
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.args):
                raise ValueError
            if any(kw.arg is None for kw in call.keywords):  # "**mapping": only name=value is allowed
                raise ValueError
            kwargs: dict[str, Any] = {str(kw.arg): ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError):
            raise BayescaleError(
                f"cannot read schedule {text!r}; write it like 'cosine(peak=1e-3, total=16000, warmup=50, final=0.1)'"
            ) from None
        unknown = sorted(set(kwargs) - set(_TEXT_KEYS))
        if unknown or "peak" not in kwargs or "total" not in kwargs:
            raise BayescaleError(
                f"schedule {text!r}: needs peak= and total=, and may set warmup=, final=, "
                f"decay_fraction=" + (f" (not {', '.join(unknown)})" if unknown else "")
            )
        values = {_TEXT_KEYS[k]: v for k, v in kwargs.items()}
        return cls(
            decay=call.func.id,
            **{**values, "total_steps": int(values["total_steps"]), "warmup_steps": int(values.get("warmup_steps", 0))},
        )

    def with_changes(self, **changes) -> Schedule:
        return replace(self, **changes)

    def learning_rates(self) -> np.ndarray:
        """The learning rate at steps 1 .. total_steps."""
        steps = np.arange(1, self.total_steps + 1, dtype=float)
        final = self.final_lr_ratio * self.peak_lr
        warm = self.warmup_steps
        progress = np.clip((steps - warm) / max(self.total_steps - warm, 1), 0.0, 1.0)
        if self.decay == "cosine":
            lr = final + (self.peak_lr - final) * 0.5 * (1 + np.cos(np.pi * progress))
        elif self.decay == "linear":
            lr = self.peak_lr - (self.peak_lr - final) * progress
        elif self.decay == "constant":
            lr = np.full_like(steps, self.peak_lr)
        else:  # wsd: stable at the peak, then a linear decay over the last decay_fraction of the steps
            start = self.total_steps * (1 - self.decay_fraction)
            ramp = np.clip((steps - start) / max(self.total_steps - start, 1), 0.0, 1.0)
            lr = self.peak_lr - (self.peak_lr - final) * ramp
        if warm:
            lr = np.where(steps <= warm, self.peak_lr * steps / warm, lr)
        return lr

    def __str__(self) -> str:
        extra = f", decay_fraction={self.decay_fraction:g}" if self.decay == "wsd" else ""
        return (
            f"{self.decay}(peak={self.peak_lr:g}, total={self.total_steps}, warmup={self.warmup_steps}, "
            f"final={self.final_lr_ratio:g}{extra})"
        )


def areas(
    learning_rates: np.ndarray, warmup_steps: int = 0, decay: float = ANNEAL_DECAY
) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after each step, for learning rates at steps 1, 2, ... (see the module docstring)."""
    lr = np.asarray(learning_rates, dtype=float)
    s1 = np.cumsum(lr)
    drop = np.zeros_like(lr)
    drop[1:] = lr[:-1] - lr[1:]
    drop[: int(warmup_steps) + 1] = 0.0
    momentum = np.empty_like(lr)
    m = 0.0
    for i, d in enumerate(drop):  # a linear recursion; a loop over steps is fast enough (1e5 steps: ~20 ms)
        m = decay * m + d
        momentum[i] = m
    return s1, np.cumsum(momentum)


def mpl_quadrature() -> tuple[np.ndarray, np.ndarray]:
    """The Multi-Power Law's nodes (shares of the drop so far, in (0, 1)) and weights (summing to 1)."""
    x, w = np.polynomial.legendre.leggauss(MPL_NODES)
    return (x + 1) / 2, w / 2


def drop_inputs(learning_rates: np.ndarray, warmup_steps: int, steps, run: str = "") -> pd.DataFrame:
    """The Multi-Power Law's inputs (:data:`MPL_INPUTS`) at ``steps``, for learning rates at steps 1, 2, ...

    Drops count after warm-up (as in :func:`areas`); the learning rate must not rise after it.
    """
    lr = np.asarray(learning_rates, dtype=float)
    drop = np.zeros_like(lr)
    drop[1:] = lr[:-1] - lr[1:]
    drop[: int(warmup_steps) + 1] = 0.0
    if np.any(drop < -1e-12 * lr.max()):
        raise DataError(
            f"run {run!r}: its learning rate rises after warm-up (at step {int(np.argmax(drop < 0)) + 1}); the "
            "Multi-Power Law's card takes schedules that only decay after warm-up"
        )
    so_far, total = np.cumsum(np.maximum(drop, 0.0)), np.concatenate([[0.0], np.cumsum(lr)])
    shares, _ = mpl_quadrature()
    at = np.clip(np.asarray(steps, dtype=float).round().astype(int), 1, len(lr))
    out = np.empty((len(at), 1 + 2 * MPL_NODES))
    for row, t in enumerate(at):
        dropped = so_far[t - 1]
        nodes = np.searchsorted(so_far[:t], shares * dropped, side="left") if dropped > 0 else np.full(MPL_NODES, t - 1)
        out[row, 0] = dropped
        out[row, 1 : 1 + MPL_NODES] = np.maximum(lr[nodes], 1e-12 * lr.max())  # a rate decayed to 0 saturates G
        out[row, 1 + MPL_NODES :] = total[t] - total[nodes]
    return pd.DataFrame(out, columns=list(MPL_INPUTS))


def mpl_formula() -> str:
    """The Multi-Power Law's formula with the quadrature written out (``models/multi_power.toml`` holds it).

    The paper's B is written as K / (beta C), K the initial rate of the drop (LD ~ K sum drop eta^-gamma S while
    C x is small): when the runs do not show the saturation, K is what they determine, not B, C and beta.
    G = 1 - (C x + 1)^-beta is written -expm1(-beta log1p(C x)), exact for small C x.
    """
    _, weights = mpl_quadrature()
    terms = " + ".join(
        f"{w:.12g} * expm1(-beta * log1p(C * mpl_eta{j}**(-gamma) * mpl_area{j}))" for j, w in enumerate(weights)
    )
    return f"L0 + A * S1**(-alpha) + K / (beta * C) * mpl_drop * ({terms})"


def run_schedule(part: pd.DataFrame, run: str) -> Schedule | None:
    """The schedule of one run from its schedule columns, or None if it has none."""
    if "peak_lr" not in part.columns:
        return None
    values = {}
    for col, default in SCHEDULE_COLUMNS.items():
        value = part[col].iloc[0] if col in part.columns else default
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            if default is None:
                raise DataError(f"run {run!r}: column {col!r} is empty; a schedule needs peak_lr and total_steps")
            value = default
        if col in part.columns and part[col].nunique(dropna=False) > 1:
            raise DataError(f"run {run!r}: column {col!r} must be the same on every row of a run")
        values[col] = value
    return Schedule(
        float(values["peak_lr"]),
        int(values["total_steps"]),
        int(values["warmup_steps"]),
        str(values["decay"]),
        float(values["final_lr_ratio"]),
        float(values["decay_fraction"]),
    )


def run_areas(part: pd.DataFrame, run: str, steps, decay: float = ANNEAL_DECAY, mpl: bool = False) -> pd.DataFrame:
    """S1 and S2 of one run at ``steps`` (and with ``mpl`` the :data:`MPL_INPUTS`), from its schedule or ``lr`` column.

    With an ``lr`` column the learning rate is interpolated between checkpoints and held at its
    last value beyond them; with a schedule, steps past ``total_steps`` are an error.
    """
    steps = np.asarray(steps, dtype=float)
    schedule = run_schedule(part, run)
    if schedule is not None:
        if steps.max() > schedule.total_steps:
            raise DataError(
                f"run {run!r}: step {steps.max():g} is past its schedule's total_steps {schedule.total_steps}"
            )
        rates, warmup = schedule.learning_rates(), schedule.warmup_steps
    else:
        if "lr" not in part.columns or not (part["lr"] > 0).all():
            bad = part.index if "lr" not in part.columns else part.index[~(part["lr"] > 0)]
            raise DataError(
                f"column 'lr': run {run!r} needs a learning rate > 0 at every checkpoint, {row_numbers(bad)} have none"
            )
        grid = np.arange(1, int(np.ceil(max(steps.max(), part["step"].max()))) + 1, dtype=float)
        rates, warmup = np.interp(grid, part["step"].to_numpy(dtype=float), part["lr"].to_numpy(dtype=float)), 0
    s1, s2 = areas(rates, warmup, decay)
    at = np.clip(steps.round().astype(int), 1, len(rates)) - 1
    found = pd.DataFrame({"S1": s1[at], "S2": s2[at]})
    return pd.concat([found, drop_inputs(rates, warmup, steps, run)], axis=1) if mpl else found


def add_schedule_inputs(frame: pd.DataFrame, decay: float = ANNEAL_DECAY, mpl: bool = False) -> pd.DataFrame:
    """Add S1 and S2 columns (and with ``mpl`` the :data:`MPL_INPUTS`) to a checkpoint table, run by run."""
    if "lr" not in frame.columns and "peak_lr" not in frame.columns:
        raise DataError(
            "a schedule-aware law needs each run's learning rates: an 'lr' column (the learning rate "
            "at each checkpoint) or schedule columns peak_lr and total_steps (and optionally "
            "warmup_steps, decay, final_lr_ratio, decay_fraction)"
        )
    out = frame.copy()
    columns = ["S1", "S2", *(MPL_INPUTS if mpl else ())]
    out[columns] = np.nan
    for run, part in frame.groupby("run", sort=False):
        found = run_areas(part, run, part["step"].to_numpy(dtype=float), decay, mpl)
        out.loc[part.index, columns] = found[columns].to_numpy()
    return out


def schedule_areas(schedule: Schedule, steps, decay: float = ANNEAL_DECAY, mpl: bool = False) -> pd.DataFrame:
    """S1 and S2 (and with ``mpl`` the :data:`MPL_INPUTS`) of ``schedule`` at the given steps (what-if forecasts)."""
    steps = np.asarray(steps, dtype=float)
    if np.any(steps < 1) or np.any(steps > schedule.total_steps):
        raise BayescaleError(f"steps must lie in 1 .. {schedule.total_steps} for schedule {schedule}")
    rates = schedule.learning_rates()
    s1, s2 = areas(rates, schedule.warmup_steps, decay)
    at = steps.round().astype(int) - 1
    found = pd.DataFrame({"step": steps, "S1": s1[at], "S2": s2[at]})
    return pd.concat([found, drop_inputs(rates, schedule.warmup_steps, steps, str(schedule))], axis=1) if mpl else found
