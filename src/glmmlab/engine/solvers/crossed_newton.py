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
t1: one more rank update) and update the Hessian by BFGS.

The steps are taken in tau = log theta: the criterion is nearer a quadratic there (MovieLens' shape: the stencil's
Newton step lands within 1.3e-4 of the optimum, against 3.9e-4 in theta), and no step can reach an SD's bound 0.
They stop once the criterion's fall still to come, predicted at the rate of the last two steps (the last step's
promised fall 0.5 d'H d times the square of its size over the one before), is below REMAINING (5e-8 in the
log-likelihood). MovieLens' shape: 10 evaluations with 6 rank updates (in theta with a fixed step size rule: 13
and 8; BOBYQA: 19 and 19), the criterion 1.3e-8 above the converged optimum's (its prediction 1.7e-8). A
Hessian that is not positive definite or a criterion that rises hands over to BOBYQA (None)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from glmmlab.engine.solvers.newton import bfgs_update
from glmmlab.engine.solvers.optimizer import OptimizationRecord, bounds_list, log_step

FIRST_STEP = 1e-3  # the stencil's steps in log theta
GRADIENT_STEP = 1e-5  # the later gradients' forward steps in log theta
DONE = 3e-5  # a step this small in log theta (relative to theta) is the last one, the first included
REMAINING = 1e-7  # the criterion's (-2 log L's) fall still to come at which the steps stop (see the docstring)
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
    """The steps in tau = log theta (see the module's docstring); ``lower`` (0 for an SD) is never reached."""
    log: list[dict] = []

    def value(tau: np.ndarray) -> float:
        x = x0 if np.array_equal(tau, tau0) else np.exp(tau)
        f = float(fun(x))
        log_step(log, f, x, "newton")
        return f

    if np.any(x0 <= lower):
        return None
    tau0 = np.log(x0)
    tau = tau0
    h = np.full(x0.size, FIRST_STEP)
    vals = [value(p) for p in _stencil(tau, h)]
    if not np.all(np.isfinite(vals)):
        return None
    f = vals[0]
    g, H = _model(tau, h, vals)
    last = np.inf  # the size of the last step
    for step in range(MAX_STEPS):
        try:
            np.linalg.cholesky(H)
            d = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            return None
        tau_new = tau + d
        f_new = value(tau_new)
        if not (np.isfinite(f_new) and f_new <= f + 1e-12 * max(1.0, abs(f))):
            return None
        size = float(np.max(np.abs(d)))
        # the distance left, at the rate of the last two steps (Newton's converge faster than that): the last
        # step's share (0.5 d'H d, the criterion's fall it promised) times that rate squared
        rate = min(1.0, size / last) if np.isfinite(last) else 1.0
        if size <= DONE or 0.5 * float(d @ H @ d) * rate * rate <= REMAINING:
            x_new = np.exp(tau_new)
            record = OptimizationRecord(
                x0=[float(v) for v in x0], x=[float(v) for v in x_new], objective=f_new, iterations=step + 1,
                evaluations=len(log), converged=True, message="converged", log=log,
                optimizer="Newton steps from finite differences (crossed intercepts)",
                settings={"first_step": FIRST_STEP, "gradient_step": GRADIENT_STEP, "done": DONE,
                          "remaining": REMAINING},
                lower=bounds_list(lower))
            return x_new, record
        g_new = _forward_gradient(value, tau_new, f_new, H)
        if g_new is None:
            return None
        H = bfgs_update(H, d, g_new - g)
        tau, f, g, last = tau_new, f_new, g_new, size
    return None


def _forward_gradient(value: Callable[[np.ndarray], float], x: np.ndarray, f: float, H: np.ndarray
                      ) -> np.ndarray | None:
    """The gradient at x (log theta) from forward differences of step GRADIENT_STEP, less the Hessian's share
    (H_jj h_j / 2); the first coordinate last, so the others share x's t1."""
    h = np.full(x.size, GRADIENT_STEP)
    g = np.empty(x.size)
    for j in [*range(1, x.size), 0]:
        xj = x.copy()
        xj[j] += h[j]
        fj = value(xj)
        if not np.isfinite(fj):
            return None
        g[j] = (fj - f) / h[j] - 0.5 * H[j, j] * h[j]
    return g
