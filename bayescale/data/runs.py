"""The runs table: read CSV, Parquet or a DataFrame, map columns, derive inputs, validate.

Canonical columns are ``N`` (parameters), ``D`` (training tokens), ``C`` (training FLOPs) and
``loss`` (nats). A missing ``D`` is derived as C/(6N) and a missing ``C`` as 6ND, and the
:class:`Runs` object records that it did so. Every problem is reported with the column and the
rows at fault.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.filters import narrowed, parse_filter, text_literal, written
from bayescale.errors import DataError, DataWarning, UnitsWarning, column_list, row_numbers, warn_user

logger = logging.getLogger("bayescale")

#: columns bayescale knows; a column mapping may only target these or a law's own inputs
CANONICAL = ("N", "D", "C", "loss", "U", "N_no_embed", "n_layers", "d_model", "step", "tokens", "run", "lr")
POSITIVE = ("N", "D", "C", "loss", "U", "N_no_embed", "n_layers", "d_model")
#: every loss above this (in nats) looks like perplexity (e^loss), not a loss
PERPLEXITY_FLOOR = 10.0
#: what the law's N counts: ``total`` (N as the table gives it) or ``non_embedding`` parameters
PARAMETER_COUNTS = ("total", "non_embedding")
#: law inputs that may be zero (the annealing area S2, and the Multi-Power Law's drop so far, are zero until the
#: learning rate first drops)
NONNEGATIVE = ("S2", "mpl_drop")
#: below these maxima the units look wrong (a raw count is expected)
_UNIT_FLOORS = {
    "N": (1e4, "millions or billions of parameters"),
    "D": (1e5, "millions or billions of tokens"),
    "C": (1e10, "PF-days or another unit; C is in FLOPs (1 PF-day = 8.64e19 FLOPs)"),
}


@dataclass
class Runs:
    """A validated runs table (``frame``) and what was done to it (``notes``).

    Made by :func:`load_runs` (or :func:`bayescale.load_checkpoints`); ``runs["N"]`` is a column as a float
    array, ``len(runs)`` the number of rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table: the canonical columns (``N``, ``D``, ``C``, ``loss``, ...; numeric ones as floats), a law's
        own inputs and kept columns; index ``row``.
    notes : list of str, default []
        What was done to the table, in words (a derived ``D`` or ``C``, excluded checkpoints, ...).
    source : str, default "DataFrame"
        Where the table came from: the file path, or ``"DataFrame"``.
    original_columns : list of str, default []
        The column names as the user's table had them, before mapping and selection (for error messages).
    """

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    source: str = "DataFrame"
    #: the column names as the user's table had them, before mapping and selection (for error messages)
    original_columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, column: str) -> np.ndarray:
        return self.frame[column].to_numpy(dtype=float)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def subset(self, mask, rule: str) -> Runs:
        """The rows where ``mask`` is True (their row numbers kept); ``rule``, how they were picked, joins the source."""
        frame = self.frame[np.asarray(mask, dtype=bool)].copy()
        return Runs(frame, list(self.notes), narrowed(self.source, rule), list(self.original_columns))

    def split(self, by: str) -> dict[str, Runs]:
        """The runs of each value of column ``by``, named ``str(value)``, sorted: :meth:`subset` for each."""
        return {
            str(level): self.subset(self.frame[by] == level, f"{written(by)} == {text_literal(level)}")
            for level in sorted(self.frame[by].dropna().unique())
        }

    def require(self, inputs: Iterable[str], n_params: int, law_name: str) -> None:
        """Check that the table has the law's inputs and more rows than it has parameters."""
        missing = [c for c in (*inputs, "loss") if c not in self.frame.columns]
        if missing:
            derivable = " (D is derived from C and N, C from N and D)" if {"D", "C"} & set(missing) else ""
            raise DataError(
                f"law {law_name!r} needs column(s) {', '.join(missing)}, which the runs table "
                f"({self.source}) lacks{derivable}; it has {column_list(self.original_columns or self.columns, missing)}. "
                "Map your names with columns={'N': 'your name', ...} or --columns N='your name'"
            )
        if len(self.frame) <= n_params:
            raise DataError(
                f"the runs table has {len(self.frame)} rows but law {law_name!r} with its noise model "
                f"has {n_params} parameters; at least {n_params + 1} rows are needed"
            )


