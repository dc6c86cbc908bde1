"""Iteratively reweighted least squares for the GLM without random effects: starting values for the GLMM."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.design import Design
from glmmlab.engine.families import Family, Link


def starting_mu(y: np.ndarray, family: Family) -> np.ndarray:
    if family.name == "binomial":
        return (y + 0.5) / 2.0
    if family.name == "poisson":
        return y + 0.1
    if family.name == "gamma":
        return np.maximum(y, 1e-8)
    return y.copy()


def fit_glm(d: Design, family: Family, link: Link, *, max_iter: int = 50, tol: float = 1e-10) -> np.ndarray:
    """Return the GLM coefficients (on the design's scaled columns) by IRLS with step halving."""
    y, X = d.y, d.X
    mu = starting_mu(y, family)
    if link.name == "log":
        mu = np.maximum(mu, 1e-8) if family.name == "gaussian" else mu
        if family.name == "gaussian" and np.any(y <= 0):
            mu = np.full_like(y, max(float(np.mean(y)), 1e-3))
    eta = link.linkfun(mu)
    beta = None
    dev_old = np.inf
    for _ in range(max_iter):
        h1 = link.mu_eta(eta)
        var = np.maximum(family.variance(mu), 1e-300)
        w = h1 * h1 / var
        z = eta + (y - mu) / h1
        Xw = X * w[:, None]
        beta_new = np.linalg.solve(X.T @ Xw, Xw.T @ z)
        if beta is None:
            beta = beta_new
        step = beta_new - beta
        for _h in range(30):
            cand = beta + step
            eta_c = X @ cand
            mu_c = link.linkinv(eta_c)
            if np.all(np.isfinite(mu_c)) and np.all(family.mu_valid(mu_c)):
                dev_c = float(np.sum(family.unit_deviance(y, mu_c)))
                if dev_c <= dev_old * (1 + 1e-12) or not np.isfinite(dev_old):
                    break
            step = step / 2.0
        beta, eta, mu = cand, eta_c, mu_c
        if abs(dev_old - dev_c) <= tol * (abs(dev_c) + 0.1):
            break
        dev_old = dev_c
    return beta
