"""Run a NUTS sampler on a built PyMC model and return the posterior of the named parameters.

``nutpie`` is the default: on the whitened models of :mod:`bayescale.model.spec` it had no
divergences in every run we measured at target_accept 0.95 and the least wall time per fit
(see ``benchmarks/README.md``). ``pymc`` (PyMC's own NUTS) and ``numpyro`` (needs JAX) are the
alternatives, selected by name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import time
import warnings
from collections import OrderedDict

from bayescale.defaults import reproducible_compilation
from bayescale.errors import BayescaleError

SAMPLERS = ("pymc", "nutpie", "numpyro")

#: nutpie's compiled models by :meth:`bayescale.model.spec.ModelSpec.structure_key`, least recently used first
_COMPILED: OrderedDict[str, object] = OrderedDict()
_COMPILED_KEEP = 8
_COMPILE_LOCK = threading.Lock()
#: set to 0 to compile every model afresh (the on-disk Numba cache still applies)
REUSE_ENV = "BAYESCALE_REUSE_COMPILED"


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


def draw_posterior(
    model,
    var_names: list[str],
    *,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    seed: int,
    target_accept: float,
    progressbar: bool,
    reuse_key: str | None = None,
):
    """Sample ``model`` and return the DataTree (posterior restricted to ``var_names``).

    With nutpie and a ``reuse_key`` (a model whose data are all ``pm.Data``, keyed by its structure),
    the compiled sampler of an earlier model with the same key is reused with this model's data:
    the same draws as a fresh compile, without paying for it again in this process.
    The progress bar is drawn on stderr when stderr is a terminal; elsewhere (a log file, a notebook)
    a line every few seconds says how far sampling is (:class:`ProgressLines`). stdout stays clean
    for pipes and ``--json``. Ctrl-C during nutpie's sampling raises ``KeyboardInterrupt`` (nutpie
    itself would return the draws so far).
    """
    import pymc as pm

    check_settings(sampler=sampler, draws=draws, tune=tune, chains=chains, cores=cores, target_accept=target_accept)
    log_lines = progressbar and not sys.stderr.isatty()  # a log file gets a line now and then, not a frozen bar
    progressbar = progressbar and sys.stderr.isatty()
    with warnings.catch_warnings():
        # implementation chatter, not sampler trouble (that is diagnosed in bayescale.inference.diagnostics):
        warnings.filterwarnings("ignore", message=".*fork\\(\\) may lead to deadlocks.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="overflow encountered", category=RuntimeWarning)
        with contextlib.redirect_stdout(sys.stderr), reproducible_compilation():  # progress tables print to stdout
            if sampler == "nutpie":
                return _sample_nutpie(
                    model,
                    var_names,
                    draws=draws,
                    tune=tune,
                    chains=chains,
                    cores=min(cores, chains),
                    seed=seed,
                    target_accept=target_accept,
                    progressbar=progressbar,
                    reuse_key=reuse_key,
                    log_lines=log_lines,
                )
            if sampler == "numpyro":
                _persistent_jax_cache()
            return pm.sample(
                draws,
                tune=tune,
                chains=chains,
                cores=min(cores, chains),
                random_seed=seed,
                nuts_sampler=sampler,
                target_accept=target_accept,
                progressbar=progressbar,
                var_names=var_names,
                compute_convergence_checks=False,
                model=model,
            )


class ProgressLines:
    """nutpie's progress as a line on stderr at most every ``every`` seconds: steps done, divergences, time left.

    For stderr that is not a terminal (a log file, a pipe): a bar there would print nothing useful or
    a table per refresh. The first line comes once sampling has run ``every`` seconds.
    """

    def __init__(self, every: float = 10.0):
        self.every, self.start, self.last = every, time.monotonic(), time.monotonic()

    def __call__(self, chain_progresses) -> None:
        now = time.monotonic()
        if now - self.last < self.every or not chain_progresses:
            return
        self.last = now
        done = sum(cp.finished_draws for cp in chain_progresses)
        total = sum(cp.total_draws for cp in chain_progresses)
        divergences = sum(len(cp.divergent_draws) for cp in chain_progresses)
        left = (now - self.start) * (total - done) / done if done else float("nan")
        print(
            f"sampling: {done} of {total} steps ({100 * done / max(total, 1):.0f}%), {divergences} divergences, "
            f"about {left:.0f} s left",
            file=sys.stderr,
            flush=True,
        )


def _persistent_jax_cache() -> None:
    """Keep JAX's compiled samplers on disk (``~/.cache/bayescale/jax`` or ``$BAYESCALE_CACHE/jax``).

    JAX keys each entry by the computation, its own version and the device, so a new JAX or another
    device compiles afresh. ``BAYESCALE_REUSE_COMPILED=0`` turns it off, as for nutpie.
    """
    import jax

    from bayescale.defaults import cache_dir

    if os.environ.get(REUSE_ENV, "1") == "0" or jax.config.jax_compilation_cache_dir:
        return
    folder = cache_dir() / "jax"
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _sample_nutpie(
    model, var_names, *, draws, tune, chains, cores, seed, target_accept, progressbar, reuse_key, log_lines=False
):
    """nutpie on ``model``, as ``pm.sample(nuts_sampler="nutpie")`` runs it, with the compiled sampler reused."""
    import numpy as np
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata
    from pymc.progress_bar.progress import NutpieProgressBarManager

    compiled = compiled_nutpie(model, var_names, reuse_key)
    chain_seeds = [rng.integers(2**30) for rng in np.random.default_rng(seed).spawn(chains)]  # as pm.sample
    progress = NutpieProgressBarManager(chains=chains, draws=draws, progressbar=progressbar, progressbar_theme=None)
    lines = ProgressLines() if log_lines else None
    start = time.time()
    with progress:
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=max(tune, 1),
            chains=chains,
            cores=cores,
            seed=int(chain_seeds[0]),
            target_accept=target_accept,
            progress_bar=False,
            progress_callback=lines or progress.update,
        )
    if idata["posterior"].sizes["draw"] < draws:  # nutpie stops at Ctrl-C and returns the draws so far
        raise KeyboardInterrupt("sampling was interrupted")
    patch_nutpie_idata(idata, model, sampling_time=time.time() - start)
    posterior = idata["posterior"].to_dataset()  # group levels as this model names them, not the compiled one
    idata["posterior"] = posterior.assign_coords(
        {dim: list(model.coords[dim]) for dim in posterior.dims if dim in model.coords}
    )
    return idata


def compiled_nutpie(model, var_names, reuse_key):
    """nutpie's compiled ``model``: compiled now, or an earlier one with the same key given this model's data.

    Compiled without fastmath (:func:`reproducible_compilation`), as every bayescale compile.
    """
    with reproducible_compilation():
        return _compiled_nutpie(model, var_names, reuse_key)


def _compiled_nutpie(model, var_names, reuse_key):
    import nutpie

    from bayescale.inference.callbacks import compile_model

    if os.environ.get(REUSE_ENV, "1") == "0":
        return nutpie.compile_pymc_model(model, var_names=var_names)
    if reuse_key is None:
        return compile_model(model, var_names)
    with _COMPILE_LOCK:
        compiled = _COMPILED.get(reuse_key)
        if compiled is None:
            compiled = _COMPILED[reuse_key] = compile_model(model, var_names, reuse_key)
            while len(_COMPILED) > _COMPILED_KEEP:
                _COMPILED.popitem(last=False)
            return compiled
        _COMPILED.move_to_end(reuse_key)
    used = {shared.name for shared in compiled.shared_var_keys}
    return compiled.with_data(**{data.name: data.get_value() for data in model.data_vars if data.name in used})
