"""The optimum of a value-only function (where a derivative-free optimiser stopped: BOBYQA's REML fits) polished
to rounding level by Newton steps with a numeric gradient and a Hessian from values alone."""

from __future__ import annotations

from typing import Callable

import numpy as np

from glmmlab.engine.solvers.newton import projected_gradient
from glmmlab.engine.solvers.optimizer import ROUNDING_GTOL, gradient_polish, newton_step_below, numeric_gradient


def polish_value_only(fun: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray, log: list[dict]
                      ) -> tuple[np.ndarray, float, int, int]:
    """Take the optimum of a value-only function, where a derivative-free optimiser stopped, down to rounding
    level: Newton steps with its fourth-order finite-difference gradient and a finite-difference Hessian of
    that gradient, until the projected gradient is at rounding level (as :func:`minimize` does after its
    quasi-Newton run). A stopping rule on changes of f leaves the parameters determined only to about
    sqrt(ftol), so they would move with the rounding of the sums (e.g. how the rows are cut into blocks).
    Returns (x, f, Newton steps, evaluations)."""
    evaluations = 0
    cache: dict[bytes, tuple[float, np.ndarray]] = {}

    def counted(x_: np.ndarray) -> float:
        nonlocal evaluations
        evaluations += 1
        return fun(x_)

    numeric = numeric_gradient(counted, lower)

    def fg(x_: np.ndarray) -> tuple[float, np.ndarray]:
        key = x_.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = numeric(x_)
        return cache[key]

    def near_rounding(x_: np.ndarray) -> bool:
        f_, g_ = fg(x_)
        return projected_gradient(x_, g_, lower) <= ROUNDING_GTOL * max(1.0, abs(f_)) ** 0.5

    x = np.asarray(x, dtype=float).copy()
    f = fg(x)[0]
    if not np.isfinite(f) or near_rounding(x):
        return x, float(f), 0, evaluations
    H = _value_hessian(counted, x, f, lower)

    def done(x_: np.ndarray) -> bool:
        # with large |f| (many rows) the finite-difference gradient's rounding floor, eps |f| / h, lies above
        # the rounding-level gradient; there the optimum is fixed once the Newton step is below 1e-10 of theta
        if near_rounding(x_):
            return True
        return newton_step_below(H, x_, fg(x_)[1], lower, 1e-10)

    x, f, steps = gradient_polish(fg, x, f, lower, H, done, log)
    return x, float(f), steps, evaluations


def _value_hessian(fun: Callable[[np.ndarray], float], x: np.ndarray, f0: float, lower: np.ndarray) -> np.ndarray:
    """A finite-difference Hessian from values alone, for a chord method (k (k + 3) / 2 evaluations, against
    2 k (4 k + 1) for :func:`fd_hessian` of a numeric gradient): central second differences on the diagonal
    (forward where a bound is within reach), forward cross differences off it."""
    k = x.size
    h = 1e-3 * np.maximum(1.0, np.abs(x))

    def at(*steps: tuple[int, float]) -> float:
        xs = x.copy()
        for i, step in steps:
            xs[i] += step
        return fun(xs)

    fp = np.array([at((i, h[i])) for i in range(k)])
    H = np.zeros((k, k))
    for i in range(k):
        if x[i] - h[i] >= lower[i]:
            H[i, i] = (fp[i] - 2.0 * f0 + at((i, -h[i]))) / h[i] ** 2
        else:
            H[i, i] = (at((i, 2 * h[i])) - 2.0 * fp[i] + f0) / h[i] ** 2
        for j in range(i):
            H[i, j] = H[j, i] = (at((i, h[i]), (j, h[j])) - fp[i] - fp[j] + f0) / (h[i] * h[j])
    return H
