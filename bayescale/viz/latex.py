"""A law's formula as LaTeX (for reports), from the same checked syntax tree the compiler uses.

``E + A / N**alpha`` becomes ``E + \\frac{A}{N^{\\alpha}}``. Names follow the papers' notation:
``alphaN`` -> alpha_N, ``Nc`` -> N_c, ``d1`` -> d_1, ``Rstar`` -> R^*.
"""

from __future__ import annotations

import ast
import re

_GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "kappa", "lambda", "mu", "nu", "sigma", "tau", "theta")
_PRECEDENCE = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Pow: 4}
_FUNCTIONS = {
    "exp": r"\exp",
    "log": r"\log",
    "log10": r"\log_{10}",
    "tanh": r"\tanh",
    "log1p": r"\operatorname{log1p}",
    "expm1": r"\operatorname{expm1}",
    "sigmoid": r"\sigma",
    "softplus": r"\operatorname{softplus}",
    "minimum": r"\min",
    "maximum": r"\max",
}


def name_latex(name: str) -> str:
    """``alphaN`` -> ``\\alpha_{N}``, ``Nc`` -> ``N_{c}``, ``c0`` -> ``c_{0}``, ``Rstar`` -> ``R^{*}``."""
    if name.endswith("star") and len(name) > 4:
        return name_latex(name[:-4]) + "^{*}"
    for greek in _GREEK:
        if name.startswith(greek):
            rest = name[len(greek) :].lstrip("_")
            return rf"\{greek}" + (f"_{{{rest}}}" if rest else "")
    match = re.fullmatch(r"([A-Za-z])_?([A-Za-z0-9]+)", name)
    if match and len(name) > 1:
        return f"{match.group(1)}_{{{match.group(2)}}}"
    return name if len(name) == 1 else rf"\mathrm{{{name}}}"


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    mantissa, exponent = f"{value:.4g}".partition("e")[::2]
    return rf"{mantissa} \times 10^{{{int(exponent)}}}" if exponent else mantissa


def _latex(node: ast.AST, parent: int = 0) -> str:
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, (int, float))  # guaranteed by the formula check: numbers only
        return _number(node.value)
    if isinstance(node, ast.Name):
        return name_latex(node.id)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.UAdd):  # +x is x
            return _latex(node.operand, parent)
        inner = _latex(node.operand, 3)
        return rf"\left(-{inner}\right)" if parent > 1 else f"-{inner}"
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)  # guaranteed by the formula check: named functions only
        args = ", ".join(_latex(a) for a in node.args)
        if node.func.id == "sqrt":
            return rf"\sqrt{{{args}}}"
        if node.func.id == "abs":
            return rf"\left|{args}\right|"
        return rf"{_FUNCTIONS[node.func.id]}\left({args}\right)"
    assert isinstance(node, ast.BinOp)  # guaranteed by the formula check: nothing else is left
    precedence = _PRECEDENCE[type(node.op)]
    if isinstance(node.op, ast.Div):
        return rf"\frac{{{_latex(node.left)}}}{{{_latex(node.right)}}}"
    if isinstance(node.op, ast.Pow):
        base = _latex(node.left)
        if isinstance(node.left, (ast.BinOp, ast.UnaryOp)):
            base = rf"\left({base}\right)"
        return f"{base}^{{{_latex(node.right)}}}"
    leading_minus = isinstance(node.op, ast.Mult) and isinstance(node.left, ast.UnaryOp)
    left = _latex(node.left, 1 if leading_minus else precedence)
    right = _latex(node.right, precedence + (1 if isinstance(node.op, ast.Sub) else 0))
    if isinstance(node.op, ast.Mult):
        text = rf"{left} \cdot {right}" if right[:1].isdigit() else rf"{left}\,{right}"
    else:
        text = f"{left} {'+' if isinstance(node.op, ast.Add) else '-'} {right}"
    return rf"\left({text}\right)" if precedence < parent else text


def formula_latex(text: str) -> str:
    """LaTeX for a formula (already checked by :class:`bayescale.laws.formula.Formula`)."""
    return _latex(ast.parse(text.strip(), mode="eval").body)
