"""Save and load fits: one netCDF file holding the posterior, the law card, priors, data and version.

The DataTree from the sampler is written as is (ArviZ groups: posterior, sample_stats,
log_likelihood, observed_data, constant_data); bayescale's own metadata goes into one JSON root
attribute, so nothing depends on pickling or on this package's class layout. Saving writes a
temporary file next to the target and renames it over the target only once it is complete, so an
interrupted or failed save never destroys an earlier good file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from .data import Runs
from .diagnostics import from_dict as diagnostics_from_dict
from .errors import BayescaleError
from .laws import Law
from .likelihood import get_likelihood
from .priors import Prior

FORMAT_VERSION = 1
_META = "bayescale"


def _to_datatree(fit) -> xr.DataTree:
    tree = fit.idata.copy()
    stats = tree["sample_stats"].to_dataset()
    objects = [name for name, var in stats.data_vars.items() if var.dtype == object]
    if objects:  # e.g. nutpie's divergence messages: not representable in netCDF
        tree["sample_stats"] = stats.drop_vars(objects)
    noise = {n: fit.spec.priors[n].to_dict() for n in fit.spec.noise_names}
    meta = {"format_version": FORMAT_VERSION, "bayescale_version": __version__, "law": fit.law.to_dict(),
            "likelihood": fit.likelihood.name, "noise_priors": noise, "settings": fit.settings,
            "diagnostics": fit.diagnostics.to_dict(), "notes": fit.runs.notes, "source": fit.runs.source}
    tree.attrs = {**tree.attrs, _META: json.dumps(meta)}
    return tree


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    A failed or interrupted write leaves an earlier file at ``path`` as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save(fit, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".nc":
        raise BayescaleError(f"fit files are netCDF: give a path ending in .nc, got {str(path)!r}")
    if not path.parent.is_dir():
        raise BayescaleError(f"cannot save to {str(path)!r}: folder {str(path.parent)!r} does not exist")
    tree = _to_datatree(fit)
    return atomic_write(path, lambda tmp: tree.to_netcdf(tmp, engine="netcdf4"))


def load(path: str | Path):
    from .fitting import Fit

    path = Path(path)
    if not path.exists():
        raise BayescaleError(f"fit file {str(path)!r} does not exist")
    try:
        tree = xr.open_datatree(path, engine="netcdf4")
        tree.load()
        tree.close()
    except (OSError, ValueError) as exc:
        raise BayescaleError(f"{str(path)!r} is not a readable fit file: {exc}") from None
    if _META not in tree.attrs:
        raise BayescaleError(f"{str(path)!r} is a netCDF file but not a bayescale fit (no '{_META}' attribute)")
    meta = json.loads(tree.attrs[_META])
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise BayescaleError(f"{str(path)!r} was written by bayescale {meta.get('bayescale_version')} in a newer "
                             f"format ({meta['format_version']}); upgrade bayescale to read it")
    constant = tree["constant_data"].to_dataset()
    frame = pd.DataFrame({name: np.asarray(var.values) for name, var in constant.data_vars.items()})
    frame.index = pd.RangeIndex(len(frame), name="row")
    runs = Runs(frame, list(meta.get("notes", [])), meta.get("source", str(path)))
    noise = {k: Prior.parse(v) for k, v in meta.get("noise_priors", {}).items()}
    return Fit(Law.from_dict(meta["law"]), get_likelihood(meta["likelihood"]), runs, tree, meta["settings"],
               diagnostics_from_dict(meta["diagnostics"]), noise)
