"""An independent Laplace evaluation of a random-intercept model whose family has a dispersion, written with
scipy's densities and nothing of glmmlab's engine: per group, the mode of the joint log-density in the random
intercept b (a bounded scalar search) and its exact curvature there (a five-point difference quotient), then

    log L = sum_j [ max_b (sum_i log p(y_i | mu_i(b), phi) + log N(b; 0, sd^2)) + log(2 pi) / 2 - log(-f''_j) / 2 ].

It is slow (a Python loop over groups) and meant for small data: tests use it to check that the engine's
log-likelihood is this function at its estimates, and that its estimates are a stationary point of it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

INVERSE_LINKS = {"log": np.exp, "identity": lambda e: e, "inverse": lambda e: 1.0 / e}


def row_logpdf(family: str, y: np.ndarray, mu: np.ndarray, sigma: float) -> np.ndarray:
    """log p(y | mu) with sigma the CV (Gamma) or the residual SD (Gaussian), as glmmTMB defines them."""
    if family == "gamma":
        shape = 1.0 / sigma ** 2
        with np.errstate(all="ignore"):
            return np.where(mu > 0, stats.gamma.logpdf(y, a=shape, scale=np.abs(mu) / shape), -np.inf)
    return stats.norm.logpdf(y, loc=mu, scale=sigma)


def loglik(family: str, link: str, y: np.ndarray, X: np.ndarray, g: np.ndarray, beta: np.ndarray, sd: float,
           sigma: float) -> float:
    """The Laplace log-likelihood of y ~ X beta + (1 | g) at (beta, sd, sigma) (sd on the linear-predictor scale)."""
    inv = INVERSE_LINKS[link]
    eta_f = X @ beta
    total = 0.0
    for j in np.unique(g):
        rows = g == j
        yj, ej = y[rows], eta_f[rows]

        def f(b, yj=yj, ej=ej):
            return float(np.sum(row_logpdf(family, yj, inv(ej + b), sigma))) + stats.norm.logpdf(b, 0.0, sd)

        lo, hi = -6.0 * sd, 6.0 * sd
        if link in ("identity", "inverse"):  # keep every mean of the group on the data's side of 0
            sign = 1.0 if np.mean(yj) > 0 else -1.0
            edge = float(np.min(sign * ej))
            lo = max(lo, -edge + 1e-12) if sign > 0 else lo
            hi = min(hi, edge - 1e-12) if sign < 0 else hi
        res = optimize.minimize_scalar(lambda b: -f(b), bounds=(lo, hi), method="bounded",
                                       options={"xatol": 1e-12 * max(sd, 1e-300), "maxiter": 500})
        b = float(res.x)
        h = 1e-3 * sd
        d2 = (-f(b + 2 * h) + 16 * f(b + h) - 30 * f(b) + 16 * f(b - h) - f(b - 2 * h)) / (12 * h * h)
        total += f(b) + 0.5 * math.log(2 * math.pi) - 0.5 * math.log(-d2)
    return total
