"""Newton steps from values alone for crossed random intercepts with a large coupled block (MovieLens' 6,040
users x 3,706 movies), where each REML evaluation costs a rank update and a dense Cholesky factor of the coupled
block and BOBYQA needed 19 of them from the moment start.

The criterion's cost depends on theta unevenly: the coupled block's Schur complement is t2^2 K(t1) + I with one
coupled factor (Lambda2' K(t1) Lambda2 + I with several), and K(t1) (the stored pairs and the heavy levels' rank
update, :class:`~glmmlab.engine.solvers.coupled_pairs.CoupledPairs`) is most of an evaluation. A point that
keeps the last point's t1 costs a scaling and the Cholesky factor only. The first Newton step takes its
gradient and Hessian from a stencil of 1 + k (k + 3) / 2 points on three values of t1 (for k = 2: six points,
three rank updates): central differences for the gradient and the Hessian's diagonal, forward differences across.
The later steps take the gradient from forward differences (the other coordinates first, at the step's t1, then
t1: one more rank update) and update the Hessian by BFGS. MovieLens' shape: 13 evaluations with 8 rank updates
(BOBYQA: 19 and 19), theta within 1.1e-7 of the converged optimum, |dLL| 1e-9. A step that leaves the bounds,
a Hessian that is not positive definite or a criterion that rises hands over to BOBYQA (None)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from glmmlab.engine.solvers.newton import bfgs_update
from glmmlab.engine.solvers.optimizer import OptimizationRecord, bounds_list, log_step

FIRST_STEP = 1e-3  # the stencil's steps, relative to theta
GRADIENT_STEP = 1e-5  # the later gradients' forward steps, relative to theta
# a Newton step below this, relative to theta, is the last one: the BFGS-updated steps shrink by ~3e-2 each
# (MovieLens: 1.3e-2, 4e-4, 1.2e-5), so the point it reaches is within ~1e-6 of the optimum (there 1.1e-7)
DONE = 3e-5
MAX_STEPS = 8


def applies(obj, start: np.ndarray | None) -> bool:
    """Whether :func:`fit` takes this criterion: a moment start (crossed scalar intercepts), every SD positive,
    the blocks in this process with the crossed scalar factorisation's stored pairs (``cp._pairs``)."""
    if start is None or np.any(np.asarray(start) <= 0.0):
        return False
    units = getattr(obj, "units", None)
    if not units:
        return False
    return all(hasattr(u, "cp") and hasattr(u.cp, "keep_t1") for u in units)


def _stencil(c: np.ndarray, h: np.ndarray) -> list[np.ndarray]:
    """The stencil's points, grouped by their first coordinate: c and c +- h_j e_j and c + h_j e_j + h_l e_l
    (j < l, both past the first), then c + h_0 e_0 and c + h_0 e_0 + h_j e_j, then c - h_0 e_0."""
    k = c.size
    e = np.eye(k) * h
    pts = [c.copy()]
    for j in range(1, k):
        pts += [c + e[j], c - e[j]]
    for j in range(1, k):
        for m in range(j + 1, k):
            pts.append(c + e[j] + e[m])
    pts.append(c + e[0])
    for j in range(1, k):
        pts.append(c + e[0] + e[j])
    pts.append(c - e[0])
    return pts


def _model(c: np.ndarray, h: np.ndarray, f: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, Hessian) from the values at :func:`_stencil`'s points."""
    k = c.size
    f0 = f[0]
    plus, minus = np.empty(k), np.empty(k)
    i = 1
    for j in range(1, k):
        plus[j], minus[j] = f[i], f[i + 1]
        i += 2
    cross: dict[tuple[int, int], float] = {}
    for j in range(1, k):
        for m in range(j + 1, k):
            cross[j, m] = f[i]
            i += 1
    plus[0] = f[i]
    i += 1
    for j in range(1, k):
        cross[0, j] = f[i]
        i += 1
    minus[0] = f[i]
    g = (plus - minus) / (2.0 * h)
    H = np.diag((plus - 2.0 * f0 + minus) / (h * h))
    for (j, m), v in cross.items():
        H[j, m] = H[m, j] = (v - plus[j] - plus[m] + f0) / (h[j] * h[m])
    return g, H


def fit(obj, start: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, OptimizationRecord] | None:
    """Newton steps on ``obj.value`` from ``start`` (see the module's docstring); None where they cannot go on
    (the caller's BOBYQA takes over). The record counts every evaluation."""
    units = obj.units
    for u in units:
        u.cp.keep_t1 = True
    try:
        return _run(obj.value, np.asarray(start, dtype=float), np.asarray(lower, dtype=float))
    finally:
        for u in units:
            u.cp.keep_t1 = False


def _run(fun: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray
         ) -> tuple[np.ndarray, OptimizationRecord] | None:
    log: list[dict] = []

    def value(x: np.ndarray) -> float:
        f = float(fun(x))
        log_step(log, f, x, "newton")
        return f

    x = x0.copy()
    h = FIRST_STEP * x
    pts = _stencil(x, h)
    if any(np.any(p <= lower) for p in pts):
        return None
    vals = [value(p) for p in pts]
    if not np.all(np.isfinite(vals)):
        return None
    f = vals[0]
    g, H = _model(x, h, vals)
    for step in range(MAX_STEPS):
        try:
            np.linalg.cholesky(H)
            d = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            return None
        x_new = x + d
        if np.any(x_new <= lower):
            return None
        f_new = value(x_new)
        if not (np.isfinite(f_new) and f_new <= f + 1e-12 * max(1.0, abs(f))):
            return None
        if float(np.max(np.abs(d) / x)) <= DONE:
            record = OptimizationRecord(
                x0=[float(v) for v in x0], x=[float(v) for v in x_new], objective=f_new, iterations=step + 1,
                evaluations=len(log), converged=True, message="converged", log=log,
                optimizer="Newton steps from finite differences (crossed intercepts)",
                settings={"first_step": FIRST_STEP, "gradient_step": GRADIENT_STEP, "done": DONE},
                lower=bounds_list(lower))
            return x_new, record
        g_new = _forward_gradient(value, x_new, f_new, H)
        if g_new is None:
            return None
        H = bfgs_update(H, d, g_new - g)
        x, f, g = x_new, f_new, g_new
    return None


def _forward_gradient(value: Callable[[np.ndarray], float], x: np.ndarray, f: float, H: np.ndarray
                      ) -> np.ndarray | None:
    """The gradient at x from forward differences of step GRADIENT_STEP x, less the Hessian's share
    (H_jj h_j / 2); the first coordinate last, so the others share x's t1."""
    h = GRADIENT_STEP * x
    g = np.empty(x.size)
    for j in [*range(1, x.size), 0]:
        xj = x.copy()
        xj[j] += h[j]
        fj = value(xj)
        if not np.isfinite(fj):
            return None
        g[j] = (fj - f) / h[j] - 0.5 * H[j, j] * h[j]
    return g
