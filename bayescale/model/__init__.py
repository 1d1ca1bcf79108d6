"""Model: law + priors + likelihood + runs -> the PyMC model (named variables, ``pm.Data`` inputs), its
partial pooling, and the whitened form that NUTS samples.

Imports :mod:`bayescale.data` and :mod:`bayescale.laws`.
"""
