"""The safe formula compiler.

A law's formula (``"E + A / N**alpha + B / D**beta"``) is parsed once with :mod:`ast` and checked
against a whitelist: numbers, names, ``+ - * / **``, unary minus and a few functions. The checked
tree is then evaluated by walking it, with NumPy functions for prediction (works on xarray objects,
so posterior draws broadcast against new inputs) or PyTensor functions for the PyMC model. Formula
text never reaches ``eval`` or ``exec``.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bayescale.errors import FormulaError


@functools.cache
def scipy_special():
    """``scipy.special``, imported on first use (``bayescale laws`` need not load SciPy), then a cached lookup."""
    from scipy import special

    return special


@functools.cache
def scipy_stats():
    """``scipy.stats``, imported on first use (0.5 s that ``bayescale laws`` need not pay), then a cached lookup."""
    from scipy import stats

    return stats


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}

#: function name -> number of arguments
FUNCTIONS = {
    "exp": 1,
    "log": 1,
    "log1p": 1,
    "expm1": 1,
    "log10": 1,
    "sqrt": 1,
    "abs": 1,
    "tanh": 1,
    "sigmoid": 1,
    "softplus": 1,
    "minimum": 2,
    "maximum": 2,
}

_NUMPY = {
    "exp": np.exp,
    "log": np.log,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "log10": np.log10,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "tanh": np.tanh,
    "sigmoid": lambda x: scipy_special().expit(x),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "minimum": np.minimum,
    "maximum": np.maximum,
}

_ALLOWED_TEXT = "numbers, names, + - * / **, unary minus, parentheses and the functions " + ", ".join(FUNCTIONS)


def _pytensor_functions() -> dict[str, Any]:
    import pytensor.tensor as pt

    return {
        "exp": pt.exp,
        "log": pt.log,
        "log1p": pt.log1p,
        "expm1": pt.expm1,
        "log10": pt.log10,
        "sqrt": pt.sqrt,
        "abs": pt.abs,
        "tanh": pt.tanh,
        "sigmoid": pt.sigmoid,
        "softplus": pt.softplus,
        "minimum": pt.minimum,
        "maximum": pt.maximum,
    }


def _check(node: ast.AST, text: str) -> None:
    """Raise FormulaError unless every node of the tree is on the whitelist."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise FormulaError(f"in {text!r}: only numbers are allowed as constants, got {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise FormulaError(f"in {text!r}: names may not start with '_' ({node.id!r})")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise FormulaError(
                f"in {text!r}: operator {type(node.op).__name__} is not allowed; allowed are {_ALLOWED_TEXT}"
            )
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise FormulaError(f"in {text!r}: operator {type(node.op).__name__} is not allowed")
        _check(node.operand, text)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            _check(node.func, text)  # reports the attribute access or lambda being called
            raise FormulaError(f"in {text!r}: only named functions can be called ({', '.join(FUNCTIONS)})")
        name = node.func.id
        if name not in FUNCTIONS:
            raise FormulaError(f"in {text!r}: unknown function {name!r}; allowed functions are " + ", ".join(FUNCTIONS))
        if node.keywords or len(node.args) != FUNCTIONS[name]:
            raise FormulaError(f"in {text!r}: {name}() takes {FUNCTIONS[name]} positional argument(s)")
        for arg in node.args:
            _check(arg, text)
    elif isinstance(node, ast.Attribute):
        raise FormulaError(
            f"in {text!r}: attribute access ({ast.unparse(node)}) is not allowed; allowed are {_ALLOWED_TEXT}"
        )
    else:
        raise FormulaError(f"in {text!r}: {type(node).__name__} is not allowed; allowed are {_ALLOWED_TEXT}")


def _parse(text: str) -> ast.AST:
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("a formula must be a non-empty string")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(f"cannot parse formula {text!r}: {exc.msg}") from None
    _check(tree, text)
    return tree


def _evaluate(node: ast.AST, env: Mapping[str, Any], functions: Mapping[str, Any]):
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, (int, float))  # guaranteed by _check
        return float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, env, functions), _evaluate(node.right, env, functions))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, env, functions))
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)  # guaranteed by _check
    return functions[node.func.id](*(_evaluate(a, env, functions) for a in node.args))


def _variable_names(tree: ast.AST) -> frozenset[str]:
    """Names a checked tree reads as variables (function names in calls excluded)."""
    functions = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in functions)


def constant_value(node: ast.AST, text: str, env: Mapping[str, float] | None = None) -> float:
    """Evaluate a checked expression whose only names are in ``env`` (prior parameters like ``log(400)``)."""
    _check(node, text)
    env = env or {}
    names = sorted(_variable_names(node) - set(env))
    if names:
        allowed = f"; allowed names are {', '.join(sorted(env))}" if env else ""
        raise FormulaError(f"in {text!r}: prior parameters must be numbers, found name(s) {', '.join(names)}{allowed}")
    return float(_evaluate(node, env, _NUMPY))


class Formula:
    """A parsed, checked formula; evaluate it with :meth:`numpy` or :meth:`pytensor`."""

    def __init__(self, text: str):
        self.text = text.strip()
        self._tree = _parse(self.text)
        self.names = _variable_names(self._tree)

    def check_names(self, allowed: Mapping[str, str] | set[str], context: str) -> None:
        """Raise FormulaError naming any name the formula uses that is not in ``allowed``."""
        unknown = sorted(self.names - set(allowed))
        if unknown:
            raise FormulaError(
                f"{context}: unknown name(s) {', '.join(repr(u) for u in unknown)} in formula "
                f"{self.text!r}; allowed names are {', '.join(sorted(allowed))}"
            )

    def numpy(self, env: Mapping[str, Any]):
        """Evaluate with NumPy ufuncs; arrays and xarray objects broadcast as usual."""
        return _evaluate(self._tree, env, _NUMPY)

    def pytensor(self, env: Mapping[str, Any]):
        """Build the PyTensor graph of the formula from tensors in ``env``."""
        return _evaluate(self._tree, env, _pytensor_functions())

    def terms(self) -> list[Formula]:
        """The top-level additive terms (``E``, ``A / N**alpha``, ``B / D**beta``); a subtracted term is negated.

        A formula that is not a sum is its own single term.
        """
        terms: list[ast.expr] = []

        def split(node: ast.expr, negate: bool) -> None:
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
                split(node.left, negate)
                split(node.right, negate != isinstance(node.op, ast.Sub))
            else:
                terms.append(ast.UnaryOp(ast.USub(), node) if negate else node)

        split(self._tree, False)  # type: ignore[arg-type]  # _parse returns an expression
        return [Formula(ast.unparse(term).replace(" ** ", "**")) for term in terms]

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"
