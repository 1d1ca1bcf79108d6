"""Priors: the one way to say a prior, from Python, a law card or the command line.

A :class:`Prior` is a distribution name and its parameters: the PyMC distribution of that name in
a model (:mod:`bayescale.model.generative`), SciPy's for draws, medians and grids, and the map to and
from an unconstrained real line (PyMC's default transform: the coordinates the sampler works in). Prior text such as
``"LogNormal(mu=-1.2, sigma=0.5)"`` is parsed with :mod:`ast`, never evaluated.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from bayescale.errors import BayescaleError, FormulaError
from bayescale.laws.formula import scipy_stats


@dataclass(frozen=True)
class _Support:
    """Where a distribution lives, and the map from the real line onto it."""

    kind: str  # "real", "positive" or "interval"
    lower: float = -np.inf
    upper: float = np.inf

    def from_unconstrained(self, u, xp):
        """Return (value, log |d value / d u|) for ``u`` on the real line; xp is numpy or pytensor."""
        if self.kind == "real":
            return u, 0.0 * u
        if self.kind == "positive":
            return xp.exp(u), u
        width = self.upper - self.lower
        log_sig, log_one_minus = -_softplus(-u, xp), -_softplus(u, xp)
        return self.lower + width * xp.exp(log_sig), np.log(width) + log_sig + log_one_minus

    def to_unconstrained(self, x, xp=np):
        """The inverse of :meth:`from_unconstrained` (PyMC's default transform of the family)."""
        if xp is np:
            x = np.asarray(x, dtype=float)
        if self.kind == "real":
            return x
        if self.kind == "positive":
            return xp.log(x)
        return xp.log(x - self.lower) - xp.log(self.upper - x)


def _softplus(u, xp):
    if xp is np:
        return np.logaddexp(0.0, u)
    return xp.softplus(u)


@dataclass(frozen=True)
class _Family:
    """One distribution, keyed in :data:`FAMILIES` by its PyMC name: arguments, SciPy form, support.

    ``standard`` (location-scale families used as noise models) draws the family at location 0 and
    scale 1: ``standard(rng, shape, **shape_args)``.
    """

    args: tuple[str, ...]
    positive_args: tuple[str, ...]
    scipy: Callable[..., Any]
    support: Callable[..., _Support]
    pymc_name: str
    standard: Callable[..., Any] | None = None


_REAL = lambda **_: _Support("real")  # noqa: E731
_POSITIVE = lambda **_: _Support("positive")  # noqa: E731

FAMILIES: dict[str, _Family] = {
    "Normal": _Family(
        ("mu", "sigma"),
        ("sigma",),
        lambda mu, sigma: scipy_stats().norm(mu, sigma),
        _REAL,
        "Normal",
        lambda rng, shape: rng.standard_normal(shape),
    ),
    "StudentT": _Family(
        ("nu", "mu", "sigma"),
        ("nu", "sigma"),
        lambda nu, mu, sigma: scipy_stats().t(nu, mu, sigma),
        _REAL,
        "StudentT",
        lambda rng, shape, nu: rng.standard_t(nu, shape),
    ),
    "Laplace": _Family(
        ("mu", "b"),
        ("b",),
        lambda mu, b: scipy_stats().laplace(mu, b),
        _REAL,
        "Laplace",
        lambda rng, shape: rng.laplace(0.0, 1.0, shape),
    ),
    "LogNormal": _Family(
        ("mu", "sigma"),
        ("sigma",),
        lambda mu, sigma: scipy_stats().lognorm(s=sigma, scale=np.exp(mu)),
        _POSITIVE,
        "LogNormal",
    ),
    "HalfNormal": _Family(
        ("sigma",), ("sigma",), lambda sigma: scipy_stats().halfnorm(scale=sigma), _POSITIVE, "HalfNormal"
    ),
    "Gamma": _Family(
        ("alpha", "beta"),
        ("alpha", "beta"),
        lambda alpha, beta: scipy_stats().gamma(alpha, scale=1.0 / beta),
        _POSITIVE,
        "Gamma",
    ),
    "Exponential": _Family(
        ("lam",), ("lam",), lambda lam: scipy_stats().expon(scale=1.0 / lam), _POSITIVE, "Exponential"
    ),
    "Uniform": _Family(
        ("lower", "upper"),
        (),
        lambda lower, upper: scipy_stats().uniform(lower, upper - lower),
        lambda lower, upper: _Support("interval", lower, upper),
        "Uniform",
    ),
    "Beta": _Family(
        ("alpha", "beta"),
        ("alpha", "beta"),
        lambda alpha, beta: scipy_stats().beta(alpha, beta),
        lambda **_: _Support("interval", 0.0, 1.0),
        "Beta",
    ),
}


@dataclass(frozen=True)
class Prior:
    """A prior distribution: ``Prior("LogNormal", mu=-1.2, sigma=0.5)``.

    Parameters
    ----------
    dist : str
        The PyMC name of the distribution: one of Normal, StudentT, Laplace, LogNormal, HalfNormal, Gamma,
        Exponential, Uniform, Beta (:data:`FAMILIES`).
    **params : float
        Every parameter of that distribution by its PyMC name and none other (``mu``, ``sigma`` for
        Normal; ``nu``, ``mu``, ``sigma`` for StudentT, ...); finite numbers, scales and shapes > 0, and
        ``lower < upper`` for Uniform. Stored as floats in ``params``.

    Raises
    ------
    FormulaError
        If the distribution is unknown, or a parameter is missing, unknown or out of range.
    """

    dist: str
    params: Mapping[str, float] = field(default_factory=dict)

    def __init__(self, dist: str, **params: float) -> None:
        family = FAMILIES.get(dist)
        if family is None:
            raise FormulaError(f"unknown prior distribution {dist!r}; allowed: {', '.join(FAMILIES)}")
        missing = [a for a in family.args if a not in params]
        extra = [a for a in params if a not in family.args]
        if missing or extra:
            raise FormulaError(
                f"{dist} takes parameters ({', '.join(family.args)}); "
                + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}")
            )
        values = {}
        for name in family.args:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise FormulaError(f"{dist} parameter {name} must be a number, got {value!r}")
            value = float(value)
            if not np.isfinite(value) or (name in family.positive_args and value <= 0):
                raise FormulaError(f"{dist} needs {name} > 0 and finite, got {value}")
            values[name] = value
        if dist == "Uniform" and not values["lower"] < values["upper"]:
            raise FormulaError(f"Uniform needs lower < upper, got {values['lower']} and {values['upper']}")
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", values)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def parse(cls, spec: PriorSpec) -> Prior | ScaledPrior:
        """Accept a Prior, text like ``"Normal(0.3, 0.1)"``, or a card table ``{dist=..., ...}``.

        Text that refers to the data's range (``X_max``, ``N_min``) gives a :class:`ScaledPrior`.

        Parameters
        ----------
        spec : Prior, ScaledPrior, str or Mapping
            A :class:`Prior` or :class:`ScaledPrior` (returned as it is); text such as
            ``"LogNormal(mu=log(1.69), sigma=0.5)"``, with positional arguments in the family's order
            and constant expressions allowed (parsed, never evaluated as code); or a card table
            ``{"dist": "Normal", "mu": 0, "sigma": 1}``, or ``{"text": "..."}``.

        Returns
        -------
        Prior or ScaledPrior
            The prior; a :class:`ScaledPrior` when the text refers to names like ``X_max``, ``N_min``.

        Raises
        ------
        FormulaError
            If ``spec`` cannot be read as a prior.

        Examples
        --------
        >>> Prior.parse("Normal(0.3, 0.1)")
        Normal(mu=0.3, sigma=0.1)
        """
        if isinstance(spec, (Prior, ScaledPrior)):
            return spec
        if isinstance(spec, Mapping):
            spec = dict(spec)
            if "text" in spec:
                return cls.parse(spec["text"])
            if "dist" not in spec:
                raise FormulaError(f"a prior table needs a 'dist' key (one of {', '.join(FAMILIES)}), got {spec}")
            return cls(spec.pop("dist"), **spec)
        if isinstance(spec, str):
            return cls._parse_text(spec)
        raise FormulaError(f"a prior must be a Prior, a string or a table, got {type(spec).__name__}")

    @overload
    @classmethod
    def _parse_text(cls, text: str, scales: None = None) -> Prior | ScaledPrior: ...
    @overload
    @classmethod
    def _parse_text(cls, text: str, scales: Mapping[str, float]) -> Prior: ...
    @classmethod
    def _parse_text(cls, text: str, scales: Mapping[str, float] | None = None) -> Prior | ScaledPrior:
        from bayescale.laws.formula import (
            _variable_names,
            constant_value,
        )  # numbers like log(400) or 8.8e13 are allowed

        try:
            node = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise FormulaError(f"cannot parse prior {text!r}: {exc.msg}") from None
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise FormulaError(f"a prior looks like 'LogNormal(mu=0, sigma=1)', got {text!r}")
        dist = node.func.id
        family = FAMILIES.get(dist)
        if family is None:
            raise FormulaError(f"unknown prior distribution {dist!r}; allowed: {', '.join(FAMILIES)}")
        if len(node.args) > len(family.args):
            raise FormulaError(f"{dist} takes at most {len(family.args)} parameters ({', '.join(family.args)})")
        args = [*node.args, *(kw.value for kw in node.keywords)]
        if scales is None and any(_SCALE_NAME.match(n) for a in args for n in _variable_names(a)):
            return ScaledPrior(text.strip())
        params = {name: constant_value(arg, text, scales) for name, arg in zip(family.args, node.args)}
        for kw in node.keywords:
            if kw.arg is None:
                raise FormulaError(f"'**' is not allowed in prior {text!r}")
            params[kw.arg] = constant_value(kw.value, text, scales)
        return cls(dist, **params)

    # -- behaviour ----------------------------------------------------------------------------
    @property
    def family(self) -> _Family:
        return FAMILIES[self.dist]

    @cached_property  # frozen; the NumPy log density maps every parameter through it at every evaluation
    def support(self) -> _Support:
        return self.family.support(**self.params)

    def frozen(self) -> Any:  # a frozen scipy.stats distribution
        return self.family.scipy(**self.params)

    def logpdf(self, x: npt.ArrayLike) -> np.ndarray | float:
        """The log-density at ``x`` (SciPy's), for grids and figures; a model's density is PyMC's (:mod:`bayescale.model.generative`)."""
        return self.frozen().logpdf(x)

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] | None) -> np.ndarray:
        return self.frozen().rvs(size=size, random_state=rng)

    def median(self) -> float:
        return float(self.frozen().median())

    def to_dict(self) -> dict[str, Any]:
        return {"dist": self.dist, **self.params}

    def __str__(self) -> str:
        return f"{self.dist}({', '.join(f'{k}={v:g}' for k, v in self.params.items())})"

    __repr__ = __str__


