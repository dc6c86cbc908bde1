"""Newton's method from the start, for a deviance whose caller has a cheap approximate Hessian (the Laplace
deviance: over beta 2 c times the fixed effects' precision, each theta's row and column by a difference of the
exact gradient): quasi-Newton steps from that Hessian, updated by BFGS, with a backtracking line search inside
the bounds. From the GLM's start of the 1M-row random-intercept model it reaches the optimum to rounding level
in ten evaluations of the deviance and its gradient, where L-BFGS-B took sixteen and its Newton polish five
more."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import linalg

FunGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]

ARMIJO = 1e-4  # the sufficient decrease of a step, as a fraction of the decrease its slope promises
ROUNDING_F = 64 * np.finfo(float).eps  # f may rise by this (relative) on a step that shrinks the gradient
# the Hessian is taken again, once, where the projected gradient first falls below this fraction of the start's
# (the 1M-row random intercept: 12 evaluations and one Hessian -> 10 and two; VerbAgg's 15 -> 11)
REFRESH = 0.05
# the steps stop where the next one promises a fall of f below this (absolute): with f = -2 log L the promised fall
# 0.5 d'Hd is the squared distance to the optimum in standard errors (Cov = 2 H^-1), so the point is within 3e-7
# SE of it (two fits of one model by different paths, as Dask's and the in-memory one, within 1e-6 SE of each
# other) and f within 1e-13 (the 1M-row random intercept: its last two evaluations, 2.7e-14 and 3.5e-18, spared)
FALL_TOL = 1e-13


def projected_gradient(x: np.ndarray, g: np.ndarray, lower: np.ndarray) -> float:
    """The largest gradient entry that a step inside the bounds could still use (a component pushing
    against its bound does not count)."""
    proj = np.where((x <= lower) & (g > 0), 0.0, g)
    return float(np.max(np.abs(proj))) if proj.size else 0.0


def backtrack(fg: FunGrad, x: np.ndarray, f: float, g: np.ndarray, d: np.ndarray, lower: np.ndarray,
              halvings: int, rounding: bool = False) -> tuple[np.ndarray, float, np.ndarray] | None:
    """The first of x + t d, t = 1, 1/2, 1/4, ... (``halvings`` tries), cut back to the bounds, where f is finite
    and falls by Armijo's rule, or (``rounding``) stays within its rounding error while the projected gradient
    shrinks (near an optimum f no longer tells points apart): (x_new, f_new, g_new), or None."""
    pg = projected_gradient(x, g, lower) if rounding else 0.0
    t = 1.0
    for _ in range(halvings):
        xn = np.maximum(x + t * d, lower)
        fn, gn = fg(xn)
        if np.isfinite(fn) and (fn <= f + ARMIJO * float(g @ (xn - x)) or (
                rounding and fn <= f + ROUNDING_F * max(1.0, abs(f)) and projected_gradient(xn, gn, lower) < pg)):
            return xn, float(fn), gn
        t *= 0.5
    return None


def bfgs_update(H: np.ndarray, s: np.ndarray, y: np.ndarray, min_curvature: float = 0.0) -> np.ndarray:
    """H updated by BFGS with the step s and the gradient's change y; H itself where the curvature s'y is not
    above ``min_curvature`` or s'Hs is not positive (the update would lose positive definiteness)."""
    sy = float(s @ y)
    Hs = H @ s
    sHs = float(s @ Hs)
    if not (sy > min_curvature and sHs > 0):
        return H
    return H - np.outer(Hs, Hs) / sHs + np.outer(y, y) / sy