#: a table as the readers take it: the path of a ``.csv``, ``.tsv`` or ``.parquet`` file, or a DataFrame
type TableSource = str | os.PathLike[str] | pd.DataFrame
#: a runs table as the public functions take it: a :data:`TableSource` or validated :class:`Runs`
type RunsSource = Runs | TableSource
#: points to forecast at: a table, or a mapping of input names to scalars or arrays
type Points = pd.DataFrame | Mapping[str, Any]


def point_label(row: pd.Series, names: Iterable[str]) -> str:
    """A point in the user's terms: ``N=7e+10, D=1.4e+12`` (numbers to 3 significant digits)."""
    return ", ".join(
        f"{name}={row[name]:.3g}" if isinstance(row[name], (int, float, np.number)) else f"{name}={row[name]}"
        for name in names
    )


def read_table(source) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.copy(), "DataFrame"
    path = Path(source)
    if not path.exists():
        raise DataError(f"runs file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path), str(path)
    if suffix in (".csv", ".txt", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ","), str(path)
    raise DataError(f"runs file {str(path)!r}: unknown format {suffix!r}; use .csv, .tsv or .parquet")


def load_runs(
    source: RunsSource,
    columns: Mapping[str, str] | None = None,
    *,
    extra_inputs: Iterable[str] = (),
    keep: Iterable[str] = (),
    where: str | None = None,
    scale: str = "log",
) -> Runs:
    """Read and validate a runs table, or the rows of it that a filter keeps.

    ``columns`` maps canonical names to the table's names (``{"N": "Model Size"}``). ``extra_inputs``
    are a law's own input names (also allowed as mapping targets). ``keep`` are further columns to
    carry along unchanged (for example group columns). ``where`` keeps the rows a filter selects
    (:mod:`bayescale.data.filters`), before any value is checked, so a bad value in a row it drops
    is no error. The index is the file's row numbers (from 0), kept through the filter, so every
    message names the user's row.

    Parameters
    ----------
    source : str, pathlib.Path, pandas.DataFrame or Runs
        A ``.csv`` (or ``.txt``, comma-separated), ``.tsv`` or ``.parquet`` (``.pq``) file, or a DataFrame
        (copied; its index is kept as the row numbers when it is an integer index named ``row``, as a
        :class:`Runs` frame's is, else the rows are numbered from 0). A :class:`Runs` is returned as it
        is, unchecked (only filtered by ``where``).
    columns : Mapping[str, str], optional
        Canonical name -> the table's name, e.g. ``{"N": "Model Size"}``. Targets must be canonical names
        (:data:`CANONICAL`) or in ``extra_inputs``.
    extra_inputs : iterable of str, default ()
        A law's own input names: kept, checked as numbers, and allowed as mapping targets.
    keep : iterable of str, default ()
        Further columns to carry along unchanged (for example group columns); each must exist.
    where : str, optional
        A row filter such as ``"data == 'rpj'"``, ``"N >= 1e9 and data != 'c4'"`` or
        ``"data in ['rpj', 'c4']"`` (:mod:`bayescale.data.filters`); it may name any column of the table,
        by the table's name or by the canonical name it is mapped to (and ``D`` or ``C`` where they are
        derived). ``Runs.source`` then says so: ``"runs.csv where data == 'rpj'"``.
    scale : {"log", "raw"}, default "log"
        The observation scale of the law the runs are for (a card's ``scale``): on ``"log"`` every loss must
        be > 0 and a loss column that looks like perplexities warns; on ``"raw"`` the loss may be any number.

    Returns
    -------
    Runs
        The table with only the canonical columns, ``extra_inputs`` and ``keep`` (in the table's order),
        numeric columns as floats, ``D`` derived as C/(6N) or ``C`` as 6ND where missing, index ``row``
        (the file's row numbers, from 0); ``notes`` record what was derived.

    Raises
    ------
    BayescaleError
        If ``where`` cannot be read (:func:`~bayescale.data.filters.parse_filter`).
    DataError
        If the file is missing or of an unknown format, the mapping names an unknown or absent column,
        ``where`` names an unknown column, compares text with a number (or a number with text) or keeps
        no row, there is no ``loss`` column, or a value is not a number, empty, infinite or not positive
        (the error names the column and the rows of the file).

    Warns
    -----
    UnitsWarning
        When N, D or C look like they are not raw counts, or the loss looks like a perplexity.
    DataWarning
        When rows repeat earlier rows exactly.
    """
    if isinstance(source, Runs):
        if where is None:
            return source
        frame, origin = filter_table(source.frame, where, source.source)
        return Runs(frame.copy(), list(source.notes), origin, list(source.original_columns))
    frame, origin = read_table(source)
    if not _numbered(frame):
        frame.index = pd.RangeIndex(len(frame), name="row")
    columns = dict(columns or {})
    allowed = set(CANONICAL) | set(extra_inputs)
    unknown = sorted(set(columns) - allowed)
    if unknown:
        raise DataError(
            f"column mapping names unknown column(s) {', '.join(unknown)}; "
            f"the known columns are {', '.join(sorted(allowed))}"
        )
    for canonical, theirs in columns.items():
        if theirs not in frame.columns:
            raise DataError(
                f"column {theirs!r} (mapped to {canonical}) is not in the runs table ({origin}); "
                f"it has {column_list(frame.columns, [theirs])}"
            )
    renamed = frame.rename(columns={theirs: canonical for canonical, theirs in columns.items()})
    if where is not None:
        renamed, origin = filter_table(
            renamed, where, origin, {theirs: canonical for canonical, theirs in columns.items()}
        )
    wanted = [c for c in renamed.columns if c in allowed or c in set(keep)]
    missing_keep = [c for c in keep if c not in renamed.columns]
    if missing_keep:
        raise DataError(
            f"column(s) {', '.join(missing_keep)} are not in the runs table ({origin}); "
            f"it has {column_list(renamed.columns, missing_keep)}"
        )
    table = renamed[wanted].copy()
    if "loss" not in table.columns:
        raise DataError(
            f"the runs table ({origin}) has no 'loss' column; it has {column_list(frame.columns, ['loss'])}. "
            "Map it with columns={'loss': 'your name'} or --columns loss='your name'"
        )
    numeric = [c for c in table.columns if c in CANONICAL and c != "run"] + list(extra_inputs)
    notes = _clean(table, numeric, signed=("loss",) if scale == "raw" else ())
    _warn_units(table if scale != "raw" else table.drop(columns="loss"))
    if scale != "raw":
        _warn_perplexity_name(columns.get("loss", "loss"))
    _warn_duplicates(table)
    for note in notes:
        logger.info(note)
    return Runs(table, notes, origin, [str(c) for c in frame.columns])


def _numbered(frame: pd.DataFrame) -> bool:
    """Whether a DataFrame's index already holds a table's row numbers (bayescale's own frames: integers, ``row``)."""
    return frame.index.name == "row" and pd.api.types.is_integer_dtype(frame.index) and frame.index.is_unique


def filter_table(
    frame: pd.DataFrame, where: str, origin: str = "DataFrame", aliases: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, str]:
    """The rows of a table that a row filter keeps, and the table's description with the filter.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table; its index (the row numbers) is kept.
    where : str
        The filter (:mod:`bayescale.data.filters`): ``"data == 'rpj'"``, ``"N >= 1e9 and data != 'c4'"``,
        ``"data in ['rpj', 'c4']"``, ``"not (N < 1e8)"``, ```Model Size` > 1e8``. ``D`` or ``C`` may be
        named where the table has the other two of N, D, C (derived as :func:`load_runs` derives them).
    origin : str, default "DataFrame"
        What the table is, for messages and the description (a file's path).
    aliases : dict of str to str, optional
        Other names the filter may use for columns of ``frame`` (the user's name -> the name in ``frame``).

    Returns
    -------
    tuple of (pandas.DataFrame, str)
        The rows kept, and ``origin`` with the filter: ``"runs.csv where data == 'rpj'"``.

    Raises
    ------
    BayescaleError
        If the filter cannot be read.
    DataError
        If it names no column of the table, compares a text column with a number (or a column of
        numbers with text), or keeps no row.
    """
    rule = parse_filter(where)
    view = frame
    if {"D", "C"} & set(rule.columns) - set(frame.columns):  # a derived D or C, as the fit will see it
        view = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in ("N", "D", "C") if c in frame})
        _derive(view, [])
    mask = rule.mask(view, aliases)
    if not mask.any():
        raise DataError(f"where {where!r} keeps none of the {len(frame)} rows of {origin}")
    return frame[mask], narrowed(origin, where)


