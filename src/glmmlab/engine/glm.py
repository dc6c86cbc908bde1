"""Iteratively reweighted least squares for the GLM without random effects: the starting values of the GLMM
and the model of the GLM comparison. The sums X'WX and X'Wz come from the blocks."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families import Family, Link


def starting_mu(y: np.ndarray, family: Family, link: Link) -> np.ndarray:
    return family.start_mu(y, link.name)


def _solve(parts: list[dict]) -> np.ndarray:
    return np.linalg.solve(sum(p["XtWX"] for p in parts), sum(p["XtWz"] for p in parts))


def fit_glm(blocks, *, max_iter: int = 50, tol: float = 1e-10) -> np.ndarray:
    """The GLM coefficients (on the design's scaled columns) by IRLS with step halving on the deviance."""
    return glm_fit(blocks, max_iter=max_iter, tol=tol)[0]


def glm_fit(blocks, *, max_iter: int = 50, tol: float = 1e-10) -> tuple[np.ndarray, bool]:
    """:func:`fit_glm` and whether IRLS converged. It does not when the maximum lies on the edge of the means'
    range (an identity link with fitted means at 0): the full steps leave the range and the halved ones stall,
    so the coefficients are not the GLM's maximum-likelihood estimate."""
    converged = False
    beta = _solve(blocks.map("irls_start"))
    parts = blocks.map("irls_step", beta, True)
    dev = sum(p["dev_sum"] for p in parts)
    for _ in range(max_iter):
        step = _solve(parts) - beta
        for _h in range(30):
            cand = beta + step
            new = blocks.map("irls_step", cand, True)
            dev_new = sum(p["dev_sum"] for p in new)
            if np.isfinite(dev_new) and all(p["valid"] for p in new) and (
                    not np.isfinite(dev) or dev_new <= dev * (1 + 1e-12) + 1e-12):
                break
            step = step / 2.0
        else:
            break
        done = abs(dev - dev_new) <= tol * (abs(dev_new) + 0.1)
        beta, parts, dev = cand, new, dev_new
        if done:
            converged = True
            break
    return beta, converged