def newton_run(fg: FunGrad, x0: np.ndarray, lower: np.ndarray, hessian: Callable[[np.ndarray], np.ndarray],
               done: Callable[[np.ndarray], bool], max_steps: int = 30, refresh: bool = True,
               refresh_every: bool = False, step_limit: Callable[[np.ndarray, np.ndarray], float] | None = None
               ) -> tuple[np.ndarray, float, list[tuple[float, np.ndarray]]]:
    """Minimise ``fg`` (value and gradient) from ``x0`` subject to x >= lower by Newton steps with ``hessian(x0)``
    (positive definite over the free parameters, else no step is taken), updated by BFGS after each step, and
    taken again once the gradient has fallen by REFRESH (``hessian`` is then called a second time). A
    parameter at its bound whose gradient pushes against it is held there; a step is cut back to the bounds and
    halved until f falls by Armijo's rule, or, near the optimum where f no longer tells points apart, until the
    projected gradient shrinks with f within its rounding error. Stops when ``done(x)``, after ``max_steps``
    steps, when no step is accepted, or (after a step) when the next step promises a fall of f of at most
    FALL_TOL. ``refresh`` False: ``hessian`` is called once (BFGS updates only: a caller that hands over to another
    Hessian near the optimum). ``refresh_every``: ``hessian`` is taken at every accepted step instead and updated by
    that step alone (an approximation that costs no evaluation and beats the BFGS updates of the start's:
    joint_search's). ``step_limit(x, d)``: the largest share of the Newton step d tried first (a trust limit; the
    whole step where it is 1 or more). Returns (x, f, the accepted steps as (f, x))."""
    x = np.asarray(x0, dtype=float).copy()
    f, g = fg(x)
    steps: list[tuple[float, np.ndarray]] = []
    if not np.isfinite(f) or done(x):
        return x, float(f), steps
    H = _hessian_or_none(hessian, x)
    if H is None or H.shape != (x.size, x.size) or not np.all(np.isfinite(H)):
        return x, float(f), steps
    g_start, refreshed = projected_gradient(x, g, lower), not refresh
    while len(steps) < max_steps:
        free = ~((x <= lower) & (g > 0))
        if not free.any():
            break
        try:
            cf = linalg.cho_factor(H[np.ix_(free, free)], check_finite=False)  # (H finite: checked, BFGS-updated)
        except (np.linalg.LinAlgError, ValueError):
            break
        d = np.zeros_like(x)
        d[free] = -linalg.cho_solve(cf, g[free], check_finite=False)  # (a step that is not finite ends the run)
        if not np.all(np.isfinite(d)) or np.all(np.abs(d) <= 1e-14 * np.maximum(1.0, np.abs(x))):
            break
        if steps and -0.5 * float(g[free] @ d[free]) <= FALL_TOL:
            break  # (after a step at least: the start's H is the caller's approximation, not yet BFGS-checked)
        if step_limit is not None:
            d = d * min(1.0, step_limit(x, d))
        step = backtrack(fg, x, f, g, d, lower, 30, rounding=True)
        if step is None:
            break
        xn, fn, gn = step
        s, yv = xn - x, gn - g
        H = bfgs_update(H, s, yv, 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv)))
        x, f, g = xn, float(fn), gn
        steps.append((f, x.copy()))
        if done(x):
            break
        if refresh_every:
            # the approximation at the new point, with the curvature along the step it missed put in by one BFGS
            # update (alone it can miss the same curvature every step: a small zero-model SD's theta crept by
            # halved steps, 50 evaluations where L-BFGS-B took 21; over 30 simulated joint fits 459 evaluations,
            # L-BFGS-B's 648, at most 26 a fit)
            H = bfgs_update(_refreshed(hessian, x, H, lower, g), s, yv,
                            1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv)))
        elif not refreshed and projected_gradient(x, g, lower) < REFRESH * g_start:
            # the start's Hessian was taken far from the optimum (its theta column most of all): the gradient
            # fell by about a tenth a step on the 1M-row case; with one taken here, nearer, by 1/20 to 1/200
            refreshed = True
            H = _refreshed(hessian, x, H, lower, g)
    return x, float(f), steps


def _refreshed(hessian: Callable[[np.ndarray], np.ndarray], x: np.ndarray, H: np.ndarray, lower: np.ndarray,
               g: np.ndarray) -> np.ndarray:
    """``hessian(x)`` where it is finite and positive definite over the free parameters, else ``H``."""
    H_new = _hessian_or_none(hessian, x)
    free = ~((x <= lower) & (g > 0))
    if H_new is None or H_new.shape != H.shape or not np.all(np.isfinite(H_new)):
        return H
    try:
        linalg.cho_factor(H_new[np.ix_(free, free)], check_finite=False)  # (H_new checked finite above)
    except (np.linalg.LinAlgError, ValueError):
        return H
    return H_new


def _hessian_or_none(hessian: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray | None:
    """``hessian(x)``, or None where its mode searches break down numerically (then no Newton step uses it)."""
    try:
        return np.array(hessian(x), dtype=float)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError):
        return None
