"""Statistical defaults, in one place, always passed to ArviZ and PyMC explicitly; their checks, the cache folder
and how bayescale compiles PyTensor graphs.

ArviZ's own defaults have changed between releases (ETI 0.89 in 1.x, HDI 0.94 before), so
nothing in bayescale relies on them.
"""

import contextlib
import os
from pathlib import Path

from bayescale.errors import BayescaleError

CI_PROB = 0.90  # probability mass of every credible / predictive interval
CI_KIND = "eti"  # equal-tailed intervals: quantiles, invariant under reparameterisation
DRAWS = 1000  # posterior draws per chain
TUNE = 1000  # tuning (warm-up) steps per chain
CHAINS = 4
CORES = 2  # this project targets 2-core machines; PyMC would pick 1 here
SEED = 20240417
TARGET_ACCEPT = 0.95  # 0.9 left occasional divergences on the Epoch Student-t posterior
SAMPLER = "nutpie"  # see benchmarks/README.md: fewest divergences and least wall time here
LIKELIHOOD = "studentt"
#: the prior of sigma_slope where a fit asks for a noise trend along N (noise_trend=True; off by default:
#: benchmarks/README.md, "Noise that grows with N")
SIGMA_SLOPE_PRIOR = "Normal(mu=0, sigma=0.25)"

RHAT_MAX = 1.01  # above this a parameter is reported as not converged
ESS_MIN = 400  # below this (bulk or tail) a parameter is reported as poorly sampled
EXTEND_FACTOR = 2  # R-hat or ESS short (no divergences): sample again with this many times the draws (and re-whitened)
#: forecasts beyond the observed runs carry a discrepancy calibrated by internal backtests ("none" to turn off)
EXTRAPOLATION = "calibrated"
#: what ``extrapolation`` may be: a sweep also learns a drift per e-fold only with "calibrated-drift"
EXTRAPOLATIONS = ("calibrated", "calibrated-drift", "none")


def cache_dir() -> Path:
    """Where bayescale keeps downloads and compiled samplers: ``$BAYESCALE_CACHE``, else ``~/.cache/bayescale``."""
    return Path(os.environ.get("BAYESCALE_CACHE", Path.home() / ".cache" / "bayescale"))


def check_ci_prob(ci_prob: float) -> float:
    """``ci_prob`` as a float, or a clear error when it is not a probability strictly between 0 and 1."""
    if not (isinstance(ci_prob, (int, float)) and 0 < ci_prob < 1):
        raise BayescaleError(f"ci_prob must be a probability strictly between 0 and 1, got {ci_prob!r}")
    return float(ci_prob)


@contextlib.contextmanager
def reproducible_compilation():
    """Compile PyTensor graphs with Numba's fastmath off, so a seed gives the same draws in every process.

    With fastmath, LLVM may reassociate and contract arithmetic differently when a function is
    compiled in one piece (cold compile cache) than when its parts are loaded from the on-disk
    cache (warm): log-densities then differ at 1e-14 and NUTS amplifies that into different draws.
    Without fastmath both give the same bits; sampling speed on our models is unchanged (measured
    in ``benchmarks/README.md``). Scoped to bayescale's own compiles, the user's settings elsewhere
    are left alone.
    """
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=False):
        yield
