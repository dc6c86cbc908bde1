"""The per-level algebra of :class:`~glmmlab.engine.solvers.joint_laplace.JointLaplace`: each level's penalised
Hessian H_j is q x q (q the scalar terms on the grouping factor, 2 for (1 | g) in the mean and the zero model), so
its solves, inverse and log-determinant are in closed form for 2 x 2 and batched otherwise."""

from __future__ import annotations

import numpy as np


def _solve_positive(H: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """H_j delta_j = rhs_j per level; a level whose H_j is not positive definite gets a ridge that makes it so.
    Two effects per level (the usual (1 | g) in both parts): Cramer's rule where every level's H_j is positive
    definite."""
    if H.shape[1] == 2:
        a, b, d = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
        det = a * d - b * b
        if np.all(a > 0.0) and np.all(det > 1e-8 * a * d):
            r0, r1 = rhs[:, 0], rhs[:, 1]
            return np.column_stack([d * r0 - b * r1, a * r1 - b * r0]) / det[:, None]
    w, V = np.linalg.eigh(H)
    w = np.maximum(w, 1e-3 * np.maximum(np.max(np.abs(w), axis=1, keepdims=True), 1.0))
    return np.einsum("jab,jb->ja", V, np.einsum("jba,jb->ja", V, rhs) / w)


def _inverse(H: np.ndarray) -> np.ndarray:
    """H_j^-1 per level (2 x 2 by the adjugate: a batched LAPACK inverse of small matrices costs more)."""
    if H.shape[1] != 2:
        return np.linalg.inv(H)
    a, b, d = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
    det = a * d - b * b
    out = np.empty_like(H)
    out[:, 0, 0], out[:, 1, 1] = d / det, a / det
    out[:, 0, 1] = out[:, 1, 0] = -b / det
    return out


def _logdet_positive(H: np.ndarray) -> float:
    """sum_j log det H_j, or inf where some H_j is not positive definite."""
    if H.shape[1] == 2:
        a, b, d = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
        det = a * d - b * b
        if np.all(a > 0.0) and np.all(det > 1e-8 * a * d):
            return float(np.sum(np.log(det)))
    try:
        Lc = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return np.inf
    return 2.0 * float(np.sum(np.log(np.diagonal(Lc, axis1=1, axis2=2))))
