"""The warnings a fit can carry, in plain words with the advice of the GLMM tab."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.design import Design

SINGULAR = (
    "Singular fit: the random-intercept variance is at or near zero, on the boundary of the parameter space. "
    "The group variable may explain very little of the variation in the response, or there may be too few "
    "observations or groups to tell group-level from residual variation apart. Interpret the ICC and the "
    "variance components with caution; a fixed-effects-only model (GLM) may be more appropriate."
)


def not_converged(max_iter: int, tol: float) -> str:
    return (
        f"The model did not converge within {max_iter} iterations at tolerance {tol:g}; the estimates shown are "
        "the last ones reached. Try: increase Max Iterations (e.g. 100 -> 500); relax Convergence Tolerance "
        "(e.g. 1e-6 -> 1e-4); with very few groups (2-3) the variance component is hard to estimate; very "
        "different predictor scales can also make the starting values fail."
    )


def few_groups(n_groups: int) -> str:
    return (
        f"Only {n_groups} groups: the random-intercept variance is estimated from very few groups and may be "
        "unstable; interpret it and the ICC with caution."
    )


def separation(d: Design, beta_s: np.ndarray, mu: np.ndarray) -> list[str]:
    """Signs of complete or quasi-complete separation in binomial data, naming the predictors."""
    out: list[str] = []
    offset = 1 if d.intercept else 0
    names = d.names[offset:]
    flagged: set[str] = set()
    y = d.y
    for k, name in enumerate(names):
        x = d.X[:, k + offset]
        values = np.unique(x)
        if values.size == 2:
            for v in values:
                sel = x == v
                ys = y[sel]
                if ys.size and (np.all(ys == 0) or np.all(ys == 1)):
                    flagged.add(name)
        if abs(beta_s[k + offset]) > 10.0:
            flagged.add(name)
    for name in names:
        if name in flagged:
            out.append(
                f"Possible separation: the response is (almost) perfectly predicted by '{name}', so its "
                "coefficient and standard error may be unreliable (very large). Consider removing or "
                "combining categories of that predictor."
            )
    if not out and np.mean((mu < 1e-8) | (mu > 1 - 1e-8)) > 0.5:
        out.append(
            "Possible separation: most fitted probabilities are 0 or 1; coefficients and standard errors may "
            "be unreliable."
        )
    return out
