"""Checks and messages about the data and the fixed-effects design: a constant response, predictors that are
constant or linear combinations of earlier ones (found on the Gram matrix, summed in chunks with progress for a
large design), too few groups, no complete rows."""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.progress import ProgressFn, report


def constant_column_warning(name: str) -> str:
    return f"Fixed effect '{name}' is constant in the rows used and was dropped from the model."


def rank_deficient_warning(dropped: list[str]) -> str:
    """lme4's words for fixed-effect columns dropped as linear combinations of those before them, with their
    names quoted and why."""
    return (f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column(s): "
            f"{', '.join(repr(d) for d in dropped)} (each a linear combination of the columns before it: collinear)")


def too_few_groups(group_name: str, n_groups: int) -> GlmmInputError:
    return GlmmInputError(
        f"group variable '{group_name}' has {n_groups} group after excluding incomplete rows; "
        "a random intercept needs at least 2 groups (choose another group variable)"
    )


def no_complete_rows(response: str, group_name: str) -> GlmmInputError:
    return GlmmInputError(
        "no complete rows: every row has a missing, non-numeric or infinite value in "
        f"'{response}', the fixed effects or '{group_name}'"
    )


GRAM_CHUNK_FLOPS = 2e9  # a Gram matrix costlier than this is summed over row chunks, with progress between


def gram_matrix(Z: np.ndarray, progress: ProgressFn = None) -> np.ndarray:
    """Z'Z; for a large design (n p^2 above GRAM_CHUNK_FLOPS) summed over chunks of rows, reporting progress
    between them so that a cancel is seen within about a second."""
    n, p = Z.shape
    if n * p * p <= GRAM_CHUNK_FLOPS:
        return Z.T @ Z
    rows = max(1, int(GRAM_CHUNK_FLOPS // max(p * p, 1)))
    G = np.zeros((p, p))
    for a in range(0, n, rows):
        report(progress, "Preparing data: cross-products", 0.0)
        G += Z[a:a + rows].T @ Z[a:a + rows]
    return G


def collinear_columns(gram: np.ndarray, first: int, eps: float = 1e-10, progress: ProgressFn = None) -> list[int]:
    """Columns (from ``first`` on) whose squared residual on the kept earlier columns is below ``eps`` of the
    column's squared norm: Gram-Schmidt on the (scaled) Gram matrix.

    By unpivoted Cholesky factorisations (LAPACK): the k-th squared diagonal of the factor of a Gram matrix is the
    squared residual of column k on all the columns before it, so up to the first column that fails the test every
    column is kept as Gram-Schmidt keeps it. That column is dropped and the factorisation goes on with the Schur
    complement of the columns after it on those kept: O(p^3) per dropped column at most (a design of full rank
    needs one factorisation), where a least-squares solve per column cost O(p^4) (45 s for 1,000 columns)."""
    p = gram.shape[0]
    gram = np.asarray(gram, dtype=float)
    norms = np.maximum(np.diag(gram).copy(), 1e-300)
    out: list[int] = []
    rest = np.arange(first, p)
    if rest.size == 0:
        return out
    if first > 0:
        lead, info = lapack.dpotrf(gram[:first, :first], lower=1, clean=1)
        if info != 0:
            return _collinear_by_solves(gram, first, eps, progress)
        C = linalg.solve_triangular(lead, gram[:first, first:], lower=True, check_finite=False)
        S = gram[first:, first:] - C.T @ C
    else:
        S = gram.copy()
    while rest.size:
        report(progress, "Preparing data: collinear columns", 0.0)  # a cancel is seen between factorisations
        c, info = lapack.dpotrf(S, lower=1, clean=1)
        good = rest.size if info == 0 else max(int(info) - 1, 0)  # the pivot at `good` is <= 0: collinear
        ratio = np.diag(c)[:good] ** 2 / norms[rest[:good]]
        bad = np.flatnonzero(ratio <= eps)
        if bad.size:
            j = int(bad[0])
        elif info != 0:
            j = good
        else:
            return out
        out.append(int(rest[j]))
        # the columns after j on those kept (rest[:j]): the Schur complement of S's leading j x j block
        C = linalg.solve_triangular(c[:j, :j], S[:j, j + 1:], lower=True, check_finite=False) if j else None
        S = S[j + 1:, j + 1:] - (C.T @ C if C is not None else 0.0)
        rest = rest[j + 1:]
    return out


def _collinear_by_solves(gram: np.ndarray, first: int, eps: float, progress: ProgressFn) -> list[int]:
    """Gram-Schmidt by a least-squares solve per column (leading columns that are themselves singular)."""
    kept: list[int] = list(range(first))
    out: list[int] = []
    for k in range(first, gram.shape[0]):
        if (k - first) % 50 == 0:
            report(progress, "Preparing data: collinear columns", 0.0)
        G = gram[np.ix_(kept, kept)]
        b = gram[kept, k]
        resid = gram[k, k] - b @ np.linalg.lstsq(G, b, rcond=None)[0]
        if resid <= eps * max(gram[k, k], 1e-300):
            out.append(k)
        else:
            kept.append(k)
    return out


def check_not_constant(y: np.ndarray, response: str) -> None:
    """Refuse a response with a single value in every row used: there is nothing to model."""
    if y.size and np.min(y) == np.max(y):
        raise GlmmInputError(
            f"response '{response}' has the same value ({y[0]:g}) in every complete row: there is nothing to "
            "model; choose another response or check the data"
        )


