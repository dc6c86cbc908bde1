"""The per-level algebra of :class:`~glmmlab.engine.solvers.joint_laplace.JointLaplace`: each level's penalised
Hessian H_j is q x q (q the scalar terms on the grouping factor, 2 for (1 | g) in the mean and the zero model), so
its solves, inverse and log-determinant are in closed form for 2 x 2 and batched otherwise; with one intercept per
part the gradient is per-level sums (:func:`intercepts_gradient`)."""

from __future__ import annotations

import numpy as np


def _solve_positive(H: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """H_j delta_j = rhs_j per level; a level whose H_j is not positive definite gets a ridge that makes it so.
    Two effects per level (the usual (1 | g) in both parts): Cramer's rule where every level's H_j is positive
    definite."""
    if H.shape[1] == 2:
        a, b, d = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
        det = a * d - b * b
        if _positive(a, det, d):
            r0, r1 = rhs[:, 0], rhs[:, 1]
            out = np.empty_like(rhs)
            out[:, 0] = (d * r0 - b * r1) / det
            out[:, 1] = (a * r1 - b * r0) / det
            return out
    w, V = np.linalg.eigh(H)
    w = np.maximum(w, 1e-3 * np.maximum(np.max(np.abs(w), axis=1, keepdims=True), 1.0))
    return np.einsum("jab,jb->ja", V, np.einsum("jba,jb->ja", V, rhs) / w)


def _positive(a: np.ndarray, det: np.ndarray, d: np.ndarray) -> bool:
    """Whether every level's 2 x 2 H_j (diagonal a, d, determinant det) is positive definite, away from singular
    (False where any entry is NaN)."""
    return bool(a.min() > 0.0) and bool((det - 1e-8 * a * d).min() > 0.0)


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
        if _positive(a, det, d):
            return float(np.log(det).sum())
    try:
        Lc = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return np.inf
    return 2.0 * float(np.sum(np.log(np.diagonal(Lc, axis1=1, axis2=2))))


def intercepts_gradient(codes: np.ndarray, runs: np.ndarray, theta: np.ndarray, u: np.ndarray, H: np.ndarray,
                        rows_at_modes: tuple, third: tuple, designs: dict) -> tuple[np.ndarray, list]:
    """JointLaplace.value_and_grad's gradient where each part (mean, zero model) has one intercept on rows sorted by
    level (``codes``; ``runs`` where each level's rows start): a_ik = theta_k, B_i = diag(theta), so
    M_i = diag(theta) S_j diag(theta) per level, and the theta terms are per-level sums,
    sum_j u_jk R_jk + (S_j diag(theta) W_j)_kk - w_jk G_jk, R the level sums of the beta gradient's rows and G, W
    those of the rows' g and W at the modes (the same gradient, fewer passes over the rows). ``rows_at_modes``: the
    rows' g (n, 2), W (n, 2, 2) and their level sums (L, 6); ``third``: the third derivatives T (n, 2, 2, 3) and the
    dispersion's gd (n,), Wd (n, 2), or without a dispersion model (T's distinct entries in the two predictors
    (T000, T001, T011, T111), None, None)."""
    g, W, sums = rows_at_modes
    T, gd, Wd = third
    S = _inverse(H)  # (L, 2, 2)
    M = S * (theta[:, None] * theta[None, :])  # B_i S_j B_i' per level
    if isinstance(T, tuple):  # symmetric in the two predictors: t_r = 1/2 sum_pq M_pq T_pqr
        m00, m01, m11 = M[:, 0, 0][codes], 2.0 * M[:, 0, 1][codes], M[:, 1, 1][codes]
        t = np.empty((codes.shape[0], 2))
        t[:, 0] = 0.5 * (m00 * T[0] + m01 * T[1] + m11 * T[2])
        t[:, 1] = 0.5 * (m00 * T[1] + m01 * T[2] + m11 * T[3])
    else:
        t = 0.5 * np.einsum("npq,npqr->nr", M[codes], T)  # (n, 3)
    w = 0.5 * np.einsum("jkm,jm->jk", S, np.add.reduceat(t[:, :2], runs, axis=0) * theta)  # (2 H_j)^-1 v_j
    omega = w[codes] * theta  # B_i w_j
    if Wd is None:
        rows = t - omega[:, :1] * W[:, 0, :] - omega[:, 1:] * W[:, 1, :]
        rows += g
    else:
        rows = t - omega[:, :1] * np.column_stack([W[:, 0, :], Wd[:, 0]]) \
            - omega[:, 1:] * np.column_stack([W[:, 1, :], Wd[:, 1]])
        rows[:, 2] += gd
        rows[:, :2] += g
    grad_beta = [X.T @ rows[:, r] for r, X in enumerate((designs["cond"], designs.get("zi"), designs.get("disp")))
                 if X is not None]
    R = np.add.reduceat(rows[:, :2], runs, axis=0)  # (L, 2)
    Wsum = sums[:, 2:].reshape(-1, 2, 2)
    SW = np.einsum("jkm,m,jmk->jk", S, theta, Wsum)  # (S_j diag(theta) W_j)_kk
    grad_theta = (u * R).sum(axis=0) + SW.sum(axis=0) - (w * sums[:, :2]).sum(axis=0)
    return grad_theta, grad_beta
