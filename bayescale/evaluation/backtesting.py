"""Leave-future-out backtests: fit on the smaller runs, forecast the larger ones, score the forecasts.

A holdout rule picks the "future": a comparison on a column (``"N >= 2.9e9"``, ``"C > 1e21 and
D > 1e10"``) or the top share of a column (``"top 10% C"``). Each candidate (a law, with fit options
such as a likelihood or pooling) is fitted on the rest as one task of :mod:`bayescale.parallel.executor`
(local worker processes or a Dask cluster), and scored on the held-out
runs by the coverage of its 50/80/90% predictive intervals, the median absolute relative error of
its median forecast, and the held-out log predictive density (a proper score: higher is better).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from bayescale import defaults
from bayescale.data.filters import parse_filter
from bayescale.data.runs import CANONICAL, Runs, RunsSource, column_list, count_parameters, load_runs, prepare_points
from bayescale.errors import BayescaleError, DataError

LEVELS = (0.5, 0.8, 0.9)
#: the group of a backtest that is not split by a column
ALL = "all"
#: quantiles of the coverage a right forecast shows (:func:`coverage_if_right`)
COVERAGE_RANGE = (0.05, 0.95)
HOLDOUT_USAGE = (
    "a holdout looks like 'N >= 2.9e9', 'C > 1e21 and D > 1e10', \"data == 'rpj' and N >= 1e9\" or 'top 10% C'"
)
_TOP = re.compile(r"^\s*top\s+(?P<pct>[0-9.]+)\s*%\s*(?:of\s+)?(?P<col>\w+)\s*$", re.IGNORECASE)


def holdout_mask(frame: pd.DataFrame, rule: str, aliases: Mapping[str, str] | None = None) -> np.ndarray:
    """Which rows a holdout rule selects; errors when it selects nothing or everything.

    Parameters
    ----------
    frame : pandas.DataFrame
        The runs table, with the columns the rule names (canonical names, such as ``N``, ``D``, ``C``).
    rule : str
        A row filter (:mod:`bayescale.data.filters`, the language of ``where``): comparisons of a
        column with a number or quoted text joined by ``and``, ``or``, ``not`` (``"N >= 2.9e9"``,
        ``"C > 1e21 and D > 1e10"``, ``"data == 'rpj' and N >= 1e9"``), or a top share of a column
        (``"top 10% C"``, also ``"top 10% of C"``): the rows at or above that column's ``1 - share``
        quantile.
    aliases : dict of str to str, optional
        Other names for columns of ``frame`` (the user's name -> the canonical one), which the rule may use.

    Returns
    -------
    numpy.ndarray
        Boolean, one entry per row of ``frame`` in order: True for a held-out run (the "future"),
        False for one to fit on. At least one of each.

    Raises
    ------
    BayescaleError
        If the rule cannot be read, a top share is not strictly between 0 and 100%, or the rule
        selects none or all of the runs.
    DataError
        If the rule names a column that ``frame`` does not have.
    """
    mask = _rule_mask(frame, rule, aliases)
    if not mask.any():
        raise BayescaleError(f"holdout {rule!r} selects none of the {len(frame)} runs: nothing to forecast")
    if mask.all():
        raise BayescaleError(f"holdout {rule!r} selects all {len(frame)} runs: nothing left to fit on")
    return mask


def _rule_mask(frame: pd.DataFrame, rule: str, aliases: Mapping[str, str] | None = None) -> np.ndarray:
    """The rows a holdout rule selects (any number of them); errors for a rule that cannot be read or applied."""
    match = _TOP.match(rule)
    if not match:
        return parse_filter(rule, "holdout", HOLDOUT_USAGE).mask(frame, aliases, "holdout")
    column, pct = match.group("col"), float(match.group("pct"))
    column = column if column in frame.columns else (aliases or {}).get(column, column)
    if column not in frame.columns:
        raise DataError(f"holdout {rule!r}: no column {column!r}; the runs have {column_list(frame.columns, [column])}")
    if not 0 < pct < 100:
        raise BayescaleError(f"holdout {rule!r}: the share must be between 0 and 100%")
    values = frame[column].to_numpy(dtype=float)
    return values >= np.quantile(values, 1 - pct / 100)


def rule_columns(rule: str) -> list[str]:
    """The columns a holdout rule names."""
    match = _TOP.match(rule)
    return [match.group("col")] if match else parse_filter(rule, "holdout", HOLDOUT_USAGE).columns


@dataclass
class Candidate:
    """One way to forecast: a law and the fit options to use with it (likelihood, pooling, priors...).

    Parameters
    ----------
    law : str
        A catalog law name (``"chinchilla"``) or the path of a law card.
    options : dict, optional
        Keyword arguments of :func:`bayescale.fit` for this law, such as ``{"likelihood": "normal"}``
        or ``{"pool": {"E": "model"}}``; they override the sampling settings the batch gives every fit.
    label : str, optional
        Its name in results; default the law's name (a card's file stem) followed by the options,
        as in ``"chinchilla (likelihood=normal)"``.
    """

    law: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if not self.label:
            extras = ", ".join(f"{k}={v}" for k, v in self.options.items())
            self.label = f"{Path(self.law).stem}" + (f" ({extras})" if extras else "")


def as_candidates(laws: Sequence[Candidate | str], what: str) -> tuple[list[Candidate], list[str]]:
    """Laws as distinct :class:`Candidate` objects, and the group columns their pooling needs."""
    candidates = [law if isinstance(law, Candidate) else Candidate(str(law)) for law in laws]
    if not candidates:
        raise BayescaleError(f"a {what} needs at least one law")
    labels = [c.label for c in candidates]
    if len(set(labels)) != len(labels):
        raise BayescaleError(f"{what} laws must differ; got {', '.join(labels)}")
    return candidates, sorted({col for c in candidates for col in (c.options.get("pool") or {}).values()})


def candidates_scale(candidates: Sequence[Candidate], what: str) -> str:
    """The one observation scale (a card's ``scale``, ``"log"`` or ``"raw"``) of the candidates' laws, which reads
    the runs; laws on different scales are refused (their log densities are of different quantities)."""
    from bayescale.laws.card import get_law

    scales = {c.label: get_law(c.law).scale for c in candidates}
    if len(set(scales.values())) > 1:
        listed = ", ".join(f"{label}: {scale}" for label, scale in scales.items())
        raise BayescaleError(
            f"{what} laws observe the loss on different scales ({listed}; a card's scale): their log densities "
            f"are not comparable; run one {what} per scale"
        )
    return next(iter(scales.values()))


def interval_score(actual, lower, upper, prob: float) -> np.ndarray:
    """Interval score of central ``prob`` intervals (Gneiting and Raftery 2007), relative to the actual loss (its size).

    The width, plus 2/(1 - prob) times the distance by which the actual value falls outside: a
    proper score (lower is better) that rewards narrow bands only while they hold.
    """
    actual, lower, upper = (np.asarray(a, dtype=float) for a in (actual, lower, upper))
    alpha = 1.0 - prob
    score = (upper - lower) + 2 / alpha * np.maximum(lower - actual, 0) + 2 / alpha * np.maximum(actual - upper, 0)
    return score / np.abs(actual)


def score(fit, heldout: Runs, seed: int) -> dict[str, Any]:
    """Forecast the held-out runs with ``fit`` (their N counted as the fit counts it) and score the forecasts."""
    heldout = count_parameters(heldout, fit.settings.get("params", "total"))
    inputs = list(dict.fromkeys([*fit.law.inputs, *(p.column for p in fit.spec.pooled.values())]))
    points = heldout.frame[inputs]
    loss = heldout["loss"]
    per_level = {level: fit.predict(points, ci_prob=level, seed=seed) for level in LEVELS}
    forecast = per_level[0.9]
    coverage = {
        str(level): float(np.mean((p["pred_lower"] <= loss) & (loss <= p["pred_upper"])))
        for level, p in per_level.items()
    }
    rel_error = np.abs(forecast["median"].to_numpy() / loss - 1)
    interval = float(np.mean(interval_score(loss, forecast["pred_lower"], forecast["pred_upper"], 0.9)))
    lpd = heldout_lpd(fit, heldout, seed)
    expected = coverage_if_right(fit, points, seed)
    runs = heldout.frame[inputs].copy()
    runs.insert(0, "row", np.asarray(heldout.frame.index) + 1)  # the user's file row, counted from 1
    runs["loss"] = loss
    runs["median"] = forecast["median"].to_numpy()
    runs["pred_lower"] = forecast["pred_lower"].to_numpy()
    runs["pred_upper"] = forecast["pred_upper"].to_numpy()
    runs["inside_90"] = (runs["pred_lower"] <= loss) & (loss <= runs["pred_upper"])
    return {
        "coverage": coverage,
        "coverage_if_right": expected,
        "median_abs_rel_error": float(np.median(rel_error)),
        "interval_score_90": interval,
        "heldout_lpd": lpd,
        "runs": runs,
        "diagnostics": fit.diagnostics.to_dict(),
    }


def coverage_if_right(fit, points: pd.DataFrame, seed: int, levels=LEVELS) -> dict[str, list[float]]:
    """The range (:data:`COVERAGE_RANGE`) of the coverage these bands show if the forecast is right.

    Held-out runs share their extrapolation error (one discrepancy per draw for a sweep, one per
    run along a learning curve), so the share of them inside a band varies far more from one
    dataset to the next than it would for independent points: 27 runs beyond the data that err
    together are nearly all inside or all outside. Coverage outside the range is evidence against
    the forecast; coverage off the nominal level but inside the range is not.
    """
    shares = replicate_coverage(fit, points, seed, levels)
    return {str(level): [round(float(q), 3) for q in np.quantile(shares[level], COVERAGE_RANGE)] for level in levels}


def replicate_coverage(fit, points: pd.DataFrame, seed: int, levels=LEVELS) -> dict[float, np.ndarray]:
    """Per joint posterior predictive draw taken as the truth: the share of ``points`` inside each band.

    The bands are :func:`~bayescale.forecast.predict.predict`'s (same draws, same seed), so over the draws
    this is the distribution of the coverage a calibrated forecast shows on these points.
    """
    from bayescale.forecast.predict import loss_draws

    table = prepare_points(points, fit.law.inputs)
    inside: dict[float, Any] = {level: 0 for level in levels}  # then per-draw counts (arrays)
    counted = 0
    for _, y in loss_draws(fit, table, seed):
        for level in levels:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a point with no valid draw: outside, as in predict
                lower, upper = np.nanquantile(y, [(1 - level) / 2, (1 + level) / 2], axis=0)
            inside[level] = inside[level] + np.sum((lower <= y) & (y <= upper), axis=1)
        counted += y.shape[1]
    return {level: inside[level] / counted for level in levels}


def heldout_lpd(fit, heldout: Runs, seed: int) -> float:
    """Sum over held-out runs of log mean_draws p(loss | draw); a group the fit never saw is drawn from its population."""
    from bayescale.forecast.predict import flat_draws, law_mean, params_at

    rng = np.random.default_rng(seed)
    params = flat_draws(fit)
    params = {**params, **params_at(fit, params, heldout.frame, rng)}
    mu = law_mean(fit, {n: params[n] for n in fit.law.param_names}, heldout.frame)  # on the fit's observation scale
    if fit.discrepancy is not None:
        mu = fit.discrepancy.widen(mu, heldout.frame, seed)
    noise = fit.spec.noise_at(params, heldout)
    with np.errstate(all="ignore"):
        pointwise = fit.likelihood.logpdf(fit.law.observation.observe(heldout["loss"])[None, :], mu, noise)
    return float(np.sum(logsumexp(pointwise, axis=0) - np.log(pointwise.shape[0])))


def fit_candidate(candidate: dict, settings: dict, frame: RunsSource):
    """Fit a candidate (as ``asdict(Candidate)``) to a runs table in a worker; the fit and its sampler warnings."""
    from bayescale.errors import SamplerWarning
    from bayescale.fitting.pipeline import fit

    chosen = Candidate(**candidate)
    keep = sorted(set((chosen.options.get("pool") or {}).values()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplerWarning)
        result = fit(load_runs(frame, keep=keep), chosen.law, **{**settings, **chosen.options})  # its own win
    return result, [str(w.message) for w in caught if issubclass(w.category, SamplerWarning)]


def fit_and_score(candidate: dict, settings: dict, train: RunsSource, heldout: RunsSource) -> dict:
    """One backtest task (runs in a worker): fit ``candidate`` on ``train``, score it on ``heldout``.

    Returns plain data (JSON-ready), with the sampler warnings the fit raised.
    """
    result, caught = fit_candidate(candidate, settings, train)
    keep = sorted(set((result.settings.get("pool") or {}).values()))
    scored = score(result, load_runs(heldout, keep=keep), settings["seed"])
    scored["warnings"] = caught
    scored["runs"] = json.loads(scored["runs"].to_json(orient="records"))
    return scored


@dataclass
class BacktestResult:
    """Scores of every candidate on the held-out runs; ``table`` ranks them.

    Parameters
    ----------
    holdout : str
        The holdout rule that picked the held-out runs (:func:`holdout_mask`), such as ``"N >= 2.9e9"``.
    n_train : int
        Number of runs every candidate was fitted on (those the rule leaves).
    n_heldout : int
        Number of held-out runs forecast and scored.
    results : dict of str to dict
        Candidate label -> its scores. A candidate whose fit failed has only ``"error"`` (the error
        as text). A scored one has ``"coverage"`` (interval level as text, ``"0.5"``, ``"0.8"``,
        ``"0.9"``, -> share of held-out runs inside that predictive interval), ``"coverage_if_right"``
        (level -> the [low, high] range of coverage a right forecast shows on these runs, the 5% and
        95% quantiles), ``"median_abs_rel_error"`` (median over held-out runs of
        ``|median forecast / loss - 1|``), ``"interval_score_90"`` (mean interval score of the 90%
        predictive interval relative to the loss; lower is better), ``"heldout_lpd"`` (held-out log
        predictive density, in nats; higher is better), ``"runs"`` (a DataFrame of the held-out runs:
        the law's inputs, ``loss``, ``median``, ``pred_lower``, ``pred_upper`` and ``inside_90``),
        ``"warnings"`` (the sampler warnings of the fit, as text) and, from :func:`backtest`,
        ``"diagnostics"`` (the fit's sampler diagnostics as a dict).
    """

    holdout: str
    n_train: int
    n_heldout: int
    results: dict[str, dict[str, Any]]

    @property
    def errors(self) -> dict[str, str]:
        """Candidates whose fit failed, with the error."""
        return {label: r["error"] for label, r in self.results.items() if "error" in r}

    @property
    def table(self) -> pd.DataFrame:
        """Scored candidates ranked by held-out log predictive density (failed ones are in :attr:`errors`)."""
        rows = []
        for label, r in self.results.items():
            if "error" in r:
                continue
            rows.append(
                {
                    "candidate": label,
                    **{f"coverage_{k}": v for k, v in r["coverage"].items()},
                    "median_abs_rel_error": r["median_abs_rel_error"],
                    "interval_score_90": r.get("interval_score_90", np.nan),
                    "heldout_lpd": r["heldout_lpd"],
                }
            )
        table = pd.DataFrame(rows).set_index("candidate").sort_values("heldout_lpd", ascending=False)
        table.insert(0, "rank", np.arange(1, len(table) + 1))
        return table

    def to_dict(self) -> dict[str, Any]:
        """The result as saved: the rule, the numbers of runs, and per law its scores and ``rank`` (or its error)."""
        ranks = self.table["rank"].to_dict() if len(self.results) > len(self.errors) else {}
        return {
            "holdout": self.holdout,
            "n_train": self.n_train,
            "n_heldout": self.n_heldout,
            "laws": [
                {"law": label, "error": r["error"]}
                if "error" in r
                else {
                    "law": label,
                    "rank": ranks.get(label),
                    "coverage": r["coverage"],
                    "coverage_if_right": r.get("coverage_if_right"),
                    "median_abs_rel_error": r["median_abs_rel_error"],
                    "interval_score_90": r.get("interval_score_90"),
                    "heldout_lpd": r["heldout_lpd"],
                    "warnings": r.get("warnings", []),
                    "runs": json.loads(r["runs"].to_json(orient="records")),
                }
                for label, r in self.results.items()
            ],
        }

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically."""
        from bayescale.files import atomic_write

        text = json.dumps(self.to_dict(), indent=1)
        return atomic_write(Path(path), lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> BacktestResult:
        try:
            data = json.loads(Path(path).read_text())
            results = {
                law["law"]: law if "error" in law else {**law, "runs": pd.DataFrame(law["runs"])}
                for law in data["laws"]
            }
            return cls(data["holdout"], data["n_train"], data["n_heldout"], results)
        except (OSError, ValueError, KeyError) as exc:
            raise BayescaleError(f"cannot read backtest result {str(path)!r}: {exc}") from None


@dataclass
class GroupedBacktest:
    """Backtests of each group of a column: the same holdout rules and candidates within every group.

    Parameters
    ----------
    by : str
        The column whose values split the runs into groups.
    backtests : dict of (str, str) to BacktestResult or str
        ``(group, holdout rule)`` -> its backtest, or why that group has none (the rule selects none or
        all of its runs, or every fit failed); groups in sorted order, rules in the order given.
    """

    by: str
    backtests: dict[tuple[str, str], BacktestResult | str]

    @property
    def results(self) -> dict[tuple[str, str], BacktestResult]:
        """The backtests that ran, by ``(group, holdout rule)``."""
        return {key: r for key, r in self.backtests.items() if isinstance(r, BacktestResult)}

    @property
    def errors(self) -> dict[tuple[str, str], str]:
        """Why a ``(group, holdout rule)`` has no backtest."""
        return {key: r for key, r in self.backtests.items() if isinstance(r, str)}

    @property
    def table(self) -> pd.DataFrame:
        """Every group's :attr:`BacktestResult.table`, indexed by group, holdout rule and candidate."""
        parts = [r.table.reset_index().assign(group=g, holdout=rule) for (g, rule), r in self.results.items()]
        return pd.concat(parts).set_index(["group", "holdout", "candidate"])

    def to_dict(self) -> dict[str, Any]:
        """``{"by": column, "groups": [{"group": name, **BacktestResult.to_dict()}, or with "error"]}``."""
        return {
            "by": self.by,
            "groups": [
                {"group": g, "holdout": rule, "error": r} if isinstance(r, str) else {"group": g, **r.to_dict()}
                for (g, rule), r in self.backtests.items()
            ],
        }


def backtest(
    runs: RunsSource,
    candidates: Sequence[Candidate | str],
    holdout: str | Sequence[str],
    *,
    columns: Mapping[str, str] | None = None,
    where: str | None = None,
    by: str | None = None,
    draws: int = defaults.DRAWS,
    tune: int = defaults.TUNE,
    chains: int = defaults.CHAINS,
    seed: int = defaults.SEED,
    cores: int | None = None,
    sampler: str = defaults.SAMPLER,
    target_accept: float = defaults.TARGET_ACCEPT,
    executor: Any = None,
    scheduler: str | None = None,
    processes: int | None = None,
    fail_fast: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult | list[BacktestResult] | GroupedBacktest:
    """Fit every candidate on the runs outside ``holdout`` and score its forecasts of the held-out runs.

    Each (candidate, holdout) fit is one task on an executor (:func:`bayescale.parallel.executor.fan_out`):
    local worker processes by default (``processes``, default one per core), or ``executor=`` (any
    ``concurrent.futures.Executor`` or a Dask ``Client``), or ``scheduler="tcp://host:8786"``. A
    candidate whose fit fails is reported in :attr:`BacktestResult.errors` and the others finish,
    unless ``fail_fast``. Several holdout rules give a list of results, one per rule. The sampling
    settings go to every fit; ``cores`` (per fit) defaults to the machine's cores shared among the workers.

    Parameters
    ----------
    runs : str, pathlib.Path, pandas.DataFrame or Runs
        The runs table: a ``.csv``, ``.tsv`` or ``.parquet`` file, a DataFrame, or
        :class:`~bayescale.data.runs.Runs`.
    candidates : sequence of Candidate or str
        The ways to forecast, at least one, with distinct labels; a string is a catalog law name or
        a law card path, fitted with default options.
    holdout : str or sequence of str
        The rule that picks the held-out runs (:func:`holdout_mask`): a row filter such as
        ``"N >= 2.9e9"`` or ``"C > 1e21 and D > 1e10"``, or a top share (``"top 10% C"``). Several
        rules give one backtest each.
    columns : dict of str to str, optional
        Maps canonical names to the table's column names, such as ``{"N": "Model Size"}``.
    where : str, optional
        Backtest only the runs this row filter keeps (``"data == 'rpj'"``; see :func:`bayescale.load_runs`).
    by : str, optional
        Backtest each group of this column on its own (every group's runs, the holdout rules applied
        within the group); all groups' fits are fanned out together.
    draws : int, default 1000
        Posterior draws per chain in each fit.
    tune : int, default 1000
        Tuning (warm-up) steps per chain in each fit.
    chains : int, default 4
        Chains per fit.
    seed : int, default 20240417
        Seed of every fit and of the forecasts that are scored.
    cores : int, optional
        Sampler cores per fit; default the machine's CPUs divided by the worker processes (at least 1).
    sampler : {"nutpie", "pymc", "numpyro"}, default "nutpie"
        The NUTS implementation used by each fit.
    target_accept : float, default 0.95
        NUTS target acceptance rate, in [0.5, 1).
    executor : concurrent.futures.Executor or distributed.Client, optional
        Where the fits run; default local worker processes. Not together with ``scheduler``.
    scheduler : str, optional
        Address of a Dask scheduler to run the fits on, such as ``"tcp://host:8786"``.
    processes : int, optional
        Local worker processes; default one per CPU, at most one per fit.
    fail_fast : bool, default False
        Cancel the remaining fits at the first failure (they are reported as errors).
    progress : callable, optional
        Called with one line of text (the candidate, its 90% coverage and median error, or its
        error) as each fit ends.

    Returns
    -------
    BacktestResult or list of BacktestResult or GroupedBacktest
        For a single rule given as a string, its :class:`BacktestResult` (``table`` ranks the
        candidates by held-out log predictive density); for a sequence, one result per rule, in order.
        With ``by``, a :class:`GroupedBacktest`: a result per group and rule, and for a group where a rule
        selects none or all of its runs, or every fit failed, that error instead.

    Raises
    ------
    BayescaleError
        If no holdout rule or candidate is given, labels repeat, a rule cannot be read or (without
        ``by``) selects none or all of the runs, or every fit of a rule fails.
    DataError
        If the runs table cannot be read or lacks a column a rule, mapping or pooling names.
    """
    from bayescale.parallel.executor import Task, describe, fan_out, plan_workers

    rules = [holdout] if isinstance(holdout, str) else list(holdout)
    if not rules:
        raise BayescaleError("a backtest needs at least one holdout rule")
    candidates, keep = as_candidates(candidates, "backtest")
    aliases = {theirs: canonical for canonical, theirs in (columns or {}).items()}
    named = {aliases.get(c, c) for rule in rules for c in rule_columns(rule)} - set(CANONICAL)  # text columns too
    scale = candidates_scale(candidates, "backtest")
    loaded = load_runs(runs, columns, keep=sorted({*keep, *named, *([by] if by else [])}), where=where, scale=scale)
    groups = {ALL: loaded} if by is None else loaded.split(by)
    for rule in rules:
        _rule_mask(loaded.frame, rule, aliases)  # a rule that cannot be read fails for every group: raise it once
    splits, failed = {}, {}
    for group, part in groups.items():
        for rule in rules:
            try:
                mask = holdout_mask(part.frame, rule, aliases)
            except BayescaleError as exc:
                if by is None:
                    raise
                failed[(group, rule)] = str(exc)
                continue
            splits[(group, rule)] = (part.subset(~mask, f"not ({rule})"), part.subset(mask, rule))
    if not splits:
        raise BayescaleError(
            f"no group of {by!r} can be backtested: " + "; ".join(f"{g}: {e}" for (g, _), e in failed.items())
        )
    workers, planned_cores = plan_workers(max(len(splits), 1) * len(candidates), processes)
    settings = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seed": seed,
        "progressbar": False,
        "cores": cores or planned_cores,
        "sampler": sampler,
        "target_accept": target_accept,
    }
    tasks: dict[tuple[str, str, str], Task] = {
        (*key, c.label): (fit_and_score, (asdict(c), settings, *split), {})
        for key, split in splits.items()
        for c in candidates
    }

    def report(outcome, done: int, total: int) -> None:
        if progress is None:
            return
        group, rule, label = outcome.key
        where = f"{label}" + (f" on {rule!r}" if len(rules) > 1 else "") + (f" in {by} = {group}" if by else "")
        if outcome.ok:
            r = outcome.result
            progress(
                f"[{done}/{total}] {where}: 90% coverage {r['coverage']['0.9']:.2f}, "
                f"median abs rel error {r['median_abs_rel_error']:.2%}"
            )
        else:
            progress(f"[{done}/{total}] {where}: failed: {describe(outcome.error)}")

    outcomes = fan_out(
        tasks, executor=executor, scheduler=scheduler, max_workers=workers, fail_fast=fail_fast, progress=report
    )
    results: dict[tuple[str, str], BacktestResult | str] = {}
    for group in groups:
        for rule in rules:
            if (group, rule) not in splits:
                results[(group, rule)] = failed[(group, rule)]
                continue
            scored = {}
            for c in candidates:
                outcome = outcomes[(group, rule, c.label)]
                scored[c.label] = (
                    {**outcome.result, "runs": pd.DataFrame(outcome.result["runs"])}
                    if outcome.error is None
                    else {"error": describe(outcome.error)}
                )
            if all("error" in r for r in scored.values()):
                message = f"backtest on {rule!r}: every fit failed: " + "; ".join(
                    f"{label}: {r['error']}" for label, r in scored.items()
                )
                if by is None:
                    raise BayescaleError(message)
                results[(group, rule)] = message
                continue
            train, heldout = splits[(group, rule)]
            results[(group, rule)] = BacktestResult(rule, len(train), len(heldout), scored)
    if by is not None:
        return GroupedBacktest(by, results)
    listed = [results[(ALL, rule)] for rule in rules]
    return listed[0] if isinstance(holdout, str) else listed  # type: ignore[return-value]
