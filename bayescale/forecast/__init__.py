"""Forecasts from a posterior: the parameter table, predictions at unseen scales, derived quantities,
compute-optimal plans, the best learning rate and batch size, and predictive checks.

Every function takes a fit (duck-typed: ``law``, ``runs``, ``posterior``, ...) and imports nothing
from :mod:`bayescale.fitting`, which offers these functions as :class:`~bayescale.fitting.result.Fit`'s methods.
"""
