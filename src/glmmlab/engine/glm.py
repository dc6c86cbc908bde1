"""Iteratively reweighted least squares for the GLM without random effects: the starting values of the GLMM
and the model of the GLM comparison."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.design import Design
from glmmlab.engine.families import Family, Link
from glmmlab.engine.pirls import row_state
from glmmlab.engine.response import Response


def starting_mu(y: np.ndarray, family: Family, link: Link) -> np.ndarray:
    if family.name == "binomial":
        return (y + 0.5) / 2.0
    if family.name == "poisson":
        return y + 0.1
    if family.name == "gamma":
        return np.maximum(y, 1e-8)
    if link.name == "log" and np.any(y <= 0):
        return np.full_like(y, max(float(np.mean(y)), 1e-3))
    return y.copy()


def fit_glm(d: Design, family: Family, link: Link, *, max_iter: int = 50, tol: float = 1e-10) -> np.ndarray:
    """Return the GLM coefficients (on the design's scaled columns) by IRLS with step halving."""
    resp = Response(d.y, family)
    X = d.X
    mu = starting_mu(d.y, family, link)
    eta = link.linkfun(mu)
    h1 = link.mu_eta(eta)
    w = h1 * h1 / np.maximum(family.variance(mu), 1e-300)
    z = eta + (d.y - mu) / h1
    beta = _wls(X, w, z)
    dev_old = np.inf
    step = np.zeros_like(beta)
    base = beta
    for _ in range(max_iter):
        for _h in range(30):
            cand = base + step if np.isfinite(dev_old) else beta
            rs = row_state(resp, X @ cand, link)
            dev = float(np.sum(rs.dev))
            if np.isfinite(dev) and np.all(family.mu_valid(rs.mu)) and dev <= dev_old * (1 + 1e-12) + 1e-12:
                break
            if not np.isfinite(dev_old):
                break
            step = step / 2.0
        beta = cand
        if abs(dev_old - dev) <= tol * (abs(dev) + 0.1):
            break
        dev_old = dev
        z = rs.eta + (d.y - rs.mu) / rs.h1
        base = beta
        step = _wls(X, rs.w, z) - beta
    return beta


def _wls(X: np.ndarray, w: np.ndarray, z: np.ndarray) -> np.ndarray:
    Xw = X * w[:, None]
    return np.linalg.solve(X.T @ Xw, Xw.T @ z)
