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

#: public name -> the module that defines it
_EXPORTS = {
    "BayescaleError": "errors", "DataError": "errors", "DataWarning": "errors", "ExtrapolationWarning": "errors", "FormulaError": "errors", "SamplerWarning": "errors", "SamplingExtended": "errors",
    "UnitsWarning": "errors", "Candidate": "backtesting", "backtest": "backtesting", "compare": "comparison",
    "predict_stacked": "comparison", "Runs": "data", "load_runs": "data", "Fit": "fitting", "fit": "fitting", "build_model": "fitting", "sample_model": "fitting",
    "Law": "laws", "catalog": "laws", "get_law": "laws", "grid": "predict", "Prior": "priors", "fit_many": "sweep",
}
_MODULES = ("datasets",)

__all__ = sorted([*_EXPORTS, *_MODULES, "load", "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name == "load":
        value = importlib.import_module(".fitting", __name__).Fit.load
    else:
        raise AttributeError(f"module 'bayescale' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
