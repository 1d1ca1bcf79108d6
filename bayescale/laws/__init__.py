"""Laws: the law cards (inputs, formula, priors), the safe formula compiler, priors and likelihoods.

The lowest layer above :mod:`bayescale.errors` and :mod:`bayescale.defaults`: it knows nothing of data or
sampling.
"""
