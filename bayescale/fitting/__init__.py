"""Fitting: :func:`~bayescale.fitting.pipeline.fit` (runs + law -> sampled posterior) and the
:class:`~bayescale.fitting.result.Fit` it returns, with its DataTree and netCDF round trip.
"""
