"""Row filters: one small language for every rule that picks runs out of a table.

``data == 'starcoder'``, ``N >= 1e9 and data != 'c4'``, ``data in ['rpj', 'c4']``,
``not (N < 1e8 or loss > 5)``, ```Model Size` > 1e8`` (a column whose name is not a Python name goes
in backticks). It serves ``where=`` / ``--where`` wherever a runs table is read
(:func:`bayescale.load_runs`) and the holdout rules of backtests
(:func:`bayescale.holdout_mask`). The text is parsed with :mod:`ast` into a small tree, never
evaluated: each condition compares one column with a number or quoted text (``==``, ``!=``, ``<``,
``<=``, ``>``, ``>=``, or ``in`` / ``not in`` a list), and conditions join with ``and``, ``or``,
``not`` and parentheses. Function calls, attributes, arithmetic and anything else are refused.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.errors import BayescaleError, DataError, column_list, row_numbers

#: what a filter looks like, for error messages
USAGE = (
    "a filter compares columns with numbers or quoted text, joined by and, or, not and parentheses: "
    "\"data == 'rpj'\", \"N >= 1e9 and data != 'c4'\", \"data in ['rpj', 'c4']\", \"`Model Size` > 1e8\""
)
_OPERATORS: dict[type, tuple[str, Callable]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}
#: the operator with its sides swapped: ``1e9 <= N`` is ``N >= 1e9``
_MIRROR = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}
_REFUSED = {
    ast.Call: "a function call",
    ast.Attribute: "attribute access",
    ast.BinOp: "arithmetic",
    ast.Subscript: "indexing",
    ast.Lambda: "a lambda",
    ast.NamedExpr: "an assignment",
}

type Value = float | str


@dataclass(frozen=True)
class Comparison:
    """``column op value``, or ``column in values`` (``negated``: ``not in``)."""

    column: str
    op: type  # an ast comparison operator class; ast.In for membership
    value: Value | tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Combined:
    """``and`` (``all_of``) or ``or`` of the parts."""

    parts: tuple[Condition, ...]
    all_of: bool


@dataclass(frozen=True)
class Negation:
    part: Condition


type Condition = Comparison | Combined | Negation


@dataclass(frozen=True)
class Filter:
    """A parsed filter: its ``text`` as given, and its ``condition`` tree."""

    text: str
    condition: Condition

    @property
    def columns(self) -> list[str]:
        """The column names the filter refers to, in order of appearance."""
        return list(dict.fromkeys(_columns(self.condition)))

    @property
    def is_or(self) -> bool:
        """Whether the top-level join is ``or`` (then the filter needs parentheses after another one's ``and``)."""
        return isinstance(self.condition, Combined) and not self.condition.all_of

    def mask(self, frame: pd.DataFrame, aliases: Mapping[str, str] | None = None, what: str = "where") -> np.ndarray:
        """Which rows of ``frame`` the filter keeps (boolean, in row order).

        A name refers to a column of ``frame``, or through ``aliases`` (another name -> a column of
        ``frame``) to one; ``what`` names the filter in errors (``"where"``, ``"holdout"``).
        """
        names = {str(c): c for c in frame.columns}
        for alias, column in (aliases or {}).items():
            if column in frame.columns:
                names.setdefault(str(alias), column)
        for name in self.columns:
            if name not in names:
                raise DataError(f"{what} {self.text!r}: no column {name!r}; the runs have {column_list(names, [name])}")
        return np.asarray(self._evaluate(self.condition, frame, names, what), dtype=bool)

    def _evaluate(self, node: Condition, frame: pd.DataFrame, names: dict, what: str) -> np.ndarray:
        if isinstance(node, Negation):
            return ~self._evaluate(node.part, frame, names, what)
        if isinstance(node, Combined):
            masks = [self._evaluate(part, frame, names, what) for part in node.parts]
            return np.logical_and.reduce(masks) if node.all_of else np.logical_or.reduce(masks)
        series = frame[names[node.column]]
        wanted = node.value if isinstance(node.value, tuple) else (node.value,)
        values = (
            _numbers(series, node.column, self.text, what)
            if isinstance(wanted[0], float)
            else _text(series, node.column, wanted[0], self.text, what)
        )
        if values.dtype == object and node.op not in (ast.In, ast.Eq, ast.NotEq):
            raise DataError(
                f"{what} {self.text!r}: column {node.column!r} holds text; compare it with ==, != or in, "
                f"not {_OPERATORS[node.op][0]}"
            )
        if node.op is ast.In:
            found = np.isin(values, np.asarray(wanted, dtype=values.dtype))
            return ~found if node.negated else found
        with np.errstate(invalid="ignore"):
            return np.asarray(_OPERATORS[node.op][1](values, node.value), dtype=bool)


def _columns(node: Condition) -> Iterable[str]:
    if isinstance(node, Comparison):
        yield node.column
    elif isinstance(node, Negation):
        yield from _columns(node.part)
    else:
        for part in node.parts:
            yield from _columns(part)


def _numbers(series: pd.Series, column: str, text: str, what: str) -> np.ndarray:
    """The column as floats (empty cells NaN, which no comparison but != keeps); text in it is an error."""
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=float)
    values = pd.to_numeric(series, errors="coerce")
    words = series.index[values.isna() & series.notna()]
    if len(words) == series.notna().sum() and len(words):
        raise DataError(
            f"{what} {text!r}: column {column!r} holds text ({', '.join(repr(v) for v in series[words].unique()[:3])}), "
            f"not numbers; compare it with quoted text, as in {written(column)} == {str(series[words[0]])!r}"
        )
    if len(words):
        raise DataError(
            f"{what} {text!r}: column {column!r} is compared with a number, but {row_numbers(words)} are not "
            f"numbers ({', '.join(repr(v) for v in series[words][:3])})"
        )
    return values.to_numpy(dtype=float)


