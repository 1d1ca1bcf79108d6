"""Inference: sampling a built model (nutpie, PyMC, NumPyro), the posterior mode that preconditions it,
sampler diagnostics, and the discrepancy that widens bands beyond the data.

Imports :mod:`bayescale.model` and below; knows nothing of :class:`~bayescale.fitting.result.Fit`.
"""