def _clean(table: pd.DataFrame, numeric: Iterable[str], signed: Iterable[str] = ()) -> list[str]:
    """Coerce numeric columns, derive D or C, check positivity (not of ``signed``); return notes on what was derived."""
    for col in dict.fromkeys(c for c in numeric if c in table.columns):
        table[col] = _numeric_column(table[col], col)
    for col in (
        c for c in POSITIVE if c in table.columns and c not in signed
    ):  # before deriving, so the user's column is named
        bad = table.index[table[col] <= 0]
        if len(bad):
            values = table.loc[bad, col].tolist()
            raise DataError(
                f"column {col!r}: must be > 0, but {row_numbers(bad)} are "
                f"{', '.join(map(str, values[:8]))}{' ...' if len(values) > 8 else ''}"
            )
    notes: list[str] = []
    _derive(table, notes)
    if {"U", "D"} <= set(table.columns):
        bad = table.index[table["U"] > table["D"] * (1 + 1e-9)]
        if len(bad):
            raise DataError(
                f"column 'U' (unique tokens) cannot exceed D (tokens trained on), but {row_numbers(bad)} have U > D"
            )
    return notes


def count_parameters(runs: Runs, count: str) -> Runs:
    """The runs with N counting ``total`` parameters (as given) or ``non_embedding`` ones.

    Kaplan et al. 2020 counted non-embedding parameters, Hoffmann et al. 2022 all of them, and the
    choice moves fitted exponents at small scales (Porian et al. 2024, Pearce & Song 2024). For
    ``non_embedding``, N is taken from column ``N_no_embed``, or derived as 12 n_layers d_model^2
    (Kaplan's count) from ``n_layers`` and ``d_model``; the total count is kept as ``N_total``.
    """
    count = str(count).replace("-", "_")
    if count not in PARAMETER_COUNTS:
        raise DataError(f"params must be one of {', '.join(PARAMETER_COUNTS)} (what N counts), got {count!r}")
    if count == "total" or "N_total" in runs.columns:
        return runs
    frame = runs.frame.copy()
    if "N_no_embed" in frame.columns:
        counted, how = frame["N_no_embed"], "column N_no_embed"
    elif {"n_layers", "d_model"} <= set(frame.columns):
        counted, how = 12.0 * frame["n_layers"] * frame["d_model"] ** 2, "12 n_layers d_model^2 (Kaplan et al. 2020)"
    else:
        raise DataError(
            f"params='non_embedding' needs the non-embedding parameter count: a column N_no_embed "
            f"(map yours with --columns N_no_embed='your name'), or n_layers and d_model to derive "
            f"12 n_layers d_model^2; the runs table ({runs.source}) has {column_list(runs.columns, ['N_no_embed'])}"
        )
    if "N" in frame.columns:
        frame["N_total"] = frame["N"]
    frame["N"] = counted.to_numpy(dtype=float)
    note = f"N counts non-embedding parameters, from {how}"
    logger.info(note)
    return Runs(frame, [*runs.notes, note], runs.source, runs.original_columns)