#: names a prior may use for the observed range of an input: ``X_min``, ``N_max``, ...
_SCALE_NAME = re.compile(r"^(?P<column>[A-Za-z]\w*?)_(?P<stat>min|max)$")


@dataclass(frozen=True)
class ScaledPrior:
    """A prior stated relative to the observed range of an input, bound to numbers at fit time.

    ``LogNormal(mu=log(X_max), sigma=1.5)`` puts a break location's median at the largest observed
    X; :meth:`bind` gives the :class:`Prior` for one data set. Used where no fixed number fits
    every data set (the scale of an input differs by orders of magnitude between sweeps).
    """

    text: str

    @property
    def columns(self) -> set[str]:
        return set(m.group("column") for m in map(_SCALE_NAME.match, re.findall(r"[A-Za-z_]\w*", self.text)) if m)

    def bind(self, scales: Mapping[str, float]) -> Prior:
        """The concrete prior; ``scales`` maps names like ``X_max`` to numbers."""
        return Prior._parse_text(self.text, scales)

    def renamed(self, renames: Mapping[str, str]) -> ScaledPrior:
        """The same prior after inputs are bound to columns (``{"X": "D"}``: ``X_max`` -> ``D_max``)."""

        def swap(found: re.Match[str]) -> str:
            match = _SCALE_NAME.match(found.group(0))
            assert match is not None  # the pattern below finds only names of that form
            return f"{renames.get(match.group('column'), match.group('column'))}_{match.group('stat')}"

        return ScaledPrior(re.sub(r"\b([A-Za-z]\w*?)_(min|max)\b", swap, self.text))

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text}

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


#: what :meth:`Prior.parse` reads: a prior, its text, or a card table
PriorSpec = Prior | ScaledPrior | str | Mapping[str, Any]


def fixed_prior(spec: PriorSpec, name: str) -> Prior:
    """``spec`` parsed as a prior in numbers; an error naming ``name`` if it refers to the data's range.

    Only a law parameter's prior may say ``X_max`` or ``X_min`` (it is bound when the law meets the
    data); a noise or group-spread prior must be numbers.

    Parameters
    ----------
    spec : Prior, str or Mapping
        The prior, as :meth:`Prior.parse` takes it.
    name : str
        The parameter the prior is for (``sigma``, ``alpha_sd``), for the error message.

    Returns
    -------
    Prior
        The parsed prior.

    Raises
    ------
    BayescaleError
        When the prior refers to the observed range of an input.
    """
    prior = Prior.parse(spec)
    if isinstance(prior, ScaledPrior):
        raise BayescaleError(
            f"the prior of {name!r} ({prior.text}) refers to the data's range ({', '.join(sorted(prior.columns))}); "
            "only a law parameter's prior may (it is bound when the law meets the data): give numbers"
        )
    return prior
