"""The fixed-effects design scaled to orthonormal columns (Cholesky QR; wide designs by chunks of rows, with
progress), the later of collinear columns dropped as lme4 does, and products with a design kept in float32."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from glmmlab.engine.model.design import collinear_columns, gram_matrix
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.threads import THREADED_ROWS, cpu_count, in_threads, row_slices

# -- the fixed-effects design ------------------------------------------------------------------------------
WIDE_DESIGN_FLOPS = 2e9  # a design with n p^2 above this is worked through in chunks of rows, with progress
# a narrow design whose equilibrated Cholesky factor has at most this condition number takes one pass of Cholesky
# QR (its columns orthogonal to ~1e-9 or better: 1M x 11 simulated, 4e-15); above it, a second (CholeskyQR2)
ONE_PASS_COND = 100.0


def scaled_design(X: np.ndarray, names: list[str], progress: ProgressFn = None, in_place: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """X_s = X[:, kept] T^-1 with X_s' X_s = n I, and T (beta = T gamma). Columns that are linear
    combinations of earlier ones are dropped (lme4 drops rank-deficient columns too), named in ``dropped``.

    By Cholesky QR: the collinearity test and T come from the Gram matrix X'X (equilibrated, so columns of any
    scale are alike). For a narrow design whose factor is not well conditioned (above ONE_PASS_COND), a second
    pass with the Gram matrix of the result makes X_s orthogonal to rounding (CholeskyQR2); a well-conditioned
    one needs none (checking that it had none to make was a third pass over the rows). Gram matrices and
    products, where a Householder QR of a tall design runs in one thread at a fraction of the speed (1M x 11:
    0.07 s against 0.37 s). The columns kept have a residual on the earlier ones of at least 1e-5 of their norm,
    inside Cholesky QR's range. A wide design (n p^2 above
    WIDE_DESIGN_FLOPS: a factor of 1,500 levels) takes one pass, in chunks of rows with a progress report
    between them (where a cancel is seen); its columns are orthogonal to about 1e-6, which the fit does not need
    to be better. Should a factorisation fail, the design falls back to a Householder QR
    (:func:`design_scaling`). ``in_place``: X_s is computed in X's own memory (the caller owns X and needs it no
    more; no column dropped), so the fit holds one n x p design, not two."""
    n, p = X.shape
    if p == 0:
        return X, np.zeros((0, 0)), [], []
    wide = n * p * p > WIDE_DESIGN_FLOPS
    G = _gram(X, progress)
    out = set(collinear_columns(G, 0, progress=progress))
    keep = np.array([j for j in range(p) if j not in out], dtype=int)
    dropped = [names[j] for j in range(p) if j in out]
    kept = [names[j] for j in keep]
    Gk = G[np.ix_(keep, keep)]
    d = 1.0 / np.sqrt(np.maximum(np.diag(Gk), 1e-300))
    try:
        R = linalg.cholesky(Gk * d[:, None] * d[None, :], lower=False, check_finite=False)
        T = np.sqrt(n) * d[:, None] * linalg.solve_triangular(R, np.eye(keep.size), check_finite=False)
        if not np.all(np.isfinite(T)):
            raise ValueError("the design's Gram matrix has no usable Cholesky factor")
        own = in_place and keep.size == p
        Xs = _times(X if keep.size == p else X[:, keep], T, progress, own)
        # the second pass only where the first can leave X_s off orthogonal by more than about 1e-9: its error is
        # about cond(R)^2 times the Gram matrix's rounding (1M rows: ~1e-13)
        one_pass = wide or np.linalg.cond(R) <= ONE_PASS_COND
        for _ in range(0 if one_pass else 2):
            G2 = _gram(Xs, None) / n
            if np.max(np.abs(G2 - np.eye(keep.size))) <= 1e-12:
                break
            try:  # X_s may be X's own memory by now: a failure here keeps the first pass (no fallback)
                Ri = linalg.solve_triangular(linalg.cholesky(G2, lower=False, check_finite=False),
                                             np.eye(keep.size), check_finite=False)
            except (np.linalg.LinAlgError, ValueError):
                break
            if not np.all(np.isfinite(Ri)):
                break
            Xs = _times(Xs, Ri, None, own or Xs is not X)
            T = T @ Ri
        if np.all(np.isfinite(T)):
            return Xs, T, kept, dropped
    except (np.linalg.LinAlgError, ValueError):
        pass
    R = linalg.qr(X, mode="r", check_finite=False)[0]
    keep, T, kept, dropped = design_scaling(R, n, names)
    return X[:, keep] @ T, T, kept, dropped


def _threaded(n: int, p: int) -> bool:
    """Whether an n x p design's passes run over runs of rows in threads, one per core: a narrow design of at least
    THREADED_ROWS rows (1M x 11: the three passes over the design on one core took ~0.1 s while the other
    waited)."""
    return n >= THREADED_ROWS and n * p * p <= WIDE_DESIGN_FLOPS and cpu_count() > 1


def _gram(X: np.ndarray, progress: ProgressFn) -> np.ndarray:
    """X'X: :func:`gram_matrix`, or for a tall narrow design the sum of its runs of rows' in threads."""
    n, p = X.shape
    if not _threaded(n, p):
        return gram_matrix(X, progress)
    return sum(in_threads(lambda r: X[r].T @ X[r], row_slices(n, cpu_count())), np.zeros((p, p)))


def _times(X: np.ndarray, T: np.ndarray, progress: ProgressFn, in_place: bool = False) -> np.ndarray:
    """X T, in chunks of rows with a progress report between them when it is large; ``in_place`` (T square):
    written over X, a chunk of rows at a time (the chunk's product is all the extra memory). A tall narrow
    design's runs of rows are done in threads (the same rows' products, so the same numbers)."""
    n, p = X.shape
    if _threaded(n, p) and T.shape[0] == p:
        out = X if in_place and T.shape[0] == T.shape[1] else np.empty((n, T.shape[1]))

        def run(r: slice) -> None:
            for a in range(r.start, r.stop, GLM_PIECE):
                b = min(a + GLM_PIECE, r.stop)
                out[a:b] = X[a:b] @ T

        in_threads(run, row_slices(n, cpu_count()))
        return out
    if in_place and T.shape[0] == T.shape[1]:
        rows = max(1, min(GLM_PIECE, int(WIDE_DESIGN_FLOPS // max(p * p, 1))))
        for a in range(0, n, rows):
            if a and n * p * p > WIDE_DESIGN_FLOPS:
                report(progress, "Preparing data: scaling the design", 0.0)
            X[a:a + rows] = X[a:a + rows] @ T
        return X
    if n * p * T.shape[1] <= WIDE_DESIGN_FLOPS:
        return X @ T
    out = np.empty((n, T.shape[1]))
    rows = max(1, int(WIDE_DESIGN_FLOPS // max(p * T.shape[1], 1)))
    for a in range(0, n, rows):
        report(progress, "Preparing data: scaling the design", 0.0)
        np.matmul(X[a:a + rows], T, out=out[a:a + rows])
    return out


def design_scaling(A: np.ndarray, n: int, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """:func:`scaled_design`'s kept columns and T for an n-row X known only through a matrix A with
    A'A = X'X (X's R factor, or the stacked R factors of X's row blocks when X never meets in one place):
    (kept column indices, T, kept names, dropped names); X_s = X[:, kept] T. A column is dropped when it is a
    linear combination of the columns before it (the random-intercept engine's rule, and lme4's: the later
    of two collinear columns goes)."""
    p = A.shape[1]
    if p == 0:
        return np.zeros(0, dtype=int), np.zeros((0, 0)), [], []
    out = set(collinear_columns(A.T @ A, 0))
    keep = np.array([j for j in range(p) if j not in out], dtype=int)
    dropped = [names[j] for j in range(p) if j in out]
    Rk = linalg.qr(A[:, keep], mode="r", check_finite=False)[0][: keep.size]
    T = np.sqrt(n) * linalg.solve_triangular(Rk, np.eye(keep.size))
    return keep, T, [names[j] for j in keep], dropped


def design_dot(Xs: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """X_s beta in float64 (by pieces when X_s is stored in float32, as the Dask path's lean blocks hold it: no
    float64 copy of the design)."""
    if Xs.dtype == np.float64:
        return Xs @ beta
    out = np.empty(Xs.shape[0])
    for a in range(0, out.size, GLM_PIECE):
        np.matmul(Xs[a:a + GLM_PIECE], beta, out=out[a:a + GLM_PIECE])
    return out


def design_t_dot(Xs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """X_s' v (v: n or n x m) in float64 (by pieces when X_s is stored in float32)."""
    if Xs.dtype == np.float64:
        return Xs.T @ v
    return sum((Xs[a:a + GLM_PIECE].T @ v[a:a + GLM_PIECE] for a in range(0, v.shape[0], GLM_PIECE)),
               np.zeros((Xs.shape[1],) + v.shape[1:]))


GLM_PIECE = 32_768  # rows per product in the GLM's normal equations