def prepare_points(points, inputs: Iterable[str], scale: str = "log") -> pd.DataFrame:
    """Validate the inputs of points to predict at (a DataFrame or a mapping of scalars/arrays).

    A ``loss`` column they carry (candidate runs with outcomes) must be > 0 unless ``scale`` is ``"raw"``.
    """
    inputs = list(inputs)
    if isinstance(points, Mapping):
        values = {k: np.atleast_1d(np.asarray(v, dtype=object)) for k, v in points.items()}
        try:
            table = pd.DataFrame(values)
        except ValueError as exc:
            raise DataError(f"prediction inputs must have matching lengths: {exc}") from None
    else:
        table = pd.DataFrame(points).copy()
    table.index = pd.RangeIndex(len(table), name="point")
    if not len(table):
        raise DataError("no points to predict at")
    if {"N", "C", "D"} <= set(table.columns):  # points may mix D and C: fill each from the other
        n, c, d = (pd.to_numeric(table[k], errors="coerce") for k in ("N", "C", "D"))
        table["D"] = table["D"].where(table["D"].notna(), c / (6.0 * n))
        table["C"] = table["C"].where(table["C"].notna(), 6.0 * n * d)
    _clean(table, [c for c in table.columns if c in (*POSITIVE, *inputs) and c != "loss"], ("loss",) * (scale == "raw"))
    missing = [c for c in inputs if c not in table.columns]
    if missing:
        raise DataError(
            f"predicting needs input(s) {', '.join(missing)} (got {column_list(table.columns, missing)}); "
            "D can also be given as C with N"
        )
    for col in inputs:
        bad = table.index[~(table[col] >= 0 if col in NONNEGATIVE else table[col] > 0)]
        if len(bad):
            bound = ">= 0" if col in NONNEGATIVE else "> 0"
            raise DataError(f"input {col!r}: must be {bound}, but {row_numbers(bad, 'points')} are not")
    return table


