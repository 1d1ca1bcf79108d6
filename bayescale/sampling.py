"""Run a NUTS sampler on a built PyMC model and return the posterior of the named parameters.

``nutpie`` is the default: on the whitened models of :mod:`bayescale.model` it had no
divergences in every run we measured at target_accept 0.95 and the least wall time per fit
(see ``benchmarks/README.md``). ``pymc`` (PyMC's own NUTS) and ``numpyro`` (needs JAX) are the
alternatives, selected by name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import warnings

from .errors import BayescaleError

SAMPLERS = ("pymc", "nutpie", "numpyro")


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


def check_settings(*, sampler: str, draws: int, tune: int, chains: int, cores: int, target_accept: float) -> None:
    """Raise a clear error for impossible sampler settings."""
    if sampler not in SAMPLERS:
        raise BayescaleError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler == "numpyro" and importlib.util.find_spec("numpyro") is None:
        raise BayescaleError("sampler 'numpyro' needs JAX and NumPyro: pip install jax numpyro")
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1), ("cores", cores, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise BayescaleError(f"{name} must be a whole number >= {low}, got {value!r}")
    if not 0.5 <= target_accept < 1.0:
        raise BayescaleError(f"target_accept must be in [0.5, 1), got {target_accept}")


def draw_posterior(model, var_names: list[str], *, sampler: str, draws: int, tune: int, chains: int,
                   cores: int, seed: int, target_accept: float, progressbar: bool):
    """Sample ``model`` and return the DataTree (posterior restricted to ``var_names``).

    The progress bar is drawn on stderr, and only when stderr is a terminal: stdout stays clean for
    pipes and ``--json``, and logs and notebooks get no frozen progress tables.
    """
    import pymc as pm

    check_settings(sampler=sampler, draws=draws, tune=tune, chains=chains, cores=cores,
                   target_accept=target_accept)
    with warnings.catch_warnings():
        # implementation chatter, not sampler trouble (that is diagnosed in bayescale.diagnostics):
        warnings.filterwarnings("ignore", message=".*fork\\(\\) may lead to deadlocks.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="overflow encountered", category=RuntimeWarning)
        with contextlib.redirect_stdout(sys.stderr), reproducible_compilation():  # progress tables print to stdout
            idata = pm.sample(draws, tune=tune, chains=chains, cores=min(cores, chains), random_seed=seed,
                              nuts_sampler=sampler, target_accept=target_accept,
                              progressbar=progressbar and sys.stderr.isatty(),
                              var_names=var_names, compute_convergence_checks=False, model=model)
    return idata
