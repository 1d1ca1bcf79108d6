"""Fit files: one netCDF file per fit, written atomically and read back with a clear error when it is not one.

The DataTree (:meth:`bayescale.fitting.result.Fit.to_datatree`) is written as is: ArviZ's groups
(posterior, sample_stats, log_likelihood, observed_data, constant_data) and one JSON root attribute,
so nothing depends on pickling or on this package's class layout. Saving writes a temporary file
next to the target and renames it over the target only once it is complete, so an interrupted or
failed save never destroys an earlier good file.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from bayescale.errors import BayescaleError
from bayescale.files import atomic_write


def write_fit_file(tree: xr.DataTree, path: str | Path) -> Path:
    """Write ``tree`` to ``path`` (a ``.nc`` file in an existing folder), atomically."""
    path = Path(path)
    if path.suffix != ".nc":
        raise BayescaleError(f"fit files are netCDF: give a path ending in .nc, got {str(path)!r}")
    if not path.parent.is_dir():
        raise BayescaleError(f"cannot save to {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return atomic_write(path, lambda tmp: tree.to_netcdf(tmp, engine="netcdf4"))


def read_fit_file(path: str | Path) -> xr.DataTree:
    """The DataTree in the netCDF file at ``path``, loaded into memory and the file closed."""
    path = Path(path)
    if not path.exists():
        raise BayescaleError(f"fit file {str(path)!r} does not exist")
    try:
        tree = xr.open_datatree(path, engine="netcdf4")
        tree.load()
        tree.close()
    except (OSError, ValueError) as exc:
        raise BayescaleError(f"{str(path)!r} is not a readable fit file: {exc}") from None
    return tree
