"""bayescale: Bayesian inference of neural scaling laws.

    import bayescale as bs
    runs = bs.datasets.synthetic_sweep(seed=0)
    fit = bs.fit(runs, "chinchilla")
    fit.summary()
    fit.predict(N=7e10, D=1.4e12)
"""

__version__ = "0.1.0"

from . import datasets  # noqa: E402
from .backtesting import Candidate, backtest  # noqa: E402
from .comparison import compare, predict_stacked  # noqa: E402
from .data import Runs, load_runs  # noqa: E402
from .errors import BayescaleError, DataError, FormulaError, SamplerWarning, UnitsWarning  # noqa: E402
from .fit import Fit, fit  # noqa: E402
from .laws import Law, catalog, get_law  # noqa: E402
from .predict import grid  # noqa: E402
from .priors import Prior  # noqa: E402
from .sweep import fit_many  # noqa: E402

load = Fit.load

__all__ = ["BayescaleError", "Candidate", "DataError", "Fit", "backtest", "compare", "FormulaError", "Law", "Prior", "Runs", "SamplerWarning",
           "UnitsWarning", "catalog", "datasets", "fit", "fit_many", "get_law", "grid", "load", "load_runs", "predict_stacked", "__version__"]
