"""The Hessian of a deviance at a point from its gradient: forward differences along directions that the points
evaluated just before (the optimiser's last iterations and line-search trials) leave uncovered.

A forward-difference Hessian takes one gradient per parameter at x + h e_i (h = 1e-4 relative; its error is O(h)).
A gradient the optimiser evaluated at a point x_j near x is as good a difference along s_j = x_j - x: g(x_j) - g(x)
= H s_j + O(|s_j|^2), so its relative error is O(|s_j|), that of a forward difference with h = |s_j|. The points
within SECANT_RADIUS of x whose steps are far enough from parallel give some of the k directions; forward
differences along an orthonormal basis of the rest complete them, and H solves H S = Y over all k (symmetrised).
At the end of an L-BFGS-B run two or three of its last points lie that near: as many gradients fewer.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np

FunGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]

# The steps (relative: max |s_i| / max(1, |x_i|)) a secant pair may have. A pair's error is O(|s|), that of a
# forward difference with h = |s|. Measured on the twelve breadth cases against the central-difference Hessian's
# standard errors: at 3e-4 they stayed within 2.1e-4 (relative), at 3e-3 within 9.1e-4 (salamanders_zinb2,
# sim_gamma_disp; glmmTMB's within 9e-4 too, where the tests allow 2e-2) for one gradient fewer in eight of the
# twelve (a Laplace evaluation each: salamanders_zip 18 -> 17, zinb2 26 -> 25, owls_zinb1 26 -> 24); at 1e-2 they
# reached 1.5e-3 for one more gradient in two. Below SECANT_MIN the gradient's rounding noise over |s| would show.
SECANT_RADIUS, SECANT_MIN = 3e-3, 1e-6
# a step joins the directions only if at least this share of it (in scaled coordinates) is new: S stays well
# conditioned
INDEPENDENT = 0.5
FD_STEP = 1e-4  # the forward differences' step (relative), as optimizer.fd_hessian's


class Recent:
    """The last ``size`` points a value-and-gradient function was evaluated at, with their gradients."""

    def __init__(self, size: int = 8):
        self.points: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=size)

    def add(self, x: np.ndarray, f: float, g: np.ndarray) -> None:
        if np.isfinite(f) and np.all(np.isfinite(g)):
            self.points.append((np.array(x, dtype=float), np.array(g, dtype=float)))


def secant_hessian(fg: FunGrad, x: np.ndarray, lower: np.ndarray, recent: Recent | None) -> np.ndarray | None:
    """The symmetrised Hessian at ``x`` of the function whose value and gradient ``fg`` gives (x >= ``lower``),
    from the secant pairs of ``recent`` points near ``x`` and forward differences along the directions they leave;
    None where no recent point is near, or a direction's difference cannot stay inside the bounds (the caller then
    takes forward differences along the axes, which always can)."""
    x = np.asarray(x, dtype=float)
    k = x.size
    scale = np.maximum(1.0, np.abs(x))
    g0 = fg(x)[1]
    steps: list[np.ndarray] = []
    diffs: list[np.ndarray] = []
    basis: list[np.ndarray] = []  # orthonormal, in scaled coordinates
    for xj, gj in reversed(recent.points if recent is not None else ()):
        s = xj - x
        u = s / scale
        size = float(np.max(np.abs(u)))
        if not SECANT_MIN <= size <= SECANT_RADIUS or xj.shape != x.shape:
            continue
        r = u.copy()
        for q in basis:
            r -= (q @ r) * q
        if np.linalg.norm(r) < INDEPENDENT * np.linalg.norm(u):
            continue
        basis.append(r / np.linalg.norm(r))
        steps.append(s)
        diffs.append(gj - g0)
        if len(steps) == k:
            break
    if not basis:
        return None
    Q = np.linalg.qr(np.column_stack(basis + [np.eye(k)[:, i] for i in range(k)]))[0]
    rest = [Q[:, i] for i in range(len(basis), k)]
    for v in rest:
        d = FD_STEP * scale * v
        if np.any(x + d < lower):
            d = -d
            if np.any(x + d < lower):
                return None
        steps.append(d)
        diffs.append(fg(x + d)[1] - g0)
    S, Y = np.column_stack(steps), np.column_stack(diffs)
    try:
        H = np.linalg.solve(S.T, Y.T).T  # H S = Y
    except np.linalg.LinAlgError:
        return None
    return 0.5 * (H + H.T)
