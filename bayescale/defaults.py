"""Statistical defaults, in one place, always passed to ArviZ and PyMC explicitly; and bayescale's cache folder.

ArviZ's own defaults have changed between releases (ETI 0.89 in 1.x, HDI 0.94 before), so
nothing in bayescale relies on them.
"""

import os
from pathlib import Path

CI_PROB = 0.90          # probability mass of every credible / predictive interval
CI_KIND = "eti"         # equal-tailed intervals: quantiles, invariant under reparameterisation
DRAWS = 1000            # posterior draws per chain
TUNE = 1000             # tuning (warm-up) steps per chain
CHAINS = 4
CORES = 2               # this project targets 2-core machines; PyMC would pick 1 here
SEED = 20240417
TARGET_ACCEPT = 0.95   # 0.9 left occasional divergences on the Epoch Student-t posterior
SAMPLER = "nutpie"      # see benchmarks/README.md: fewest divergences and least wall time here
LIKELIHOOD = "studentt"
#: the prior of sigma_slope where a fit asks for a noise trend along N (noise_trend=True; off by default:
#: benchmarks/README.md, "Noise that grows with N")
SIGMA_SLOPE_PRIOR = "Normal(mu=0, sigma=0.25)"

RHAT_MAX = 1.01         # above this a parameter is reported as not converged
ESS_MIN = 400           # below this (bulk or tail) a parameter is reported as poorly sampled
EXTEND_FACTOR = 2       # R-hat or ESS short (no divergences): sample again with this many times the draws (and re-whitened)
#: forecasts beyond the observed runs carry a discrepancy calibrated by internal backtests ("none" to turn off)
EXTRAPOLATION = "calibrated"


def cache_dir() -> Path:
    """Where bayescale keeps downloads and compiled samplers: ``$BAYESCALE_CACHE``, else ``~/.cache/bayescale``."""
    return Path(os.environ.get("BAYESCALE_CACHE", Path.home() / ".cache" / "bayescale"))
