"""Laws: a parsed law card (inputs, formula, one prior per parameter) and the catalog in ``models/``.

A card is what a researcher writes on a whiteboard and nothing else::

    name = "chinchilla"
    inputs = ["N", "D"]
    formula = "E + A / N**alpha + B / D**beta"
    [params.E]
    prior = "LogNormal(mu=log(1.69), sigma=0.5)"
    reference = { value = 1.69, source = "Hoffmann et al. 2022" }

Nothing in the engine is specific to one law: a user's own law is a card file on disk or
``Law.from_formula("E + A * N**(-alpha)", priors={...})``.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bayescale.errors import BayescaleError, FormulaError
from bayescale.laws.formula import Formula
from bayescale.laws.likelihood import LIKELIHOODS, ObservationScale, get_scale
from bayescale.laws.priors import Prior, ScaledPrior, fixed_prior

#: the parameter :meth:`Law.with_run_offset` adds
RUN_OFFSET = "run_offset"
#: input names that :meth:`Law.from_formula` recognises without being told
KNOWN_INPUTS = ("N", "D", "C", "U", "X", "step", "tokens")
#: what a law's formula gives (see Law.kind)
KINDS = ("loss", "metric")
#: a formula's name for the centre of an input's data (``N_mid``: the geometric mean of the fitted runs' N),
#: bound to a number when the law meets its runs (:meth:`Law.bind_data`)
MID = "_mid"


def _substitute(formula: Formula, names: Mapping[str, str | float]) -> Formula:
    """``formula`` with names renamed (a str value) or replaced by numbers (a float value)."""
    if not set(names) & formula.names:
        return formula
    tree = ast.parse(formula.text, mode="eval")

    class Swap(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.expr:
            new = names.get(node.id)
            if new is None:
                return node
            return ast.Name(new, node.ctx) if isinstance(new, str) else ast.Constant(float(new))

    return Formula(ast.unparse(Swap().visit(tree)))


@dataclass(frozen=True)
class Param:
    """One law parameter: its prior and, where published, the reference value and its source."""

    name: str
    prior: Prior | ScaledPrior
    reference: float | None = None
    source: str | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prior": self.prior.to_dict(), "description": self.description}
        if self.reference is not None:
            out["reference"] = {"value": self.reference, "source": self.source or ""}
        return out


@dataclass(frozen=True)
class Derived:
    """A quantity computed from the parameters, e.g. the slope after a break: ``-(c0 + c1)``."""

    name: str
    formula: Formula
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"formula": self.formula.text, "description": self.description}


@dataclass(frozen=True)
class Law:
    """A scaling law: named inputs, a formula for the loss, and a prior for every parameter.

    Usually read from a card (:func:`get_law`) or built with :meth:`from_formula`; the fields are checked
    against each other on construction.

    Parameters
    ----------
    name : str
        The law's name, e.g. ``"chinchilla"``.
    inputs : tuple of str
        The data columns the formula reads, e.g. ``("N", "D")``; the first is the one a noise trend
        (``noise_trend=True``) runs along.
    formula : Formula
        The parsed formula of the loss (or, for ``kind="metric"``, of the metric) in the inputs and parameters.
    params : Mapping[str, Param]
        Parameter name -> its :class:`Param` (prior, and the published reference value and source, if any).
    title : str, default ""
        A human-readable title for reports.
    source : str, default ""
        Where the law comes from, e.g. ``"Hoffmann et al. 2022"``.
    description : str, default ""
        A sentence or two about the law, for reports and ``bayescale laws``.
    card_path : str, optional
        The card file the law was read from; None for a law built in Python. Not compared by ``==``.
    derived : Mapping[str, Derived], default {}
        Quantities computed from the parameters (e.g. the slope after a break), by name.
    breaks : Mapping[str, str], default {}
        Break location (a parameter or derived quantity) -> the input it lies along.
    anchor : str, optional
        A parameter that enters the formula additively (a loss floor), which the sampler reaches through
        the loss at the data's centre.
    run_effect : tuple of str, default ()
        For learning curves: the parameters that vary by run in a joint fit of many runs.
    kind : str, default "loss"
        What the formula gives: ``"loss"`` (a scaling law) or ``"metric"`` (a downstream accuracy from the
        loss, which must then be an input).
    scale : str, default "log"
        What a fit observes: ``"log"``, the log of the loss with the law's log as its mean (noise relative to
        the loss), or ``"raw"``, the loss column's value itself with the law's value as its mean (a target
        that may be zero or negative; noise in its units). See :class:`~bayescale.laws.likelihood.ObservationScale`.
    noise : Mapping[str, Prior], default {}
        Priors of noise parameters (``sigma``, ``nu``) that replace the likelihood's and the scale's defaults;
        a fit's own ``priors=`` replace these in turn.

    Raises
    ------
    FormulaError
        If the fields disagree: an input that is also a parameter, a name the formula does not use or
        uses undeclared, a break, anchor or run effect that is not a parameter, an unknown ``kind``, ...
    """

    name: str
    inputs: tuple[str, ...]
    formula: Formula
    params: Mapping[str, Param]
    title: str = ""
    source: str = ""
    description: str = ""
    card_path: str | None = field(default=None, compare=False)
    derived: Mapping[str, Derived] = field(default_factory=dict)
    #: break locations (a parameter or derived quantity) -> the input they lie along
    breaks: Mapping[str, str] = field(default_factory=dict)
    #: an additive loss floor that the sampler reaches through the loss at the data's centre (see model.py)
    anchor: str | None = None
    #: for learning curves: the parameters that vary by run in a joint fit of many runs (bayescale.curves.learning_curves)
    run_effect: tuple[str, ...] = ()
    #: what the formula gives: "loss" (a scaling law), or "metric" (a downstream accuracy from the loss,
    #: bayescale.downstream)
    kind: str = "loss"
    #: what a fit observes: "log" (log-loss) or "raw" (the loss column's value itself); see ObservationScale
    scale: str = "log"
    #: priors of noise parameters (sigma, nu) in place of the likelihood's and the scale's defaults
    noise: Mapping[str, Prior] = field(default_factory=dict)

    def __post_init__(self):
        context = f"law {self.name!r}"
        get_scale(self.scale, context)
        known_noise = {n for lik in LIKELIHOODS.values() for n in lik.noise_params}
        stray_noise = sorted(set(self.noise) - known_noise)
        if stray_noise:
            raise FormulaError(
                f"{context}: noise prior(s) for {', '.join(stray_noise)}; the likelihoods' noise parameters are "
                f"{', '.join(sorted(known_noise))}"
            )
        if not self.inputs:
            raise FormulaError(f"{context}: a law needs at least one input (for example N, D or C)")
        clash = sorted(set(self.inputs) & set(self.params))
        if clash:
            raise FormulaError(f"{context}: {', '.join(clash)} cannot be both an input and a parameter")
        mids = {i + MID for i in self.inputs}
        self.formula.check_names(set(self.inputs) | set(self.params) | mids, context)
        for pname, param in self.params.items():
            if isinstance(param.prior, ScaledPrior) and not param.prior.columns <= set(self.inputs):
                raise FormulaError(
                    f"{context}: the prior of {pname!r} ({param.prior}) refers to the range of "
                    f"{', '.join(sorted(param.prior.columns - set(self.inputs)))}, which is not an "
                    f"input; inputs are {', '.join(self.inputs)}"
                )
        for dname, quantity in self.derived.items():
            if dname in self.params or dname in self.inputs:
                raise FormulaError(f"{context}: derived quantity {dname!r} clashes with a parameter or input")
            quantity.formula.check_names(set(self.params) | mids, f"{context}, derived quantity {dname!r}")
        for where, along in self.breaks.items():
            if where not in self.params and where not in self.derived:
                raise FormulaError(f"{context}: break location {where!r} is neither a parameter nor a derived quantity")
            if along not in self.inputs:
                raise FormulaError(
                    f"{context}: break {where!r} lies along {along!r}, which is not an input ({', '.join(self.inputs)})"
                )
        if self.kind not in KINDS:
            raise FormulaError(f"{context}: kind {self.kind!r} is not known; use one of {', '.join(KINDS)}")
        if self.kind == "metric" and "loss" not in self.inputs:
            raise FormulaError(
                f"{context}: a metric law maps the loss to a downstream metric, so 'loss' must be "
                f"an input (inputs are {', '.join(self.inputs)})"
            )
        if self.anchor is not None:
            self._check_anchor(context)
        stray = [n for n in self.run_effect if n not in self.params]
        if stray:
            raise FormulaError(
                f"{context}: run_effect names {', '.join(stray)}, which are not parameters ({', '.join(self.params)})"
            )
        unused = [n for n in (*self.inputs, *self.params) if n not in self.formula.names]
        if unused:
            raise FormulaError(f"{context}: {', '.join(unused)} declared but not used in formula {self.formula.text!r}")

    def _check_anchor(self, context: str) -> None:
        """The anchor must be a parameter that enters the formula additively (loss = anchor + rest)."""
        assert self.anchor is not None  # called only for a law with an anchor
        if self.anchor not in self.params:
            raise FormulaError(f"{context}: anchor {self.anchor!r} is not a parameter ({', '.join(self.params)})")
        rng = np.random.default_rng(0)
        env = {n: rng.uniform(0.5, 2.0, 3) for n in (*self.inputs, *self.params, *(i + MID for i in self.inputs))}
        with np.errstate(all="ignore"):
            shifted = self.formula.numpy({**env, self.anchor: env[self.anchor] + 1.0}) - self.formula.numpy(env)
        if not np.allclose(shifted, 1.0):
            raise FormulaError(
                f"{context}: anchor {self.anchor!r} must enter the formula additively "
                f"(loss = {self.anchor} + ...), as a loss floor does"
            )

    @property
    def observation(self) -> ObservationScale:
        """What a fit of this law observes of each run (log-loss or the loss itself) and how it converts back."""
        return get_scale(self.scale)

    def require_log_scale(self, what: str, why: str) -> None:
        """Refuse ``what`` (a step that works on log-loss, because ``why``) for a law fitted on the raw target."""
        if not self.observation.is_log:
            raise BayescaleError(
                f'{what} cannot use law {self.name!r}, fitted on the raw target scale (the card\'s scale = "raw"): '
                f"{why}"
            )

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, card: Mapping[str, Any], card_path: str | None = None) -> Law:
        where = card_path or "law card"
        noise = {}
        for nname, table in (card.get("noise") or {}).items():
            if not isinstance(table, Mapping) or "prior" not in table:
                raise FormulaError(f'{where}: noise parameter {nname!r} needs a prior, e.g. prior = "HalfNormal(0.1)"')
            try:
                noise[nname] = fixed_prior(table["prior"], nname)
            except BayescaleError as exc:
                raise FormulaError(f"{where}: noise prior of {nname!r}: {exc}") from None
        for key in ("name", "inputs", "formula", "params"):
            if key not in card:
                raise FormulaError(f"{where}: missing key {key!r} (a card needs name, inputs, formula, params)")
        params = {}
        for pname, table in card["params"].items():
            if not isinstance(table, Mapping) or "prior" not in table:
                raise FormulaError(f'{where}: parameter {pname!r} needs a prior, e.g. prior = "Normal(0, 1)"')
            try:
                prior = Prior.parse(table["prior"])
            except FormulaError as exc:
                raise FormulaError(f"{where}: prior of {pname!r}: {exc}") from None
            ref = table.get("reference") or {}
            params[pname] = Param(pname, prior, ref.get("value"), ref.get("source"), table.get("description", ""))
        derived = {}
        for dname, table in (card.get("derived") or {}).items():
            if not isinstance(table, Mapping) or "formula" not in table:
                raise FormulaError(f"{where}: derived quantity {dname!r} needs a formula")
            derived[dname] = Derived(dname, Formula(table["formula"]), table.get("description", ""))
        return cls(
            name=str(card["name"]),
            inputs=tuple(card["inputs"]),
            formula=Formula(card["formula"]),
            params=params,
            title=card.get("title", ""),
            source=card.get("source", ""),
            description=card.get("description", ""),
            card_path=card_path,
            derived=derived,
            breaks=dict(card.get("breaks") or {}),
            anchor=card.get("anchor"),
            run_effect=tuple(card.get("run_effect") or ()),
            kind=str(card.get("kind", "loss")),
            scale=str(card.get("scale", "log")),
            noise=noise,
        )

    @classmethod
    def from_card(cls, path: str | Path) -> Law:
        path = Path(path)
        try:
            card = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise BayescaleError(f"law card {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise FormulaError(f"law card {str(path)!r} is not valid TOML: {exc}") from None
        return cls.from_dict(card, card_path=str(path))

    @classmethod
    def from_formula(
        cls,
        formula: str,
        priors: Mapping[str, Any],
        *,
        inputs: tuple[str, ...] | None = None,
        name: str = "custom",
        title: str = "",
        scale: str = "log",
    ) -> Law:
        """A law from a formula string; names in ``inputs`` (default: N, D, C, ... found in it) are data.

        Parameters
        ----------
        formula : str
            The loss as a Python expression, e.g. ``"E + A * N**(-alpha)"`` (parsed and checked, never
            evaluated as code).
        priors : Mapping[str, Prior or str or Mapping]
            Parameter name -> its prior, in any form :meth:`Prior.parse` accepts (``"Normal(0, 1)"``); every
            name in the formula that is not an input needs one, and every name given must appear in it.
        inputs : tuple of str, optional
            The names that are data columns. None (default): those of N, D, C, U, X, step, tokens that the
            formula uses, in that order.
        name : str, default "custom"
            The law's name.
        title : str, default ""
            A title for reports; empty: the formula text.
        scale : {"log", "raw"}, default "log"
            What a fit observes: log-loss, or the loss column's value itself (see :class:`Law`).

        Returns
        -------
        Law
            A law of kind ``"loss"`` without references, breaks, anchor or run effect.

        Raises
        ------
        FormulaError
            If the formula cannot be parsed, a parameter has no prior, a prior cannot be read, or a name
            is declared but not used.

        Examples
        --------
        >>> law = Law.from_formula("E + A * N**(-alpha)", {"E": "HalfNormal(2)", "A": "LogNormal(3, 2)",
        ...                        "alpha": "Beta(2, 5)"})
        >>> law.inputs
        ('N',)
        """
        parsed = Formula(formula)
        if inputs is None:
            inputs = tuple(n for n in KNOWN_INPUTS if n in parsed.names)
        missing = sorted(parsed.names - set(inputs) - {i + MID for i in inputs} - set(priors))
        if missing:
            raise FormulaError(
                f"law {name!r}: no prior given for parameter(s) {', '.join(missing)}; "
                f"pass priors={{name: 'Normal(0, 1)', ...}} for every non-input name"
            )
        params = {}
        for pname, spec in priors.items():
            try:
                params[pname] = Param(pname, Prior.parse(spec))
            except FormulaError as exc:
                raise FormulaError(f"law {name!r}: prior of {pname!r}: {exc}") from None
        return cls(name=name, inputs=tuple(inputs), formula=parsed, params=params, title=title or formula, scale=scale)

    # -- variants ------------------------------------------------------------------------------
    def with_priors(self, overrides: Mapping[str, Any] | None) -> Law:
        """A copy with some priors replaced; names must be parameters of this law."""
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise BayescaleError(
                f"law {self.name!r} has no parameter(s) {', '.join(unknown)}; "
                f"its parameters are {', '.join(self.params)}"
            )
        params = dict(self.params)
        for pname, spec in overrides.items():
            try:
                params[pname] = replace(params[pname], prior=Prior.parse(spec))
            except FormulaError as exc:
                raise FormulaError(f"prior of {pname!r}: {exc}") from None
        return replace(self, params=params)

    def with_inputs(self, renames: Mapping[str, str] | None) -> Law:
        """Bind generic inputs to columns, e.g. ``{"X": "D"}`` for the saturating law in D."""
        if not renames:
            return self
        unknown = sorted(set(renames) - set(self.inputs))
        if unknown:
            raise BayescaleError(
                f"law {self.name!r} has no input(s) {', '.join(unknown)}; its inputs are {', '.join(self.inputs)}"
            )
        inputs = tuple(renames.get(i, i) for i in self.inputs)
        names = {**renames, **{k + MID: v + MID for k, v in renames.items()}}
        params = {
            n: replace(p, prior=p.prior.renamed(renames)) if isinstance(p.prior, ScaledPrior) else p
            for n, p in self.params.items()
        }
        bound = ", ".join(f"{k}={v}" for k, v in renames.items())
        return replace(
            self,
            name=f"{self.name}[{bound}]",
            inputs=inputs,
            formula=_substitute(self.formula, names),
            params=params,
            derived={n: replace(d, formula=_substitute(d.formula, names)) for n, d in self.derived.items()},
            breaks={k: renames.get(v, v) for k, v in self.breaks.items()},
        )

    def with_run_offset(self) -> Law:
        """The law plus ``run_offset``: a run's additive deviation from it, meant to be pooled by run.

        Its card-level prior is the prior of the population value, pinned at zero (the law itself is
        the population's curve); the spread between runs is ``run_offset_sd``.
        """
        if RUN_OFFSET in self.params:
            return self
        param = Param(
            RUN_OFFSET,
            Prior.parse("Normal(mu=0, sigma=0.001)"),
            description="a run's additive deviation from the law (nats), pooled by run",
        )
        return replace(
            self,
            name=f"{self.name}+{RUN_OFFSET}",
            formula=Formula(f"({self.formula.text}) + {RUN_OFFSET}"),
            params={**self.params, RUN_OFFSET: param},
        )

    def bind_data(self, columns: Mapping[str, np.ndarray]) -> Law:
        """Turn priors stated relative to the data (``X_max``) and centres in formulas (``N_mid``) into numbers for these runs."""
        law = self._bind_mids(columns)
        if not any(isinstance(p.prior, ScaledPrior) for p in law.params.values()):
            return law
        scales = {}
        for name in self.inputs:
            values = np.asarray(columns[name], dtype=float)
            scales[f"{name}_min"], scales[f"{name}_max"] = float(values.min()), float(values.max())
        params = {
            n: replace(p, prior=p.prior.bind(scales)) if isinstance(p.prior, ScaledPrior) else p
            for n, p in law.params.items()
        }
        return replace(law, params=params)

    def _bind_mids(self, columns: Mapping[str, np.ndarray]) -> Law:
        """Replace ``X_mid`` in the formula and derived quantities by the geometric mean of input X over the runs."""
        used = (self.formula.names | {n for d in self.derived.values() for n in d.formula.names}) & {
            i + MID for i in self.inputs
        }
        if not used:
            return self
        mids = {}
        for name in sorted(used):
            values = np.asarray(columns[name.removesuffix(MID)], dtype=float)
            if not np.all(values > 0):
                raise BayescaleError(
                    f"law {self.name!r} centres its formula at {name} (the geometric mean of "
                    f"{name.removesuffix(MID)}), which needs every value > 0; found {values[~(values > 0)][0]:g}"
                )
            mids[name] = float(
                f"{np.exp(np.mean(np.log(values))):.4g}"
            )  # a round reference: the formula stays readable
        return replace(
            self,
            formula=_substitute(self.formula, mids),
            derived={n: replace(d, formula=_substitute(d.formula, mids)) for n, d in self.derived.items()},
        )

    # -- use -----------------------------------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "description": self.description,
            "inputs": list(self.inputs),
            "formula": self.formula.text,
            "params": {n: p.to_dict() for n, p in self.params.items()},
            "derived": {n: d.to_dict() for n, d in self.derived.items()},
            "breaks": dict(self.breaks),
            **({"anchor": self.anchor} if self.anchor else {}),
            **({"run_effect": list(self.run_effect)} if self.run_effect else {}),
            **({"scale": self.scale} if self.scale != "log" else {}),
            **({"noise": {n: {"prior": p.to_dict()} for n, p in self.noise.items()}} if self.noise else {}),
        }

    def __str__(self) -> str:
        return f"{self.name}: L({', '.join(self.inputs)}) = {self.formula.text}"


def models_dir() -> Path:
    """The catalog folder: inside the installed wheel, or ``models/`` of a source checkout."""
    packaged = Path(str(resources.files("bayescale"))) / "models"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "models"


def catalog() -> dict[str, Law]:
    """Every law card shipped with bayescale, by name.

    Returns
    -------
    dict[str, Law]
        Law name -> law, read afresh from the ``.toml`` cards of the catalog folder (:func:`models_dir`),
        in file-name order.
    """
    laws = [Law.from_card(p) for p in sorted(models_dir().glob("*.toml"))]
    return {law.name: law for law in laws}


def get_law(spec: Law | str | Path, inputs: Mapping[str, str] | None = None) -> Law:
    """A Law from a Law, a catalog name, or a path to a card file; ``inputs`` binds generic inputs.

    Parameters
    ----------
    spec : Law, str or pathlib.Path
        A :class:`Law` (used as it is), the path of a card file (a name ending in ``.toml``, or an
        existing file), or the name of a card in the catalog (:func:`catalog`), e.g. ``"chinchilla"``.
    inputs : Mapping[str, str], optional
        Generic input -> column, e.g. ``{"X": "D"}`` for the saturating law in D; the law's name then
        records the binding (``"saturating[X=D]"``). See :meth:`Law.with_inputs`.

    Returns
    -------
    Law
        The law, its inputs bound.

    Raises
    ------
    BayescaleError
        If the name is not in the catalog, the card file does not exist, or ``inputs`` names an input the
        law does not have.
    FormulaError
        If the card is not valid TOML or does not describe a valid law.
    """
    if isinstance(spec, Law):
        law = spec
    elif str(spec).endswith(".toml") or Path(str(spec)).is_file():
        law = Law.from_card(spec)
    else:
        laws = catalog()
        if spec not in laws:
            raise BayescaleError(
                f"unknown law {spec!r}; the catalog has {', '.join(laws)} (or give the path of a .toml card)"
            )
        law = laws[spec]
    return law.with_inputs(inputs)
