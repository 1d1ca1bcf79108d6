"""bayescale: Bayesian inference of neural scaling laws.

    import bayescale as bs
    runs = bs.datasets.synthetic_sweep(seed=0)
    fit = bs.fit(runs, "chinchilla")
    fit.summary()
    fit.predict(N=7e10, D=1.4e12)

The public names load on first use (PEP 562), so ``bayescale laws`` and ``--help`` do not pay for
PyMC, ArviZ and matplotlib.
"""

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it (functions first: ``bs.predict(fit, ...)``; ``Fit``'s methods
#: are conveniences over the same functions)
_EXPORTS = {
    **dict.fromkeys(
        [
            "BayescaleError",
            "DataError",
            "DataWarning",
            "ExtrapolationWarning",
            "FormulaError",
            "SamplerWarning",
            "SamplingExtended",
            "UnitsWarning",
        ],
        "errors",
    ),
    **dict.fromkeys(["Law", "catalog", "get_law"], "laws.card"),
    "Prior": "laws.priors",
    **dict.fromkeys(["Runs", "load_runs", "read_table", "filter_table"], "data.runs"),
    **dict.fromkeys(["Fit"], "fitting.result"),
    **dict.fromkeys(["fit", "build_model", "sample_model"], "fitting.pipeline"),
    **dict.fromkeys(["predict", "grid"], "forecast.predict"),
    **dict.fromkeys(["plan", "frontier", "candidates", "marginal_value"], "forecast.plan"),
    "Budget": "forecast.budget",
    "summary": "forecast.summary",
    "check": "forecast.checks",
    **dict.fromkeys(
        ["sensitivity", "forecast_sensitivity", "identifiability", "plan_sensitivity", "tune_sensitivity"],
        "forecast.sensitivity",
    ),
    "stacked_sensitivity": "forecast.joint_sensitivity",
    "tune": "forecast.tuning",
    "break_table": "forecast.derived",
    **dict.fromkeys(["design", "Design"], "forecast.design"),
    **dict.fromkeys(
        ["Candidate", "backtest", "BacktestResult", "GroupedBacktest", "holdout_mask"], "evaluation.backtesting"
    ),
    **dict.fromkeys(
        ["compare", "predict_stacked", "plan_stacked", "verdict", "against_backtest"], "evaluation.comparison"
    ),
    "backtest_tuning": "evaluation.tuning_backtest",
    "fit_many": "evaluation.sweep",
    "design_replay": "evaluation.design_replay",
    **dict.fromkeys(
        ["load_checkpoints", "fit_curves", "forecast_curves", "compare_schedules", "peak_rate_variants"],
        "curves.learning_curves",
    ),
    "fit_metric": "downstream.metric",
    "chained": "downstream.chain",
    **dict.fromkeys(["build_report", "build_downstream_report", "build_sweep_report", "write_report"], "viz.report"),
}
#: public modules: ``bs.datasets.synthetic_sweep()``, ``bs.plots.forecast_fan(fit)``
_MODULES = {"datasets": "data.datasets", "plots": "viz.plots", "downstream": "downstream"}

__all__ = sorted([*_EXPORTS, *_MODULES, "load", "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)
    elif name == "load":
        value = importlib.import_module(".fitting.result", __name__).Fit.load
    else:
        raise AttributeError(f"module 'bayescale' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