def _numeric_column(series: pd.Series, col: str) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    not_numbers = series.index[values.isna() & series.notna()]
    if len(not_numbers):
        shown = ", ".join(repr(series[i]) for i in not_numbers[:5])
        raise DataError(f"column {col!r}: {row_numbers(not_numbers)} are not numbers ({shown})")
    missing = series.index[series.isna()]
    if len(missing):
        raise DataError(f"column {col!r}: {row_numbers(missing)} are empty or NaN")
    values = values.astype(float)
    infinite = series.index[~np.isfinite(values)]
    if len(infinite):
        raise DataError(f"column {col!r}: {row_numbers(infinite)} are infinite")
    return values


def _derive(table: pd.DataFrame, notes: list[str]) -> None:
    has = set(table.columns)
    if {"N", "C"} <= has and "D" not in has:
        table["D"] = table["C"] / (6.0 * table["N"])
        notes.append("D (training tokens) was derived as C / (6 N), the standard dense-transformer FLOP count")
    elif {"N", "D"} <= has and "C" not in has:
        table["C"] = 6.0 * table["N"] * table["D"]
        notes.append("C (training FLOPs) was derived as 6 N D")


_SILENCE = "If this is deliberate, silence it with warnings.filterwarnings('ignore', category=bayescale.{})."


def _warn_units(table: pd.DataFrame) -> None:
    for col, (floor, hint) in _UNIT_FLOORS.items():
        if col in table.columns and table[col].max() < floor:
            warn_user(
                f"column {col!r}: every value is below {floor:g} (largest {table[col].max():g}); "
                f"bayescale expects a raw count. If these are {hint}, convert them first. "
                + _SILENCE.format("UnitsWarning"),
                UnitsWarning,
            )
    if "loss" in table.columns and table["loss"].min() > PERPLEXITY_FLOOR:
        warn_user(
            f"column 'loss': every value is above {PERPLEXITY_FLOOR:g} (smallest {table['loss'].min():.3g}); "
            "cross-entropy losses in nats rarely are. If these are perplexities, give loss = ln(perplexity). "
            + _SILENCE.format("UnitsWarning"),
            UnitsWarning,
        )


def _warn_perplexity_name(name: str) -> None:
    """A loss column named like a perplexity (``val_ppl``, ``Perplexity``) probably holds e^loss, not a loss in nats."""
    if re.search(r"perplex|(?<![a-z])ppl(?![a-z])", name, re.IGNORECASE):
        warn_user(
            f"the loss column {name!r} is named like a perplexity: bayescale fits losses in nats (the laws and "
            "their priors are for them). If it holds perplexities, give loss = ln(perplexity). "
            + _SILENCE.format("UnitsWarning"),
            UnitsWarning,
        )


def _warn_duplicates(table: pd.DataFrame) -> None:
    """Identical rows are usually a table concatenated twice; each would count as another run."""
    repeated = table.index[table.duplicated(keep="first")]
    if len(repeated):
        warn_user(
            f"{row_numbers(repeated)} repeat earlier rows exactly (every column); each counts as another "
            "run, which overstates the evidence. Drop them unless they are genuine repeats. "
            + _SILENCE.format("DataWarning"),
            DataWarning,
        )


def is_curves(frame: pd.DataFrame) -> bool:
    """A checkpoint table: extrapolation is measured along each run."""
    return {"run", "step"} <= set(frame.columns)
