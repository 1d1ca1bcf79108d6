"""The reference method: Epoch AI's replication fit of the Chinchilla law, and its bootstrap.

Huber loss (delta 1e-3) on log-loss residuals of the log-sum-exp form of E + A/N^alpha + B/D^beta,
summed, minimised by BFGS with an analytic gradient (Besiroglu et al. 2024). The bootstrap
resamples runs with replacement and refits from the full-data optimum.
"""

import itertools

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

DELTA = 1e-3


def objective(p, log_n, log_d, log_loss):
    a, b, e, alpha, beta = p
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    lse = logsumexp(terms, axis=0)
    r = lse - log_loss
    w = np.exp(terms - lse)
    dh = np.clip(r, -DELTA, DELTA)
    grad = np.array(
        [
            np.sum(dh * w[0]),
            np.sum(dh * w[1]),
            np.sum(dh * w[2]),
            -np.sum(dh * w[0] * log_n),
            -np.sum(dh * w[1] * log_d),
        ]
    )
    return np.sum(huber(DELTA, r)), grad


def to_params(p):
    a, b, e, alpha, beta = p
    return {"E": np.exp(e), "A": np.exp(a), "alpha": alpha, "B": np.exp(b), "beta": beta}


def point_fit(n, d, loss, starts=None):
    """Best of a grid of BFGS starts (a coarse version of Epoch's grid)."""
    data = (np.log(n), np.log(d), np.log(loss))
    starts = starts or list(
        itertools.product([0, 5, 10, 15], [0, 5, 10, 15], [-1, 0, 1], [0.2, 0.5, 1.0], [0.2, 0.5, 1.0])
    )
    best = None
    for start in starts:
        result = minimize(objective, start, args=data, jac=True, method="BFGS")
        if best is None or result.fun < best.fun:
            best = result
    return best.x


def bootstrap(n, d, loss, optimum, resamples=4000, seed=0):
    rng = np.random.default_rng(seed)
    log_n, log_d, log_loss = np.log(n), np.log(d), np.log(loss)
    out = np.empty((resamples, 5))
    for i in range(resamples):
        idx = rng.integers(0, len(loss), len(loss))
        out[i] = minimize(objective, optimum, args=(log_n[idx], log_d[idx], log_loss[idx]), jac=True, method="BFGS").x
    return out
