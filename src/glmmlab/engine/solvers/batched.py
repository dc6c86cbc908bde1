"""Small dense matrices in stacks, one per level of a grouping factor: Cholesky factors, inverses of lower
triangular factors and triangular solves, vectorised over the stack (for blocks up to :data:`SUBSTITUTION_Q`
square, as substitution over the levels: LAPACK per 2 x 2 matrix costs more than the arithmetic)."""

from __future__ import annotations

import numpy as np

SUBSTITUTION_Q = 4  # up to this block size, batched triangular solves run as substitution over the levels


def batched_cholesky(H: np.ndarray) -> np.ndarray:
    """The lower Cholesky factors of a (k, q, q) stack of positive definite matrices; for small q column by
    column, each step vectorised over the stack (LAPACK per 2 x 2 matrix costs more than the arithmetic)."""
    q = H.shape[1]
    if q > SUBSTITUTION_Q:
        return np.linalg.cholesky(H)
    L = np.zeros_like(H)
    add = np.add.reduce  # np.sum's own reduction, without its Python wrapper (called q (q + 1) / 2 times)
    for j in range(q):
        d = H[:, j, j] - add(L[:, j, :j] ** 2, axis=1) if j else H[:, j, j]
        if not (d > 0).all():
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        L[:, j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            num = H[:, i, j] - add(L[:, i, :j] * L[:, j, :j], axis=1) if j else H[:, i, j]
            L[:, i, j] = num / L[:, j, j]
    return L


def batched_inverse_lower(L: np.ndarray) -> np.ndarray:
    """L^-1 for a (k, q, q) stack of lower triangular matrices."""
    q = L.shape[1]
    if q > SUBSTITUTION_Q:
        return np.linalg.inv(L)
    return batched_solve_lower(L, np.broadcast_to(np.eye(q), L.shape))


def batched_solve_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve L x = B per level; L (k, q, q) lower, B (k, q) or (k, q, m)."""
    q = L.shape[1]
    if q == 1:
        return B / (L[:, 0, :1] if B.ndim == 2 else L[:, :1, :1])
    if q <= SUBSTITUTION_Q:  # forward substitution, each step vectorised over the levels (no LU per level)
        X = np.empty(B.shape)
        for a in range(q):
            acc = B[:, a].copy()
            for c in range(a):
                acc -= (L[:, a, c, None] if B.ndim == 3 else L[:, a, c]) * X[:, c]
            X[:, a] = acc / (L[:, a, a, None] if B.ndim == 3 else L[:, a, a])
        return X
    return np.linalg.solve(L, B[..., None])[..., 0] if B.ndim == 2 else np.linalg.solve(L, B)


def batched_solve_upper(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve L' x = B per level (L lower)."""
    q = L.shape[1]
    if q == 1:
        return B / L[:, 0, :1] if B.ndim == 2 else B / L[:, :1, :1]
    if q <= SUBSTITUTION_Q:  # back substitution with L' (row a of L' is column a of L)
        X = np.empty(B.shape)
        for a in range(q - 1, -1, -1):
            acc = B[:, a].copy()
            for c in range(a + 1, q):
                acc -= (L[:, c, a, None] if B.ndim == 3 else L[:, c, a]) * X[:, c]
            X[:, a] = acc / (L[:, a, a, None] if B.ndim == 3 else L[:, a, a])
        return X
    Lt = np.swapaxes(L, 1, 2)
    return np.linalg.solve(Lt, B[..., None])[..., 0] if B.ndim == 2 else np.linalg.solve(Lt, B)

