"""Tunable inputs: the columns a practitioner chooses per run and that have a best value (learning rate, batch size).

Which inputs of a law are tunable, and the checks a runs table must pass before a law with one is
fitted: the column is there, its values are plausible, and some cell of runs tried more than one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayescale.data.runs import Runs, column_list, is_curves, row_numbers
from bayescale.errors import DataError

if TYPE_CHECKING:
    from bayescale.laws.card import Law

#: inputs a practitioner chooses per run and that have a best value: what each one is
TUNABLE = {"lr": "peak learning rate", "batch": "batch size in tokens"}

#: values outside these bounds are not what the column claims to hold
PLAUSIBLE = {"lr": (0.0, 1.0), "batch": (1.0, np.inf)}


def tunable_inputs(law: Law) -> tuple[str, ...]:
    """The law's inputs that have a best value (learning rate, batch size)."""
    return tuple(name for name in law.inputs if name in TUNABLE)


def _tuned_runs(runs: Runs, law: Law) -> tuple[str, ...]:
    """The tunable inputs to check in ``runs``: none in a checkpoint table, where lr is the rate at each checkpoint."""
    return () if is_curves(runs.frame) else tunable_inputs(law)


def other_inputs(law: Law) -> list[str]:
    """The law's inputs that describe the scale of a run (N, D, ...), not a choice with an optimum."""
    return [name for name in law.inputs if name not in TUNABLE]


# -- checks on the runs -------------------------------------------------------------------------
def check_columns(runs: Runs, law: Law) -> None:
    """A missing tunable column gets an error that points at the user's likely candidates."""
    theirs = runs.original_columns or runs.columns
    for name in _tuned_runs(runs, law):
        if name in runs.frame.columns:
            continue
        hints = ("lr", "learning", "rate") if name == "lr" else ("batch", "bs")
        near = [c for c in theirs if any(h in str(c).lower() for h in hints)]
        guess = f" (perhaps --columns {name}={near[0]})" if near else ""
        raise DataError(
            f"law {law.name!r} needs column {name!r}, the {TUNABLE[name]} of each run; the runs table has "
            f"{column_list(theirs, [name])}. Map yours with columns={{'{name}': 'your name'}} or "
            f"--columns {name}='your name'{guess}"
        )


def check_runs(runs: Runs, law: Law) -> None:
    """Tunable columns hold plausible values, and some cell of runs tried more than one of them."""
    frame = runs.frame
    for name in _tuned_runs(runs, law):
        low, high = PLAUSIBLE[name]
        values = frame[name]
        bad = frame.index[~((values > low) & (values <= high))]
        if len(bad):
            shown = ", ".join(f"{v:g}" for v in values[bad][:6])
            other = "a batch size or a step count" if name == "lr" else "a learning rate or a count of sequences"
            hint = (
                f"If the column holds {other}, map the right one with --columns {name}='your name'"
                if (values[bad] > high).any() or (name == "batch" and (values[bad] > 0).any())
                else "Drop those runs or fix their values"
            )
            raise DataError(
                f"column {name!r} ({TUNABLE[name]}) must lie in ({low:g}, {high:g}], but "
                f"{row_numbers(bad)} are {shown}. {hint}"
            )
        scale = other_inputs(law) + [n for n in tunable_inputs(law) if n != name]
        per_cell = (
            frame.groupby([frame[c].round(12) for c in scale])[name].nunique()
            if scale
            else pd.Series([values.nunique()])
        )
        if per_cell.max() < 2:
            where = f" at the same {', '.join(scale)}" if scale else ""
            raise DataError(
                f"every run{where} used a single {TUNABLE[name]} ({name!r}): the runs say nothing about "
                f"where the best {name} lies, so law {law.name!r} cannot locate it. Sweep at least two "
                f"values of {name} at some (or all) sizes"
            )