def _text(series: pd.Series, column: str, example: str, text: str, what: str) -> np.ndarray:
    """The column as text (empty cells never equal a text); a column of numbers is an error."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        raise DataError(
            f"{what} {text!r}: column {column!r} holds numbers, not text; compare it with a number, not "
            f"the text {example!r}"
        )
    return series.astype(object).where(series.notna(), None).to_numpy()


def parse_filter(text: str, what: str = "where", usage: str = USAGE) -> Filter:
    """Parse a filter (see the module's doc); ``what`` and ``usage`` name it and show an example in errors.

    Raises
    ------
    BayescaleError
        If the text cannot be read: a syntax error, or anything but comparisons of a column with a
        number or quoted text joined by ``and``, ``or``, ``not`` (a call, attribute, arithmetic...).
    """
    if not isinstance(text, str) or not text.strip():
        raise BayescaleError(f"{what} {text!r} is empty: {usage}")
    source, backticked = _backticks(text, what, usage)
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError:
        hint = " (compare with ==, not =)" if re.search(r"(?<![=!<>])=(?!=)", source) else ""
        raise BayescaleError(f"cannot parse {what} {text!r}{hint}: {usage}") from None
    return Filter(text, _Reader(text, what, usage, backticked).condition(tree))


def _backticks(text: str, what: str, usage: str) -> tuple[str, dict[str, str]]:
    """``text`` with each backticked name (outside quotes) replaced by a placeholder identifier."""
    out: list[str] = []
    names: dict[str, str] = {}
    quote, i = None, 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                out.append(text[i : i + 2])
                i += 2
                continue
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise BayescaleError(f"cannot parse {what} {text!r}: a backtick is not closed: {usage}")
            placeholder = f"_bayescale_column_{len(names)}_"
            names[placeholder] = text[i + 1 : end]
            out.append(f" {placeholder} ")
            i = end + 1
            continue
        out.append(char)
        i += 1
    return "".join(out), names


@dataclass
class _Reader:
    """Turns an :mod:`ast` expression into a :data:`Condition`, refusing every other kind of node."""

    text: str
    what: str
    usage: str
    backticked: dict[str, str]

    def refuse(self, why: str) -> BayescaleError:
        return BayescaleError(f"cannot read {self.what} {self.text!r}: {why}; {self.usage}")

    def condition(self, node: ast.expr) -> Condition:
        if isinstance(node, ast.BoolOp):
            return Combined(tuple(self.condition(v) for v in node.values), isinstance(node.op, ast.And))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return Negation(self.condition(node.operand))
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            parts = [self.comparison(a, op, b) for a, op, b in zip(operands, node.ops, operands[1:])]
            return parts[0] if len(parts) == 1 else Combined(tuple(parts), True)
        if isinstance(node, ast.Name) or self.is_value(node):
            raise self.refuse(f"{ast.unparse(node)} alone is not a condition (compare it, as in N >= 1e9)")
        raise self.refuse(f"{self.kind(node)} is not allowed")

    def kind(self, node: ast.AST) -> str:
        return next((name for cls, name in _REFUSED.items() if isinstance(node, cls)), type(node).__name__)

    def column(self, node: ast.expr) -> str | None:
        return self.backticked.get(node.id, node.id) if isinstance(node, ast.Name) else None

    def is_value(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Constant) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
        )

    def value(self, node: ast.expr) -> Value:
        sign, inner = 1.0, node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign, inner = (-1.0 if isinstance(node.op, ast.USub) else 1.0), node.operand
        if isinstance(inner, ast.Constant) and not isinstance(inner.value, bool):
            if isinstance(inner.value, (int, float)):
                return sign * float(inner.value)
            if isinstance(inner.value, str) and inner is node:
                return inner.value
        if isinstance(inner, ast.Name):
            raise self.refuse(f"{inner.id} is not a value (quote text: {inner.id!r})")
        refused = "" if isinstance(inner, ast.Constant) else f": {self.kind(inner)} is not allowed"
        raise self.refuse(f"{ast.unparse(node)} is not a number or quoted text{refused}")

    def comparison(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> Comparison:
        if isinstance(op, (ast.In, ast.NotIn)):
            column = self.column(left)
            if column is None:
                raise self.refuse(f"'in' needs a column on its left, got {ast.unparse(left)}")
            if not isinstance(right, (ast.List, ast.Tuple, ast.Set)) or not right.elts:
                raise self.refuse(f"'in' needs a list of values on its right, as in {column} in ['a', 'b']")
            values = tuple(self.value(v) for v in right.elts)
            if len({type(v) for v in values}) > 1:
                raise self.refuse(f"the list after 'in' mixes numbers and text: {ast.unparse(right)}")
            return Comparison(column, ast.In, values, negated=isinstance(op, ast.NotIn))
        if type(op) not in _OPERATORS:
            raise self.refuse(f"{type(op).__name__} is not a comparison it knows (==, !=, <, <=, >, >=, in, not in)")
        column = self.column(left)
        if column is not None:
            return Comparison(column, type(op), self.value(right))
        column = self.column(right)
        if column is None:
            for side in (left, right):
                if not self.is_value(side):
                    raise self.refuse(f"{self.kind(side)} is not allowed")
            raise self.refuse(f"{ast.unparse(left)} {_OPERATORS[type(op)][0]} {ast.unparse(right)} names no column")
        return Comparison(column, _MIRROR[type(op)], self.value(left))


def select(
    frame: pd.DataFrame, text: str, *, aliases: Mapping[str, str] | None = None, what: str = "where", usage: str = USAGE
) -> np.ndarray:
    """Which rows of ``frame`` the filter ``text`` keeps: :func:`parse_filter`, then :meth:`Filter.mask`."""
    return parse_filter(text, what, usage).mask(frame, aliases, what)


def narrowed(source: str, text: str) -> str:
    """A table's description with one more filter: ``runs.csv`` -> ``runs.csv where data == 'rpj'``, then ``... and ...``."""
    try:
        plain = not parse_filter(text).is_or
    except BayescaleError:  # a rule of another kind ('top 10% C')
        plain = False
    part = text.strip() if plain else f"({text.strip()})"
    return f"{source} and {part}" if " where " in source else f"{source} where {part}"


def written(column: str) -> str:
    """A column's name as a filter writes it: as it is, or in backticks when it is not a Python name."""
    return column if column.isidentifier() else f"`{column}`"


def text_literal(value) -> str:
    """A value as a filter writes it: ``'rpj'`` for text, ``1e+09`` for a number (a group's condition)."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return f"{float(value):g}"
    return repr(str(value))
