"""Exceptions and warnings that bayescale raises to its users, and the phrases their messages share.

Every error a user can cause is a :class:`BayescaleError`: its message names the column, row,
parameter or option at fault and says what is allowed, so the CLI can print it without a traceback.
"""

import difflib
import numbers
from collections.abc import Iterable


class BayescaleError(ValueError):
    """A user-facing error: bad input, bad option, or a request the model cannot answer."""


class DataError(BayescaleError):
    """The runs table is malformed (missing columns, bad values, too few rows)."""


class FormulaError(BayescaleError):
    """A law formula or prior text uses something the safe compiler does not allow."""


class SamplerWarning(UserWarning):
    """The sampler reported trouble (divergences, R-hat, ESS); the message says what to try."""


class SamplingExtended(UserWarning):
    """R-hat or ESS fell short (or centred groups diverged), so the fit sampled again; the message says how and how it went."""


class UnitsWarning(UserWarning):
    """A column's values look like they are in the wrong units."""


class DataWarning(UserWarning):
    """The runs table looks suspicious (for example exact duplicate rows) but can be fitted."""


class ExtrapolationWarning(UserWarning):
    """A forecast reaches further beyond the observed runs than the internal backtests did."""


def warn_user(message: str, category: type[Warning]) -> None:
    """Warn, attributed to the first caller outside bayescale (the user's own line), not to a line inside it.

    Frames of :mod:`contextlib` are skipped too (``fit`` runs inside a context decorator). Each
    prefix is a strict prefix of the file names it skips: Python 3.12.1 does not skip a frame whose
    file name equals a prefix.
    """
    import contextlib
    import os
    import warnings
    from pathlib import Path

    skipped = (str(Path(__file__).resolve().parent) + os.sep, str(Path(contextlib.__file__).with_suffix("")))
    warnings.warn(message, category, skip_file_prefixes=skipped)


def column_list(columns, near: Iterable[str] = (), limit: int = 8) -> str:
    """At most ``limit`` column names, those closest to the ``near`` names first, and how many more there are."""
    names = [str(c) for c in columns]
    close = [m for n in near for m in difflib.get_close_matches(str(n), names, n=3, cutoff=0.5)]
    shown = list(dict.fromkeys([*close, *names]))[:limit]
    return ", ".join(shown) + (f" and {len(names) - len(shown)} more" if len(names) > len(shown) else "")


def row_numbers(index, noun: str = "rows", limit: int = 8) -> str:
    """'rows 3, 8 and 2 more (1 = the first data row)': counted from 1, as a spreadsheet counts a table's rows.

    ``index`` holds row labels counted from 0: a runs table's index is its file's row numbers
    (:func:`bayescale.load_runs` keeps them through filters and splits), so a message names the
    user's row whatever subset of the table it is about.
    """
    labels = [int(i) + 1 if isinstance(i, numbers.Integral) else i for i in list(index)]
    shown = ", ".join(map(str, labels[:limit])) + (f" and {len(labels) - limit} more" if len(labels) > limit else "")
    first = "the first point" if noun == "points" else "the first data row"
    return f"{noun} {shown} (1 = {first})"
